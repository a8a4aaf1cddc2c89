"""Matplotlib figures for evaluation and the report (Agg backend, PNG, written atomically).

Every method keeps one colour and line style in every figure: trained models solid and coloured,
classical baselines grey or brown and dashed, the matched filter (the Gaussian-noise reference)
black.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator
from PIL import Image

from crnn.fileutil import atomic_output

BASELINE_STYLE = {
    "amplitude": {"color": "0.6", "linestyle": ":"},
    "envelope": {"color": "0.35", "linestyle": "--"},
    "power": {"color": "#a0522d", "linestyle": "-."},
    "matched_filter": {"color": "black", "linestyle": (0, (6, 2))},
}
MODEL_COLORS = ("C0", "C3", "C2", "C4", "C1", "C9", "C6", "C8")
WP_LABEL = {
    "working_points": "threshold on all background",
    "working_points_noise": "threshold on noise-only background",
}


def method_style(method: str, kind: str = "model", index: int = 0) -> dict[str, Any]:
    """Colour and line style of a method, the same in every figure."""
    if method in BASELINE_STYLE:
        return dict(BASELINE_STYLE[method])
    return {"color": MODEL_COLORS[index % len(MODEL_COLORS)], "linestyle": "-"}


def styles(metrics: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    i = 0
    for m in metrics:
        out[m["method"]] = method_style(m["method"], m.get("kind", "model"), i)
        if m["method"] not in BASELINE_STYLE:
            i += 1
    return out


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    """PNG with a 256-colour palette: a third of the size of matplotlib's RGBA output, so that the
    summary page, which embeds the plots, stays well below the 2 MB that browsers allow for the
    data URL under which the Snakemake report shows it."""
    buf = io.BytesIO()
    fig.savefig(buf, dpi=110, bbox_inches="tight", format="png", facecolor="white")
    plt.close(fig)
    buf.seek(0)
    with Image.open(buf) as im, atomic_output(path) as tmp:
        Path(tmp).write_bytes(_palette_png(im))
    return Path(path)


def _palette_png(im: Image.Image) -> bytes:
    out = io.BytesIO()
    im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        out, format="PNG", optimize=True
    )
    return out.getvalue()


def shrink_png(data: bytes, max_bytes: int, min_width_px: int) -> bytes | None:
    """``data`` (a PNG) if it has at most ``max_bytes``, else the image scaled down until it fits;
    None where it would have to be narrower than ``min_width_px``."""
    if len(data) <= max_bytes:
        return data
    with Image.open(io.BytesIO(data)) as im:
        rgb = im.convert("RGB")
    width, height = rgb.size
    scale = math.sqrt(max_bytes / len(data))  # a PNG's size goes roughly with its area
    while (new_width := int(width * scale)) >= min_width_px:
        small = rgb.resize((new_width, max(1, round(height * new_width / width))), Image.Resampling.LANCZOS)
        out = _palette_png(small)
        if len(out) <= max_bytes:
            return out
        scale *= 0.85
    return None


def _finite(v: Any) -> float | None:
    """``v`` as a float, or None where it is missing or not finite (NaN, inf)."""
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _ci(values: Sequence[float | None] | None) -> str:
    if not values or len(values) != 2 or _finite(values[0]) is None or _finite(values[1]) is None:
        return ""
    return f" [{values[0]:.3f}, {values[1]:.3f}]"


def _error_lengths(value: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Non-negative error-bar lengths below and above ``value`` (0 where a bound is unknown). An
    interval that excludes its estimate is drawn by :func:`_interval` instead of these."""
    below = np.nan_to_num(value - lower, nan=0.0)
    above = np.nan_to_num(upper - value, nan=0.0)
    return np.stack([np.clip(below, 0, None), np.clip(above, 0, None)])


def _label(m: Mapping[str, Any]) -> str:
    auc = _finite(m.get("auc"))
    return f"{m['method']} (AUC {'n/a' if auc is None else f'{auc:.3f}'}{_ci(m.get('auc_interval'))})"


def _arr(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def plot_roc(metrics: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """ROC: signal efficiency vs false-positive rate on background, log FPR axis, bootstrap bands."""
    st = styles(metrics)
    fig, ax = plt.subplots(figsize=(7, 5))
    for m in metrics:
        fpr = np.asarray(m["roc"]["fpr"])
        tpr = np.asarray(m["roc"]["tpr"])
        keep = fpr > 0
        ax.plot(fpr[keep], tpr[keep], label=_label(m), drawstyle="steps-post", **st[m["method"]])
        if "tpr_lower" in m["roc"]:
            lo, hi = np.asarray(m["roc"]["tpr_lower"]), np.asarray(m["roc"]["tpr_upper"])
            ax.fill_between(
                fpr[keep], lo[keep], hi[keep], step="post", color=st[m["method"]]["color"], alpha=0.18, lw=0
            )
    n_bg = max(m["n_background"] for m in metrics)
    ax.axvline(1 / n_bg, color="0.8", lw=0.8)
    ax.text(1 / n_bg, 1.0, " 1 / n_background", color="0.5", fontsize=7, va="top")
    for f in sorted({wp["target_fpr"] for m in metrics for wp in m["working_points"]}):
        if f >= 1 / n_bg:
            ax.axvline(f, color="0.6", lw=0.8, ls=":")
            ax.text(
                f, 1.0, f"{f:g}", color="0.4", fontsize=7, ha="center", va="bottom", transform=ax.get_xaxis_transform()
            )
    ax.set_xscale("log")
    ax.set_xlim(max(1e-5, 0.5 / n_bg), 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false-positive rate (fraction of background traces that trigger)")
    ax.set_ylabel("true-positive rate (fraction of pulses detected)")
    ax.set_title(f"ROC on the test split ({metrics[0]['n_signal']} pulses, {n_bg} background traces)", pad=14)
    ax.grid(alpha=0.3, which="major")
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        fontsize=8,
        title="method (AUC [68 % CI])",
        title_fontsize=8,
        frameon=False,
    )
    return _save(fig, path)


def _targets(metrics: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    return sorted({wp["target_fpr"] for m in metrics for wp in m.get(key, []) if wp.get("available")}, reverse=True)


def plot_efficiency(metrics: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Efficiency vs SNR with 68 % binomial intervals: one column per working point; the second row
    (when the test file marks transients) with thresholds set on the noise-only background."""
    st = styles(metrics)
    keys = ["working_points"] + (["working_points_noise"] if any("working_points_noise" in m for m in metrics) else [])
    targets = _targets(metrics, "working_points") or [None]
    fig, axes = plt.subplots(
        len(keys), len(targets), figsize=(5.0 * len(targets), 4.0 * len(keys)), squeeze=False, sharey=True
    )
    for r, key in enumerate(keys):
        for ax, target in zip(axes[r], targets, strict=True):
            for m in metrics:
                wp = next((w for w in m.get(key, []) if w["target_fpr"] == target), None)
                if wp is None or not wp.get("available"):
                    continue
                e = wp["efficiency_vs_snr"]
                centre = (np.asarray(e["snr_low"]) + np.asarray(e["snr_high"])) / 2
                eff, lo, hi = _arr(e["efficiency"]), _arr(e["lower"]), _arr(e["upper"])
                ok = (np.asarray(e["n"]) > 0) & np.isfinite(eff)  # empty bins have no efficiency
                ax.errorbar(
                    centre[ok],
                    eff[ok],
                    yerr=_error_lengths(eff[ok], lo[ok], hi[ok]),
                    marker="o",
                    ms=2.5,
                    capsize=1.5,
                    lw=1.2,
                    elinewidth=0.8,
                    label=m["method"],
                    **st[m["method"]],
                )
            for level in (0.5, 0.9):
                ax.axhline(level, color="0.75", lw=0.7, zorder=0)
            what = WP_LABEL[key] + ("" if key == "working_points" else ";\npulses in traces without transients")
            ax.set_title(f"FPR = {target:g}, {what}" if target else what, fontsize=9)
            ax.set_xlabel("SNR (peak |signal| / noise RMS)")
            ax.set_ylim(-0.02, 1.05)
            ax.grid(alpha=0.3)
        axes[r][0].set_ylabel("efficiency (fraction of pulses detected)")
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.tight_layout()
    if handles:
        fig.legend(
            handles,
            labels,
            loc="upper left",
            bbox_to_anchor=(1.0, 0.97),
            fontsize=8,
            frameon=False,
            title="method",
            title_fontsize=8,
        )
    return _save(fig, path)


def plot_binned_efficiency(
    panels: Sequence[tuple[str, str, Mapping[str, Mapping[str, Any]]]],
    metrics: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
) -> Path:
    """Efficiency in bins of a pulse property, one panel per property: ``panels`` holds (x label,
    title, {method: :func:`crnn.metrics.binned_efficiency` result}); 68 % intervals as error bars,
    empty bins left out."""
    st = styles(metrics)
    fig, axes = plt.subplots(
        1, max(len(panels), 1), figsize=(5.2 * max(len(panels), 1), 3.9), squeeze=False, sharey=True
    )
    for ax, (xlabel, title, curves) in zip(axes[0], panels, strict=False):
        for method, e in curves.items():
            centre = (np.asarray(e["low"]) + np.asarray(e["high"])) / 2
            eff, lo, hi = _arr(e["efficiency"]), _arr(e["lower"]), _arr(e["upper"])
            ok = (np.asarray(e["n"]) > 0) & np.isfinite(eff)
            ax.errorbar(
                centre[ok],
                eff[ok],
                yerr=_error_lengths(eff[ok], lo[ok], hi[ok]),
                marker="o",
                ms=2.5,
                capsize=1.5,
                lw=1.2,
                elinewidth=0.8,
                label=method,
                **st.get(method, {}),
            )
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylim(-0.02, 1.05)
        ax.grid(alpha=0.3)
        if not curves:
            ax.text(0.5, 0.5, "not recorded in the test split", ha="center", transform=ax.transAxes)
    axes[0][0].set_ylabel("efficiency (fraction of pulses detected)")
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.tight_layout()
    if handles:
        fig.legend(
            handles,
            labels,
            loc="upper left",
            bbox_to_anchor=(1.0, 0.95),
            fontsize=8,
            frameon=False,
            title="method",
            title_fontsize=8,
        )
    return _save(fig, path)


def _interval(ax: Any, lo: float, hi: float, y: float, color: Any) -> None:
    """A horizontal interval [lo, hi] with end caps at height ``y``; it need not contain the
    estimate (a bootstrap interval of a quantity like the SNR at 50 % efficiency may not)."""
    ax.plot([lo, hi], [y, y], color=color, lw=1.0)
    ax.plot([lo, hi], [y, y], color=color, ls="", marker="|", ms=5)


def plot_snr_levels(
    metrics: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], working_point_fpr: float
) -> Path:
    """SNR at which each method reaches 50 % and 90 % efficiency at the report's working point, with
    68 % bootstrap intervals, for both ways of setting the threshold."""
    st = styles(metrics)
    keys = ["working_points"] + (["working_points_noise"] if any("working_points_noise" in m for m in metrics) else [])
    fig, axes = plt.subplots(
        1, len(keys), figsize=(5.5 * len(keys), 0.45 * len(metrics) + 1.8), squeeze=False, sharey=True
    )
    names = [m["method"] for m in metrics]
    y = np.arange(len(names))[::-1]
    x_max = 0.0
    for ax, key in zip(axes[0], keys, strict=True):
        for yi, m in zip(y, metrics, strict=True):
            wp = next((w for w in m.get(key, []) if w.get("available") and w["target_fpr"] == working_point_fpr), None)
            if wp is None:
                ax.text(
                    0.02,
                    yi,
                    "FPR not available (too few background traces)",
                    fontsize=7,
                    va="center",
                    color="0.4",
                    transform=ax.get_yaxis_transform(),
                )
                continue
            edges = [_finite(x) for x in wp.get("efficiency_vs_snr", {}).get("snr_high", [])]
            edges_hi = max((x for x in edges if x is not None), default=None)
            if edges_hi is None:
                ax.text(
                    0.02, yi, "no SNR bins", fontsize=7, va="center", color="0.4", transform=ax.get_yaxis_transform()
                )
                continue
            x_max = max(x_max, edges_hi)
            for level, marker, off in ((50, "o", 0.12), (90, "s", -0.12)):
                v = _finite(wp.get(f"snr_{level}"))
                ci = wp.get(f"snr_{level}_interval") or [None, None]
                lo, hi = (_finite(ci[0]), _finite(ci[1])) if len(ci) == 2 else (None, None)
                color = st[m["method"]]["color"]
                if v is None:
                    ax.annotate(
                        "",
                        xy=(edges_hi + 0.6, yi + off),
                        xytext=(edges_hi, yi + off),
                        arrowprops={"arrowstyle": "->", "color": color, "lw": 1},
                    )
                    continue
                if hi is not None:
                    _interval(ax, v if lo is None else lo, hi, yi + off, color)
                else:  # the upper end lies beyond the SNR range: a dotted arrow from the lower end
                    start = v if lo is None else lo
                    ax.plot([start], [yi + off], color=color, ls="", marker="|", ms=5)
                    ax.annotate(
                        "",
                        xy=(edges_hi + 0.6, yi + off),
                        xytext=(start, yi + off),
                        arrowprops={"arrowstyle": "->", "color": color, "lw": 0.8, "ls": ":"},
                    )
                ax.plot([v], [yi + off], marker=marker, color=color, ms=5, ls="", mfc=color if level == 50 else "white")
        ax.set_title(f"FPR = {working_point_fpr:g}, {WP_LABEL[key]}", fontsize=9)
        ax.set_xlabel("SNR (peak |signal| / noise RMS)")
        ax.grid(alpha=0.3, axis="x")
    axes[0][0].set_yticks(y, names)
    for ax in axes[0]:
        ax.set_ylim(-0.6, len(names) - 0.4)
        if x_max:
            ax.set_xlim(left=max(0.0, min(ax.get_xlim()[0], 2.0)), right=x_max + 1.0)
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker="o", color="k", ls="", label="50 % efficiency"),
        Line2D([], [], marker="s", color="k", mfc="white", ls="", label="90 % efficiency"),
        Line2D([], [], marker=r"$\rightarrow$", color="k", ls="", ms=10, label="not reached in the SNR range"),
    ]
    fig.tight_layout()
    fig.legend(handles=handles, fontsize=7.5, loc="upper left", bbox_to_anchor=(1.0, 0.95), frameon=False)
    return _save(fig, path)


def plot_scores(
    scores: Mapping[str, Mapping[str, np.ndarray]],
    path: str | os.PathLike[str],
    meaning: Mapping[str, str] | None = None,
    thresholds: Mapping[str, float] | None = None,
) -> Path:
    """Score distributions of pulses and of background (noise only / with a transient), one panel per method.

    ``scores[name]`` holds ``scores``, ``labels`` and optionally ``has_transient``.
    """
    names = list(scores)
    ncol = min(3, len(names))
    nrow = -(-len(names) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 3.5 * nrow), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        d = scores[name]
        s, y = np.asarray(d["scores"], dtype=float), np.asarray(d["labels"])
        lo, hi = np.min(s), np.max(s)
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 60)
        tr = d.get("has_transient")
        if tr is not None:
            tr = np.asarray(tr)
            ax.hist(
                s[(y == 0) & (tr == 0)],
                bins=bins,
                histtype="step",
                label="background: noise only",
                color="C0",
                log=True,
            )
            ax.hist(
                s[(y == 0) & (tr == 1)],
                bins=bins,
                histtype="step",
                label="background: with transient",
                color="C1",
                log=True,
            )
            if np.any((y == 0) & (tr != 0) & (tr != 1)):
                ax.hist(
                    s[(y == 0) & (tr != 0) & (tr != 1)],
                    bins=bins,
                    histtype="step",
                    color="0.6",
                    log=True,
                    label="background: unknown",
                )
        else:
            ax.hist(s[y == 0], bins=bins, histtype="step", label="background", color="C0", log=True)
        ax.hist(s[y == 1], bins=bins, histtype="step", label="with a pulse", color="C3", log=True)
        if thresholds and name in thresholds:
            ax.axvline(thresholds[name], color="k", lw=0.8, ls="--", label="working-point threshold")
        ax.set_title(name)
        ax.set_xlabel((meaning or {}).get(name, "score"))
        ax.set_ylabel("traces")
        ax.legend(fontsize=6.5)
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion(metrics: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Confusion matrix of every method at the report's working point, background split by kind."""
    ncol = min(3, len(metrics))
    nrow = -(-len(metrics) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.4 * ncol, 2.9 * nrow), squeeze=False)
    for ax, m in zip(axes.flat, metrics, strict=False):
        wp = m["report_working_point"]
        c = wp["confusion"]
        rows = [("pulse", c["fn"], c["tp"])]
        fa = wp.get("false_alarms", {})
        if "noise" in fa and "transient" in fa:
            for kind, label in (("noise", "noise only"), ("transient", "transient")):
                n, k = fa[kind]["n"], fa[kind]["false_positives"]
                rows.append((f"background:\n{label}", n - k, k))
            n_unknown = fa["all"]["n"] - fa["noise"]["n"] - fa["transient"]["n"]
            if n_unknown:
                k_unknown = (
                    fa["all"]["false_positives"] - fa["noise"]["false_positives"] - fa["transient"]["false_positives"]
                )
                rows.append(("background:\nunknown", n_unknown - k_unknown, k_unknown))
        else:
            rows.append(("background", c["tn"], c["fp"]))
        counts = np.array([[r[1], r[2]] for r in rows], dtype=float)
        frac = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        # colour: green where the decision is right, red where wrong, intensity = row fraction
        good = np.zeros_like(frac, dtype=bool)
        good[0, 1] = True
        good[1:, 0] = True
        rgb = np.ones((*frac.shape, 3))
        rgb[good] = 1 - frac[good][:, None] * np.array([0.55, 0.2, 0.55])
        rgb[~good] = 1 - frac[~good][:, None] * np.array([0.1, 0.6, 0.6])
        ax.imshow(rgb, aspect="auto")
        for i in range(len(rows)):
            for j in range(2):
                ax.text(j, i, f"{int(counts[i, j])}\n({100 * frac[i, j]:.1f} %)", ha="center", va="center", fontsize=8)
        ax.set_xticks([0, 1], ["no trigger", "trigger"])
        ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
        ax.set_title(f"{m['method']}: FPR {wp['fpr']:.1e}, threshold {wp['threshold']:.3g}", fontsize=9)
    for ax in axes.flat[len(metrics) :]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)


def plot_history(histories: Mapping[str, Mapping[str, list[float]]], path: str | os.PathLike[str]) -> Path:
    """Training curves: loss and AUC per epoch, training and validation."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, (name, h) in enumerate(histories.items()):
        epochs = np.arange(1, len(h.get("loss", [])) + 1)
        color = MODEL_COLORS[i % len(MODEL_COLORS)]
        axes[0].plot(epochs, h.get("loss", []), color=color, label=f"{name} train")
        if "val_loss" in h:
            axes[0].plot(epochs, h["val_loss"], color=color, linestyle="--", label=f"{name} validation")
        if "auc" in h:
            axes[1].plot(epochs, h["auc"], color=color, label=f"{name} train")
        if "val_auc" in h:
            axes[1].plot(epochs, h["val_auc"], color=color, linestyle="--", label=f"{name} validation")
    axes[0].axhline(np.log(2), color="0.7", lw=0.8)
    axes[0].text(1, np.log(2), "chance (ln 2)", color="0.5", fontsize=7, va="bottom")
    axes[0].set_ylabel("binary cross-entropy")
    axes[1].set_ylabel("ROC AUC")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if not histories:
        axes[0].text(0.5, 0.5, "no trained models", ha="center", transform=axes[0].transAxes)
    return _save(fig, path)


def gallery_examples(
    labels: np.ndarray,
    scores: np.ndarray,
    snr: np.ndarray,
    threshold: float,
    has_transient: np.ndarray | None,
    per_row: int = 3,
) -> list[tuple[str, list[int]]]:
    """Rows of example traces: (title, trace indices). Hits at the lowest SNR, misses at the highest
    SNR, and the highest-scoring background traces that trigger (with a transient / noise only)."""
    passed = scores > threshold
    sig = labels == 1
    q = np.where(np.isfinite(snr), snr, -np.inf)
    hits = np.nonzero(sig & passed)[0]
    hits = hits[np.argsort(q[hits], kind="stable")][:per_row]
    misses = np.nonzero(sig & ~passed)[0]
    misses = misses[np.argsort(-np.where(np.isfinite(snr[misses]), snr[misses], -np.inf), kind="stable")][:per_row]
    rows = [
        ("hits: detected pulses of the lowest SNR", hits.tolist()),
        ("misses: undetected pulses of the highest SNR", misses.tolist()),
    ]
    bg = (labels == 0) & passed
    if has_transient is not None:
        groups = [
            ("false alarms on human-made transients", bg & (has_transient == 1)),
            ("false alarms on noise only (galactic, thermal, CW)", bg & (has_transient == 0)),
        ]
    else:
        groups = [("false alarms (background that triggers)", bg)]
    for title, mask in groups:
        idx = np.nonzero(mask)[0]
        rows.append((title, idx[np.argsort(-scores[idx], kind="stable")][:per_row].tolist()))
    return rows


def plot_gallery(data: Any, scores: np.ndarray, metrics: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Example traces of one method at the report's working point: hits, misses, false alarms."""
    wp = metrics["report_working_point"]
    labels = np.asarray(data.labels).astype(int)
    snr = data.meta["snr"].astype(float) if "snr" in data.meta else np.full(len(labels), np.nan)
    tr = data.meta["has_transient"].astype(int) if "has_transient" in data.meta else None
    rows = gallery_examples(labels, np.asarray(scores, dtype=float), snr, wp["threshold"], tr)
    fs = data.sampling_rate_hz
    t_us = np.arange(data.n_samples) / fs * 1e6
    fig, axes = plt.subplots(len(rows), 3, figsize=(13, 2.3 * len(rows)), squeeze=False, sharex=True)
    for r, (title, idx) in enumerate(rows):
        for c in range(3):
            ax = axes[r][c]
            if c >= len(idx):
                ax.text(
                    0.5,
                    0.5,
                    "none at this working point",
                    ha="center",
                    va="center",
                    color="0.5",
                    transform=ax.transAxes,
                    fontsize=8,
                )
                ax.set_yticks([])
                continue
            i = idx[c]
            x = data.traces[i].astype(float)
            rms = float(data.meta["noise_rms"][i]) if "noise_rms" in data.meta else np.nan
            if not np.isfinite(rms) or rms <= 0:  # e.g. ingested traces: the trace's own RMS
                rms = float(np.sqrt(np.mean(x**2))) or 1.0
            for ch in range(x.shape[0]):
                ax.plot(t_us, x[ch] / rms, lw=0.6, color=f"C{ch}", label=f"channel {ch}")
            if "pulse_time_s" in data.meta and np.isfinite(data.meta["pulse_time_s"][i]):
                ax.axvline(
                    data.meta["pulse_time_s"][i] * 1e6, color="k", lw=0.9, ls="--", alpha=0.7, label="true pulse time"
                )
            what = f"SNR {snr[i]:.1f}" if labels[i] == 1 else "background"
            if tr is not None and tr[i] == 1:
                what += ", transient"
            ax.set_title(f"#{i}: {what}, score {scores[i]:.3g}", fontsize=8)
            ax.grid(alpha=0.25)
            if r == 0 and c == 0:
                ax.legend(fontsize=6, loc="upper right")
        axes[r][0].set_ylabel("amplitude / noise RMS", fontsize=8)
        axes[r][0].annotate(title, xy=(0, 1.22), xycoords="axes fraction", fontsize=9.5, fontweight="bold")
    for ax in axes[-1]:
        ax.set_xlabel("time (us)")
    fig.suptitle(
        f"{metrics['method']}: example traces at FPR {wp['fpr']:.1e} (threshold {wp['threshold']:.3g} on "
        f"{metrics.get('score_meaning', 'score')})",
        fontsize=10.5,
        y=1.0,
    )
    fig.tight_layout()
    return _save(fig, path)
