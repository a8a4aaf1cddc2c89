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

The three splits are written to temporaries and renamed together at the end, so a killed run
never leaves a new split beside old ones; each carries the same ``dataset_run_id`` attribute (a
digest of the mixed traces and their split), and ``crnn train`` refuses a train/validation pair
whose ids differ.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from pathlib import Path

import numpy as np

import json

from crnn import __version__
from crnn.errors import CrnnError, MissingFieldError
from crnn.fileutil import check_outputs, output_group, refuse_aliases
from crnn.progress import Progress
from crnn.settings import check_value
from crnn.tracefile import DATASET_RUN_ID, LABELS, SNR, TraceFile, TraceSet, write_traces

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


def _fill_values(datas: list[TraceSet]) -> dict[str, tuple[object, np.dtype, tuple[int, ...]]]:
    """Per-trace metadata to carry: name -> (value for inputs that lack it, dtype, trailing shape).

    Numeric metadata present in some inputs only are kept, filled with NaN (floats) or -1
    (integers, e.g. ``has_transient`` = -1: unknown) for the others; other kinds must be in all.
    """
    names: dict[str, list[np.ndarray]] = {}
    for data in datas:
        for k, v in data.meta.items():
            if k not in (LABELS, SNR):
                names.setdefault(k, []).append(v)
    out: dict[str, tuple[object, np.dtype, tuple[int, ...]]] = {}
    for k, values in sorted(names.items()):
        dtypes = {v.dtype for v in values}
        shapes = {v.shape[1:] for v in values}
        if len(shapes) != 1:
            continue
        dtype = np.result_type(*dtypes) if all(d.kind in "biuf" for d in dtypes) else None
        if len(values) == len(datas) and dtype is None and len(dtypes) == 1:
            out[k] = (None, values[0].dtype, shapes.pop())
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
    return (f" (in a workflow config: `ingest.{name}.resample_hz: {rate_hz:g}`, or `ingest.{name}.dataset: false` "
            "to convert it without training on it)")


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


def build_dataset(
    inputs: list[str | Path],
    outputs: dict[str, str | Path],
    *,
    fractions: tuple[float, float, float] = (0.6, 0.15, 0.25),
    seed: int = 1,
    labels: dict[str, int] | None = None,
) -> dict[str, Path]:
    """Mix ``inputs``, shuffle with ``seed`` and write the splits named in ``outputs``."""
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
    files = [TraceFile(p) for p in inputs]
    try:
        _check_compatible(files)
        for tf in files:
            if not tf.has_labels and str(tf.path) not in labels:
                raise MissingFieldError(
                    str(tf.path), LABELS, tf.meta_names,
                    expected="per-trace int8 labels; or give one label for the file with --label FILE=0",
                )
        parts: list[TraceSet] = []
        measured_sources = [_measured_source(tf) for tf in files]
        datas = []
        with Progress("dataset: reading", sum(tf.n_traces for tf in files), logger=log) as progress:
            for tf in files:
                datas.append(tf.read_all())
                progress.update(datas[-1].n_traces)
        fill = _fill_values(datas)
        for i, (tf, data) in enumerate(zip(files, datas, strict=True)):
            n = data.n_traces
            meta = {k: data.meta[k] if k in data.meta else np.full((n, *shape), value, dtype=dtype)
                    for k, (value, dtype, shape) in fill.items()}
            meta[LABELS] = (
                np.full(n, labels[str(tf.path)], dtype=np.int8) if str(tf.path) in labels else data.meta[LABELS]
            )
            meta[SNR] = data.meta.get(SNR, np.full(n, np.nan, dtype=np.float32)).astype(np.float32)
            meta["source_id"] = np.full(n, i, dtype=np.int16)
            meta["source_index"] = np.arange(n, dtype=np.int64)
            parts.append(TraceSet(data.traces, data.sampling_rate_hz, data.unit, meta))
            log.info("%s: %d traces, %d with a pulse", tf.path, n, int(meta[LABELS].sum()))
        ref = files[0]
        band = ref.attrs.get("band_hz")
    finally:
        for tf in files:
            tf.close()
    traces = np.concatenate([p.traces for p in parts])
    meta = {k: np.concatenate([p.meta[k] for p in parts]) for k in parts[0].meta}
    n = len(traces)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    groups = np.full(n, -1, dtype=np.int64)
    if MEASURED_INDEX in meta:  # one group per (measured file, measured trace)
        keys = np.array([f"{measured_sources[i]}\0{j}" for i, j in zip(meta["source_id"], meta[MEASURED_INDEX],
                                                                          strict=True)], dtype=object)
        has = meta[MEASURED_INDEX] >= 0
        if has.any():
            _, groups[has] = np.unique(keys[has], return_inverse=True)
    assign = _assign_splits(n, order, groups, fractions, rng)
    n_groups = len(np.unique(groups[groups >= 0]))
    if n_groups:
        log.info("%d traces have a measured background: %d distinct measured traces, each kept in one split",
                 int((groups >= 0).sum()), n_groups)
    written: dict[str, Path] = {}
    run_id = _run_id(traces, order, assign)  # in every split: readers refuse splits of different runs
    progress = Progress("dataset: writing", n, logger=log)
    with output_group() as group, progress:  # the three splits appear together (renamed at the end) or not at all
        for k, split in enumerate(SPLITS):
            idx = order[assign[order] == k]
            distinct = len(np.unique(groups[idx][groups[idx] >= 0]))
            if n_groups and distinct == 0:
                msg = (f"dataset: the {split} split would get none of the {n_groups} distinct measured background "
                       f"traces (fractions {list(fractions)}); measured traces are split whole, so each split needs "
                       "at least one: measure more traces, or raise that split's fraction")
                raise CrnnError(msg)
            if len(idx) == 0:
                msg = f"dataset: the {split} split would be empty ({n} traces, fractions {list(fractions)})"
                raise CrnnError(msg)
            part = TraceSet(traces[idx], ref.sampling_rate_hz, ref.unit, {m: v[idx] for m, v in meta.items()})
            attrs = {
                "crnn_version": __version__,
                "crnn_stage": "dataset",
                "split": split,
                "seed": seed,
                "source_files": [str(p) for p in inputs],
                "n_measured": int((groups[idx] >= 0).sum()),
                "n_distinct_measured": distinct,
                DATASET_RUN_ID: run_id,
            }
            if band is not None:
                attrs["band_hz"] = band
            written[split] = write_traces(outputs[split], part, attrs=attrs, group=group)
            progress.update(len(idx))
            lab = part.meta[LABELS]
            log.info("%s: %d traces (%d signal, %d background)%s", outputs[split], len(idx), lab.sum(),
                     len(idx) - lab.sum(), f", {distinct} distinct measured background traces" if n_groups else "")
    return written


def _run_id(traces: np.ndarray, order: np.ndarray, assign: np.ndarray) -> str:
    """The ``dataset_run_id`` of a run: a digest of the mixed traces and how they were shuffled and
    split, so a rerun with the same inputs and seed gives the same bytes, and any other run another id."""
    h = hashlib.sha256()
    for a in (order, assign, traces):
        h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()[:32]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", "-i", action="append", required=True, help="canonical trace file (repeatable)")
    p.add_argument("--train", required=True, help="output file of the training split")
    p.add_argument("--val", required=True, help="output file of the validation split")
    p.add_argument("--test", required=True, help="output file of the test split")
    p.add_argument(
        "--fractions", type=float, nargs=3, default=(0.6, 0.15, 0.25), metavar=("TRAIN", "VAL", "TEST"),
        help="split fractions (default 0.6 0.15 0.25)",
    )
    p.add_argument(
        "--label", action="append", default=[], metavar="FILE=LABEL",
        help="give every trace of FILE this label (0 or 1), for inputs without 'labels'",
    )
    p.add_argument("--seed", type=int, default=1, help="shuffling seed (default 1)")


def run(args: argparse.Namespace) -> None:
    refuse_aliases([("--input", p) for p in args.input],
                   [("--train", args.train), ("--val", args.val), ("--test", args.test)])
    check_outputs([("--train", args.train), ("--val", args.val), ("--test", args.test)])
    check_value(list(args.fractions), "dataset.fractions", "--fractions")
    check_value(args.seed, "seed", "--seed")
    labels: dict[str, int] = {}
    for item in args.label:
        path, _, value = item.rpartition("=")
        if not path or value not in ("0", "1"):
            msg = f"dataset: --label expects FILE=0 or FILE=1, got {item!r}"
            raise CrnnError(msg)
        labels[path] = int(value)
    build_dataset(
        args.input, {"train": args.train, "val": args.val, "test": args.test},
        fractions=tuple(args.fractions), seed=args.seed, labels=labels,
    )


if __name__ == "__main__":
    from crnn.cli import stage_main

    stage_main("dataset")
