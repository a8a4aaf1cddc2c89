"""Stage ``report``: compare every evaluated model and baseline in tables and plots.

Reads the ``metrics.json`` and ``scores.h5`` written by ``crnn evaluate`` for each method (and the
``gallery.png`` beside them), the ``history.csv`` of each trained model and the model cards, and
writes into ``--output-dir``:

* ``summary.html``: the run's summary page, self-contained (plots embedded): a headline answer,
  the comparison tables, ROC, efficiency vs SNR, SNR at 50 % / 90 % efficiency, score
  distributions, confusion matrices at the working point, training curves and the example-trace
  galleries, each with a caption on how to read it;
* ``summary.json``: one flat row per method (AUC, TPR at each working point, SNR at 50 % and 90 %
  efficiency, their ratio to the matched filter's, false-alarm rates on noise and on transients,
  mean score on noise-only traces, the model card's working point); see ``docs/formats.md``;
* ``roc.png``, ``efficiency.png``, ``snr.png``, ``scores.png``, ``confusion.png``, ``training.png``,
  ``efficiency_arrival_polarisation.png``.

The page also states the acquisition of the test split (band, sampling rate, trace length,
channels, unit), each model's training (training-set size, epochs, what stopped it, time against
the limit, best validation AUC), the trigger rate in Hz of each working point for a trial rate
(``--trial-rate-hz``, config ``report.trial_rate_hz``; default: continuous data cut into
back-to-back traces, sampling rate / trace length), the false alarms per kind of transient at the
working point and the efficiency against the pulses' arrival time and polarisation angle (from
the test split's per-trace metadata, see :mod:`crnn.runfacts`).

With ``--robustness`` (the JSON files of ``crnn robustness``) the summary page gets a section
"Robustness to other detectors": per shift and method the efficiency at the suite's SNR points and
the fraction of transients passing, thresholds set on each shift's own noise, plus the same figures
of the in-domain test split (from ``scores.h5``); ``summary.json`` holds it under ``robustness``.

The ratio of each method's 50 %-efficiency SNR to the matched filter's carries a 68 % paired
bootstrap interval: all methods are resampled with the same replicates (from ``scores.h5``).
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import h5py
import numpy as np

from crnn import __version__
from crnn.errors import CrnnError
from crnn.fileutil import atomic_output, check_outputs, folder_outputs, refuse_aliases, write_json
from crnn.metrics import (
    binned_efficiency,
    bootstrap,
    false_alarms_by_kind,
    interval,
    snr_at_efficiency,
    trigger_rate_hz,
)
from crnn.robustness import measure, read_robustness
from crnn.runfacts import (
    STOP_TEXT,
    acquisition,
    acquisition_text,
    default_trial_rate_hz,
    kind_codes,
    polarisation_deg,
    test_metadata,
    training_facts,
    training_text,
    transient_kind_names,
)
from crnn.settings import check_value, validate

log = logging.getLogger(__name__)
REFERENCE = "matched_filter"
DASH = "&ndash;"  # an empty table cell
#: the summary page at most (bytes, its plots embedded in base64): the Snakemake report shows the page
#: as a base64 data URL, a third larger again, and Chromium refuses URLs over 2 MiB
MAX_PAGE_BYTES = 1_500_000
#: galleries are scaled down to fit the page, down to this width; a narrower one is left out
MIN_GALLERY_WIDTH_PX = 480
__all__ = ["ReportSettings", "report", "snr_at_efficiency", "summary_rows"]
#: bins of the efficiency against arrival time (over the trace) and polarisation angle (degrees)
N_TIME_BINS = 12
POLARISATION_EDGES_DEG = tuple(range(0, 181, 15))


@dataclass(frozen=True)
class ReportSettings:
    """How the report states rates (config section ``report``)."""

    #: the node of the config schema that holds the rules on these settings
    SCHEMA: ClassVar[str] = "report"

    #: traces a trigger tests per second, for the trigger rates in Hz (rate = FPR x trial rate);
    #: None = continuous data cut into back-to-back traces (sampling rate / trace length)
    trial_rate_hz: float | None = None


CAPTIONS = {
    "roc": (
        "Fraction of air-shower pulses detected (y) against the fraction of background traces that trigger "
        "(x, logarithmic), for every threshold. Higher and further left is better. Shaded bands are 68 % "
        "bootstrap intervals; the grey line marks 1 / (number of background traces): left of it nothing is "
        "measured. Dotted lines mark the working points. The AUC in the legend weighs all false-positive rates "
        "alike, including rates far too high for a trigger: compare methods at the working points instead."
    ),
    "efficiency": (
        "Fraction of pulses detected per SNR bin at a fixed false-positive rate (one column per working point), "
        "with 68 % Clopper-Pearson intervals; grey lines at 50 % and 90 %. Top row: threshold set on all "
        "background traces, human-made transients included (the realistic trigger). Bottom row: threshold set "
        "on noise-only background (galactic, thermal and CW noise) and pulses in traces without transients: the "
        "Gaussian-noise comparison in which the matched filter is the near-ideal reference. A curve further left "
        "finds fainter air showers at the same noise rate."
    ),
    "snr": (
        "SNR at which each method reaches 50 % (filled circle) and 90 % (open square) efficiency at the "
        "working point, with 68 % bootstrap intervals; an arrow means the level is not reached inside the SNR "
        "range. Left: threshold on all background; right: threshold on noise-only background. Lower is better; "
        "the ratio to the matched filter's value is in the table (1 = as good as the matched filter)."
    ),
    "scores": (
        "Distributions of each method's score for traces with a pulse (red) and for background, split into "
        "noise only (blue) and with a human-made transient (orange), on a logarithmic count scale. The dashed "
        "line is the threshold at the working point. Networks output a probability; the baselines an SNR-like "
        "statistic (axis label). The more background, especially transients, lies right of the threshold, the "
        "more false alarms; the summary table gives the mean score of noise-only traces, the 'SNR' a method "
        "reports on pure noise."
    ),
    "confusion": (
        "Decisions of each method at the working point (threshold set on the test background): rows are what "
        "the trace holds (a pulse, noise only, a human-made transient), columns what the trigger said; counts "
        "and row percentages. Green cells are right decisions, red cells wrong ones."
    ),
    "training": (
        "Training curves of each model: binary cross-entropy (left; the grey line at ln 2 is chance) and ROC AUC "
        "(right) per epoch on the training split (solid) and the validation split (dashed). The model kept is "
        "the one with the lowest validation loss. Validation below training loss is normal with dropout."
    ),
    "robustness": (
        "Each row is a detector the methods were not trained on: a simulation with other settings (listed "
        "below the table) and its own seed, never used for training or for choosing a model. For every method "
        "and shift the threshold is set anew, at the stated false-positive rate on that shift's own noise-only "
        "background (no human-made transient), as one would calibrate a trigger on a new detector's noise; a "
        "shift that only rescales the scores therefore costs nothing. The first columns of each method give the "
        "fraction of pulses (in traces without transients) detected in SNR bins centred on the stated SNRs; "
        "higher is better. 'transients passing' is the fraction of the shift's background traces with a "
        "human-made transient that pass the same threshold; lower is better. Compare each row with the "
        "in-domain test split (same rule on the test split's own noise): the drop is the price of the shift. "
        "'n/a': the shift's noise-only background is too small for the false-positive rate. Intervals and the "
        "thresholds set on all background are in results/robustness/METHOD.json."
    ),
    "efficiency_arrival_polarisation": (
        "Fraction of pulses detected at the working point (threshold set on all test background, as in the "
        "confusion matrices), against the time of the pulse's peak in the trace (left) and its polarisation "
        "angle (right: 0 degrees all in the first channel, 90 degrees all in the second; a pulse and its negative "
        "are one direction), over all SNRs of the test split, with 68 % Clopper-Pearson intervals. A flat curve "
        "means the method finds pulses equally well wherever they arrive and however they are polarised; a drop "
        "near the trace ends is the price of windows or padding, a dip at some angle a channel the method "
        "relies on."
    ),
    "gallery": (
        "Example test traces of one method at the working point, in units of the noise RMS (both "
        "polarisation channels; the dashed line marks the true pulse time). Rows: detected pulses of the "
        "lowest SNR, missed pulses of the highest SNR, and the highest-scoring background traces that trigger, "
        "with a human-made transient and with noise only."
    ),
}


def read_history(path: str | Path) -> dict[str, list[float]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: [float(r[k]) for r in rows] for k in rows[0]}


def _wp(m: dict[str, Any], key: str, fpr: float) -> dict[str, Any] | None:
    return next((w for w in m.get(key, []) if w.get("available") and w["target_fpr"] == fpr), None)


def report_fpr(metrics: list[dict[str, Any]]) -> float:
    """The FPR of the headline columns: the working point the evaluations used for their confusion
    matrices (``evaluate.working_point_fpr``, or what the test background allows)."""
    used = [m["report_working_point"]["target_fpr"] for m in metrics if "report_working_point" in m]
    if used:
        return max(set(used), key=used.count)
    available = [wp["target_fpr"] for m in metrics for wp in m["working_points"] if wp.get("available")]
    return min(available) if available else 1e-3


def summary_rows(
    metrics: list[dict[str, Any]], cards: dict[str, dict[str, Any]], ratios: dict[str, dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """One flat, JSON-ready row per method (column names in docs/formats.md)."""
    rows = []
    ratios = ratios or {}
    for m in metrics:
        row: dict[str, Any] = {"method": m["method"], "kind": m["kind"], "auc": m["auc"]}
        if "auc_interval" in m:
            row["auc_interval"] = m["auc_interval"]
        for prefix, key in (("", "working_points"), ("noise_", "working_points_noise")):
            for wp in m.get(key, []):
                f = f"{wp['target_fpr']:g}"
                row[f"{prefix}tpr_at_fpr_{f}"] = wp["tpr"] if wp.get("available") else None
                if not wp.get("available"):
                    continue
                if "tpr_bootstrap_interval" in wp:
                    row[f"{prefix}tpr_interval_at_fpr_{f}"] = wp["tpr_bootstrap_interval"]
                for level in (50, 90):
                    row[f"{prefix}snr{level}_at_fpr_{f}"] = wp.get(f"snr_{level}", snr_at_efficiency(wp, level / 100))
                    if f"snr_{level}_interval" in wp:
                        row[f"{prefix}snr{level}_interval_at_fpr_{f}"] = wp[f"snr_{level}_interval"]
                fa = wp.get("false_alarms", {})
                for kind in ("noise", "transient"):
                    if kind in fa:
                        row[f"{prefix}false_alarm_rate_{kind}_at_fpr_{f}"] = fa[kind]["rate"]
        for kind in ("noise", "transient"):
            st = m.get("background_scores", {}).get(kind)
            if st and st.get("n"):
                row[f"mean_score_{kind}"] = st["mean"]
        for key, r in ratios.get(m["method"], {}).items():
            row[key] = r
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


def _read_scores(metrics: list[dict[str, Any]]) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for m in metrics:
        sp = Path(m["_dir"]) / "scores.h5"
        if not sp.exists():
            continue
        try:
            with h5py.File(sp, "r") as f:
                d = {k: np.asarray(f[k]) for k in ("scores", "labels", "snr") if k in f}
                if "has_transient" in f:
                    d["has_transient"] = np.asarray(f["has_transient"])
        except OSError as exc:
            msg = f"{sp}: cannot read scores ({exc})"
            raise CrnnError(msg) from exc
        if "scores" in d and "labels" in d:
            out[m["method"]] = d
    return out


def reference_ratios(
    metrics: list[dict[str, Any]], score_map: dict[str, dict[str, np.ndarray]], fpr: float, reference: str = REFERENCE
) -> dict[str, dict[str, Any]]:
    """SNR at 50 % efficiency of each method divided by the reference's, at FPR ``fpr``, for both
    ways of setting the threshold, with paired-bootstrap 68 % intervals."""
    ref = next((m for m in metrics if m["method"] == reference), None)
    if ref is None:
        return {}
    f = f"{fpr:g}"
    out: dict[str, dict[str, Any]] = {m["method"]: {} for m in metrics}
    names = [m["method"] for m in metrics]
    have = all(n in score_map for n in names)
    if have:
        first = score_map[names[0]]
        have = all(
            len(score_map[n]["labels"]) == len(first["labels"])
            and np.array_equal(score_map[n]["labels"], first["labels"])
            for n in names
        )
        if not have:
            log.warning("scores.h5 files hold different test traces: ratio intervals are left out")
    for prefix, key in (("", "working_points"), ("noise_", "working_points_noise")):
        ref_wp = _wp(ref, key, fpr)
        if ref_wp is None:
            continue
        reps = None
        if have and ref.get("n_bootstrap", 0) > 0:
            d = score_map[names[0]]
            keep = np.ones(len(d["labels"]), dtype=bool)
            if prefix:
                if "has_transient" not in d:
                    continue
                keep = d["has_transient"] == 0
            e = ref_wp["efficiency_vs_snr"]
            edges = np.array([e["snr_low"][0], *e["snr_high"]])
            reps = bootstrap(
                [score_map[n]["scores"][keep] for n in names],
                d["labels"][keep],
                d["snr"][keep],
                fprs=[fpr],
                snr_edges=edges,
                n_bootstrap=int(ref["n_bootstrap"]),
                seed=int(ref.get("bootstrap_seed", 0)),
            )
            reps = dict(zip(names, reps, strict=True))
        for m in metrics:
            wp = _wp(m, key, fpr)
            v, r = (wp or {}).get("snr_50"), ref_wp.get("snr_50")
            out[m["method"]][f"{prefix}snr50_ratio_to_{reference}_at_fpr_{f}"] = v / r if v is not None and r else None
            if reps is not None:
                with np.errstate(invalid="ignore", divide="ignore"):
                    ratio = reps[m["method"]]["snr_50"][:, 0] / reps[reference]["snr_50"][:, 0]
                out[m["method"]][f"{prefix}snr50_ratio_interval_to_{reference}_at_fpr_{f}"] = interval(ratio)
    return out


# -- HTML ------------------------------------------------------------------------------------------
def _num(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return DASH
    if isinstance(v, float):
        if v != 0 and (abs(v) < 10 ** -max(digits - 1, 0) or abs(v) >= 1e4):
            return f"{v:.2e}"
        return f"{v:.{digits}f}" if abs(v) < 100 else f"{v:.0f}"
    return html.escape(str(v))


def _ci(v: Any, ci: Any, digits: int = 3, not_reached: str = DASH) -> str:
    if v is None:
        return f'<span class="nr">{not_reached}</span>'
    text = _num(v, digits)
    if ci and len(ci) == 2:
        lo = _num(ci[0], digits) if ci[0] is not None else "?"
        hi = _num(ci[1], digits) if ci[1] is not None else "&gt;range"
        text += f' <span class="ci">[{lo}, {hi}]</span>'
    return text


def _pct(rate: Any) -> str:
    return DASH if rate is None else f"{100 * rate:.2f} %"


def _img(path: Path, data: bytes | None = None) -> str:
    encoded = base64.b64encode(path.read_bytes() if data is None else data).decode("ascii")
    return f'<img src="data:image/png;base64,{encoded}" alt="{html.escape(path.name)}">'


def _gallery_html(galleries: list[tuple[str, Path]], room: int) -> str:
    """The galleries in order, within ``room`` bytes of page: the small ones whole, the others an equal
    share of what is left, scaled down to fit it; left out (and said so) where even the narrowest would
    not fit."""
    from crnn.plots import shrink_png  # matplotlib only where a page is written

    present = [(name, p, p.read_bytes()) for name, p in galleries if p.exists()]
    heads = [
        f"<details{' open' if i == 0 else ''}><summary>{html.escape(name)}</summary><figure>"
        for i, (name, _, _) in enumerate(present)
    ]
    wrap = [
        len(h) + len(_img(p, b"")) + len("</figure></details>") for h, (_, p, _) in zip(heads, present, strict=True)
    ]
    need = [w + 4 * -(-len(data) // 3) for w, (_, _, data) in zip(wrap, present, strict=True)]
    # water-filling: small galleries keep their size, the others share what is left equally
    room, share = room - 1000, {}  # 1000: the note below
    for k, i in enumerate(sorted(range(len(present)), key=need.__getitem__)):
        share[i] = min(need[i], room // (len(present) - k))
        room -= share[i]
    parts, shrunk, left_out = [], [], []
    for i, ((name, p, data), head) in enumerate(zip(present, heads, strict=True)):
        raw = shrink_png(data, max(0, (share[i] - wrap[i]) * 3 // 4), MIN_GALLERY_WIDTH_PX)
        if raw is None:
            left_out.append(name)
            continue
        if raw is not data:
            shrunk.append(name)
        parts.append(f"{head}{_img(p, raw)}</figure></details>")
    if not present:
        return ""
    notes = ([f"the galleries of {', '.join(shrunk)} are shown at reduced resolution"] if shrunk else []) + (
        [f"the galleries of {', '.join(left_out)} are left out"] if left_out else []
    )
    note = ""
    if notes:
        text = "; ".join(notes)
        note = (
            f"<p>{html.escape(text[0].upper() + text[1:])} to keep this page small enough for browsers; at full "
            "size they are in the Snakemake report (4. Example traces) and in "
            "<code>results/evaluate/METHOD/gallery.png</code>.</p>"
        )
    return (
        "<h2>Example traces</h2><p><b>How to read:</b> "
        + html.escape(CAPTIONS["gallery"])
        + " Click a method to open its gallery.</p>"
        + "\n".join(parts)
        + note
    )


def _best_noise_only(models: list[dict[str, Any]], f: str) -> tuple[dict[str, Any] | None, str, str]:
    """The best network in the noise-only comparison, the row key of the figure it is best by, and
    that figure's name: the lowest ratio of the 50 %-efficiency SNR to the matched filter's if any
    network has one, else the lowest 50 %-efficiency SNR, else the highest TPR."""
    for key, name, lower in (
        (f"noise_snr50_ratio_to_{REFERENCE}_at_fpr_{f}", "SNR 50 % / matched filter's", True),
        (f"noise_snr50_at_fpr_{f}", "SNR at 50 % efficiency", True),
        (f"noise_tpr_at_fpr_{f}", f"TPR at FPR {f}", False),
    ):
        have = [r for r in models if r.get(key) is not None]
        if have:
            return (min if lower else max)(have, key=lambda r: r[key]), key, name
    return None, "", ""


def _headline(
    metrics: list[dict[str, Any]], rows: list[dict[str, Any]], fpr: float, trial_rate_hz: float | None = None
) -> str:
    """The page's answer in a few sentences: the best network by the figure stated (TPR at the
    working point), the best classical trigger, the comparison with the matched filter in noise
    without transients (and which network is best there when it is another one), false alarms."""
    f = f"{fpr:g}"
    models = [r for r in rows if r["kind"] == "model" and r.get(f"tpr_at_fpr_{f}") is not None]
    base = [r for r in rows if r["kind"] == "baseline" and r.get(f"tpr_at_fpr_{f}") is not None]
    if not models and not base:
        return (
            f"<p class='lead'>The test background is too small for the working point FPR {f}; "
            "see the tables at the working points that the statistics allow.</p>"
        )
    parts = []
    n_bg = metrics[0]["n_background"]
    best = max(models, key=lambda r: r[f"tpr_at_fpr_{f}"]) if models else None
    if best is not None:
        s50 = best.get(f"snr50_at_fpr_{f}")
        which = "the network" if len(models) == 1 else "the network that detects the most pulses"
        parts.append(
            f"At a false-positive rate of {f} ({n_bg} background traces, human-made transients included) "
            f"{which}, <b>{html.escape(best['method'])}</b>, detects <b>{_pct(best[f'tpr_at_fpr_{f}'])}</b> of the "
            "pulses" + (f" and reaches 50 % efficiency at SNR <b>{_num(s50, 2)}</b>" if s50 is not None else "") + "."
        )
        rate = best.get(f"trigger_rate_hz_at_fpr_{f}")
        if rate is not None and trial_rate_hz:
            parts.append(f"On background it triggers at {_hz(rate)} for {_hz(trial_rate_hz)} of traces tested.")
    if base:
        best_b = max(base, key=lambda r: r[f"tpr_at_fpr_{f}"])
        parts.append(
            f"The classical trigger that detects the most, <b>{html.escape(best_b['method'])}</b>, detects "
            f"{_pct(best_b[f'tpr_at_fpr_{f}'])}."
        )
    ref = next((r for r in rows if r["method"] == REFERENCE), None)
    if best is not None:
        key = f"noise_snr50_ratio_to_{REFERENCE}_at_fpr_{f}"
        ratio = best.get(key)
        if ref is not None and ratio is not None:
            parts.append(
                f"In noise without transients, where the matched filter is near-ideal, {html.escape(best['method'])} "
                f"needs {_num(ratio, 2)} times the matched filter's SNR for 50 % efficiency "
                f"(matched filter: SNR {_num(ref.get(f'noise_snr50_at_fpr_{f}'), 2)})."
            )
        other, okey, oname = _best_noise_only(models, f)
        if other is not None and other["method"] != best["method"] and other.get(okey) != best.get(okey):
            figure = _num(other[okey], 2) if "tpr" not in okey else _pct(other[okey])
            mine = best.get(okey)
            parts.append(
                f"In that noise-only comparison another network is better: <b>{html.escape(other['method'])}</b> "
                f"({oname} {figure} against {html.escape(best['method'])}'s "
                f"{DASH if mine is None else (_num(mine, 2) if 'tpr' not in okey else _pct(mine))})."
            )
        fa_m = best.get(f"false_alarm_rate_transient_at_fpr_{f}")
        fa_r = ref.get(f"noise_false_alarm_rate_transient_at_fpr_{f}") if ref is not None else None
        if fa_m is not None and fa_r is not None:
            parts.append(
                f"Of the background traces with a human-made transient, {html.escape(best['method'])} triggers on "
                f"{_pct(fa_m)}; a matched filter with its threshold set on noise-only traces would trigger on "
                f"{_pct(fa_r)} of them."
            )
    return "<p class='lead'>" + " ".join(parts) + "</p>"


def _hz(v: float | None) -> str:
    """A rate in Hz, kHz or MHz."""
    if v is None or not math.isfinite(v):
        return DASH
    for scale, unit in ((1e6, "MHz"), (1e3, "kHz")):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {unit}"
    return f"{v:.3g} Hz"


def _ratio_cell(r: dict[str, Any], rows: list[dict[str, Any]], prefix: str, f: str) -> str:
    ratio = r.get(f"{prefix}snr50_ratio_to_{REFERENCE}_at_fpr_{f}")
    if ratio is not None:
        return _ci(ratio, r.get(f"{prefix}snr50_ratio_interval_to_{REFERENCE}_at_fpr_{f}"), 2)
    ref = next((x for x in rows if x["method"] == REFERENCE), {})
    if ref.get(f"{prefix}tpr_at_fpr_{f}") is not None and ref.get(f"{prefix}snr50_at_fpr_{f}") is None:
        return '<span class="nr">matched filter: not reached</span>'
    return DASH


def _tables(rows: list[dict[str, Any]], fprs: list[float], fpr: float) -> str:
    f = f"{fpr:g}"
    has_noise = any(f"noise_tpr_at_fpr_{f}" in r for r in rows)
    has_ref = any(r["method"] == REFERENCE for r in rows)
    out = []
    # table 1: detection at the working points
    head = ["method", "kind", "AUC"] + [f"TPR at FPR {x:g}" for x in fprs] + [f"SNR 50 % at {f}", f"SNR 90 % at {f}"]
    if has_ref:
        head.append("SNR 50 % / matched filter's")
    body = []
    for r in rows:
        cells = [html.escape(r["method"]), r["kind"], _ci(r["auc"], r.get("auc_interval"))]
        for x in fprs:
            g = f"{x:g}"
            cells.append(_ci(r.get(f"tpr_at_fpr_{g}"), r.get(f"tpr_interval_at_fpr_{g}"), not_reached="n/a"))
        for level in (50, 90):
            if r.get(f"tpr_at_fpr_{f}") is None:
                cells.append("n/a")
            else:
                cells.append(
                    _ci(
                        r.get(f"snr{level}_at_fpr_{f}"),
                        r.get(f"snr{level}_interval_at_fpr_{f}"),
                        2,
                        not_reached="not reached",
                    )
                )
        if has_ref:
            cells.append(_ratio_cell(r, rows, "", f))
        body.append(cells)
    out.append(("Detection with the threshold set on all test background (human-made transients included)", head, body))
    if has_noise:
        head = ["method", f"TPR at FPR {f}", f"SNR 50 % at {f}", f"SNR 90 % at {f}"]
        if has_ref:
            head.append("SNR 50 % / matched filter's")
        head.append("false alarms on transients at this threshold")
        body = []
        for r in rows:
            cells = [
                html.escape(r["method"]),
                _ci(r.get(f"noise_tpr_at_fpr_{f}"), r.get(f"noise_tpr_interval_at_fpr_{f}"), not_reached="n/a"),
            ]
            for level in (50, 90):
                cells.append(
                    _ci(
                        r.get(f"noise_snr{level}_at_fpr_{f}"),
                        r.get(f"noise_snr{level}_interval_at_fpr_{f}"),
                        2,
                        not_reached="not reached" if r.get(f"noise_tpr_at_fpr_{f}") is not None else "n/a",
                    )
                )
            if has_ref:
                cells.append(_ratio_cell(r, rows, "noise_", f))
            cells.append(_pct(r.get(f"noise_false_alarm_rate_transient_at_fpr_{f}")))
            body.append(cells)
        title = (
            "Gaussian-noise comparison: threshold set on noise-only background (galactic, thermal, CW), "
            "pulses in traces without transients"
        )
        out.append((title, head, body))
    # table 3: false alarms and noise-only scores
    head = [
        "method",
        "score",
        f"false alarms on noise only at {f}",
        f"false alarms on transients at {f}",
        "mean score on noise-only traces",
        "mean score on transient traces",
    ]
    body = []
    for r in rows:
        body.append(
            [
                html.escape(r["method"]),
                html.escape(r.get("score_meaning", "")),
                _pct(r.get(f"false_alarm_rate_noise_at_fpr_{f}")),
                _pct(r.get(f"false_alarm_rate_transient_at_fpr_{f}")),
                _num(r.get("mean_score_noise")),
                _num(r.get("mean_score_transient")),
            ]
        )
    out.append(("False alarms by kind of background, and what each method reports on background", head, body))
    # table 4: the models' own working point
    models = [r for r in rows if "card_threshold" in r]
    if models:
        head = [
            "model",
            "threshold (from validation)",
            "test FPR",
            "test TPR",
            "parameters",
            "training time (s)",
            "epochs",
        ]
        body = [
            [
                html.escape(r["method"]),
                _num(r["card_threshold"]),
                _num(r["card_test_fpr"]),
                _num(r["card_test_tpr"]),
                _num(r.get("n_parameters")),
                _num(r.get("train_time_s"), 0),
                _num(r.get("epochs_run")),
            ]
            for r in models
        ]
        title = (
            "The models' own working point (threshold chosen on the validation split, stored in the model card) "
            "applied to the test split"
        )
        out.append((title, head, body))
    parts = []
    for title, head, body in out:
        th = "".join(f"<th>{h}</th>" for h in head)
        tb = "\n".join("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>" for cells in body)
        parts.append(
            f"<h3>{html.escape(title)}</h3>\n<table><thead><tr>{th}</tr></thead><tbody>\n{tb}\n</tbody></table>"
        )
    return "\n".join(parts)


def _table(table_id: str, head: list[str], body: list[list[str]]) -> str:
    th = "".join(f"<th>{h}</th>" for h in head)
    tb = "\n".join("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>" for cells in body)
    return f'<table id="{table_id}"><thead><tr>{th}</tr></thead><tbody>\n{tb}\n</tbody></table>'


def _acquisition_html(acq: dict[str, Any] | None, where: str) -> str:
    if acq is None:
        return ""
    body = [[html.escape(k), html.escape(v)] for k, v in acquisition_text(acq).items()]
    return (
        f'<h2 id="acquisition-title">Acquisition</h2>\n<p>The traces of the test split '
        f"(<code>{html.escape(where)}</code>), as every method saw them:</p>\n"
        + _table("acquisition", ["", "value"], body)
    )


def _training_html(facts: dict[str, dict[str, Any]]) -> str:
    if not facts:
        return ""
    head = [
        "model",
        "training traces (with a pulse)",
        "validation traces",
        "epochs run / maximum",
        "stopped by",
        "training time (s) / limit",
        "best validation AUC (epoch)",
        "validation AUC of the kept model",
    ]
    body = []
    for name, f in facts.items():
        stop = STOP_TEXT[f["stopped_by"]]
        if f["val_auc_rising_at_end"] and f["stopped_by"] != "early_stopping":
            stop += ' <span class="nr">(validation AUC still rising: more epochs would likely help)</span>'
        time_s = _num(f["train_time_s"], 0) + (f" / {_num(f['max_time_s'], 0)}" if f["max_time_s"] else " / no limit")
        if f["over_time_limit_s"]:
            time_s += (
                f' <span class="nr">({_num(f["over_time_limit_s"], 0)} s over: an epoch took longer than the '
                "last ones)</span>"
            )
        auc = DASH if f["best_val_auc"] is None else f"{_num(f['best_val_auc'], 4)} ({f['best_val_auc_epoch']})"
        n_train = DASH if f["n_train"] is None else f"{f['n_train']} ({_num(f['n_train_signal'])})"
        body.append(
            [
                html.escape(name),
                n_train,
                _num(f["n_val"]),
                f"{_num(f['epochs_run'])} / {_num(f['epochs'])}",
                stop,
                time_s,
                auc,
                _num(f["val_auc_kept_model"], 4),
            ]
        )
    return (
        '<h2 id="training-title">Training</h2>\n<p><b>How to read:</b> "stopped by": the epoch limit '
        "(training.epochs), early stopping (no lower validation loss for training.early_stopping_patience "
        "epochs) or the time limit (training.max_time_s: training stops at the batch where it is reached, "
        "and that shortened last epoch is validated and kept). The "
        "model kept is the one of the lowest validation loss; its validation AUC is in the last column.</p>\n"
        + _table("training-facts", head, body)
    )


def _trigger_html(rows: list[dict[str, Any]], fprs: list[float], trial_rate_hz: float, trial_note: str) -> str:
    head = ["method"] + [f"at FPR {x:g}" for x in fprs]
    body = []
    for r in rows:
        cells = [html.escape(r["method"])]
        for x in fprs:
            g = f"{x:g}"
            v, ci = r.get(f"trigger_rate_hz_at_fpr_{g}"), r.get(f"trigger_rate_interval_hz_at_fpr_{g}")
            cells.append(
                "n/a"
                if v is None
                else _hz(v)
                + (f' <span class="ci">[{_hz(ci[0])}, {_hz(ci[1])}]</span>' if ci and None not in ci else "")
            )
        body.append(cells)
    return (
        f"<h3>Trigger rates on background at a trial rate of {_hz(trial_rate_hz)}</h3>\n<p><b>How to read:</b> "
        f"the rate at which each method would trigger on background: the false-positive rate it reaches on the "
        f"test background at each working point times the trial rate, {html.escape(trial_note)}; 68 % "
        "Clopper-Pearson intervals.</p>\n" + _table("trigger-rates", head, body)
    )


def _kinds_html(rows: list[dict[str, Any]], kinds: list[str], f: str) -> str:
    if not kinds:
        return ""
    head = ["method"] + [html.escape(k.replace("_", " ")) for k in kinds]
    body = []
    for r in rows:
        cells = [html.escape(r["method"])]
        for k in kinds:
            c = r.get(f"false_alarms_{k}_at_fpr_{f}")
            cells.append(
                DASH
                if not c or c["rate"] is None
                else f'{_pct(c["rate"])} <span class="ci">({c["false_positives"]} of {c["n"]})</span>'
            )
        body.append(cells)
    return (
        f"<h3>False alarms per kind of human-made transient at FPR {f}</h3>\n<p><b>How to read:</b> the "
        "fraction of the background traces with each kind of transient that trigger at the working point "
        "(threshold set on all test background); lower is better.</p>\n" + _table("kind-false-alarms", head, body)
    )


# -- robustness -------------------------------------------------------------------------------------
IN_DOMAIN = "in-domain test split"


def _robustness_cells(m: dict[str, Any]) -> dict[str, Any]:
    """The figures of one method on one shift that the table and summary.json show."""
    return {
        "auc": m.get("auc"),
        "threshold_noise": m["threshold_noise"].get("threshold"),
        "threshold_noise_available": bool(m["threshold_noise"].get("available")),
        "efficiency_noise": [e["efficiency"] for e in m["efficiency_noise"]],
        "n_pulses_noise": [e["n"] for e in m["efficiency_noise"]],
        "efficiency_all": [e["efficiency"] for e in m["efficiency_all"]],
        "transient_pass_rate": m["transient_pass"]["rate"],
        "n_transient": m["transient_pass"]["n"],
    }


def robustness_summary(
    results: list[dict[str, Any]],
    methods: list[str],
    score_map: dict[str, dict[str, np.ndarray]],
    where: list[str] | None = None,
) -> dict[str, Any]:
    """The report's robustness section (JSON-ready): one entry per shift with the figures of every
    method, the in-domain test split first (from the evaluations' scores), and the skipped shifts."""
    where = where or [r.get("method", "?") for r in results]
    first = results[0]
    fpr, points, width = first["fpr"], list(first["snr_points"]), first.get("snr_bin_width", 1.0)
    for r, w in zip(results, where, strict=True):
        if r["fpr"] != fpr or list(r["snr_points"]) != points or r.get("snr_bin_width", 1.0) != width:
            msg = (
                f"{w}: fpr / snr_points / snr_bin_width ({r['fpr']}, {r['snr_points']}, {r.get('snr_bin_width')}) "
                f"differ from those of {where[0]} ({fpr}, {points}, {width}); run every method with one setting"
            )
            raise CrnnError(msg)
    order = [m for m in methods if any(r["method"] == m for r in results)]
    order += [r["method"] for r in results if r["method"] not in order]
    shifts: dict[str, dict[str, Any]] = {}
    in_domain = {}
    for name in order:
        d = score_map.get(name)
        if d is not None and "has_transient" in d and "snr" in d:
            in_domain[name] = _robustness_cells(
                measure(
                    d["scores"],
                    d["labels"],
                    d["snr"],
                    d["has_transient"],
                    fpr=fpr,
                    snr_points=tuple(points),
                    snr_bin_width=width,
                )
            )
    if in_domain:
        shifts[IN_DOMAIN] = {
            "name": IN_DOMAIN,
            "in_domain": True,
            "description": "the test split of the training data, thresholds on its own noise-only "
            "background (its pulses span simulate.snr_range, so a top bin may be "
            "partly empty)",
            "results": in_domain,
        }
    skipped: dict[str, str] = {}
    for r in sorted(results, key=lambda r: order.index(r["method"])):
        for sh in r["shifts"]:
            entry = shifts.setdefault(
                sh["name"],
                {"name": sh["name"], "in_domain": False, "description": sh.get("description", ""), "results": {}},
            )
            entry["results"][r["method"]] = _robustness_cells(sh)
            entry.setdefault("seed", sh.get("seed"))
            entry.setdefault("n_traces", sh.get("n_traces"))
        for sk in r.get("skipped", []):
            skipped.setdefault(sk["name"], sk["reason"])
    return {
        "fpr": fpr,
        "snr_points": points,
        "snr_bin_width": width,
        "snr_range": first.get("snr_range"),
        "methods": order,
        "shifts": list(shifts.values()),
        "skipped": [{"name": n, "reason": why} for n, why in skipped.items() if n not in shifts],
    }


def _robustness_html(rob: dict[str, Any]) -> str:
    points, methods = rob["snr_points"], rob["methods"]
    head1 = '<th rowspan="2">shift</th>' + "".join(
        f'<th colspan="{len(points) + 1}">{html.escape(m)}</th>' for m in methods
    )
    head2 = "".join("".join(f"<th>SNR {p:g}</th>" for p in points) + "<th>transients passing</th>" for _ in methods)
    body = []
    for sh in rob["shifts"]:
        label = html.escape(sh["name"])
        cells = [f"<td>{'<i>' + label + '</i>' if sh['in_domain'] else label}</td>"]
        for m in methods:
            c = sh["results"].get(m)
            if c is None:
                cells.append(f'<td colspan="{len(points) + 1}">{DASH}</td>')
                continue
            if not c["threshold_noise_available"]:
                cells.extend(["<td>n/a</td>"] * (len(points) + 1))
                continue
            cells.extend(f"<td>{_num(e)}</td>" for e in c["efficiency_noise"])
            cells.append(f"<td>{_pct(c['transient_pass_rate'])}</td>")
        body.append(f'<tr data-shift="{label}">' + "".join(cells) + "</tr>")
    desc = "".join(
        f"<li><b>{html.escape(sh['name'])}</b>: {html.escape(sh.get('description') or '')}"
        + (f" (seed {sh['seed']}, {sh['n_traces']} traces)" if sh.get("seed") is not None else "")
        + "</li>"
        for sh in rob["shifts"]
    )
    skipped = ""
    if rob["skipped"]:
        skipped = (
            '<p id="robustness-skipped"><b>Shifts not run:</b></p><ul>'
            + "".join(f"<li><b>{html.escape(s['name'])}</b>: {html.escape(s['reason'])}</li>" for s in rob["skipped"])
            + "</ul>"
        )
    rng = rob.get("snr_range")
    setting = (
        f"Threshold at FPR {rob['fpr']:g} on each shift's own noise-only background; efficiency in SNR bins "
        f"of width {rob['snr_bin_width']:g} centred on {', '.join(f'{p:g}' for p in points)}"
        + (f"; shift pulses drawn at SNR {rng[0]:g}-{rng[1]:g}" if rng else "")
        + "."
    )
    return (
        f'<h2 id="robustness">Robustness to other detectors</h2>\n<p><b>How to read:</b> '
        f"{html.escape(CAPTIONS['robustness'])} {html.escape(setting)}</p>\n"
        f'<div class="wide"><table id="robustness-table"><thead><tr>{head1}</tr><tr>{head2}</tr></thead><tbody>\n'
        + "\n".join(body)
        + f"\n</tbody></table></div>\n<p><b>Shifts:</b></p><ul>{desc}</ul>{skipped}"
    )


STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1250px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.4em 0 1.2em}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}
th{background:#eee;font-weight:600}.wide{overflow-x:auto;max-width:100%}td:first-child,td:nth-child(2){text-align:left}.ci{color:#777;font-size:.85em}
.nr{color:#a33}.lead{font-size:1.08em;background:#f3f6fb;border-left:4px solid #4a78b5;padding:.6em 1em}
figure{margin:1em 0 2em}figure img{max-width:100%;border:1px solid #ddd}figcaption{max-width:60em;color:#333}
figcaption b{color:#000}details summary{cursor:pointer;font-weight:600;margin:.5em 0}code{background:#f4f4f4}"""


def write_summary_html(
    path: Path,
    rows: list[dict[str, Any]],
    context: dict[str, Any],
    figures: list[tuple[str, str, Path]],
    galleries: list[tuple[str, Path]],
    fprs: list[float],
    fpr: float,
    headline: str,
    robustness_html: str = "",
    facts_html: str = "",
    extra_html: str = "",
) -> None:
    """The page: headline, context, ``facts_html`` (acquisition), the comparison tables, ``extra_html``
    (trigger rates, false alarms per kind, training), robustness, figures and galleries."""
    info = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in context.items())
    figs = []
    for title, caption, p in figures:
        if p.exists():
            figs.append(
                f"<h2>{html.escape(title)}</h2><figure>{_img(p)}<figcaption><b>How to read:</b> "
                f"{html.escape(caption)}</figcaption></figure>"
            )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>crnn run summary</title>
<style>{STYLE}</style></head><body>
<h1>crnn run summary</h1>
{headline}
<ul>{info}</ul>
{facts_html}
<h2>Comparison table</h2>
<p><b>How to read:</b> TPR: fraction of pulses detected when the threshold lets the stated fraction (FPR) of the
background through; the threshold is set on the test background. SNR 50 % / 90 %: the SNR at which the efficiency
reaches 50 % / 90 % at the working point (lower is better; "not reached" inside the simulated SNR range); the ratio
to the matched filter's is 1 for a method as good as the matched filter. Square brackets: 68 % intervals
(bootstrap; "&gt;range" = the upper end is not reached). "n/a": too few background traces for that FPR.
False alarms: fraction of each kind of background that triggers. Mean score on noise-only traces: the "SNR" a
method reports on pure noise (for the networks a probability), needed to compare SNR thresholds across methods.</p>
{_tables(rows, fprs, fpr)}
{extra_html}
{robustness_html}
{"".join(figs)}
@GALLERIES@
</body></html>
"""
    page = page.replace("@GALLERIES@", _gallery_html(galleries, MAX_PAGE_BYTES - len(page.encode())))
    with atomic_output(path) as tmp:
        tmp.write_text(page)


def measured_backgrounds(split_paths: list[str | Path]) -> dict[str, dict[str, int]]:
    """Per split file: traces with a measured background and distinct measured traces (``crnn dataset``'s
    attributes ``n_measured``, ``n_distinct_measured``); splits written without them are left out."""
    out: dict[str, dict[str, int]] = {}
    for p in split_paths:
        try:
            with h5py.File(p, "r") as f:
                attrs = dict(f.attrs)
        except OSError as exc:
            log.warning("%s: cannot read the split's attributes (%s); no measured-background count for it", p, exc)
            continue
        if "n_distinct_measured" not in attrs:
            continue
        split = attrs.get("split", Path(p).stem)
        split = split.decode() if isinstance(split, bytes) else str(split)
        out[split] = {
            "n_measured": int(attrs.get("n_measured", 0)),
            "n_distinct_measured": int(attrs["n_distinct_measured"]),
        }
    return out


def _measured_line(counts: dict[str, dict[str, int]]) -> str:
    if not any(c["n_measured"] for c in counts.values()):
        return "none (simulated noise only)"
    return (
        "; ".join(
            f"{split} {c['n_distinct_measured']} distinct measured traces behind {c['n_measured']} traces"
            for split, c in counts.items()
        )
        + " (each measured trace in one split only)"
    )


def _test_split(dataset: list[str | Path] | None, metrics: list[dict[str, Any]]) -> Path | None:
    """The test split: the ``--dataset`` file whose ``split`` attribute is "test" (or named test.h5),
    else the test file the evaluations name, if it exists."""
    for p in dataset or []:
        try:
            with h5py.File(p, "r") as f:
                split = f.attrs.get("split")
        except OSError:
            continue
        split = split.decode() if isinstance(split, bytes) else split
        if split == "test" or (split is None and Path(p).stem == "test"):
            return Path(p)
    named = metrics[0].get("test_file")
    return Path(named) if named and Path(named).exists() else None


def _card_acquisition(cards: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The acquisition a model was trained for, when the test split cannot be read."""
    c = next(iter(cards.values()), None)
    if not c or "sampling_rate_hz" not in c:
        return None
    rate, n = float(c["sampling_rate_hz"]), int(c["n_samples"])
    band = c.get("band_hz")
    return {
        "sampling_rate_hz": rate,
        "n_samples": n,
        "duration_s": n / rate,
        "n_channels": int(c["n_channels"]),
        "unit": c.get("unit_trained", "?"),
        "n_traces": None,
        "band_hz": list(band) if band else None,
    }


def pulse_breakdown(
    metrics: list[dict[str, Any]],
    score_map: dict[str, dict[str, np.ndarray]],
    meta: dict[str, np.ndarray],
    duration_s: float | None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per method, at its report working point: the efficiency against arrival time (``time_ns``)
    and polarisation angle (``polarisation_deg``), from the test split's per-trace metadata."""
    out: dict[str, dict[str, dict[str, Any]]] = {"time_ns": {}, "polarisation_deg": {}}
    variables = {}
    if "pulse_time_s" in meta and duration_s:
        variables["time_ns"] = (meta["pulse_time_s"] * 1e9, np.linspace(0.0, duration_s * 1e9, N_TIME_BINS + 1))
    if "polarisation_angle_rad" in meta:
        variables["polarisation_deg"] = (polarisation_deg(meta["polarisation_angle_rad"]), POLARISATION_EDGES_DEG)
    for m in metrics:
        d = score_map.get(m["method"])
        if d is None or "report_working_point" not in m:
            continue
        sig = d["labels"] == 1
        passed = d["scores"] > m["report_working_point"]["threshold"]
        for name, (values, edges) in variables.items():
            out[name][m["method"]] = binned_efficiency(values[sig], passed[sig], edges)
    return out


def report(
    metrics_paths: list[str | Path],
    output_dir: str | Path,
    *,
    histories: list[str | Path] | None = None,
    cards: list[str | Path] | None = None,
    robustness: list[str | Path] | None = None,
    dataset: list[str | Path] | None = None,
    settings: ReportSettings | None = None,
) -> Path:
    """Write the summary page and plots. ``dataset``: the split files, for their measured-background
    counts, the acquisition and the per-trace metadata of the test split (default: the test file
    named in the metrics, when it can be read)."""
    from crnn.plots import (
        plot_binned_efficiency,
        plot_confusion,
        plot_efficiency,
        plot_history,
        plot_roc,
        plot_scores,
        plot_snr_levels,
    )

    rs = settings or ReportSettings()
    validate(rs, "report")
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
        m["_path"] = str(p)
        same = next((o for o in metrics if o["method"] == m["method"]), None)
        if same is not None:
            msg = (
                f"{same['_path']} and {p} both name their method {m['method']!r}; method names in a report "
                "must be unique: evaluate again with --name (or train with --name)"
            )
            raise CrnnError(msg)
        metrics.append(m)
    # networks first, then baselines, the matched filter last (the reference)
    metrics.sort(key=lambda m: (m.get("kind") != "model", m["method"] == REFERENCE))
    card_map = {}
    for p in cards or []:
        c = json.loads(Path(p).read_text())
        card_map[c.get("name", Path(p).parent.name)] = c
    hist_map = {Path(p).parent.name: read_history(p) for p in histories or []}
    rob_results = [read_robustness(p) for p in robustness or []]
    fprs = sorted({wp["target_fpr"] for m in metrics for wp in m["working_points"]}, reverse=True)
    wp_fpr = report_fpr(metrics)
    f = f"{wp_fpr:g}"
    score_map = _read_scores(metrics)
    ratios = reference_ratios(metrics, score_map, wp_fpr)
    rows = summary_rows(metrics, card_map, ratios)
    for r, m in zip(rows, metrics, strict=True):
        r["score_meaning"] = m.get("score_meaning", "score")

    # the acquisition, the trial rate and the test split's per-trace metadata
    test_path = _test_split(dataset, metrics)
    acq = acquisition(test_path) if test_path is not None else None
    acq = acq or _card_acquisition(card_map)
    if rs.trial_rate_hz is not None:
        trial, trial_note = float(rs.trial_rate_hz), "as set (report.trial_rate_hz, --trial-rate-hz)"
    elif acq is not None:
        trial = default_trial_rate_hz(acq)
        trial_note = (
            f"that of continuous data cut into back-to-back traces ({acq['sampling_rate_hz'] / 1e6:g} MHz / "
            f"{acq['n_samples']} samples; set report.trial_rate_hz for the rate of traces your trigger "
            "tests)"
        )
    else:
        trial, trial_note = None, ""
    for r, m in zip(rows, metrics, strict=True):
        for wp in m["working_points"]:
            g = f"{wp['target_fpr']:g}"
            if wp.get("available") and trial is not None:
                t = trigger_rate_hz(wp, trial)
                r[f"trigger_rate_hz_at_fpr_{g}"] = t["rate_hz"]
                r[f"trigger_rate_interval_hz_at_fpr_{g}"] = t["interval_hz"]
    first_scores = next(iter(score_map.values()), None)
    meta = test_metadata(test_path, first_scores["labels"]) if test_path is not None and first_scores else {}
    kinds: list[str] = []
    if "transient_kind" in meta:
        codes, names = kind_codes(meta, transient_kind_names(test_path, meta.get("source_id")))
        kinds = list(dict.fromkeys(names.values()))
        for r, m in zip(rows, metrics, strict=True):
            d = score_map.get(m["method"])
            if d is None or "report_working_point" not in m:
                continue
            by_kind = false_alarms_by_kind(
                d["scores"], d["labels"], codes, names, m["report_working_point"]["threshold"]
            )
            for k, c in by_kind.items():
                r[f"false_alarms_{k}_at_fpr_{f}"] = c
    breakdown = pulse_breakdown(metrics, score_map, meta, acq["duration_s"] if acq else None)
    facts = {name: training_facts(card, hist_map.get(name, {})) for name, card in card_map.items()}
    for r in rows:
        if r["method"] in facts:
            r["training"] = facts[r["method"]]

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_roc(metrics, out / "roc.png")
    plot_efficiency(metrics, out / "efficiency.png")
    plot_snr_levels(metrics, out / "snr.png", wp_fpr)
    if score_map:
        thresholds = {
            m["method"]: m["report_working_point"]["threshold"] for m in metrics if "report_working_point" in m
        }
        meaning = {m["method"]: m.get("score_meaning", "score") for m in metrics}
        plot_scores(score_map, out / "scores.png", meaning, thresholds)
    if all("report_working_point" in m for m in metrics):
        plot_confusion(metrics, out / "confusion.png")
    plot_history(hist_map, out / "training.png")
    plot_binned_efficiency(
        [
            (
                "time of the pulse's peak in the trace (ns)",
                f"arrival time; FPR = {f}, threshold on all background",
                breakdown["time_ns"],
            ),
            (
                "polarisation angle (degrees, folded into 0-180)",
                f"polarisation; FPR = {f}, threshold on all background",
                breakdown["polarisation_deg"],
            ),
        ],
        metrics,
        out / "efficiency_arrival_polarisation.png",
    )
    first = metrics[0]
    context = {
        "created (UTC)": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "crnn version": __version__,
        "test file": first.get("test_file"),
        "test traces": (
            f"{first['n_test']} ({first['n_signal']} with a pulse, {first['n_background']} background"
            + (
                f": {first['n_background_noise']} noise only, {first['n_background_transient']} with a "
                "human-made transient"
                if "n_background_noise" in first
                else ""
            )
            + ")"
        ),
        "working point": (
            f"FPR {wp_fpr:g} on the test background"
            + (f" ({first['report_working_point']['note']})" if "report_working_point" in first else "")
        ),
        "SNR": "peak |signal| over channels and samples / RMS of the background (galactic, thermal, CW; no transients)",
        "intervals": f"68.3 %; bootstrap with {first.get('n_bootstrap', 0)} replicates, Clopper-Pearson for rates",
    }
    if trial is not None:
        context["trial rate"] = f"{_hz(trial).replace('&ndash;', '-')}: {trial_note}"
    splits = list(dataset) if dataset else [first["test_file"]] if first.get("test_file") else []
    measured = measured_backgrounds(splits)
    if measured:
        context["measured backgrounds"] = _measured_line(measured)
    figures = [
        ("ROC", CAPTIONS["roc"], out / "roc.png"),
        ("Efficiency vs SNR", CAPTIONS["efficiency"], out / "efficiency.png"),
        ("SNR at 50 % and 90 % efficiency", CAPTIONS["snr"], out / "snr.png"),
        (
            "Efficiency vs arrival time and polarisation",
            CAPTIONS["efficiency_arrival_polarisation"],
            out / "efficiency_arrival_polarisation.png",
        ),
        ("Score distributions", CAPTIONS["scores"], out / "scores.png"),
        ("Confusion matrices at the working point", CAPTIONS["confusion"], out / "confusion.png"),
        ("Training curves", CAPTIONS["training"], out / "training.png"),
    ]
    # the networks' galleries, then the matched filter's (the reference), then the other baselines'
    ordered = sorted(metrics, key=lambda m: (m.get("kind") != "model", m["method"] != REFERENCE))
    galleries = [(m["method"], Path(m["_dir"]) / "gallery.png") for m in ordered]
    summary: dict[str, Any] = {
        "format": "crnn-summary/1",
        "context": context,
        "working_point_fpr": wp_fpr,
        "acquisition": acq,
        "trial_rate_hz": trial,
        "transient_kinds": kinds,
        "efficiency_by_pulse": breakdown,
        "rows": rows,
    }
    rob_html = ""
    if rob_results:
        summary["robustness"] = robustness_summary(
            rob_results, [m["method"] for m in metrics], score_map, [str(p) for p in robustness or []]
        )
        rob_html = _robustness_html(summary["robustness"])
    extra = (
        (_trigger_html(rows, fprs, trial, trial_note) if trial is not None else "")
        + _kinds_html(rows, kinds, f)
        + _training_html(facts)
    )
    write_summary_html(
        out / "summary.html",
        rows,
        context,
        figures,
        galleries,
        fprs,
        wp_fpr,
        _headline(metrics, rows, wp_fpr, trial),
        rob_html,
        facts_html=_acquisition_html(acq, str(test_path or "model card")),
        extra_html=extra,
    )
    summary["measured_backgrounds"] = measured
    write_json(out / "summary.json", summary)
    _log_summary(rows, facts, acq, wp_fpr, trial, out / "summary.html")
    return out / "summary.html"


def _log_summary(
    rows: list[dict[str, Any]],
    facts: dict[str, dict[str, Any]],
    acq: dict[str, Any] | None,
    fpr: float,
    trial: float | None,
    page: Path,
) -> None:
    """One readable line per method and model, then where the page is."""
    f = f"{fpr:g}"
    if acq is not None:
        log.info("acquisition: %s", "; ".join(f"{k} {v}" for k, v in acquisition_text(acq).items()))
    for r in rows:
        tpr, s50, ratio = (
            r.get(f"tpr_at_fpr_{f}"),
            r.get(f"snr50_at_fpr_{f}"),
            r.get(f"noise_snr50_ratio_to_{REFERENCE}_at_fpr_{f}"),
        )
        rate = r.get(f"trigger_rate_hz_at_fpr_{f}")
        log.info(
            "%s (%s): AUC %.4f; at FPR %s: TPR %s, SNR 50 %% %s%s%s",
            r["method"],
            r["kind"],
            r["auc"],
            f,
            "n/a" if tpr is None else f"{tpr:.3f}",
            "not reached" if s50 is None else f"{s50:.2f}",
            "" if ratio is None else f", noise-only SNR 50 % / matched filter's {ratio:.2f}",
            "" if rate is None or trial is None else f", trigger rate {_hz(rate)} at {_hz(trial)} trials",
        )
    for name, fa in facts.items():
        log.info("training of %s: %s", name, training_text(fa))
    log.info("summary page: %s", page.resolve())


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics", nargs="+", required=True, help="metrics.json files from crnn evaluate")
    p.add_argument("--history", nargs="*", default=[], help="history.csv files from crnn train")
    p.add_argument("--card", nargs="*", default=[], help="model cards (model.card.json)")
    p.add_argument("--robustness", nargs="*", default=[], help="robustness JSON files from crnn robustness")
    p.add_argument(
        "--dataset",
        nargs="*",
        default=[],
        help="split files of crnn dataset, for how many distinct measured backgrounds each holds, the "
        "acquisition and the test split's per-trace metadata (default: the test file named in the "
        "metrics)",
    )
    p.add_argument(
        "--trial-rate-hz",
        type=float,
        help="traces the trigger tests per second, for the trigger rates in Hz (default: sampling rate / "
        "trace length, continuous data in back-to-back traces)",
    )
    p.add_argument("--output-dir", "-o", required=True, help="folder for summary.html and plots")


#: the files `crnn report` writes into its output folder
REPORT_FILES = (
    "roc.png",
    "efficiency.png",
    "snr.png",
    "scores.png",
    "confusion.png",
    "training.png",
    "efficiency_arrival_polarisation.png",
    "summary.html",
    "summary.json",
)


def run(args: argparse.Namespace) -> None:
    beside = [
        (f"--metrics {p} ({name})", Path(p).with_name(name))
        for p in args.metrics
        for name in ("scores.h5", "gallery.png")
    ]
    inputs = [
        *(("--metrics", p) for p in args.metrics),
        *beside,
        *(("--history", p) for p in args.history),
        *(("--card", p) for p in args.card),
        *(("--robustness", p) for p in args.robustness),
        *(("--dataset", p) for p in args.dataset),
    ]
    refuse_aliases(inputs, folder_outputs("--output-dir", args.output_dir, REPORT_FILES))
    check_value(args.trial_rate_hz, "report.trial_rate_hz", "--trial-rate-hz")
    check_outputs(folders=[("--output-dir", args.output_dir)])
    report(
        args.metrics,
        args.output_dir,
        histories=args.history,
        cards=args.card,
        robustness=args.robustness,
        dataset=args.dataset,
        settings=ReportSettings(trial_rate_hz=args.trial_rate_hz),
    )


if __name__ == "__main__":
    from crnn.cli import stage_main

    stage_main("report")
