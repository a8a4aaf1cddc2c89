"""The canonical trace file: the HDF5 layout that every crnn stage reads and writes.

Layout (documented for users in ``docs/formats.md``):

* dataset ``traces``: float32, shape (N, C, T); a 2-D (N, T) dataset means C = 1;
* attribute ``sampling_rate_hz`` (on ``traces`` or on the file root), a positive number;
* attribute ``unit`` (on ``traces`` or on the file root): "V", "uV", "mV", "ADC", ...;
* optional per-trace datasets whose first axis has length N: ``labels`` (int8, 1 = air-shower
  pulse present), ``snr`` (float32) and any other metadata, carried through the stages.

Writers go through :class:`TraceWriter`, which writes to a temporary name in the target folder
and renames on success, so a failed stage never leaves a partial file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from crnn.errors import CrnnError, MissingFieldError
from crnn.fileutil import (
    OutputGroup,
    check_input_file,
    discard_temporary,
    hold_unclosable,
    new_temporary,
    os_errno,
    publish,
    write_error,
)

TRACES = "traces"
LABELS = "labels"
SNR = "snr"
KNOWN_UNITS = ("V", "mV", "uV", "nV", "V/m", "mV/m", "uV/m", "ADC")
#: Scale factors to volts (or V/m) for the units that have one; ADC counts have none.
UNIT_TO_SI = {"V": 1.0, "mV": 1e-3, "uV": 1e-6, "nV": 1e-9, "V/m": 1.0, "mV/m": 1e-3, "uV/m": 1e-6}
DEFAULT_CHUNK = 4096


@dataclass
class TraceSet:
    """Traces held in memory, with their sampling rate, unit and per-trace metadata."""

    traces: np.ndarray  # (N, C, T) float32
    sampling_rate_hz: float
    unit: str
    meta: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.traces.ndim == 2:
            self.traces = self.traces[:, None, :]
        if self.traces.ndim != 3:
            msg = f"traces must have shape (N, C, T) or (N, T); got shape {self.traces.shape}"
            raise CrnnError(msg)
        n = self.traces.shape[0]
        for name, values in self.meta.items():
            if len(values) != n:
                msg = f"per-trace dataset {name!r} has length {len(values)}, expected N = {n}"
                raise CrnnError(msg)

    @property
    def n_traces(self) -> int:
        return int(self.traces.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.traces.shape[1])

    @property
    def n_samples(self) -> int:
        return int(self.traces.shape[2])

    @property
    def labels(self) -> np.ndarray | None:
        return self.meta.get(LABELS)

    def subset(self, index: np.ndarray) -> TraceSet:
        return TraceSet(
            self.traces[index],
            self.sampling_rate_hz,
            self.unit,
            {k: v[index] for k, v in self.meta.items()},
            dict(self.attrs),
        )


class TraceFile:
    """A validated, open canonical trace file, read lazily in chunks.

    Opening checks the layout (datasets, shapes, dtypes, attributes); :meth:`iter_chunks`
    checks values (NaN, Inf, label values) chunk by chunk, so files larger than memory work.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._h5 = open_h5(self.path)
        try:
            self._validate_layout()
        except BaseException:
            self._h5.close()
            raise

    # -- layout ---------------------------------------------------------------------------
    def _validate_layout(self) -> None:
        f = self._h5
        where = str(self.path)
        if TRACES not in f or not isinstance(f[TRACES], h5py.Dataset):
            raise MissingFieldError(where, TRACES, _dataset_names(f), expected="float32 array of shape (N, C, T)")
        ds = f[TRACES]
        self._ds = ds
        if ds.ndim not in (2, 3):
            msg = f"{where}: dataset 'traces' must have shape (N, C, T) or (N, T); found {ds.ndim}-D shape {ds.shape}"
            raise CrnnError(msg)
        if not (np.issubdtype(ds.dtype, np.floating) or np.issubdtype(ds.dtype, np.integer)):
            msg = f"{where}: dataset 'traces' must hold real numbers (float32); found dtype {ds.dtype}"
            raise CrnnError(msg)
        self.n_traces = int(ds.shape[0])
        self.n_channels = 1 if ds.ndim == 2 else int(ds.shape[1])
        self.n_samples = int(ds.shape[-1])
        if self.n_traces == 0 or self.n_samples == 0 or self.n_channels == 0:
            msg = f"{where}: dataset 'traces' is empty (shape {ds.shape}); expected at least one trace"
            raise CrnnError(msg)
        rate = _find_attr(f, ds, "sampling_rate_hz")
        if rate is None:
            attrs = sorted(set(ds.attrs) | set(f.attrs))
            raise MissingFieldError(
                where,
                "sampling_rate_hz",
                attrs,
                kind="attribute",
                expected="sampling rate in Hz, on 'traces' or on the file root",
            )
        try:
            rate_f = float(np.asarray(rate).item())
        except (TypeError, ValueError) as exc:
            msg = f"{where}: attribute 'sampling_rate_hz' must be one positive number; found {rate!r}"
            raise CrnnError(msg) from exc
        if not np.isfinite(rate_f) or rate_f <= 0:
            msg = f"{where}: attribute 'sampling_rate_hz' must be a positive finite number; found {rate_f}"
            raise CrnnError(msg)
        self.sampling_rate_hz = rate_f
        unit = _find_attr(f, ds, "unit")
        if unit is None:
            attrs = sorted(set(ds.attrs) | set(f.attrs))
            raise MissingFieldError(
                where,
                "unit",
                attrs,
                kind="attribute",
                expected=f"a unit string such as {', '.join(KNOWN_UNITS[:4])} or 'ADC'",
            )
        self.unit = unit.decode() if isinstance(unit, bytes) else str(unit)
        self.meta_names: list[str] = []
        for name, obj in f.items():
            if name == TRACES or not isinstance(obj, h5py.Dataset):
                continue
            if obj.ndim >= 1 and obj.shape[0] == self.n_traces:
                self.meta_names.append(name)
            elif name in (LABELS, SNR):
                msg = (
                    f"{where}: per-trace dataset {name!r} must have length N = {self.n_traces} "
                    f"(one value per trace); found shape {obj.shape}"
                )
                raise CrnnError(msg)
        if LABELS in f:
            lab = f[LABELS]
            if not np.issubdtype(lab.dtype, np.integer) and not np.issubdtype(lab.dtype, np.bool_):
                msg = f"{where}: dataset 'labels' must be integers 0/1 (int8); found dtype {lab.dtype}"
                raise CrnnError(msg)
            if lab.ndim != 1:
                msg = f"{where}: dataset 'labels' must be 1-D of length {self.n_traces}; found shape {lab.shape}"
                raise CrnnError(msg)
        self.attrs = {k: _plain(v) for k, v in f.attrs.items()}

    @property
    def has_labels(self) -> bool:
        return LABELS in self.meta_names

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.n_traces, self.n_channels, self.n_samples)

    # -- values ---------------------------------------------------------------------------
    def read_traces(self, start: int, stop: int) -> np.ndarray:
        x = np.asarray(self._ds[start:stop], dtype=np.float32)
        if x.ndim == 2:
            x = x[:, None, :]
        bad = ~np.isfinite(x)
        if bad.any():
            i, c, t = np.argwhere(bad)[0]
            kind = "NaN" if np.isnan(x[i, c, t]) else "Inf"
            msg = (
                f"{self.path}: dataset 'traces' holds {int(bad.sum())} non-finite value(s) in traces "
                f"{start}..{stop - 1}; first: {kind} at trace {start + int(i)}, channel {int(c)}, "
                f"sample {int(t)}; expected finite numbers"
            )
            raise CrnnError(msg)
        return x

    def read_meta(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        if name not in self._h5:
            raise MissingFieldError(str(self.path), name, self.meta_names, expected="per-trace dataset")
        values = np.asarray(self._h5[name][start:stop])
        if name == LABELS:
            bad = (values != 0) & (values != 1)
            if bad.any():
                msg = (
                    f"{self.path}: dataset 'labels' must hold 0 or 1; found {values[bad][0]!r} "
                    f"at trace {start + int(np.argmax(bad))}"
                )
                raise CrnnError(msg)
            values = values.astype(np.int8)
        elif name == SNR and np.isinf(values).any():
            msg = f"{self.path}: dataset 'snr' holds infinite values; expected finite numbers (NaN = unknown)"
            raise CrnnError(msg)
        return values

    def iter_chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[tuple[int, TraceSet]]:
        """Yield ``(start, TraceSet)`` for consecutive chunks of at most ``chunk_size`` traces."""
        for start in range(0, self.n_traces, chunk_size):
            stop = min(start + chunk_size, self.n_traces)
            yield (
                start,
                TraceSet(
                    self.read_traces(start, stop),
                    self.sampling_rate_hz,
                    self.unit,
                    {name: self.read_meta(name, start, stop) for name in self.meta_names},
                    self.attrs,
                ),
            )

    def read_all(self) -> TraceSet:
        return TraceSet(
            self.read_traces(0, self.n_traces),
            self.sampling_rate_hz,
            self.unit,
            {name: self.read_meta(name) for name in self.meta_names},
            self.attrs,
        )

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> TraceFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_traces(path: str | os.PathLike[str], *, require_labels: bool = False) -> TraceSet:
    """Read and validate a whole canonical trace file into memory."""
    with TraceFile(path) as tf:
        if require_labels and not tf.has_labels:
            raise MissingFieldError(
                str(path),
                LABELS,
                tf.meta_names,
                expected="int8 per-trace labels, 1 = air-shower pulse present",
            )
        return tf.read_all()


class TraceWriter:
    """Write a canonical trace file chunk by chunk, atomically.

    Data go to a temporary file beside ``path``; :meth:`close` renames it into place (or, with
    ``group``, leaves that to the :class:`crnn.fileutil.OutputGroup`), and an exception inside the
    ``with`` block deletes it, so readers never see a partial file. A failed write (no space,
    read-only) becomes one line naming ``path``; the HDF5 file is closed before the error leaves.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        n_channels: int,
        n_samples: int,
        sampling_rate_hz: float,
        unit: str,
        attrs: Mapping[str, Any] | None = None,
        chunk_size: int = DEFAULT_CHUNK,
        group: OutputGroup | None = None,
    ) -> None:
        self.path = Path(path)
        self._group = group
        self._tmp = group.add(self.path) if group is not None else new_temporary(self.path)
        self._h5: h5py.File | None = None
        self._chunk = max(1, min(chunk_size, 1024))
        self._n = 0
        self._shape = (n_channels, n_samples)
        self._meta: dict[str, h5py.Dataset] = {}
        with self._writing():
            self._h5 = h5py.File(self._tmp, "w")
            self._h5.attrs["sampling_rate_hz"] = float(sampling_rate_hz)
            self._h5.attrs["unit"] = unit
            self._h5.attrs["crnn_format_version"] = 1
            for key, value in (attrs or {}).items():
                self._h5.attrs[key] = _attr_value(value)
            self._ds = self._h5.create_dataset(
                TRACES,
                shape=(0, n_channels, n_samples),
                maxshape=(None, n_channels, n_samples),
                dtype=np.float32,
                chunks=(self._chunk, n_channels, n_samples),
            )
            self._ds.attrs["sampling_rate_hz"] = float(sampling_rate_hz)
            self._ds.attrs["unit"] = unit

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """On any failure inside: close and delete the temporary; a failed write becomes one line."""
        try:
            yield
        except BaseException as exc:
            self.abort()
            error = (
                write_error(self.path, exc, temporary=self._tmp) if isinstance(exc, (OSError, RuntimeError)) else None
            )
            if error is not None:
                raise error from exc
            raise

    def append(self, chunk: TraceSet) -> None:
        if chunk.traces.shape[1:] != self._shape:
            msg = f"{self.path}: chunk of shape {chunk.traces.shape[1:]} does not match {self._shape}"
            raise CrnnError(msg)
        if self._n and set(chunk.meta) != set(self._meta):
            msg = f"{self.path}: chunk metadata {sorted(chunk.meta)} differ from {sorted(self._meta)}"
            raise CrnnError(msg)
        with self._writing():
            self._append(chunk)

    def _append(self, chunk: TraceSet) -> None:
        assert self._h5 is not None
        n0, n1 = self._n, self._n + chunk.n_traces
        self._ds.resize(n1, axis=0)
        self._ds[n0:n1] = chunk.traces.astype(np.float32, copy=False)
        for name, values in chunk.meta.items():
            values = np.asarray(values)
            if name == LABELS:
                values = values.astype(np.int8)
            if values.dtype.kind == "U":
                values = values.astype(object)
            if name not in self._meta:
                if self._n:
                    msg = f"{self.path}: metadata {name!r} appeared after the first chunk"
                    raise CrnnError(msg)
                dtype = h5py.string_dtype() if values.dtype == object else values.dtype
                self._meta[name] = self._h5.create_dataset(
                    name,
                    shape=(0, *values.shape[1:]),
                    maxshape=(None, *values.shape[1:]),
                    dtype=dtype,
                    chunks=(max(1, min(4096, len(values) or 1)), *values.shape[1:]),
                )
            ds = self._meta[name]
            ds.resize(n1, axis=0)
            ds[n0:n1] = values
        self._n = n1

    def close(self) -> Path:
        if self._n == 0:
            self.abort()
            msg = f"{self.path}: no traces to write"
            raise CrnnError(msg)
        with self._writing():
            assert self._h5 is not None
            self._h5.flush()  # a full disk fails here, while the file can still be closed safely
            h5, self._h5 = self._h5, None
            try:
                h5.close()
            except BaseException:  # HDF5 cannot close it again: closing it in abort() would crash
                hold_unclosable((h5, self))
                raise
            if self._group is None:
                publish(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Close the file (safely after a failed write) and delete the temporary."""
        h5, self._h5 = self._h5, None
        try:
            if h5 is not None:
                close_after_failure(h5, self._tmp, self)
        finally:
            discard_temporary(self._tmp)

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def close_after_failure(h5: h5py.File, tmp: Path, *owners: object) -> None:
    """Close ``h5``, an HDF5 file on the temporary ``tmp`` that is dropped after a failed write.

    The file is emptied first, so HDF5's last metadata writes find space on a full disk. Should the
    close fail all the same, the file and ``owners`` (which hold its datasets) are kept alive until
    the process leaves with ``os._exit``: deallocating them, or HDF5's cleanup at exit, would crash
    the interpreter (a segmentation fault).
    """
    with contextlib.suppress(OSError):
        os.truncate(tmp, 0)
    try:
        h5.close()
    except Exception:  # HDF5 raises OSError or RuntimeError here
        hold_unclosable((h5, *owners))


@contextlib.contextmanager
def h5_output(tmp: Path) -> Iterator[h5py.File]:
    """An HDF5 file opened for writing on the temporary ``tmp`` (of :func:`crnn.fileutil.atomic_output`
    or an output group): closed at the end, and closed safely when writing fails; a failed write
    becomes an OSError that names ``tmp``, so the caller's one-line error names the output.

    For outputs that fit in memory (scores, metadata): the file is built in memory (HDF5's core
    driver) and written to ``tmp`` when it closes, so a full disk fails in one place, the close,
    and never while datasets are created or released (which HDF5 reports as ignored exceptions
    and, at the interpreter's exit, a segmentation fault)."""
    try:
        f = h5py.File(tmp, "w", driver="core", backing_store=True)
    except RuntimeError as exc:
        raise _as_os_error(exc, tmp) from exc
    try:
        yield f
        f.close()
    except (OSError, RuntimeError) as exc:
        close_after_failure(f, tmp)
        raise _as_os_error(exc, tmp) from exc
    except BaseException:
        close_after_failure(f, tmp)
        raise


def _as_os_error(exc: BaseException, tmp: Path) -> BaseException:
    code = os_errno(exc)
    if code is None:
        return exc
    return OSError(code, os.strerror(code), str(tmp))


def write_traces(
    path: str | os.PathLike[str],
    data: TraceSet,
    *,
    attrs: Mapping[str, Any] | None = None,
    group: OutputGroup | None = None,
) -> Path:
    """Write a whole :class:`TraceSet` atomically (with ``group``: as one of the group's outputs)."""
    all_attrs = {**data.attrs, **(attrs or {})}
    for reserved in ("sampling_rate_hz", "unit", "crnn_format_version"):
        all_attrs.pop(reserved, None)
    with TraceWriter(
        path,
        n_channels=data.n_channels,
        n_samples=data.n_samples,
        sampling_rate_hz=data.sampling_rate_hz,
        unit=data.unit,
        attrs=all_attrs,
        group=group,
    ) as w:
        step = 8192
        for start in range(0, data.n_traces, step):
            w.append(data.subset(slice(start, start + step)))
    return Path(path)


def open_h5(path: Path) -> h5py.File:
    check_input_file(path, "a canonical HDF5 trace file")
    if path.stat().st_size == 0:
        msg = f"{path}: file is empty (0 bytes); expected a canonical HDF5 trace file"
        raise CrnnError(msg)
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        detail = str(exc).split("(", 1)[-1].rstrip(")") if "(" in str(exc) else str(exc)
        msg = f"{path}: not a readable HDF5 file ({detail}); is it truncated or of another format?"
        raise CrnnError(msg) from exc


def _find_attr(f: h5py.File, ds: h5py.Dataset, name: str) -> Any:
    if name in ds.attrs:
        return ds.attrs[name]
    if name in f.attrs:
        return f.attrs[name]
    return None


def _dataset_names(group: h5py.Group) -> list[str]:
    names: list[str] = []
    group.visit(lambda n: names.append(n) if isinstance(group[n], h5py.Dataset) else None)
    return names


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _attr_value(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)) and not (
        isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value)
    ):
        return json.dumps(value)
    if value is None:
        return "null"
    return value


#: file attribute that ``crnn dataset`` writes into each split of one run (the same value in all three)
DATASET_RUN_ID = "dataset_run_id"


def check_same_dataset_run(*paths: str | os.PathLike[str]) -> None:
    """Refuse splits that come from different ``crnn dataset`` runs (their ``dataset_run_id``
    attributes differ, e.g. a train split of a newer run beside an older validation split).
    Files without the attribute (older files, or not made by ``crnn dataset``) are accepted."""
    ids: list[tuple[Path, str]] = []
    for p in paths:
        with open_h5(Path(p)) as f:
            if DATASET_RUN_ID in f.attrs:
                ids.append((Path(p), str(_plain(f.attrs[DATASET_RUN_ID]))))
    for p, run_id in ids[1:]:
        if run_id != ids[0][1]:
            msg = (
                f"{p}: {DATASET_RUN_ID} {run_id} differs from {ids[0][0]} ({ids[0][1]}); the splits come from "
                "different `crnn dataset` runs and may share traces: make them again in one run"
            )
            raise CrnnError(msg)
