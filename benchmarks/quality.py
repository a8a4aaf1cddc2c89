"""Suite ``quality``: efficiency vs SNR at FPR 1e-3 and AUC of the default models and the baselines.

A fixed benchmark set, the same on every machine and every run: ``--quality-traces`` background
traces (``signal_fraction`` 0, seed 20261101) and as many signal traces (``signal_fraction`` 1,
seed 20261102, SNR 2-10), both with the default acquisition of ``crnn.simulate`` (noise, CW lines,
transients); plus 2,000 more background traces (seed 20261103) whose transient-free ones give the
matched filter its noise spectrum, kept apart from the benchmark set.

Scored by every model in ``--models-dir`` (``<name>/model.keras`` with its card; default
``results/models`` of a demo run) and by the classical baselines of ``crnn.baselines``. Reported,
with ``crnn.metrics``: AUC, the TPR and efficiency per SNR bin at FPR 1e-3 with the threshold
set on this set's own background, and, for the models, the same at the working point of their
model card (chosen on their validation background). Without models the suite says so and
reports the baselines alone; ``--quick`` trains tiny default-shaped models for the smoke test.
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, fmt, measurement, table, train_small_model

NAME = "quality"
DEFAULT_REPEAT = 1
SEED = 20261101
FPR = 1e-3
SNR_EDGES = [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
BASELINES = ("amplitude", "envelope", "power", "matched_filter")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--models-dir",
        default=str(REPO / "results" / "models"),
        help="quality: folder of trained models (<name>/model.keras), e.g. a demo run's results/models",
    )
    p.add_argument(
        "--quality-traces",
        type=int,
        default=10_000,
        help="quality: background traces, and as many signal traces, in the benchmark set",
    )
    p.add_argument("--quality-bootstrap", type=int, default=100, help="quality: bootstrap replicates for intervals")


def benchmark_set(n: int, tmp: Path):
    """The fixed benchmark set (traces, labels, SNR, has_transient) and noise-only traces."""
    import numpy as np

    from crnn.simulate import SimulationSettings, simulate
    from crnn.tracefile import read_traces

    parts = []
    for k, frac in enumerate((0.0, 1.0)):
        path = tmp / f"set{k}.h5"
        simulate(SimulationSettings(n_traces=n, signal_fraction=frac), path, seed=SEED + k)
        parts.append(read_traces(path, require_labels=True))
    noise_path = tmp / "noise.h5"
    simulate(SimulationSettings(n_traces=2000, signal_fraction=0.0), noise_path, seed=SEED + 2)
    noise = read_traces(noise_path, require_labels=True)
    x = np.concatenate([p.traces for p in parts])
    labels = np.concatenate([p.labels for p in parts]).astype(int)
    snr = np.concatenate([p.meta["snr"] for p in parts]).astype(np.float64)
    transient = np.concatenate([p.meta["has_transient"] for p in parts]).astype(int)
    noise_only = noise.traces[noise.meta["has_transient"] == 0]
    return x, labels, snr, transient, noise_only, parts[0].sampling_rate_hz


def _models(models_dir: Path) -> list[Path]:
    return sorted(p for p in models_dir.glob("*/model.keras") if p.is_file()) if models_dir.is_dir() else []


def run(args: argparse.Namespace, quick: bool) -> dict[str, Any]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np

    from benchmarks.train import model_settings
    from crnn.baselines import baseline_scores
    from crnn.metrics import operating_point, summarise

    n = 1_000 if quick else args.quality_traces  # 1,000 background traces: the least that resolves FPR 1e-3
    n_boot = 0 if quick else args.quality_bootstrap
    edges = np.asarray(SNR_EDGES)
    notes: list[str] = []
    methods: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        x, labels, snr, transient, noise, rate = benchmark_set(n, Path(tmp))
        models = _models(Path(args.models_dir))
        if quick:
            models = [
                train_small_model(Path(tmp) / c, model_settings(args.config, c), n_train=1000, n_val=500, name=c)
                for c in ("gru", "lstm")
            ]
            notes.append("quick mode: tiny models trained for one epoch on 1,000 traces, not the default models")
        elif not models:
            notes.append(
                f"no models in {args.models_dir} (run `python3 tasks.py demo` or give --models-dir): "
                "models skipped, baselines only"
            )
        scored: list[tuple[str, str, np.ndarray, float, Any]] = []
        for path in models:
            from crnn.classifier import load_classifier

            clf = load_classifier(path)
            t0 = time.perf_counter()
            s = clf.predict(x, sampling_rate_hz=rate)
            card = clf.card
            info = {
                "path": str(path),
                "created_utc": card.get("created_utc"),
                "model": card.get("model"),
                "epochs_run": card.get("training", {}).get("epochs_run"),
                "card_threshold": card["working_point"]["threshold"],
                "card_target_fpr": card["working_point"].get("target_fpr"),
            }
            scored.append((path.parent.name, "model", s, time.perf_counter() - t0, info))
        for b in BASELINES:
            t0 = time.perf_counter()
            s = baseline_scores(b, x, rate, noise_traces=noise if b == "matched_filter" else None)
            scored.append((b, "baseline", s, time.perf_counter() - t0, {}))
        for name, kind, s, dt, info in scored:
            m = summarise(
                s, labels, snr, fprs=(FPR,), snr_edges=edges, has_transient=transient, n_bootstrap=n_boot, seed=0
            )
            wp = m["working_points"][0]
            entry: dict[str, Any] = {
                "kind": kind,
                **info,
                "auc": m["auc"],
                "auc_interval": m.get("auc_interval"),
                "scoring_traces_per_s": len(s) / dt,
                "own_background": _wp(wp),
            }
            noise_wps = m.get("working_points_noise") or []
            if noise_wps and noise_wps[0].get("available"):
                entry["noise_only_background"] = _wp(noise_wps[0])
            if kind == "model":
                entry["card_working_point"] = _wp(
                    operating_point(
                        s,
                        labels,
                        snr,
                        float(info["card_threshold"]),
                        edges,
                        target_fpr=info["card_target_fpr"],
                        has_transient=transient,
                    )
                )
            methods[name] = entry
    measurements = []
    for name, e in methods.items():
        measurements.append(measurement(f"{name}: AUC", "", [e["auc"]], method=name))
        if e["own_background"].get("tpr") is not None:
            measurements.append(measurement(f"{name}: TPR at FPR 1e-3", "", [e["own_background"]["tpr"]], method=name))
    return {
        "n_background": int(np.sum(labels == 0)),
        "n_signal": int(np.sum(labels == 1)),
        "seed": SEED,
        "n_background_transient": int(np.sum((labels == 0) & (transient == 1))),
        "fpr": FPR,
        "snr_edges": SNR_EDGES,
        "n_bootstrap": n_boot,
        "models_dir": str(args.models_dir),
        "methods": methods,
        "notes": notes,
        "measurements": measurements,
    }


def _wp(wp: dict[str, Any]) -> dict[str, Any]:
    if not wp.get("available", True):
        return {"available": False, "reason": wp.get("reason")}
    e = wp["efficiency_vs_snr"]
    return {
        "threshold": wp["threshold"],
        "fpr": wp["fpr"],
        "tpr": wp["tpr"],
        "tpr_interval": wp.get("tpr_bootstrap_interval"),
        "snr_50": wp.get("snr_50"),
        "snr_90": wp.get("snr_90"),
        "false_alarms": {k: v["rate"] for k, v in wp["false_alarms"].items()},
        "efficiency": e["efficiency"],
        "n_per_bin": e["n"],
    }


def markdown(result: dict[str, Any]) -> str:
    edges = result["snr_edges"]
    bins = [f"{a:g}-{b:g}" for a, b in itertools.pairwise(edges)]
    head = (
        f"Fixed benchmark set: {result['n_background']:,} background traces ({result['n_background_transient']:,} "
        f"with a transient) and {result['n_signal']:,} signal traces (SNR 2-10), default acquisition, seeds "
        f"{result['seed']} and {result['seed'] + 1}; matched-filter noise spectrum from separate noise-only traces "
        f"(seed {result['seed'] + 2}). Threshold at FPR 1e-3 on this set's own background unless said otherwise; "
        f"models from `{result['models_dir']}`.\n\n"
    )
    rows, eff_rows = [], []
    for name, e in result["methods"].items():
        own = e["own_background"]
        card = e.get("card_working_point")
        auc = f"{e['auc']:.4f}" + (
            f" [{e['auc_interval'][0]:.4f}, {e['auc_interval'][1]:.4f}]" if e.get("auc_interval") else ""
        )
        rows.append(
            [
                name,
                e["kind"],
                auc,
                _num(own.get("tpr")),
                f"{_num(own.get('snr_50'))} / {_num(own.get('snr_90'))}",
                f"{_num(card.get('tpr'))} at FPR {_num(card.get('fpr'))}" if card else "-",
                fmt(e["scoring_traces_per_s"]),
            ]
        )
        if own.get("efficiency"):
            eff_rows.append([name, "own background FPR 1e-3", *(_num(v) for v in own["efficiency"])])
        if card and card.get("efficiency"):
            eff_rows.append([name, "model card's working point", *(_num(v) for v in card["efficiency"])])
    text = head + table(
        [
            "method",
            "kind",
            "AUC [68 % CI]",
            "TPR at FPR 1e-3",
            "SNR at 50 % / 90 % efficiency",
            "card working point: TPR, FPR here",
            "scoring traces/s",
        ],
        rows,
    )
    text += "\n\nEfficiency per SNR bin:\n\n" + table(["method", "threshold", *bins], eff_rows)
    for note in result.get("notes", []):
        text += f"\n\nNote: {note}."
    models = [e for e in result["methods"].values() if e["kind"] == "model"]
    if models and not result.get("notes"):
        text += (
            "\n\nModels: "
            + "; ".join(
                f"{Path(e['path']).parent.name} trained {e.get('created_utc')}, {e.get('epochs_run')} epochs"
                for e in models
            )
            + "."
        )
    return text


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"
