"""Stage ``ingest``: convert traces from HDF5 or ROOT into the canonical trace file.

Formats (``--format``, or detected from the file's first bytes):

* ``canonical``: a canonical HDF5 trace file (written by crnn or by any other program with
  h5py); it is validated value by value and copied, optionally with a channel selection;
* ``root``: any ROOT TTree read with uproot (no ROOT installation): ``--tree`` and
  ``--branch`` name the traces, a fixed-size array branch (``float[C][T]`` or ``float[T]``)
  or a vector branch with the same shape in every entry; the sampling rate comes from
  ``--sampling-rate-hz`` or from a per-entry branch (``--sampling-rate-branch``, which must be
  constant in the file); ``--label-branch``, ``--snr-branch`` and ``--id-branch`` carry
  per-trace values through.

Files are read and written in chunks of ``--chunk-size`` traces, so their size is not bounded
by memory. Any problem (a missing tree, branch or dataset, a wrong shape, NaN or Inf, an
inconsistent sampling rate, a truncated file) stops the stage with one message and leaves no
output file.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crnn import __version__
from crnn.errors import CrnnError, MissingFieldError
from crnn.tracefile import LABELS, SNR, TraceFile, TraceSet, TraceWriter

log = logging.getLogger(__name__)
FORMATS = ("auto", "canonical", "root")


@dataclass(frozen=True)
class RootMapping:
    """Where the traces and their metadata live in a ROOT file."""

    tree: str = "events"
    branch: str = "trace"
    unit: str | None = None
    sampling_rate_hz: float | None = None
    sampling_rate_branch: str | None = None
    label_branch: str | None = None
    snr_branch: str | None = None
    id_branches: tuple[str, ...] = field(default_factory=tuple)


def detect_format(path: Path) -> str:
    if not path.exists():
        msg = f"{path}: no such file"
        raise CrnnError(msg)
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        msg = f"{path}: file is empty (0 bytes); expected HDF5 or ROOT"
        raise CrnnError(msg)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "canonical"
    if head.startswith(b"root"):
        return "root"
    msg = f"{path}: neither HDF5 nor ROOT (first bytes {head!r}); give --format if the file is of a known kind"
    raise CrnnError(msg)


def _select_channels(x: np.ndarray, channels: tuple[int, ...] | None, where: str) -> np.ndarray:
    if channels is None:
        return x
    bad = [c for c in channels if not 0 <= c < x.shape[1]]
    if bad:
        msg = f"{where}: channel(s) {bad} requested, but the traces have channels 0..{x.shape[1] - 1}"
        raise CrnnError(msg)
    return x[:, list(channels), :]


def _iter_canonical(path: Path, chunk_size: int) -> tuple[dict, Iterator[TraceSet]]:
    tf = TraceFile(path)

    def chunks() -> Iterator[TraceSet]:
        try:
            for _, chunk in tf.iter_chunks(chunk_size):
                yield chunk
        finally:
            tf.close()

    info = {"sampling_rate_hz": tf.sampling_rate_hz, "unit": tf.unit, "attrs": tf.attrs}
    return info, chunks()


def _open_root(path: Path):
    import uproot

    try:
        return uproot.open(path)
    except Exception as exc:  # uproot raises many kinds for broken files
        msg = f"{path}: not a readable ROOT file ({type(exc).__name__}: {exc}); is it truncated?"
        raise CrnnError(msg) from exc


def _iter_root(path: Path, mapping: RootMapping, chunk_size: int) -> tuple[dict, Iterator[TraceSet]]:

    f = _open_root(path)
    trees = {k.split(";")[0]: v for k, v in f.classnames().items() if v in ("TTree", "ROOT::RNTuple")}
    if mapping.tree not in trees:
        f.close()
        raise MissingFieldError(str(path), mapping.tree, trees, kind="tree", expected="the tree that holds the traces")
    tree = f[mapping.tree]
    branches = set(tree.keys())
    wanted = {"traces": mapping.branch}
    if mapping.label_branch:
        wanted[LABELS] = mapping.label_branch
    if mapping.snr_branch:
        wanted[SNR] = mapping.snr_branch
    if mapping.sampling_rate_branch:
        wanted["_rate"] = mapping.sampling_rate_branch
    for b in mapping.id_branches:
        wanted[b] = b
    for role, b in wanted.items():
        if b not in branches:
            f.close()
            raise MissingFieldError(
                f"{path}:{mapping.tree}", b, branches, kind="branch",
                expected="trace array" if role == "traces" else f"per-entry {role.lstrip('_')}",
            )
    if mapping.unit is None:
        f.close()
        msg = f"{path}: ROOT input needs the unit of branch {mapping.branch!r} (--unit V, uV, ADC, ...)"
        raise CrnnError(msg)
    if (mapping.sampling_rate_hz is None) == (mapping.sampling_rate_branch is None):
        f.close()
        msg = f"{path}: give exactly one of --sampling-rate-hz or --sampling-rate-branch for ROOT input"
        raise CrnnError(msg)
    if tree.num_entries == 0:
        f.close()
        msg = f"{path}:{mapping.tree}: tree has no entries; expected at least one trace"
        raise CrnnError(msg)
    rate = mapping.sampling_rate_hz
    if mapping.sampling_rate_branch:
        rates = np.asarray(tree[mapping.sampling_rate_branch].array(library="np"), dtype=float)
        if rates.ndim != 1 or not np.allclose(rates, rates[0], rtol=1e-9):
            msg = (
                f"{path}:{mapping.tree}: branch {mapping.sampling_rate_branch!r} holds inconsistent sampling rates "
                f"(from {np.min(rates):g} to {np.max(rates):g} Hz); expected one rate per file"
            )
            raise CrnnError(msg)
        rate = float(rates[0])
    if rate is None or not np.isfinite(rate) or rate <= 0:
        msg = f"{path}: sampling rate must be a positive number, got {rate}"
        raise CrnnError(msg)

    def chunks() -> Iterator[TraceSet]:
        start = 0
        where = f"{path}:{mapping.tree}"
        try:
            for arrays in tree.iterate(list(wanted.values()), step_size=chunk_size, library="ak"):
                yield _root_chunk(arrays, wanted, mapping, where, start, float(rate))
                start += len(arrays)
        except CrnnError:
            raise
        except Exception as exc:  # uproot reports truncation and corruption in many ways
            msg = (
                f"{path}: cannot read tree {mapping.tree!r} at entries from {start} "
                f"({type(exc).__name__}: {str(exc).splitlines()[0]}); is the file truncated?"
            )
            raise CrnnError(msg) from exc
        finally:
            f.close()

    return {"sampling_rate_hz": float(rate), "unit": mapping.unit, "attrs": {}}, chunks()


def _root_chunk(arrays, wanted: dict[str, str], mapping: RootMapping, where: str, start: int, rate: float) -> TraceSet:
    """One chunk of ROOT entries as canonical traces.

    A trace branch with one trace per entry gives (entries, C, T) or (entries, T). A branch with
    several traces per entry (e.g. one per detector unit: (entries, units, C, T), the number of
    units may vary from entry to entry) gives one canonical trace per unit; per-entry values are
    repeated for each unit, per-unit values are flattened alongside.
    """
    import awkward as ak

    raw = arrays[mapping.branch]
    entry = np.arange(start, start + len(raw), dtype=np.int64)
    counts = None
    if raw.ndim == 4:
        counts = np.asarray(ak.num(raw, axis=1))
        raw = ak.flatten(raw, axis=1)
    try:
        x = ak.to_numpy(raw)
    except (ValueError, TypeError) as exc:
        msg = (
            f"{where}: branch {mapping.branch!r} is jagged (traces of different lengths or channel counts) "
            f"in entries {start}..{start + len(entry) - 1}; expected the same shape for every trace"
        )
        raise CrnnError(msg) from exc
    if x.ndim == 2:
        x = x[:, None, :]
    if x.ndim != 3 or not np.issubdtype(x.dtype, np.number):
        msg = (
            f"{where}: branch {mapping.branch!r} must hold numeric traces of shape (entries, channels, samples), "
            f"(entries, samples) or (entries, units, channels, samples); found {x.shape} of {x.dtype}"
        )
        raise CrnnError(msg)
    meta: dict[str, np.ndarray] = {}
    for role, b in wanted.items():
        if role in ("traces", "_rate"):
            continue
        values = arrays[b]
        if counts is not None:
            if values.ndim >= 2 and np.array_equal(np.asarray(ak.num(values, axis=1)), counts):
                values = ak.flatten(values, axis=1)  # one value per unit
            elif values.ndim == 1:
                values = np.repeat(ak.to_numpy(values), counts)  # one value per entry
            else:
                msg = f"{where}: branch {b!r} has neither one value per entry nor one per unit of {mapping.branch!r}"
                raise CrnnError(msg)
        meta[role] = np.asarray(ak.to_numpy(values))
    meta["entry"] = np.repeat(entry, counts) if counts is not None else entry
    if counts is not None:
        meta["unit_index"] = np.concatenate([np.arange(c) for c in counts]).astype(np.int32) if len(counts) else np.zeros(0, np.int32)
    return TraceSet(x.astype(np.float32), rate, mapping.unit or "", meta)


def ingest(
    input_path: str | Path,
    output: str | Path,
    *,
    fmt: str = "auto",
    root: RootMapping | None = None,
    channels: tuple[int, ...] | None = None,
    label: int | None = None,
    chunk_size: int = 4096,
) -> Path:
    """Convert ``input_path`` to the canonical file ``output`` (atomically)."""
    path = Path(input_path)
    if fmt not in FORMATS:
        msg = f"ingest: unknown format {fmt!r}; expected one of {FORMATS}"
        raise CrnnError(msg)
    kind = detect_format(path) if fmt == "auto" else fmt
    if kind == "canonical":
        info, chunks = _iter_canonical(path, chunk_size)
    else:
        info, chunks = _iter_root(path, root or RootMapping(), chunk_size)
    writer: TraceWriter | None = None
    n = 0
    try:
        for chunk in chunks:
            x = _select_channels(chunk.traces, channels, str(path))
            bad = ~np.isfinite(x)
            if bad.any():
                i = int(np.argwhere(bad)[0][0])
                field_name = "traces" if kind == "canonical" else f"{(root or RootMapping()).tree}/{(root or RootMapping()).branch}"
                msg = f"{path}: {field_name} holds NaN or Inf at trace {n + i}; expected finite numbers"
                raise CrnnError(msg)
            meta = dict(chunk.meta)
            if label is not None:
                meta[LABELS] = np.full(len(x), label, dtype=np.int8)
            if LABELS in meta:
                lab = np.asarray(meta[LABELS])
                if not np.isin(lab, (0, 1)).all():
                    msg = f"{path}: labels must be 0 or 1; found {np.unique(lab)[:5].tolist()}"
                    raise CrnnError(msg)
                meta[LABELS] = lab.astype(np.int8)
            if writer is None:
                writer = TraceWriter(
                    output, n_channels=x.shape[1], n_samples=x.shape[2], sampling_rate_hz=info["sampling_rate_hz"],
                    unit=info["unit"],
                    attrs={"crnn_version": __version__, "crnn_stage": "ingest", "source_file": str(path),
                           "source_format": kind,
                           **({"band_hz": info["attrs"]["band_hz"]} if "band_hz" in info.get("attrs", {}) else {})},
                )
            writer.append(TraceSet(x, chunk.sampling_rate_hz, chunk.unit, meta))
            n += len(x)
        if writer is None:
            msg = f"{path}: no traces found"
            raise CrnnError(msg)
        writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    log.info("%s: %d traces from %s (%s)", output, n, path, kind)
    return Path(output)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", "-i", required=True, help="HDF5 or ROOT file")
    p.add_argument("--output", "-o", required=True, help="canonical trace file to write")
    p.add_argument("--format", choices=FORMATS, default="auto", help="input format (default: detect)")
    p.add_argument("--tree", default="events", help="ROOT: tree holding the traces (default 'events')")
    p.add_argument("--branch", default="trace", help="ROOT: branch holding the traces (default 'trace')")
    p.add_argument("--unit", help="ROOT: unit of the trace values (V, mV, uV, ADC, ...)")
    p.add_argument("--sampling-rate-hz", type=float, help="ROOT: sampling rate of the traces in Hz")
    p.add_argument("--sampling-rate-branch", help="ROOT: branch with the sampling rate in Hz per entry")
    p.add_argument("--label-branch", help="ROOT: branch with per-trace labels (0/1)")
    p.add_argument("--snr-branch", help="ROOT: branch with per-trace SNR")
    p.add_argument("--id-branch", action="append", default=[], help="ROOT: branch to keep per trace (repeatable)")
    p.add_argument("--label", type=int, choices=(0, 1), help="give every trace this label")
    p.add_argument("--channels", type=int, nargs="+", help="keep these channels, in this order")
    p.add_argument("--chunk-size", type=int, default=4096, help="traces per chunk (default 4096)")


def run(args: argparse.Namespace) -> None:
    mapping = RootMapping(
        tree=args.tree, branch=args.branch, unit=args.unit, sampling_rate_hz=args.sampling_rate_hz,
        sampling_rate_branch=args.sampling_rate_branch, label_branch=args.label_branch,
        snr_branch=args.snr_branch, id_branches=tuple(args.id_branch),
    )
    ingest(
        args.input, args.output, fmt=args.format, root=mapping,
        channels=tuple(args.channels) if args.channels else None, label=args.label, chunk_size=args.chunk_size,
    )


if __name__ == "__main__":
    from crnn.cli import stage_main

    stage_main("ingest")
