"""Stage ``evaluate``: score the test split with a model or a classical baseline.

Writes into ``--output-dir``:

* ``metrics.json``    AUC, ROC, and at each working point (target FPR on the test background)
                      the threshold, achieved FPR, TPR, confusion counts and efficiency vs SNR
                      with 68 % Clopper-Pearson intervals; for models also the card's working
                      point (threshold chosen on validation) applied to the test split;
* ``scores.h5``       per-trace ``scores``, ``labels`` and ``snr`` in test-file order;
* ``roc.png``, ``efficiency.png``  the plots of this method alone.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from crnn import __version__
from crnn.baselines import BASELINES, baseline_scores
from crnn.errors import CrnnError, MissingFieldError
from crnn.fileutil import atomic_output, write_json
from crnn.metrics import operating_point, summarise
from crnn.tracefile import SNR, TraceFile

log = logging.getLogger(__name__)
METRICS, SCORES, ROC_PLOT, EFF_PLOT = "metrics.json", "scores.h5", "roc.png", "efficiency.png"


def evaluate(
    test_path: str | Path,
    output_dir: str | Path,
    *,
    model: str | Path | None = None,
    baseline: str | None = None,
    name: str | None = None,
    fprs: tuple[float, ...] = (1e-2, 1e-3),
    snr_edges: tuple[float, ...] | None = None,
) -> dict[str, Any]:
    if (model is None) == (baseline is None):
        msg = "evaluate: give exactly one of --model or --baseline"
        raise CrnnError(msg)
    with TraceFile(test_path) as tf:
        if not tf.has_labels:
            raise MissingFieldError(str(test_path), "labels", tf.meta_names, expected="labels are needed to evaluate")
        data = tf.read_all()
    labels = data.labels.astype(int)
    snr = data.meta[SNR].astype(np.float64) if SNR in data.meta else np.full(data.n_traces, np.nan)
    if len(np.unique(labels)) < 2:
        msg = f"{test_path}: the test split needs both signal (1) and background (0) traces; found only {np.unique(labels).tolist()}"
        raise CrnnError(msg)
    card_wp = None
    if model is not None:
        from crnn.classifier import load_classifier

        clf = load_classifier(model)
        clf.check_input(data.traces.shape, data.sampling_rate_hz, where=str(test_path))
        scores = clf.predict(data.traces, sampling_rate_hz=data.sampling_rate_hz)
        method = name or clf.card.get("name", Path(model).stem)
        kind = "model"
    else:
        if baseline not in BASELINES:
            msg = f"evaluate: unknown baseline {baseline!r}; available: {', '.join(BASELINES)}"
            raise CrnnError(msg)
        scores = baseline_scores(baseline, data.traces, data.sampling_rate_hz)
        method = name or baseline
        kind = "baseline"
    edges = np.asarray(snr_edges, dtype=float) if snr_edges else None
    metrics = summarise(scores, labels, snr, fprs=fprs, snr_edges=edges)
    if edges is None:
        edges = np.asarray(
            [metrics["working_points"][0]["efficiency_vs_snr"]["snr_low"][0],
             *metrics["working_points"][0]["efficiency_vs_snr"]["snr_high"]]
        ) if metrics["working_points"] and metrics["working_points"][0].get("available") else None
    if model is not None:
        wp = clf.card["working_point"]
        card_wp = operating_point(scores, labels, snr, float(wp["threshold"]), edges if edges is not None else np.arange(0, 11.0),
                                  target_fpr=wp.get("target_fpr"))
        card_wp["chosen_on"] = wp.get("chosen_on", "validation background")
    metrics = {
        "method": method, "kind": kind, "test_file": str(test_path), "crnn_version": __version__,
        **metrics,
    }
    if card_wp is not None:
        metrics["card_working_point"] = card_wp
    for wp in metrics["working_points"]:
        if wp.get("available"):
            log.info("%s: AUC %.4f, TPR %.3f at FPR %.1e", method, metrics["auc"], wp["tpr"], wp["fpr"])

    from crnn.plots import plot_efficiency, plot_roc

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_output(out / SCORES) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("scores", data=scores.astype(np.float32))
        f.create_dataset("labels", data=labels.astype(np.int8))
        f.create_dataset("snr", data=snr.astype(np.float32))
        for extra in ("has_transient", "n_cw_lines", "source_id", "source_index"):
            if extra in data.meta:
                f.create_dataset(extra, data=data.meta[extra])
        f.attrs["method"] = method
        f.attrs["test_file"] = str(test_path)
    plot_roc([metrics], out / ROC_PLOT)
    plot_efficiency([metrics], out / EFF_PLOT)
    write_json(out / METRICS, metrics)
    return metrics


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--test", required=True, help="test split (canonical file with labels and snr)")
    p.add_argument("--output-dir", "-o", required=True, help="folder for metrics.json, scores.h5 and plots")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--model", help="a .keras model (with its card) or its folder")
    g.add_argument("--baseline", choices=BASELINES, help="a classical trigger statistic")
    p.add_argument("--name", help="name of the method in tables and plots")
    p.add_argument("--fpr", type=float, nargs="+", default=[1e-2, 1e-3], help="working points (default 1e-2 1e-3)")
    p.add_argument("--snr-edges", type=float, nargs="+", help="SNR bin edges for efficiency curves")


def run(args: argparse.Namespace) -> None:
    evaluate(
        args.test, args.output_dir, model=args.model, baseline=args.baseline, name=args.name,
        fprs=tuple(args.fpr), snr_edges=tuple(args.snr_edges) if args.snr_edges else None,
    )


if __name__ == "__main__":
    from crnn.cli import stage_main

    stage_main("evaluate")
