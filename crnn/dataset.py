"""Stage ``dataset``: mix labelled trace files, shuffle them and split into train/val/test.

All inputs must agree on sampling rate, channel count, trace length and unit; each must carry
``labels`` (or be given one label for all its traces with ``--label FILE=0|1``, e.g. measured
background). Per-trace metadata are carried through; ``snr`` is filled with NaN (unknown) where
an input lacks it, and so is any other per-trace number that only some inputs have (floats with
NaN, integers with -1, e.g. ``has_transient`` of simulated traces mixed with measured ones);
other partial metadata are dropped. Two columns are added: ``source_id`` (the
position of the input file in ``source_files``, a file attribute) and ``source_index`` (the
trace's row in that file), so every trace can be traced back.

Measured backgrounds are split by measurement: a simulation with ``background.measured_file``
reuses each measured trace for many traces (``measured_index`` >= 0 names its row). Those traces
are grouped by (measured file, ``measured_index``) and every group goes whole into one split, so
no measured trace is seen in training and again in the test (the groups are shuffled with the
seed and dealt to the split furthest below its fraction; the fractions hold to about one group's
size). Traces with ``measured_index`` -1 (or no such column) are split trace by trace, as without
measured backgrounds. Each split records ``n_measured`` (traces with a measured background) and
``n_distinct_measured`` (distinct measured traces) as file attributes; when measured traces are
present and a split would get none, the stage refuses.

Memory is bounded by ``--memory-budget-mb`` (config ``dataset.memory_budget_mb``), not by the
input size: the seed gives every trace its split and its row there (a permutation, as in earlier
versions, so the splits are the same trace for trace); the inputs are read chunk by chunk and each
trace is written into its *bucket*, a run of consecutive rows of one split, in a scratch file beside
the training split (as large as the inputs' traces: the disk needs room for it and the splits); then
each bucket is read, put in order and appended to its split. A bucket holds as many traces as two
copies fit in the budget; the splits, byte for byte, do not depend on it. What stays in memory for
all traces is a few arrays of up to 8 bytes a trace (the permutation, the groups, the rows, the
split): some 50 bytes a trace at the peak, while the places are worked out, 9 while traces move.

The three splits are written to temporaries and renamed together at the end, so a killed run
never leaves a new split beside old ones; each carries the same ``dataset_run_id`` attribute (a
digest of the mixed traces and their split), and ``crnn train`` refuses a train/validation pair
whose ids differ.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from crnn import __version__
from crnn.errors import CrnnError, MissingFieldError
from crnn.fileutil import (
    check_outputs,
    discard_temporary,
    new_temporary,
    output_group,
    refuse_aliases,
    write_error,
)
from crnn.progress import Progress
from crnn.settings import check_value
from crnn.tracefile import DATASET_RUN_ID, DEFAULT_CHUNK, LABELS, SNR, TraceFile, TraceSet, TraceWriter

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
MEASURED_INDEX = "measured_index"


def _measured_source(tf: TraceFile) -> str:
    """Where a file's ``measured_index`` points: the simulation's measured file, else the file itself."""
    try:
        settings = json.loads(tf.attrs.get("settings_json", "null"))
    except (TypeError, json.JSONDecodeError):
        settings = None
    if isinstance(settings, dict):
        measured = (settings.get("background") or {}).get("measured_file")
        if measured:
            return str(Path(measured).resolve())
    return str(Path(tf.path).resolve())


def _assign_splits(
    n: int, order: np.ndarray, groups: np.ndarray, fractions: tuple[float, ...], rng: np.random.Generator
) -> np.ndarray:
    """Split number of every trace; traces of one group (``groups`` >= 0) share a split.

    Ungrouped traces (-1) take the positions ``order`` gives them, in bounds set by ``fractions``;
    without groups this is the plain shuffled split. Groups, shuffled by ``rng``, go one by one to
    the split whose share of grouped traces lies furthest below its fraction.
    """
    assign = np.full(n, -1, dtype=np.int8)
    free = order[groups[order] < 0]
    bounds = np.round(np.cumsum((0.0, *fractions)) * len(free)).astype(int)
    for k in range(len(fractions)):
        assign[free[bounds[k] : bounds[k + 1]]] = k
    grouped = np.nonzero(groups >= 0)[0]
    if grouped.size:
        ids, inverse, sizes = np.unique(groups[grouped], return_inverse=True, return_counts=True)
        target = np.asarray(fractions, dtype=float)
        filled = np.zeros(len(fractions))
        group_split = np.empty(len(ids), dtype=np.int8)
        for g in rng.permutation(len(ids)):
            deficit = np.where(target > 0, filled / np.maximum(target, 1e-300), np.inf)
            k = int(np.argmin(deficit))
            group_split[g] = k
            filled[k] += sizes[g]
        assign[grouped] = group_split[inverse]
    return assign


#: default of ``dataset.memory_budget_mb``: what one bucket (held twice while it is shuffled) may take
DEFAULT_MEMORY_BUDGET_MB = 1000.0
#: the fewest traces a bucket, and a chunk read from an input, may hold
MIN_CHUNK_TRACES = 64
#: traces per append to a split (as :func:`crnn.tracefile.write_traces` appends)
_WRITE_STEP = 8192
#: field names of a scratch record that no per-trace dataset can have ("/" is not allowed in a name)
_POS, _TRACES = "/pos", "/traces"


def _column_dtype(tf: TraceFile, name: str) -> tuple[np.dtype, tuple[int, ...]]:
    ds = tf._h5[name]
    return np.dtype(ds.dtype), tuple(ds.shape[1:])


def _fill_values(
    columns: list[dict[str, tuple[np.dtype, tuple[int, ...]]]],
) -> dict[str, tuple[object, np.dtype, tuple[int, ...]]]:
    """Per-trace metadata to carry: name -> (value for inputs that lack it, dtype, trailing shape).

    ``columns`` holds, for each input, its per-trace datasets (name -> dtype, trailing shape).
    Numeric metadata present in some inputs only are kept, filled with NaN (floats) or -1
    (integers, e.g. ``has_transient`` = -1: unknown) for the others; other kinds must be in all.
    The dtype is the fill's; the column of the splits has the common type of the inputs' and the fill's.
    """
    names: dict[str, list[tuple[np.dtype, tuple[int, ...]]]] = {}
    for cols in columns:
        for k, v in cols.items():
            if k not in (LABELS, SNR):
                names.setdefault(k, []).append(v)
    out: dict[str, tuple[object, np.dtype, tuple[int, ...]]] = {}
    for k, values in sorted(names.items()):
        dtypes = {d for d, _ in values}
        shapes = {s for _, s in values}
        if len(shapes) != 1:
            continue
        dtype = np.result_type(*dtypes) if all(d.kind in "biuf" for d in dtypes) else None
        if len(values) == len(columns) and dtype is None and len(dtypes) == 1:
            out[k] = (None, values[0][0], shapes.pop())
        elif dtype is not None:
            if dtype.kind in "biu":
                dtype = np.result_type(dtype, np.int8)  # room for -1
            out[k] = (np.nan if dtype.kind == "f" else -1, dtype, shapes.pop())
    return out


def _config_fix(tf: TraceFile, rate_hz: float) -> str:
    """For a file that `crnn ingest` wrote (in the workflow: results/ingest/<name>.h5), the config
    keys that fix a mismatch: resample that source, or keep it out of the dataset."""
    if tf.attrs.get("crnn_stage") != "ingest":
        return ""
    name = tf.path.stem
    return (
        f" (in a workflow config: `ingest.{name}.resample_hz: {rate_hz:g}`, or `ingest.{name}.dataset: false` "
        "to convert it without training on it)"
    )


def _check_compatible(files: list[TraceFile]) -> None:
    ref = files[0]
    for tf in files[1:]:
        if not np.isclose(tf.sampling_rate_hz, ref.sampling_rate_hz, rtol=1e-9, atol=0):
            msg = (
                f"{tf.path}: sampling_rate_hz = {tf.sampling_rate_hz:g} Hz does not match "
                f"{ref.path} ({ref.sampling_rate_hz:g} Hz); resample one of them with `crnn ingest`"
                f"{_config_fix(tf, ref.sampling_rate_hz)}"
            )
            raise CrnnError(msg)
        if tf.shape[1:] != ref.shape[1:]:
            msg = (
                f"{tf.path}: traces have (channels, samples) = {tf.shape[1:]}, but {ref.path} has "
                f"{ref.shape[1:]}; all inputs of a dataset must have the same shape"
            )
            raise CrnnError(msg)
        if tf.unit != ref.unit:
            msg = f"{tf.path}: unit {tf.unit!r} does not match {ref.path} (unit {ref.unit!r})"
            raise CrnnError(msg)


def _measured_groups(files: list[TraceFile], sources: list[str]) -> np.ndarray:
    """Group number of every trace (in input order): one per (measured file, ``measured_index`` >= 0),
    numbered in the order of the text ``"{measured file}\\0{index}"``; -1 for the other traces."""
    sizes = [tf.n_traces for tf in files]
    groups = np.full(sum(sizes), -1, dtype=np.int64)
    names = sorted(set(sources))
    code = {s: i for i, s in enumerate(names)}
    keys, at = [], []
    start = 0
    for tf, source, n in zip(files, sources, sizes, strict=True):
        if MEASURED_INDEX in tf.meta_names:
            index = tf.read_meta(MEASURED_INDEX).astype(np.int64)
            has = np.nonzero(index >= 0)[0]
            keys.append(np.stack([np.full(len(has), code[source]), index[has]], axis=1))
            at.append(start + has)
        start += n
    if not keys or not sum(len(a) for a in at):
        return groups
    pairs, inverse = np.unique(np.concatenate(keys), axis=0, return_inverse=True)
    # number the distinct pairs as their texts sort (as earlier versions did: same seed, same split)
    rank = np.empty(len(pairs), dtype=np.int64)
    rank[sorted(range(len(pairs)), key=lambda g: (names[pairs[g, 0]], str(pairs[g, 1])))] = np.arange(len(pairs))
    groups[np.concatenate(at)] = rank[inverse.reshape(-1)]
    return groups


def _record_dtype(ref: TraceFile, columns: dict[str, tuple[np.dtype, tuple[int, ...]]]) -> np.dtype:
    """One trace in the scratch file: its place in its split, its samples and its metadata."""
    return np.dtype(
        [
            (_POS, np.int64),
            (_TRACES, np.float32, (ref.n_channels, ref.n_samples)),
            *((name, dtype, shape) for name, (dtype, shape) in columns.items()),
        ]
    )


def _string_width(files: list[TraceFile], name: str) -> int:
    """Bytes of the longest text of the per-trace dataset ``name`` (texts travel as fixed-width bytes)."""
    width = 1
    for tf in files:
        if name in tf.meta_names:
            values = tf.read_meta(name)
            width = max(width, *(len(v.encode() if isinstance(v, str) else bytes(v)) for v in values.ravel()))
    return width


def _as_bytes(values: np.ndarray) -> np.ndarray:
    return np.array([v.encode() if isinstance(v, str) else bytes(v) for v in values.ravel()]).reshape(values.shape)


def _bucket_capacity(budget_mb: float, record: np.dtype, ref: TraceFile) -> int:
    """Traces per bucket: two copies of a bucket (as read and shuffled) fit in ``budget_mb``."""
    capacity = int(budget_mb * 1e6 // (2 * record.itemsize))
    if capacity < MIN_CHUNK_TRACES:
        need = 2 * MIN_CHUNK_TRACES * record.itemsize / 1e6
        msg = (
            f"dataset.memory_budget_mb: {budget_mb:g} MB cannot hold one chunk of {MIN_CHUNK_TRACES} traces "
            f"({ref.n_channels} x {ref.n_samples} samples and their metadata, {record.itemsize} bytes a trace, "
            f"held twice while a bucket is shuffled); expected at least {need:.3g} MB"
        )
        raise CrnnError(msg)
    return capacity


def _reserve(fd: int, size: int) -> None:
    """Allocate ``size`` bytes of the scratch file (where the file system can; others fill as written)."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise


def _write_all(fd: int, data: np.ndarray, offset: int) -> None:
    view = memoryview(data.reshape(-1).view(np.uint8))
    while view.nbytes:
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


def _read_all(fd: int, out: np.ndarray, offset: int) -> None:
    view = memoryview(out.reshape(-1).view(np.uint8))
    while view.nbytes:
        done = os.preadv(fd, [view], offset)
        if done == 0:
            msg = f"dataset: the scratch file ended early at byte {offset}"
            raise CrnnError(msg)
        view, offset = view[done:], offset + done


def build_dataset(
    inputs: list[str | Path],
    outputs: dict[str, str | Path],
    *,
    fractions: tuple[float, float, float] = (0.6, 0.15, 0.25),
    seed: int = 1,
    labels: dict[str, int] | None = None,
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
) -> dict[str, Path]:
    """Mix ``inputs``, shuffle with ``seed`` and write the splits named in ``outputs``.

    Out of core: pass 1 reads the metadata that place the traces (counts, ``measured_index``) and
    gives every trace its split and its place there; pass 2 reads the inputs chunk by chunk and
    writes each trace into its bucket (a run of ``memory_budget_mb / 2`` of consecutive places of a
    split) in a scratch file beside the training split; pass 3 reads one bucket at a time, puts its
    traces in their places and appends them to their split. The splits do not depend on the budget.
    """
    labels = dict(labels or {})
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        msg = f"dataset: fractions must be three non-negative numbers summing to 1, got {list(fractions)}"
        raise CrnnError(msg)
    if set(outputs) != set(SPLITS):
        msg = f"dataset: outputs must name {SPLITS}, got {sorted(outputs)}"
        raise CrnnError(msg)
    unknown = set(labels) - {str(p) for p in inputs}
    if unknown:
        msg = f"dataset: --label names {sorted(unknown)}, which are not among the inputs {[str(p) for p in inputs]}"
        raise CrnnError(msg)
    files: list[TraceFile] = []
    try:
        for p in inputs:
            files.append(TraceFile(p))
        _check_compatible(files)
        for tf in files:
            if not tf.has_labels and str(tf.path) not in labels:
                raise MissingFieldError(
                    str(tf.path),
                    LABELS,
                    tf.meta_names,
                    expected="per-trace int8 labels; or give one label for the file with --label FILE=0",
                )
        return _build(files, inputs, outputs, fractions, seed, labels, memory_budget_mb)
    finally:
        for tf in files:
            tf.close()


def _build(
    files: list[TraceFile],
    inputs: list[str | Path],
    outputs: dict[str, str | Path],
    fractions: tuple[float, ...],
    seed: int,
    labels: dict[str, int],
    budget_mb: float,
) -> dict[str, Path]:
    ref = files[0]
    # -- pass 1: where every trace goes (arrays of a few bytes a trace, no samples) -------------------
    per_file = [{name: _column_dtype(tf, name) for name in tf.meta_names} for tf in files]
    fill = _fill_values(per_file)
    columns: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
    texts: list[str] = []  # variable-length texts, fixed-width bytes in the scratch file
    for name, (value, dtype, shape) in fill.items():
        kinds = [cols[name][0] if name in cols else dtype for cols in per_file]
        final = np.result_type(*kinds) if value is not None else dtype
        if final.kind == "O":
            final = np.dtype(f"S{_string_width(files, name)}")
            texts.append(name)
        columns[name] = (final, shape)
    columns[LABELS] = (np.dtype(np.int8), ())
    columns[SNR] = (np.dtype(np.float32), ())
    columns["source_id"] = (np.dtype(np.int16), ())
    columns["source_index"] = (np.dtype(np.int64), ())
    record = _record_dtype(ref, columns)
    capacity = _bucket_capacity(budget_mb, record, ref)
    chunk = min(DEFAULT_CHUNK, capacity)

    sizes = [tf.n_traces for tf in files]
    n = sum(sizes)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    groups = _measured_groups(files, [_measured_source(tf) for tf in files])
    assign = _assign_splits(n, order, groups, fractions, rng)
    n_groups = len(np.unique(groups[groups >= 0]))
    if n_groups:
        log.info(
            "%d traces have a measured background: %d distinct measured traces, each kept in one split",
            int((groups >= 0).sum()),
            n_groups,
        )
    place = np.empty(n, dtype=np.int64)  # a trace's row in its split
    counts, n_measured, distinct = [], [], []
    for k, split in enumerate(SPLITS):
        idx = order[assign[order] == k]
        place[idx] = np.arange(len(idx))
        counts.append(len(idx))
        n_measured.append(int((groups[idx] >= 0).sum()))
        distinct.append(len(np.unique(groups[idx][groups[idx] >= 0])))
        if n_groups and distinct[-1] == 0:
            msg = (
                f"dataset: the {split} split would get none of the {n_groups} distinct measured background "
                f"traces (fractions {list(fractions)}); measured traces are split whole, so each split needs "
                "at least one: measure more traces, or raise that split's fraction"
            )
            raise CrnnError(msg)
        if len(idx) == 0:
            msg = f"dataset: the {split} split would be empty ({n} traces, fractions {list(fractions)})"
            raise CrnnError(msg)
        del idx
    del groups
    run_id = hashlib.sha256()  # in every split: readers refuse splits of different runs
    for a in (order, assign):
        run_id.update(np.ascontiguousarray(a).data)
    del order
    # buckets: split k's rows [b * capacity, (b + 1) * capacity), laid out one after another
    n_buckets = [-(-c // capacity) for c in counts]
    first_bucket = np.cumsum([0, *n_buckets])
    bucket_start = np.concatenate(
        [s + np.arange(nb) * capacity for s, nb in zip(np.cumsum([0, *counts[:-1]]), n_buckets, strict=True)]
    )
    bucket_size = np.concatenate(
        [np.minimum(capacity, c - np.arange(nb) * capacity) for c, nb in zip(counts, n_buckets, strict=True)]
    )
    log.info(
        "dataset: %d traces in %d bucket(s) of at most %d traces (memory budget %g MB)",
        n,
        len(bucket_start),
        capacity,
        budget_mb,
    )

    _check_space(
        outputs, n * record.itemsize, {s: c * (record.itemsize - 8) for s, c in zip(SPLITS, counts, strict=True)}
    )
    scratch = new_temporary(outputs["train"])  # removed at the end, on a signal, or by a rerun
    try:
        fd = os.open(scratch, os.O_RDWR)
        try:
            with _scratch_errors(outputs["train"], scratch):
                _reserve(fd, n * record.itemsize)  # a full disk fails here, before the work
                # -- pass 2: each input chunk's traces into their buckets --------------------------------
                filled = np.zeros(len(bucket_start), dtype=np.int64)
                start = 0
                with Progress("dataset: reading", n, logger=log) as progress:
                    for i, (tf, cols) in enumerate(zip(files, per_file, strict=True)):
                        n_signal = 0
                        for first, part in tf.iter_chunks(chunk):
                            rows = slice(start + first, start + first + part.n_traces)
                            recs = np.empty(part.n_traces, dtype=record)
                            recs[_POS] = place[rows]
                            recs[_TRACES] = part.traces
                            run_id.update(np.ascontiguousarray(part.traces).data)
                            for name, (value, _, _shape) in fill.items():
                                if name in cols:
                                    values = part.meta[name]
                                    recs[name] = _as_bytes(values) if name in texts else values
                                else:
                                    recs[name] = value
                            lab = (
                                np.full(part.n_traces, labels[str(tf.path)], dtype=np.int8)
                                if str(tf.path) in labels
                                else part.meta[LABELS]
                            )
                            recs[LABELS] = lab
                            n_signal += int(lab.sum())
                            recs[SNR] = part.meta[SNR] if SNR in part.meta else np.nan
                            recs["source_id"] = i
                            recs["source_index"] = np.arange(first, first + part.n_traces)
                            bucket = first_bucket[assign[rows]] + recs[_POS] // capacity
                            by = np.argsort(bucket, kind="stable")
                            recs, bucket = recs[by], bucket[by]
                            ids, at, nb = np.unique(bucket, return_index=True, return_counts=True)
                            for b, s, m in zip(ids, at, nb, strict=True):
                                _write_all(fd, recs[s : s + m], int(bucket_start[b] + filled[b]) * record.itemsize)
                                filled[b] += m
                            progress.update(part.n_traces)
                            del recs, part
                        start += tf.n_traces
                        log.info("%s: %d traces, %d with a pulse", tf.path, tf.n_traces, n_signal)
            del place, assign
            # -- pass 3: bucket by bucket, each trace in its place, appended to its split --------------
            return _write_splits(
                fd,
                record,
                capacity,
                bucket_start,
                bucket_size,
                first_bucket,
                counts,
                texts,
                ref,
                inputs,
                outputs,
                fractions,
                seed,
                run_id.hexdigest()[:32],
                n_measured,
                distinct,
                n_groups,
            )
        finally:
            os.close(fd)
    finally:
        discard_temporary(scratch)


def _check_space(outputs: dict[str, str | Path], scratch_bytes: int, split_bytes: dict[str, int]) -> None:
    """Refuse, before the work, a disk without room for the splits and the scratch file (beside the
    training split), in one line (as a write that finds the disk full)."""
    need: dict[int, list] = {}
    for split in SPLITS:
        folder = Path(outputs[split]).resolve().parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        entry = need.setdefault(os.stat(folder).st_dev, [Path(outputs[split]), folder, 2**20, False])
        entry[2] += int(split_bytes[split] * 1.02) + (scratch_bytes if split == "train" else 0)
        entry[3] |= split == "train"
    for target, folder, size, scratch in need.values():
        free = shutil.disk_usage(folder).free
        if free < size:
            what = "the splits and the scratch file of the shuffle" if scratch else "the splits"
            msg = (
                f"{target}: cannot write it: no space left on the device ({what} need about {size / 1e6:.3g} MB "
                f"in {folder}, {free / 1e6:.3g} MB are free); free some space there or write the output elsewhere "
                "(nothing partial is left)"
            )
            raise CrnnError(msg)


@contextlib.contextmanager
def _scratch_errors(target: str | Path, scratch: Path) -> Iterator[None]:
    """A failed write of the scratch file (a full disk) is one line naming the split it is for."""
    try:
        yield
    except OSError as exc:
        error = write_error(target, exc, temporary=scratch)
        if error is None:
            raise
        raise error from exc


def _shuffled_bucket(fd: int, record: np.dtype, start: int, size: int, first_row: int) -> np.ndarray:
    """The bucket of ``size`` traces from record ``start`` of the scratch file, each in its place
    (row ``first_row`` of its split first)."""
    recs = np.empty(size, dtype=record)
    _read_all(fd, recs, start * record.itemsize)
    shuffled = np.empty_like(recs)
    shuffled[recs[_POS] - first_row] = recs
    return shuffled


def _pieces(buckets: Iterator[np.ndarray], step: int) -> Iterator[np.ndarray]:
    """The records of consecutive ``buckets`` in pieces of ``step`` (the last one shorter), so a
    split is appended in the same pieces, and has the same bytes, whatever the bucket size. Each
    piece is a copy: no bucket outlives its pieces while the next one is read."""
    pending: list[np.ndarray] = []
    n_pending = 0
    for recs in buckets:
        s = 0
        if n_pending:
            s = min(step - n_pending, len(recs))
            pending.append(recs[:s].copy())
            n_pending += s
            if n_pending == step:
                yield np.concatenate(pending)
                pending, n_pending = [], 0
        while n_pending == 0 and len(recs) - s >= step:
            yield recs[s : s + step].copy()  # a view would keep the whole bucket alive beside the next
            s += step
        if s < len(recs):
            pending.append(recs[s:].copy())
            n_pending += len(recs) - s
        del recs
    if n_pending:
        yield np.concatenate(pending)


def _write_splits(
    fd: int,
    record: np.dtype,
    capacity: int,
    bucket_start: np.ndarray,
    bucket_size: np.ndarray,
    first_bucket: np.ndarray,
    counts: list[int],
    texts: list[str],
    ref: TraceFile,
    inputs: list[str | Path],
    outputs: dict[str, str | Path],
    fractions: tuple[float, ...],
    seed: int,
    run_id: str,
    n_measured: list[int],
    distinct: list[int],
    n_groups: int,
) -> dict[str, Path]:
    band = ref.attrs.get("band_hz")
    meta_names = [name for name in record.names if name not in (_POS, _TRACES)]
    written: dict[str, Path] = {}
    progress = Progress("dataset: writing", sum(counts), logger=log)
    with output_group() as group, progress:  # the three splits appear together (renamed at the end) or not at all
        for k, split in enumerate(SPLITS):
            attrs = {
                "crnn_version": __version__,
                "crnn_stage": "dataset",
                "split": split,
                "seed": seed,
                "source_files": [str(p) for p in inputs],
                "n_measured": n_measured[k],
                "n_distinct_measured": distinct[k],
                DATASET_RUN_ID: run_id,
            }
            if band is not None:
                attrs["band_hz"] = band
            n_signal = 0
            shuffled = (
                _shuffled_bucket(
                    fd, record, int(bucket_start[b]), int(bucket_size[b]), (b - first_bucket[k]) * capacity
                )
                for b in range(first_bucket[k], first_bucket[k + 1])
            )
            with TraceWriter(
                outputs[split],
                n_channels=ref.n_channels,
                n_samples=ref.n_samples,
                sampling_rate_hz=ref.sampling_rate_hz,
                unit=ref.unit,
                attrs=attrs,
                group=group,
            ) as writer:
                for piece in _pieces(shuffled, _WRITE_STEP):
                    meta = {
                        m: piece[m].astype(object) if m in texts else np.ascontiguousarray(piece[m]) for m in meta_names
                    }
                    writer.append(TraceSet(np.ascontiguousarray(piece[_TRACES]), ref.sampling_rate_hz, ref.unit, meta))
                    n_signal += int(meta[LABELS].sum())
                    progress.update(len(piece))
            written[split] = Path(outputs[split])
            log.info(
                "%s: %d traces (%d signal, %d background)%s",
                outputs[split],
                counts[k],
                n_signal,
                counts[k] - n_signal,
                f", {distinct[k]} distinct measured background traces" if n_groups else "",
            )
    return written


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", "-i", action="append", required=True, help="canonical trace file (repeatable)")
    p.add_argument("--train", required=True, help="output file of the training split")
    p.add_argument("--val", required=True, help="output file of the validation split")
    p.add_argument("--test", required=True, help="output file of the test split")
    p.add_argument(
        "--fractions",
        type=float,
        nargs=3,
        default=(0.6, 0.15, 0.25),
        metavar=("TRAIN", "VAL", "TEST"),
        help="split fractions (default 0.6 0.15 0.25)",
    )
    p.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="FILE=LABEL",
        help="give every trace of FILE this label (0 or 1), for inputs without 'labels'",
    )
    p.add_argument("--seed", type=int, default=1, help="shuffling seed (default 1)")
    p.add_argument(
        "--memory-budget-mb",
        type=float,
        default=DEFAULT_MEMORY_BUDGET_MB,
        metavar="MB",
        help=f"memory for the traces held at once, in MB (default {DEFAULT_MEMORY_BUDGET_MB:g}); "
        "the splits do not depend on it",
    )


def run(args: argparse.Namespace) -> None:
    refuse_aliases(
        [("--input", p) for p in args.input], [("--train", args.train), ("--val", args.val), ("--test", args.test)]
    )
    check_outputs([("--train", args.train), ("--val", args.val), ("--test", args.test)])
    check_value(list(args.fractions), "dataset.fractions", "--fractions")
    check_value(args.seed, "seed", "--seed")
    check_value(args.memory_budget_mb, "dataset.memory_budget_mb", "--memory-budget-mb")
    labels: dict[str, int] = {}
    for item in args.label:
        path, _, value = item.rpartition("=")
        if not path or value not in ("0", "1"):
            msg = f"dataset: --label expects FILE=0 or FILE=1, got {item!r}"
            raise CrnnError(msg)
        labels[path] = int(value)
    build_dataset(
        args.input,
        {"train": args.train, "val": args.val, "test": args.test},
        fractions=tuple(args.fractions),
        seed=args.seed,
        labels=labels,
        memory_budget_mb=args.memory_budget_mb,
    )


if __name__ == "__main__":
    from crnn.cli import stage_main

    stage_main("dataset")
