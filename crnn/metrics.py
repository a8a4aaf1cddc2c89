"""Detection metrics: ROC, AUC, thresholds at fixed false-positive rates, efficiency vs SNR.

A working point is a target false-positive rate (FPR) on background traces. The threshold is
the (k+1)-th largest background score with k = floor(FPR * n_background); a trace is "detected"
when its score is strictly above the threshold, so at most k background traces pass. When
fewer than one background trace would be allowed (n_background * FPR < 1) the statistics do
not allow that working point and it is reported as unavailable.

Efficiencies carry central 68.3 % Clopper-Pearson (exact binomial) intervals.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import roc_auc_score, roc_curve

CONFIDENCE = 0.683


def threshold_at_fpr(background_scores: np.ndarray, fpr: float) -> float | None:
    """Score threshold at which at most ``fpr`` of the background passes (``score > threshold``)."""
    s = np.sort(np.asarray(background_scores, dtype=np.float64))[::-1]
    k = math.floor(fpr * len(s) + 1e-9)
    if k < 1 or len(s) == 0:
        return None
    return float(s[min(k, len(s) - 1)])


def clopper_pearson(k: np.ndarray, n: np.ndarray, cl: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    alpha = 1 - cl
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(k > 0, stats.beta.ppf(alpha / 2, k, n - k + 1), 0.0)
        hi = np.where(k < n, stats.beta.ppf(1 - alpha / 2, k + 1, n - k), 1.0)
    lo = np.where(n > 0, lo, np.nan)
    hi = np.where(n > 0, hi, np.nan)
    return lo, hi


def efficiency_vs_snr(
    scores: np.ndarray, labels: np.ndarray, snr: np.ndarray, threshold: float, snr_edges: np.ndarray
) -> dict[str, list[float]]:
    sig = labels == 1
    s, q = scores[sig], snr[sig]
    lo_e, hi_e = snr_edges[:-1], snr_edges[1:]
    n = np.array([np.sum((q >= a) & (q < b)) for a, b in zip(lo_e, hi_e, strict=True)])
    k = np.array([np.sum((q >= a) & (q < b) & (s > threshold)) for a, b in zip(lo_e, hi_e, strict=True)])
    with np.errstate(invalid="ignore", divide="ignore"):
        eff = np.where(n > 0, k / np.maximum(n, 1), np.nan)
    lo, hi = clopper_pearson(k, n)
    return {
        "snr_low": lo_e.tolist(), "snr_high": hi_e.tolist(), "n": n.tolist(), "passed": k.tolist(),
        "efficiency": _nan_to_none(eff), "lower": _nan_to_none(lo), "upper": _nan_to_none(hi),
    }


def summarise(
    scores: np.ndarray,
    labels: np.ndarray,
    snr: np.ndarray,
    *,
    fprs: tuple[float, ...] = (1e-2, 1e-3),
    snr_edges: np.ndarray | None = None,
) -> dict[str, Any]:
    """All metrics of one method on one labelled test set, JSON-ready."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    snr = np.asarray(snr, dtype=np.float64)
    if len(np.unique(labels)) < 2:
        msg = "metrics need both signal (label 1) and background (label 0) traces"
        raise ValueError(msg)
    if snr_edges is None:
        finite = snr[(labels == 1) & np.isfinite(snr)]
        hi = math.ceil(finite.max()) if finite.size else 10
        snr_edges = np.arange(0, hi + 1, 1.0)
    background = scores[labels == 0]
    signal = scores[labels == 1]
    fpr, tpr, _ = roc_curve(labels, scores)
    out: dict[str, Any] = {
        "n_test": len(labels),
        "n_signal": int(signal.size),
        "n_background": int(background.size),
        "auc": float(roc_auc_score(labels, scores)),
        "roc": _thin_roc(fpr, tpr),
        "working_points": [],
    }
    for target in fprs:
        thr = threshold_at_fpr(background, target)
        if thr is None:
            out["working_points"].append(
                {"target_fpr": target, "available": False,
                 "reason": f"{background.size} background traces allow no FPR below {1 / max(background.size, 1):.2g}"}
            )
            continue
        out["working_points"].append(operating_point(scores, labels, snr, thr, snr_edges, target_fpr=target))
    return out


def operating_point(
    scores: np.ndarray, labels: np.ndarray, snr: np.ndarray, threshold: float, snr_edges: np.ndarray,
    *, target_fpr: float | None = None,
) -> dict[str, Any]:
    background = scores[labels == 0]
    signal = scores[labels == 1]
    n_fp = int(np.sum(background > threshold))
    n_tp = int(np.sum(signal > threshold))
    fpr_lo, fpr_hi = clopper_pearson(np.array([n_fp]), np.array([background.size]))
    return {
        "target_fpr": target_fpr,
        "available": True,
        "threshold": float(threshold),
        "fpr": n_fp / max(background.size, 1),
        "fpr_interval": [float(fpr_lo[0]), float(fpr_hi[0])],
        "n_false_positives": n_fp,
        "tpr": n_tp / max(signal.size, 1),
        "confusion": {"tp": n_tp, "fn": int(signal.size - n_tp), "fp": n_fp, "tn": int(background.size - n_fp)},
        "efficiency_vs_snr": efficiency_vs_snr(scores, labels, snr, threshold, snr_edges),
    }


def _thin_roc(fpr: np.ndarray, tpr: np.ndarray, n_points: int = 400) -> dict[str, list[float]]:
    """ROC on a log-spaced FPR grid (plus the end points), small enough for JSON."""
    grid = np.unique(np.concatenate([[0.0], np.logspace(-6, 0, n_points)]))
    tpr_grid = np.interp(grid, fpr, tpr)
    keep = grid >= (fpr[fpr > 0].min() if np.any(fpr > 0) else 1.0)
    keep[0] = True
    return {"fpr": grid[keep].tolist(), "tpr": tpr_grid[keep].tolist()}


def _nan_to_none(a: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, dtype=float)]
