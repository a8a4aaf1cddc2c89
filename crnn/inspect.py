"""Stage ``inspect``: print what a trace file, a ``crnn predict`` output or a model holds.

Trace files are read as ``crnn ingest`` and ``crnn predict`` read them (canonical or CoREAS HDF5,
GRANDroot ROOT, any ROOT tree with a mapping: ``--tree``, ``--branch``, ``--unit``,
``--sampling-rate-hz``): the output names the format (detected or given), the number of traces,
channels and samples, the sampling rate and the unit. Outputs of ``crnn predict`` (``.h5``,
``.csv``, ``.root`` with scores) are recognised by their columns. A model (``.keras``, or one
written by ``crnn export``) is shown with its card; ``--trial-rate-hz`` adds its trigger budget.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from crnn.classifier import add_model_flags
from crnn.errors import CrnnError
from crnn.ingest import FORMATS, HDF5_MAGIC, Conversion, detect_format, open_input
from crnn.rootmap import RootMapping, add_root_arguments, mapping_from_args
from crnn.tracefile import LABELS, SNR, TraceFile
from crnn.versions import card_software, version_differences

log = logging.getLogger(__name__)

#: traces read at a time while counting a file that is not canonical
CHUNK_TRACES = 4096
#: columns that make a file an output of ``crnn predict`` (a ROOT tree names the score ``score``)
SCORE_COLUMNS = ("scores", "decision")


def describe_trace_file(path: str | Path) -> str:
    lines = []
    with TraceFile(path) as tf:
        dur_s = tf.n_samples / tf.sampling_rate_hz
        lines.append(f"{tf.path}: canonical trace file")
        lines.append("  format: canonical (detected)")
        lines.append(f"  traces: {tf.n_traces} x {tf.n_channels} channel(s) x {tf.n_samples} samples ({tf.unit})")
        lines.append(f"  sampling rate: {tf.sampling_rate_hz / 1e6:g} MHz ({dur_s * 1e9:.0f} ns per trace)")
        for key in ("band_hz", "crnn_stage", "split", "seed"):
            if key in tf.attrs:
                lines.append(f"  {key}: {tf.attrs[key]}")
        n = min(tf.n_traces, 4096)
        x = tf.read_traces(0, n)
        rms = np.sqrt(np.mean(x**2))
        lines.append(f"  RMS of the first {n} traces: {rms:.4g} {tf.unit}")
        lines.append("  per-trace datasets:")
        for name in tf.meta_names:
            v = tf.read_meta(name)
            if name == LABELS:
                detail = f"{int(v.sum())} signal, {int((v == 0).sum())} background"
            elif name == SNR or np.issubdtype(v.dtype, np.floating):
                fin = v[np.isfinite(v)]
                detail = f"min {fin.min():.4g}, max {fin.max():.4g}" if fin.size else "all NaN"
            else:
                detail = f"dtype {v.dtype}"
            lines.append(f"    {name}: {detail}")
    return "\n".join(lines)


def describe_model(path: str | Path, *, trust_model: bool = False, trial_rate_hz: float | None = None) -> str:
    """The card and the network of a .keras model, or of a model written by ``crnn export`` (a
    ``.onnx`` file or its folder: ONNX Runtime's view of it, no TensorFlow); with ``trial_rate_hz``
    the trigger budget of its working points (:func:`trigger_budget`)."""
    p = Path(path)
    if p.suffix == ".onnx" or (p.is_dir() and not list(p.glob("*.keras")) and list(p.glob("*.onnx"))):
        from crnn.classifier import load_onnx_classifier

        clf = load_onnx_classifier(p, trust_model=trust_model)
        summary = [f"ONNX Runtime session: input {i.name} {i.shape} {i.type}" for i in clf.model.get_inputs()]
        summary += [f"ONNX Runtime session: output {o.name} {o.shape} {o.type}" for o in clf.model.get_outputs()]
        head = f"{clf.path}: crnn model exported as {clf.card.get('export', {}).get('format', 'onnx')}"
    else:
        from crnn.classifier import load_classifier

        clf = load_classifier(path, trust_model=trust_model)
        summary = []
        clf.model.summary(print_fn=lambda s, **_: summary.append(s))
        head = f"{clf.path}: crnn model"
    budget = [] if trial_rate_hz is None else trigger_budget(clf.card, trial_rate_hz)
    return "\n".join([head, *software_lines(clf.card, clf.path), json.dumps(clf.card, indent=2), *summary, *budget])


def trigger_budget(card: dict, trial_rate_hz: float) -> list[str]:
    """False triggers per second of each working point of a card, for ``trial_rate_hz`` traces tested per
    second on one antenna: the FPR times the trial rate, at the target FPR and at the one measured
    where the threshold was chosen (validation background, or the calibration background)."""
    from crnn.classifier import fpr_text

    if not trial_rate_hz > 0:
        msg = f"--trial-rate-hz: expected a positive number of traces per second, got {trial_rate_hz:g}"
        raise CrnnError(msg)
    points = list(card.get("working_points") or [])
    if not any(np.isclose(wp["target_fpr"], card["working_point"]["target_fpr"]) for wp in points):
        points.append(card["working_point"])  # the card's own, also where the list lacks its FPR
    points.sort(key=lambda wp: -float(wp["target_fpr"]))
    window_s = card["n_samples"] / card["sampling_rate_hz"]
    lines = [
        f"trigger budget at {trial_rate_hz:g} traces/s per antenna ({trial_rate_hz * window_s:.3g} of the "
        f"time covered by {window_s * 1e9:.0f} ns windows):"
    ]
    for wp in points:
        target = float(wp["target_fpr"])
        if wp.get("available", True) is False or "threshold" not in wp:
            lines.append(f"  FPR {fpr_text(target)}: no threshold in the card (too few background traces)")
            continue
        line = (
            f"  FPR {fpr_text(target)} (threshold {float(wp['threshold']):.4g}): "
            f"{target * trial_rate_hz:.4g} false triggers/s at the target FPR"
        )
        measured, on = (
            (wp["calibration_fpr"], "calibration") if "calibration_fpr" in wp else (wp.get("val_fpr"), "validation")
        )
        if measured is not None:
            line += f", {measured * trial_rate_hz:.4g}/s at the FPR measured on the {on} background ({measured:.3g})"
        lines.append(line)
    return lines


def software_lines(card: dict, path: str | Path) -> list[str]:
    """What the card says the model was trained under, a warning (also logged) for each package whose
    major version differs from the installed one, and a note on what an older card does not record."""
    trained = card_software(card)
    shown = ", ".join(
        f"{k} {trained[k]}" for k in ("crnn", "keras", "backend", "backend_version", "numpy", "h5py") if trained.get(k)
    )
    lines = [f"  trained under: {shown or 'not recorded'}"]
    warnings, missing = version_differences(card)
    for w in warnings:
        log.warning("%s: %s", path, w)
        lines.append(f"  warning: {w}")
    if missing:
        lines.append(
            f"  note: this card (from an older crnn) does not record the versions of {', '.join(missing)} "
            "it was trained under; those are not compared"
        )
    return lines


def describe_root_file(path: str | Path) -> str:
    from crnn.rootmap import open_root

    try:
        return _describe_root(open_root(Path(path)), path)
    except (OSError, ValueError, KeyError) as exc:  # uproot's ways of meeting a truncated or broken file
        msg = f"{path}: not a readable ROOT file ({type(exc).__name__}: {' '.join(str(exc).split())}); is it truncated?"
        raise CrnnError(msg) from exc


def _describe_root(f, path: str | Path) -> str:
    lines = [f"{path}: ROOT file"]
    with f:
        for key, cls in f.classnames().items():
            lines.append(f"  {key.split(';')[0]}: {cls}")
            if cls in ("TTree", "ROOT::RNTuple"):
                obj = f[key]
                lines.append(f"    entries: {obj.num_entries}")
                for b in obj.keys():
                    t = getattr(obj[b], "typename", "")
                    lines.append(f"    {b}: {t}")
    return "\n".join(lines)


def describe_traces(
    path: Path,
    kind: str,
    how: str,
    root: RootMapping | None = None,
    run_file: str | Path | None = None,
    trial_rate_hz: float | None = None,
) -> str:
    """The traces of a CoREAS, GRANDroot or mapped ROOT file, read as ``crnn ingest`` reads them."""
    info, chunks = open_input(path, kind, root, Conversion(), CHUNK_TRACES, run_file)
    n, shape = 0, None
    for chunk in chunks:
        n += len(chunk.traces)
        shape = np.asarray(chunk.traces).shape[1:]
    if shape is None:
        msg = f"{path}: no traces found"
        raise CrnnError(msg)
    rate = float(info["sampling_rate_hz"])
    lines = [
        f"  format: {kind} ({how})",
        f"  traces: {n} x {shape[0]} channel(s) x {shape[1]} samples ({info['unit']})",
        f"  sampling rate: {rate / 1e6:g} MHz ({shape[1] / rate * 1e9:.0f} ns per trace)",
    ]
    lines += [f"  {key}: {value}" for key, value in (info.get("attrs") or {}).items()]
    return "\n".join(lines)


def describe_scores(
    path: Path, columns: dict[str, np.ndarray], attrs: dict[str, object], names: list[str] | None = None
) -> str:
    """An output of ``crnn predict``: rows, decisions, score range and the columns (``names``: as the
    file spells them, where it calls the scores ``score``)."""
    scores = np.asarray(columns["scores"], dtype=float)
    decision = np.asarray(columns["decision"]).astype(int)
    lines = [
        f"{path}: crnn predict output (scores)",
        f"  format: predict output ({path.suffix.lstrip('.')})",
        f"  traces: {len(scores)} scored, {int(decision.sum())} above the threshold",
    ]
    if "file_index" in columns:
        lines.append(f"  input files: {len(np.unique(columns['file_index']))}")
    if len(scores):
        lines.append(f"  scores: min {scores.min():.4g}, max {scores.max():.4g}")
    lines += [f"  {key}: {value}" for key, value in attrs.items()]
    lines.append(f"  columns: {', '.join(names or columns)}")
    return "\n".join(lines)


def _scores_h5(path: Path) -> str | None:
    import h5py

    from crnn.tracefile import open_h5

    with open_h5(path) as f:
        if not all(c in f for c in SCORE_COLUMNS):
            return None
        columns = {k: f[k][()] for k in f if isinstance(f[k], h5py.Dataset) and f[k].ndim == 1}
        attrs = {k: f.attrs[k] for k in ("model", "threshold", "inputs") if k in f.attrs}
    return describe_scores(path, columns, attrs)


def _scores_csv(path: Path) -> str:
    import csv

    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0] if rows else []
    if header[:3] != ["index", "score", "decision"]:
        msg = f"{path}: not a crnn predict CSV; expected the header index,score,decision,...; found {','.join(header[:3])!r}"
        raise CrnnError(msg)
    columns = {("scores" if h == "score" else h): np.asarray([r[i] for r in rows[1:]]) for i, h in enumerate(header)}
    for name in ("scores", "decision", "file_index"):
        columns[name] = columns[name].astype(float)
    return describe_scores(path, columns, {}, names=header)


def _scores_root(f, path: Path) -> str | None:
    if "scores" not in {k.split(";")[0] for k in f.keys()}:
        return None
    tree = f["scores"]
    if "score" not in tree.keys():
        return None
    columns = {("scores" if b == "score" else b): tree[b].array(library="np") for b in tree.keys()}
    return describe_scores(path, columns, {"title": tree.title} if tree.title else {}, names=list(tree.keys()))


def _inspect_root(path: Path, fmt: str, root: RootMapping | None, run_file: str | Path | None) -> str:
    from crnn.rootmap import open_root

    with open_root(path) as f:
        scores = _scores_root(f, path)
    if scores is not None:
        return scores
    head, _, trees = describe_root_file(path).partition("\n")
    kind = detect_format(path) if fmt == "auto" else fmt
    how = "detected" if fmt == "auto" else "given"
    if kind == "root" and root is None:
        traces = (
            f"  format: root ({how}); give the mapping (--tree, --branch, --unit, --sampling-rate-hz) "
            "to read its traces as crnn ingest would"
        )
    else:
        traces = describe_traces(path, kind, how, root, run_file)
    return "\n".join([head, traces, "  trees and branches:", *("  " + line for line in trees.splitlines())])


def inspect_path(
    path: str | Path,
    *,
    trust_model: bool = False,
    fmt: str = "auto",
    root: RootMapping | None = None,
    run_file: str | Path | None = None,
    trial_rate_hz: float | None = None,
) -> str:
    p = Path(path)
    if not p.exists():
        msg = f"{p}: no such file"
        raise CrnnError(msg)
    if p.suffix in (".keras", ".onnx") or p.is_dir():
        return describe_model(p, trust_model=trust_model, trial_rate_hz=trial_rate_hz)
    if trial_rate_hz is not None:
        msg = f"{p}: --trial-rate-hz applies to a model (.keras, an exported .onnx or their folder), not to this file"
        raise CrnnError(msg)
    if p.suffix == ".csv":
        return _scores_csv(p)
    with open(p, "rb") as f:
        magic = f.read(8)
    if magic.startswith(b"root"):
        return _inspect_root(p, fmt, root, run_file)
    if magic.startswith(HDF5_MAGIC):
        scores = _scores_h5(p)
        if scores is not None:
            return scores
    kind = detect_format(p) if fmt == "auto" else fmt
    if kind == "canonical":
        return describe_trace_file(p)
    return f"{p}: {kind} trace file\n" + describe_traces(
        p, kind, "detected" if fmt == "auto" else "given", root, run_file
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "path",
        help="a trace file (.h5, .hdf5, .root), a crnn predict output (.h5, .csv, .root) "
        "or a model (.keras, or an exported .onnx or its folder)",
    )
    p.add_argument(
        "--trial-rate-hz",
        type=float,
        metavar="RATE",
        help="a model's trigger budget: false triggers per second at each working point when RATE "
        "traces per second are tested on one antenna",
    )
    p.add_argument("--format", choices=FORMATS, default="auto", help="format of a trace file (default: detect)")
    add_root_arguments(p)
    add_model_flags(p, resample=False)


def run(args: argparse.Namespace) -> None:
    print(
        inspect_path(
            args.path,
            trust_model=args.trust_model,
            fmt=args.format,
            root=mapping_from_args(args),
            run_file=args.run_file,
            trial_rate_hz=args.trial_rate_hz,
        )
    )


if __name__ == "__main__":
    from crnn.cli import stage_main

    stage_main("inspect")
