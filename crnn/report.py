"""Stage ``report``: compare every evaluated model and baseline in one table and four plots.

Reads the ``metrics.json`` (and ``scores.h5``) written by ``crnn evaluate`` for each method and
the ``history.csv`` of each trained model, and writes into ``--output-dir``:

* ``summary.html`` / ``summary.json``: one row per method: AUC, TPR at each working point, the
  SNR at which the efficiency reaches 50 % and 90 % at FPR 1e-3, and for models the working
  point from the card (threshold chosen on validation) as it performs on the test split;
* ``roc.png``, ``efficiency.png``, ``scores.png``, ``training.png``.
"""

from __future__ import annotations

import argparse
import csv
import html
import json
import logging
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from crnn import __version__
from crnn.errors import CrnnError
from crnn.fileutil import atomic_output, write_json

log = logging.getLogger(__name__)


def snr_at_efficiency(wp: dict[str, Any], level: float) -> float | None:
    """Lowest SNR at which the efficiency curve reaches ``level`` (linear interpolation)."""
    e = wp["efficiency_vs_snr"]
    centre = (np.asarray(e["snr_low"]) + np.asarray(e["snr_high"])) / 2
    eff = np.array([np.nan if v is None else v for v in e["efficiency"]])
    ok = np.isfinite(eff)
    centre, eff = centre[ok], eff[ok]
    above = np.nonzero(eff >= level)[0]
    if above.size == 0:
        return None
    i = int(above[0])
    if i == 0:
        return float(centre[0])
    x0, x1, y0, y1 = centre[i - 1], centre[i], eff[i - 1], eff[i]
    return float(x0 + (level - y0) * (x1 - x0) / (y1 - y0)) if y1 != y0 else float(x1)


def read_history(path: str | Path) -> dict[str, list[float]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: [float(r[k]) for r in rows] for k in rows[0]}


def summary_rows(metrics: list[dict[str, Any]], cards: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for m in metrics:
        row: dict[str, Any] = {"method": m["method"], "kind": m["kind"], "auc": m["auc"]}
        for wp in m["working_points"]:
            key = f"{wp['target_fpr']:g}"
            row[f"tpr_at_fpr_{key}"] = wp["tpr"] if wp.get("available") else None
            if wp.get("available"):
                row[f"snr50_at_fpr_{key}"] = snr_at_efficiency(wp, 0.5)
                row[f"snr90_at_fpr_{key}"] = snr_at_efficiency(wp, 0.9)
        if "card_working_point" in m:
            c = m["card_working_point"]
            row["card_threshold"] = c["threshold"]
            row["card_test_fpr"] = c["fpr"]
            row["card_test_tpr"] = c["tpr"]
        card = cards.get(m["method"])
        if card:
            row["n_parameters"] = card.get("n_parameters")
            row["train_time_s"] = card.get("training", {}).get("train_time_s")
            row["epochs_run"] = card.get("training", {}).get("epochs_run")
        rows.append(row)
    return rows


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e-2 and v != 0 else f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"
    return html.escape(str(v))


def write_summary_html(path: Path, rows: list[dict[str, Any]], context: dict[str, Any]) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "\n".join("<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    info = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in context.items())
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>crnn run summary</title>
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #bbb;padding:3px 8px;text-align:right}}th{{background:#eee}}
td:first-child,td:nth-child(2){{text-align:left}}</style></head><body>
<h1>crnn run summary</h1>
<ul>{info}</ul>
<p>AUC: area under the ROC curve on the test split. <code>tpr_at_fpr_X</code>: fraction of pulses detected
when the threshold lets a fraction X of the background through (threshold set on the test background).
<code>snr50/snr90</code>: SNR at which the efficiency reaches 50 % / 90 % at that working point
(lower is better). <code>card_*</code>: the model's own working point, chosen on the validation split,
applied to the test split.</p>
<table><thead><tr>{head}</tr></thead><tbody>
{body}
</tbody></table></body></html>
"""
    with atomic_output(path) as tmp:
        tmp.write_text(page)


def report(
    metrics_paths: list[str | Path],
    output_dir: str | Path,
    *,
    histories: list[str | Path] | None = None,
    cards: list[str | Path] | None = None,
) -> Path:
    from crnn.plots import plot_efficiency, plot_history, plot_roc, plot_scores

    metrics = []
    for p in metrics_paths:
        try:
            m = json.loads(Path(p).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            msg = f"{p}: cannot read metrics JSON ({exc})"
            raise CrnnError(msg) from exc
        for key in ("method", "auc", "roc", "working_points"):
            if key not in m:
                msg = f"{p}: metrics lack {key!r}; expected the output of `crnn evaluate`"
                raise CrnnError(msg)
        m["_dir"] = str(Path(p).parent)
        metrics.append(m)
    card_map = {}
    for p in cards or []:
        c = json.loads(Path(p).read_text())
        card_map[c.get("name", Path(p).parent.name)] = c
    hist_map = {}
    for p in histories or []:
        name = Path(p).parent.name
        hist_map[name] = read_history(p)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_roc(metrics, out / "roc.png")
    plot_efficiency(metrics, out / "efficiency.png")
    score_map = {}
    for m in metrics:
        sp = Path(m["_dir"]) / "scores.h5"
        if sp.exists():
            with h5py.File(sp, "r") as f:
                score_map[m["method"]] = (np.asarray(f["scores"]), np.asarray(f["labels"]))
    if score_map:
        plot_scores(score_map, out / "scores.png")
    plot_history(hist_map, out / "training.png")
    rows = summary_rows(metrics, card_map)
    context = {
        "created (UTC)": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "crnn version": __version__,
        "test file": metrics[0].get("test_file"),
        "test traces": f"{metrics[0]['n_test']} ({metrics[0]['n_signal']} signal, {metrics[0]['n_background']} background)",
        "SNR": "peak |signal| over channels and samples / RMS of the background (galactic, thermal, CW; no transients)",
    }
    write_summary_html(out / "summary.html", rows, context)
    write_json(out / "summary.json", {"context": context, "rows": rows})
    for r in rows:
        log.info("%s", {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})
    return out / "summary.html"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics", nargs="+", required=True, help="metrics.json files from crnn evaluate")
    p.add_argument("--history", nargs="*", default=[], help="history.csv files from crnn train")
    p.add_argument("--card", nargs="*", default=[], help="model cards (model.card.json)")
    p.add_argument("--output-dir", "-o", required=True, help="folder for summary.html and plots")


def run(args: argparse.Namespace) -> None:
    report(args.metrics, args.output_dir, histories=args.history, cards=args.card)


if __name__ == "__main__":
    from crnn.cli import stage_main

    stage_main("report")
