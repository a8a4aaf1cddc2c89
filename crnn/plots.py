"""Matplotlib figures for evaluation and the report (Agg backend, PNG, written atomically)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from crnn.fileutil import atomic_output

STYLE = {"envelope": {"color": "0.35", "linestyle": "--"}}


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return Path(path)


def _label(m: dict[str, Any]) -> str:
    return f"{m['method']} (AUC {m['auc']:.3f})"


def plot_roc(metrics: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """ROC: signal efficiency vs false-positive rate on background, log FPR axis."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for m in metrics:
        fpr = np.asarray(m["roc"]["fpr"])
        tpr = np.asarray(m["roc"]["tpr"])
        keep = fpr > 0
        ax.plot(fpr[keep], tpr[keep], label=_label(m), **STYLE.get(m["method"], {}))
    n_bg = max(m["n_background"] for m in metrics)
    ax.axvline(1 / n_bg, color="0.8", lw=0.8)
    ax.text(1 / n_bg, 0.02, " 1 / n_background", color="0.5", fontsize=7)
    ax.set_xscale("log")
    ax.set_xlim(max(1e-5, 0.5 / n_bg), 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false-positive rate (fraction of background traces)")
    ax.set_ylabel("true-positive rate (signal efficiency)")
    ax.set_title("ROC on the test split")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_efficiency(metrics: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Efficiency vs SNR, one panel per working point, with 68 % binomial intervals."""
    targets = sorted({wp["target_fpr"] for m in metrics for wp in m["working_points"]}, reverse=True)
    fig, axes = plt.subplots(1, len(targets), figsize=(5.2 * len(targets), 4.2), squeeze=False, sharey=True)
    for ax, target in zip(axes[0], targets, strict=True):
        for m in metrics:
            wp = next((w for w in m["working_points"] if w["target_fpr"] == target), None)
            if wp is None or not wp.get("available"):
                continue
            e = wp["efficiency_vs_snr"]
            centre = (np.asarray(e["snr_low"]) + np.asarray(e["snr_high"])) / 2
            eff = np.array([np.nan if v is None else v for v in e["efficiency"]])
            lo = np.array([np.nan if v is None else v for v in e["lower"]])
            hi = np.array([np.nan if v is None else v for v in e["upper"]])
            ok = np.asarray(e["n"]) > 0
            ax.errorbar(
                centre[ok], eff[ok], yerr=[eff[ok] - lo[ok], hi[ok] - eff[ok]], marker="o", ms=3, capsize=2,
                label=f"{m['method']} (FPR {wp['fpr']:.1e})", **STYLE.get(m["method"], {}),
            )
        ax.set_title(f"working point: FPR = {target:g}")
        ax.set_xlabel("SNR (peak |signal| / noise RMS)")
        ax.set_ylim(-0.02, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    axes[0][0].set_ylabel("efficiency (fraction of pulses detected)")
    return _save(fig, path)


def plot_scores(
    scores: dict[str, tuple[np.ndarray, np.ndarray]], path: str | os.PathLike[str]
) -> Path:
    """Score distributions of signal and background, one panel per method."""
    names = list(scores)
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        s, y = scores[name]
        bins = np.linspace(np.min(s), np.max(s), 60)
        ax.hist(s[y == 0], bins=bins, histtype="step", label="background", color="C0", log=True)
        ax.hist(s[y == 1], bins=bins, histtype="step", label="signal", color="C3", log=True)
        ax.set_title(name)
        ax.set_xlabel("score" if name != "envelope" else "max envelope / noise RMS")
        ax.set_ylabel("traces")
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_history(histories: dict[str, dict[str, list[float]]], path: str | os.PathLike[str]) -> Path:
    """Training curves: loss and AUC per epoch, training and validation."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, (name, h) in enumerate(histories.items()):
        epochs = np.arange(1, len(h.get("loss", [])) + 1)
        color = f"C{i}"
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
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)
