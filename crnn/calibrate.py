"""Stage ``calibrate``: set a model's working points on noise-only traces of the target detector.

A model's card holds a threshold chosen on the background of its validation split, that is on
the noise the model was trained on. Noise of another detector (another band, temperature,
interference) gives the model other scores, and that threshold another false-positive rate.
``crnn calibrate --model M --background NOISE.h5 [--background more.h5 ...] --output DIR``
scores the target's own noise-only traces (canonical trace files; traces with ``labels`` = 1 are
left out when the file has labels) and writes ``DIR/model.keras`` (a byte copy of the model) and
``DIR/model.card.json``: the model's card with

* a ``calibration`` block (files with SHA-256 and counts, acquisition, and for each of
  ``--fprs`` the threshold and the FPR it gives on the calibration traces),
* ``working_point`` replaced by the calibrated one at ``--working-point-fpr``, and
  ``working_points`` by the calibrated ones; the training ones stay under
  ``training_working_point`` and ``training_working_points``.

``crnn predict`` and :func:`crnn.classifier.load_classifier` then decide with the calibrated
threshold. Threshold rule (as :func:`crnn.metrics.threshold_at_fpr`): the score of the
``floor(fpr * n)``-th highest noise trace, a trace passes if its score is above it. An FPR needs
at least ``ceil(10 / fpr)`` noise traces (ten expected false alarms, a relative error of about
30 % on the rate): 1e-3 needs 10,000. Unreachable FPRs are refused, or with
``--skip-unreachable`` recorded as unavailable; the working-point FPR must always be reachable.

The background must have the model's sampling rate, channel count and length (no resampling,
no windows: calibrate on the data as the model sees them) and a known unit; NaN or Inf values are
refused. Every refusal names the file and the field, and leaves no output; the folder is written
under a temporary name and renamed when complete.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from crnn import __version__
from crnn.classifier import add_model_flags
from crnn.errors import CrnnError
from crnn.fileutil import check_outputs, refuse_aliases
from crnn.metrics import threshold_at_fpr
from crnn.modelcard import card_path, file_sha256, model_inputs, read_card, resolve_model_path, write_card
from crnn.settings import check_minimum, check_value
from crnn.tracefile import KNOWN_UNITS, LABELS, TraceFile

log = logging.getLogger(__name__)
DEFAULT_FPRS = (1e-2, 1e-3, 1e-4)
#: expected false alarms that a rate FPR needs in the calibration traces: n >= MIN_FALSE_ALARMS / FPR
MIN_FALSE_ALARMS = 10
MODEL_NAME = "model.keras"


def traces_needed(fpr: float) -> int:
    """Noise traces needed to calibrate at ``fpr``: ``ceil(10 / fpr)`` (1e-3 -> 10,000)."""
    return math.ceil(MIN_FALSE_ALARMS / fpr * (1 - 1e-12))


def _check_background(tf: TraceFile, card: dict[str, Any]) -> None:
    """Refuse a background that the model does not take as it is (rate, channels, length, unit)."""
    where = str(tf.path)
    rate = float(card["sampling_rate_hz"])
    if not np.isclose(tf.sampling_rate_hz, rate, rtol=1e-6, atol=0):
        msg = (
            f"{where}: attribute 'sampling_rate_hz' = {tf.sampling_rate_hz:g} Hz, but the model takes "
            f"{rate:g} Hz; calibrate does not resample: give noise at the model's rate "
            f"(crnn ingest --resample-hz {rate:g})"
        )
        raise CrnnError(msg)
    if tf.n_channels != int(card["n_channels"]):
        msg = (
            f"{where}: dataset 'traces' has {tf.n_channels} channel(s) (shape {list(tf.shape)}), but the model "
            f"takes {card['n_channels']} (input shape (N, {card['n_channels']}, {card['n_samples']}))"
        )
        raise CrnnError(msg)
    if tf.n_samples != int(card["n_samples"]):
        msg = (
            f"{where}: dataset 'traces' has {tf.n_samples} samples per trace (shape {list(tf.shape)}), but the "
            f"model takes exactly {card['n_samples']} (input shape (N, {card['n_channels']}, {card['n_samples']})); "
            f"calibrate uses no windows or padding"
        )
        raise CrnnError(msg)
    if tf.unit not in KNOWN_UNITS:
        msg = (
            f"{where}: attribute 'unit' = {tf.unit!r}, which the model cannot take; expected one of "
            f"{list(KNOWN_UNITS)} (trained on {card.get('unit_trained', 'V')!r})"
        )
        raise CrnnError(msg)


def _noise_mask(tf: TraceFile) -> np.ndarray:
    if not tf.has_labels:
        return np.ones(tf.n_traces, dtype=bool)
    return tf.read_meta(LABELS) == 0


def calibrate(
    model: str | os.PathLike[str],
    backgrounds: list[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    fprs: tuple[float, ...] = DEFAULT_FPRS,
    working_point_fpr: float = 1e-3,
    skip_unreachable: bool = False,
    trust_model: bool = False,
    chunk_size: int = 8192,
) -> Path:
    """Calibrate ``model`` on noise-only ``backgrounds``; write ``output/model.keras`` and its card."""
    from crnn.classifier import load_classifier

    if not backgrounds:
        msg = "calibrate: give at least one --background file of noise-only traces"
        raise CrnnError(msg)
    check_value(list(fprs), "evaluate.fprs", "calibrate: --fprs")
    check_value(working_point_fpr, "evaluate.working_point_fpr", "calibrate: --working-point-fpr")
    targets = sorted({float(f) for f in (*fprs, working_point_fpr)}, reverse=True)
    out = Path(output)
    _check_output(out)
    model_path = resolve_model_path(model)
    card = read_card(model_path)

    # open and check every file before scoring any of them
    files: list[dict[str, Any]] = []
    masks: list[np.ndarray] = []
    units: set[str] = set()
    for bg in backgrounds:
        with TraceFile(bg) as tf:
            _check_background(tf, card)
            if units and tf.unit not in units:
                msg = (
                    f"{tf.path}: attribute 'unit' = {tf.unit!r}, but {files[0]['path']} is in {units.pop()!r}; "
                    f"calibrate on background files of one unit"
                )
                raise CrnnError(msg)
            units.add(tf.unit)
            mask = _noise_mask(tf)
            entry: dict[str, Any] = {
                "path": str(bg),
                "n_traces": tf.n_traces,
                "n_used": int(mask.sum()),
                "n_excluded_signal": int((~mask).sum()),
            }
            if "band_hz" in tf.attrs:
                entry["band_hz"] = [float(b) for b in np.ravel(tf.attrs["band_hz"])]
        files.append(entry)
        masks.append(mask)
    n_used = sum(e["n_used"] for e in files)
    given = " + ".join(f"{e['n_used']} in {e['path']}" for e in files)
    unreachable = [f for f in targets if n_used < traces_needed(f)]
    if working_point_fpr in unreachable or (unreachable and not skip_unreachable):
        f = working_point_fpr if working_point_fpr in unreachable else unreachable[-1]
        what = "the working point FPR" if f == working_point_fpr else "FPR"
        hint = "" if f == working_point_fpr else "; or pass --skip-unreachable to record it as unavailable"
        msg = (
            f"{files[0]['path']}: too few noise-only traces for {what} {f:g}: it needs at least "
            f"{traces_needed(f)} (= ceil({MIN_FALSE_ALARMS}/FPR), {MIN_FALSE_ALARMS} expected false alarms), "
            f"{n_used} were given ({given}){hint}"
        )
        raise CrnnError(msg)

    clf = load_classifier(model_path, safe_mode=not trust_model)  # checks the weights against the card
    for e in files:
        e["sha256"] = file_sha256(e["path"])
        e["size_bytes"] = Path(e["path"]).stat().st_size
    unit = units.pop()
    scores = []
    for e, mask in zip(files, masks, strict=True):
        with TraceFile(e["path"]) as tf:
            for start in range(0, tf.n_traces, chunk_size):
                stop = min(start + chunk_size, tf.n_traces)
                keep = mask[start:stop]
                if not keep.any():
                    continue
                x = tf.read_traces(start, stop)[keep]  # refuses NaN and Inf, naming the trace
                s, _ = clf.score(
                    x, sampling_rate_hz=tf.sampling_rate_hz, unit=tf.unit, resample=False, where=str(tf.path)
                )
                scores.append(s)
        log.info(
            "%s: scored %d noise-only traces (%d signal traces left out)",
            e["path"],
            e["n_used"],
            e["n_excluded_signal"],
        )
    s = np.concatenate(scores).astype(np.float64)

    points: list[dict[str, Any]] = []
    for f in targets:
        if f in unreachable:
            points.append(
                {
                    "target_fpr": f,
                    "available": False,
                    "n_needed": traces_needed(f),
                    "reason": f"needs >= {traces_needed(f)} noise traces, {n_used} given",
                }
            )
            log.warning("FPR %g: unavailable (needs >= %d noise traces, %d given)", f, traces_needed(f), n_used)
            continue
        thr = threshold_at_fpr(s, f)
        assert thr is not None  # n >= 10 / f guarantees floor(f * n) >= 10
        points.append(
            {
                "target_fpr": f,
                "available": True,
                "threshold": thr,
                "calibration_fpr": float(np.mean(s > thr)),
                "n_false_alarms": int(np.sum(s > thr)),
                "n_needed": traces_needed(f),
            }
        )
    names = ", ".join(e["path"] for e in files)
    bands = {tuple(e["band_hz"]) for e in files if "band_hz" in e}
    calibration: dict[str, Any] = {
        "files": files,
        "n_traces": n_used,
        "sampling_rate_hz": float(card["sampling_rate_hz"]),
        "n_channels": int(card["n_channels"]),
        "n_samples": int(card["n_samples"]),
        "unit": unit,
        "working_points": points,
        "rule": f"threshold = score of the floor(fpr * n)-th highest noise trace (score > threshold passes); "
        f"an FPR needs n >= ceil({MIN_FALSE_ALARMS} / fpr) noise traces",
        "source_model": str(model_path),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "crnn_version": __version__,
    }
    if len(bands) == 1 and all("band_hz" in e for e in files):
        calibration["band_hz"] = list(bands.pop())
    new = {k: v for k, v in card.items() if k != "format"}
    # a card calibrated before keeps its training working points, not the earlier calibration's
    new["training_working_point"] = card.get("training_working_point", card["working_point"])
    new["training_working_points"] = card.get("training_working_points", card.get("working_points", []))
    chosen = next(p for p in points if p["target_fpr"] == working_point_fpr)
    new["working_point"] = {
        "target_fpr": working_point_fpr,
        "threshold": chosen["threshold"],
        "chosen_on": f"calibration background {names}",
        "calibration_fpr": chosen["calibration_fpr"],
        "n_calibration_background": n_used,
    }
    new["working_points"] = [
        {"target_fpr": p["target_fpr"], "threshold": p["threshold"], "calibration_fpr": p["calibration_fpr"]}
        for p in points
        if p["available"]
    ]
    new["calibration"] = calibration
    _publish(out, model_path, new)
    log.info(
        "%s: calibrated on %d noise-only traces of %s; working point FPR %g -> threshold %.4g "
        "(training threshold %.4g); FPR on the calibration traces %.3g",
        out,
        n_used,
        names,
        working_point_fpr,
        chosen["threshold"],
        float(new["training_working_point"]["threshold"]),
        chosen["calibration_fpr"],
    )
    return out / MODEL_NAME


def _check_output(out: Path) -> None:
    if out.exists() and not out.is_dir():
        msg = f"{out}: --output must be a folder (it gets model.keras and model.card.json); a file is there"
        raise CrnnError(msg)
    if out.is_dir():
        extra = sorted(p.name for p in out.iterdir() if p.name not in (MODEL_NAME, "model.card.json"))
        if extra:
            msg = (
                f"{out}: --output folder exists and holds {extra}; give a new folder (only a folder holding "
                f"just a model and its card is replaced)"
            )
            raise CrnnError(msg)


def _publish(out: Path, model_path: Path, card: dict[str, Any]) -> None:
    """Write the folder under a temporary name beside ``out``, then rename it into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    old: Path | None = None
    try:
        shutil.copyfile(model_path, tmp / MODEL_NAME)
        sha = file_sha256(tmp / MODEL_NAME)
        if card.get("model_sha256") not in (None, sha):
            msg = f"{model_path}: the copy's SHA-256 differs from the card's model_sha256; the copy failed"
            raise CrnnError(msg)
        card["model_sha256"] = sha
        write_card(tmp / MODEL_NAME, card)
        read_card(tmp / MODEL_NAME)  # what predict will read
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        if out.exists():
            old = out.with_name(f".{out.name}.old.{os.getpid()}")
            os.replace(out, old)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out.exists():
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    log.info("wrote %s and %s", out / MODEL_NAME, card_path(out / MODEL_NAME).name)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", required=True, help="a .keras model with its card, or its folder")
    p.add_argument(
        "--background",
        "-b",
        action="append",
        required=True,
        metavar="NOISE.h5",
        help="canonical trace file of noise-only traces of the target detector (repeatable)",
    )
    p.add_argument("--output", "-o", required=True, help="folder for the calibrated model.keras and model.card.json")
    p.add_argument(
        "--fprs",
        type=float,
        nargs="+",
        default=list(DEFAULT_FPRS),
        help="target FPRs to set thresholds at (default 1e-2 1e-3 1e-4)",
    )
    p.add_argument(
        "--working-point-fpr",
        type=float,
        default=1e-3,
        help="FPR of the card's working point, used by crnn predict (default 1e-3)",
    )
    p.add_argument(
        "--skip-unreachable",
        action="store_true",
        help="record FPRs that need more traces than given as unavailable instead of refusing",
    )
    p.add_argument("--chunk-size", type=int, default=8192, help="traces read per chunk")
    add_model_flags(p, resample=False)


def run(args: argparse.Namespace) -> None:
    refuse_aliases(
        [*model_inputs("--model", args.model), *(("--background", p) for p in args.background)],
        [],
        replaced_folders=[("--output", args.output)],
    )
    check_outputs(folders=[("--output", args.output)])
    check_minimum(args.chunk_size, 1, "--chunk-size")
    calibrate(
        args.model,
        args.background,
        args.output,
        fprs=tuple(args.fprs),
        working_point_fpr=args.working_point_fpr,
        skip_unreachable=args.skip_unreachable,
        trust_model=args.trust_model,
        chunk_size=args.chunk_size,
    )


if __name__ == "__main__":
    from crnn.cli import stage_main

    stage_main("calibrate")
