"""Stage ``predict``: apply a trained model to new traces, from any format ``crnn ingest`` reads.

``--input`` takes one or more files or glob patterns (canonical or CoREAS HDF5, GRANDroot or
other ROOT files; ``--format`` or detected). Each file is read in chunks, adapted to the model
(channel selection, band-limited resampling to the model's rate, sliding windows over longer
traces; see :mod:`crnn.classifier`) and scored. Output rows follow the input order.

Outputs, by suffix of ``--output``:

* ``.h5``: datasets ``scores`` (float32, probability that a pulse is present), ``decision`` (int8,
  score above the threshold), ``window_start_s`` (start of the best window), ``file_index`` and
  ``index`` (file and row of the trace), plus the input's per-trace metadata; attributes record
  the model, the threshold and the inputs;
* ``.csv``: columns ``index,score,decision``, then ``window_start_s``, ``file_index``, ``file`` (the
  input's path as given) and the scalar metadata;
* ``.root``: a TTree ``scores`` with the same numeric columns (written with uproot).

``--engine onnxruntime`` scores with a model written by ``crnn export`` (``model.onnx`` and its
card, or their folder) in ONNX Runtime: the same inputs, adaptation, outputs and working points,
without importing TensorFlow or Keras (docs/deploy.md).

The threshold is the model card's working point, or ``--working-point FPR`` (another working point
stored in the card), or ``--threshold``. After ``crnn calibrate`` the card's working points are the
calibrated ones. For each input, one log line says which threshold decides and whether the model
was calibrated for data like it (the same file, the same rate, shape and unit, or not); a warning
line each says when the input's band (``band_hz`` attribute), sampling rate (before resampling) or
unit differs from the card's (once per kind of mismatch: the other inputs with the same one are
named in one line at the end). Then one line says how the traces were fitted to the model
(resampling, zero-padding, the number of windows per trace), and one the traces scored and how
many lie above the threshold; the last line gives the total over all inputs. Progress: see
:mod:`crnn.progress`.
"""

from __future__ import annotations

import argparse
import csv
import glob
import logging
from pathlib import Path

import h5py
import numpy as np

from crnn import __version__
from crnn.classifier import (
    ENGINES,
    add_model_flags,
    card_classifier,
    configure_parallel_inference,
    fpr_text,
    load_classifier,
    load_onnx_classifier,
)
from crnn.errors import CrnnError
from crnn.fileutil import atomic_output, check_outputs, refuse_aliases
from crnn.ingest import FORMATS, Conversion, RootMapping, detect_format, open_input, select_channels
from crnn.progress import Progress
from crnn.rootmap import add_root_arguments, mapping_from_args
from crnn.tracefile import h5_output

log = logging.getLogger(__name__)
SUFFIXES = (".h5", ".hdf5", ".csv", ".root")


def expand_inputs(patterns: list[str]) -> list[Path]:
    files: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if any(ch in pattern for ch in "*?[") else [pattern]
        if not matches:
            msg = f"{pattern}: no file matches this pattern"
            raise CrnnError(msg)
        files += [Path(m) for m in matches]
    return files


def predict_files(
    model: str | Path,
    inputs: list[str | Path],
    output: str | Path,
    *,
    fmt: str = "auto",
    root: RootMapping | None = None,
    channels: tuple[int, ...] | None = None,
    polarisations: tuple[str, ...] = ("north_south", "east_west"),
    run_file: str | Path | None = None,
    threshold: float | None = None,
    working_point: float | None = None,
    overlap: float = 0.5,
    resample: bool = True,
    pad: bool = False,
    chunk_size: int = 8192,
    trust_model: bool = False,
    parallel: bool = False,
    force_resample: bool = False,
    engine: str = "keras",
) -> Path:
    out = Path(output)
    if out.suffix not in SUFFIXES:
        msg = f"{out}: output must end in {', '.join(SUFFIXES)}; got {out.suffix or 'no suffix'!r}"
        raise CrnnError(msg)
    if threshold is not None and working_point is not None:
        msg = "predict: give either --threshold or --working-point, not both"
        raise CrnnError(msg)
    files = expand_inputs([str(i) for i in inputs])
    conv = Conversion(channels=channels, polarisations=polarisations)
    # every input is checked against the model's card before Keras and TensorFlow are imported
    # (seconds): a refused input costs no more than reading its header and first chunk
    card = card_classifier(model, trust_model=trust_model, engine=engine)
    if working_point is not None:
        card.threshold_at(working_point)
    for path in files:
        _check_input(
            card, path, fmt, root, conv, chunk_size, run_file, resample=resample, pad=pad, force_resample=force_resample
        )
    if engine == "onnxruntime":  # an exported model: neither Keras nor TensorFlow is imported
        clf = load_onnx_classifier(model, trust_model=trust_model)
    else:
        streams = configure_parallel_inference() if parallel else 1
        clf = load_classifier(model, safe_mode=not trust_model, streams=streams)
    thr = (
        clf.threshold_at(working_point)
        if working_point is not None
        else (clf.threshold if threshold is None else float(threshold))
    )
    columns: dict[str, list[np.ndarray]] = {"scores": [], "window_start_s": [], "file_index": [], "index": []}
    meta_parts: list[dict[str, np.ndarray]] = []
    source = _threshold_source(clf, thr, threshold, working_point)
    warned: dict[str, list[Path]] = {}  # each mismatch note (without the file) and the files it applies to
    for k, path in enumerate(files):
        kind = detect_format(path) if fmt == "auto" else fmt
        info, chunks = open_input(path, kind, root, conv, chunk_size, run_file)
        rate = float(info["sampling_rate_hz"])
        clf.check_unit(info["unit"], str(path), warn=False)  # refuses unknown units; the warning is below
        same_rate = np.isclose(rate, clf.sampling_rate_hz, rtol=1e-6)
        band = (info.get("attrs") or {}).get("band_hz")
        for note in clf.input_mismatches(rate, info["unit"], band):
            if same_rate or resample or not note.startswith("sampling rate"):  # else refused below
                warned.setdefault(note, []).append(path)
                if len(warned[note]) == 1:  # once per kind of mismatch; the other files are counted at the end
                    log.warning("%s: %s (model %s)", path, note, clf.path.name)
        row = 0
        above = 0
        progress = Progress(f"predict {path.name}", info.get("n_traces"), logger=log)
        for chunk in chunks:
            x = select_channels(np.asarray(chunk.traces), conv.channels, str(path))
            if row == 0:  # one line per input, once it is known to fit the model
                clf.check_input(x.shape, rate, str(path), resample=resample, pad=pad, force_resample=force_resample)
                log.info("%s: %s; %s", path, source, clf.calibration_status(path, x.shape, rate, info["unit"], band))
            scores, t_best = clf.score(
                x,
                sampling_rate_hz=rate,
                unit=None,
                overlap=overlap,
                resample=resample,
                pad=pad,
                where=str(path),
                force_resample=force_resample,
            )
            if row == 0 and clf.last_plan is not None:
                log.info("%s: %s", path, clf.last_plan.text(rate, clf.sampling_rate_hz))
            n = len(scores)
            columns["scores"].append(scores)
            columns["window_start_s"].append(t_best)
            columns["file_index"].append(np.full(n, k, dtype=np.int32))
            columns["index"].append(np.arange(row, row + n, dtype=np.int64))
            meta_parts.append(dict(chunk.meta))
            above += int(clf.decide(scores, thr).sum())
            row += n
            progress.update(n)
        progress.close()
        if row == 0:
            msg = f"{path}: no traces found"
            raise CrnnError(msg)
        log.info("%s: scored %d traces in %.1f s, %d above the threshold", path, row, progress.elapsed_s(), above)
    for note, paths in warned.items():
        if len(paths) > 1:
            log.info(
                "%d more input(s) with the same mismatch (%s): %s",
                len(paths) - 1,
                note,
                ", ".join(str(q) for q in paths[1:]),
            )
    result = {k: np.concatenate(v) for k, v in columns.items()}
    result["decision"] = clf.decide(result["scores"], thr)
    common = set.intersection(*(set(m) for m in meta_parts)) if meta_parts else set()
    meta = {name: np.concatenate([m[name] for m in meta_parts]) for name in sorted(common) if name not in result}
    _write(out, result, meta, clf, thr, files, engine)
    log.info(
        "%s: %d traces from %d file(s) in all, %d above the %s",
        out,
        len(result["scores"]),
        len(files),
        int(result["decision"].sum()),
        source,
    )
    return out


def _check_input(
    card,
    path: Path,
    fmt: str,
    root: RootMapping | None,
    conv: Conversion,
    chunk_size: int,
    run_file: str | Path | None,
    *,
    resample: bool,
    pad: bool,
    force_resample: bool,
) -> None:
    """Refuse an input that the model cannot score, from its header and first chunk (as the scoring loop would)."""
    kind = detect_format(path) if fmt == "auto" else fmt
    info, chunks = open_input(path, kind, root, conv, chunk_size, run_file)
    try:
        card.check_unit(info["unit"], str(path), warn=False)
        first = next(iter(chunks), None)
        if first is not None:
            x = select_channels(np.asarray(first.traces), conv.channels, str(path))
            card.check_input(
                x.shape,
                float(info["sampling_rate_hz"]),
                str(path),
                resample=resample,
                pad=pad,
                force_resample=force_resample,
            )
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _threshold_source(clf, thr: float, threshold: float | None, working_point: float | None) -> str:
    """Which threshold decides, in words (for the log line of each input)."""
    if threshold is not None:
        return f"threshold {thr:.4g} (given by --threshold: no false-positive rate known)"
    if working_point is not None:
        on = "calibration background" if clf.calibration else "validation background"
        return f"threshold {thr:.4g} (FPR {fpr_text(working_point)} working point of the card, chosen on the {on})"
    return clf.working_point_text()


def _write(
    out: Path,
    result: dict[str, np.ndarray],
    meta: dict[str, np.ndarray],
    clf,
    thr: float,
    files: list[Path],
    engine: str = "keras",
) -> None:
    first = ["index", "scores", "decision", "window_start_s", "file_index"]
    scalar_meta = {k: v for k, v in meta.items() if v.ndim == 1}
    with atomic_output(out) as tmp:
        if out.suffix == ".csv":
            with open(tmp, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["index", "score", "decision", "window_start_s", "file_index", "file", *scalar_meta])
                names = np.array([str(p) for p in files], dtype=object)
                cols = [result[c] for c in first] + [names[result["file_index"]], *scalar_meta.values()]
                for values in zip(*cols, strict=True):
                    w.writerow([_cell(v) for v in values])
        elif out.suffix == ".root":
            import uproot

            numeric = {k: v for k, v in scalar_meta.items() if v.dtype.kind in "biuf"}
            skipped = sorted(set(scalar_meta) - set(numeric))
            if skipped:
                log.info("%s: non-numeric columns %s are not written to ROOT (use .h5 or .csv)", out, skipped)
            branches = {("score" if c == "scores" else c): result[c] for c in first}
            branches.update(numeric)
            with uproot.recreate(tmp) as f:
                tree = f.mktree("scores", {k: v.dtype for k, v in branches.items()}, title=f"crnn {__version__} scores")
                tree.extend(branches)
        else:
            with h5_output(tmp) as f:
                for c in first:
                    f.create_dataset(c, data=result[c])
                for name, values in meta.items():
                    if values.dtype == object:
                        values = values.astype(h5py.string_dtype())
                    f.create_dataset(name, data=values)
                f.attrs["model"] = str(clf.path)
                f.attrs["engine"] = engine
                f.attrs["threshold"] = thr
                f.attrs["inputs"] = [str(p) for p in files]
                f.attrs["input"] = str(files[0])
                f.attrs["crnn_version"] = __version__


def _cell(v: object) -> object:
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.7g}"
    return v.item() if isinstance(v, np.generic) else v


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        "-m",
        required=True,
        help="a .keras model with its card, or its folder (an exported model.onnx or its folder with "
        "--engine onnxruntime)",
    )
    p.add_argument(
        "--engine",
        choices=list(ENGINES),
        default="keras",
        help="what scores the traces: Keras (TensorFlow), or ONNX Runtime on a model written by "
        "crnn export --format onnx or int8 (imports no TensorFlow)",
    )
    p.add_argument("--input", "-i", nargs="+", required=True, help="input files or glob patterns (any ingest format)")
    p.add_argument("--output", "-o", required=True, help="scores file: .h5, .csv or .root")
    p.add_argument("--format", choices=FORMATS, default="auto", help="input format (default: detect)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--threshold", type=float, help="decision threshold on the score")
    g.add_argument(
        "--working-point",
        type=float,
        metavar="FPR",
        help="use the card's working point at this target FPR (default: the card's own)",
    )
    p.add_argument("--overlap", type=float, default=0.5, help="overlap of sliding windows on long traces (0-1)")
    p.add_argument("--no-resample", action="store_true", help="refuse inputs at another sampling rate")
    add_model_flags(p)
    p.add_argument("--pad", action="store_true", help="zero-pad traces shorter than the model's window")
    p.add_argument("--channels", type=int, nargs="+", help="use these input channels, in this order")
    p.add_argument(
        "--polarisations", nargs="+", default=["north_south", "east_west"], help="CoREAS: field components to use"
    )
    add_root_arguments(p)
    p.add_argument("--chunk-size", type=int, default=8192, help="traces read per chunk")


def run(args: argparse.Namespace) -> None:
    from crnn.modelcard import model_inputs

    inputs = [("--input", p) for p in expand_inputs(args.input)]
    refuse_aliases(
        [*inputs, *model_inputs("--model", args.model, ENGINES[args.engine]), ("--run-file", args.run_file)],
        [("--output", args.output)],
    )
    check_outputs([("--output", args.output)])
    from crnn.settings import check_minimum, check_value

    check_minimum(args.chunk_size, 1, "--chunk-size")

    if args.working_point is not None:
        check_value(args.working_point, "evaluate.working_point_fpr", "--working-point")
    for key in ("channels", "polarisations"):
        if getattr(args, key) is not None:
            check_value(getattr(args, key), f"ingest.*.{key}", f"--{key}")
    root = mapping_from_args(args)
    predict_files(
        args.model,
        args.input,
        args.output,
        fmt=args.format,
        root=root,
        channels=tuple(args.channels) if args.channels else None,
        polarisations=tuple(args.polarisations),
        run_file=args.run_file,
        threshold=args.threshold,
        working_point=args.working_point,
        overlap=args.overlap,
        resample=not args.no_resample,
        pad=args.pad,
        chunk_size=args.chunk_size,
        trust_model=args.trust_model,
        force_resample=args.force_resample,
        engine=args.engine,
        parallel=True,  # a process of its own: TensorFlow's thread pools are ours to set
    )


if __name__ == "__main__":
    from crnn.cli import stage_main

    stage_main("predict")
