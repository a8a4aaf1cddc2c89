"""Detection metrics: ROC, AUC, thresholds at fixed false-positive rates, efficiency vs SNR.

A working point is a target false-positive rate (FPR) on background traces. The threshold is
the (k+1)-th largest background score with k = floor(FPR * n_background); a trace is "detected"
when its score is strictly above the threshold, so at most k background traces pass. When
fewer than one background trace would be allowed (n_background * FPR < 1) the statistics do
not allow that working point and it is reported as unavailable.

Two kinds of background are told apart when the test file says which background traces carry a
human-made transient (``has_transient``: 1 yes, 0 no, -1 unknown, e.g. for measured traces mixed
in): ``noise`` (galactic, thermal and CW noise only) and ``transient``; traces of unknown kind count
only in "all background". :func:`summarise` then reports

* ``working_points``: thresholds set on all background traces (the realistic trigger), with the
  false-alarm rate on each kind of background;
* ``working_points_noise``: thresholds set on the ``noise`` background only and efficiencies of
  pulses in traces without transients: the Gaussian-noise comparison in which the matched
  filter is the near-ideal reference; the false-alarm rate on transients is what such a trigger
  would let through on top.

Uncertainties: efficiencies and rates carry central 68.3 % Clopper-Pearson (exact binomial)
intervals at a fixed threshold. AUC, the ROC band, the TPR at each target FPR and the SNR at 50 %
and 90 % efficiency carry 68.3 % bootstrap intervals: background and signal traces are resampled
with replacement (separately), the threshold is set anew on each resampled background, and the
central 68.3 % of the replicate values is reported. The resampling depends only on the seed and
the numbers of traces, so every method of a run sees the same replicates (paired comparisons).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import roc_auc_score

CONFIDENCE = 0.683
EFFICIENCY_LEVELS = (0.5, 0.9)
ROC_GRID = np.unique(np.concatenate([[0.0], np.logspace(-6, 0, 241)]))


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
        "snr_low": lo_e.tolist(),
        "snr_high": hi_e.tolist(),
        "n": n.tolist(),
        "passed": k.tolist(),
        "efficiency": _nan_to_none(eff),
        "lower": _nan_to_none(lo),
        "upper": _nan_to_none(hi),
    }


def binned_efficiency(values: np.ndarray, passed: np.ndarray, edges: Sequence[float]) -> dict[str, list]:
    """Fraction of the entries of ``values`` (e.g. the arrival times of pulses) with ``passed`` true,
    per bin ``[edges[i], edges[i+1])``, with 68 % Clopper-Pearson intervals; NaN values count in no
    bin, and an empty bin has efficiency None."""
    v = np.asarray(values, dtype=np.float64)
    ok = np.asarray(passed, dtype=bool)
    e = np.asarray(edges, dtype=np.float64)
    inside = np.isfinite(v) & (v >= e[0]) & (v < e[-1])
    b = np.clip(np.searchsorted(e, v[inside], side="right") - 1, 0, len(e) - 2)
    n = np.bincount(b, minlength=len(e) - 1)
    k = np.bincount(b, weights=ok[inside].astype(float), minlength=len(e) - 1).astype(int)
    with np.errstate(invalid="ignore", divide="ignore"):
        eff = np.where(n > 0, k / np.maximum(n, 1), np.nan)
    lo, hi = clopper_pearson(k, n)
    return {
        "low": e[:-1].tolist(),
        "high": e[1:].tolist(),
        "n": n.tolist(),
        "passed": k.tolist(),
        "efficiency": _nan_to_none(eff),
        "lower": _nan_to_none(lo),
        "upper": _nan_to_none(hi),
    }


def false_alarms_by_kind(
    scores: np.ndarray, labels: np.ndarray, kind: np.ndarray, names: dict[int, str], threshold: float
) -> dict[str, dict[str, Any]]:
    """False alarms (background score > ``threshold``) per kind of background: ``kind`` holds one
    code per trace, ``names`` the name of each code to count (codes not in it are left out; codes of
    one name are counted together). Per name: ``n``, ``false_positives``, ``rate``, ``interval``."""
    bg = np.asarray(labels).astype(int) == 0
    s = np.asarray(scores, dtype=np.float64)
    kind = np.asarray(kind)
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(names.values()):
        codes = [c for c, n in names.items() if n == name]
        mask = bg & np.isin(kind, codes)
        out[name] = _rate(int(np.sum(s[mask] > threshold)), int(np.sum(mask)))
    return out


def trigger_rate_hz(wp: dict[str, Any], trial_rate_hz: float) -> dict[str, Any]:
    """The rate at which a trigger at working point ``wp`` fires on background: its achieved FPR
    times ``trial_rate_hz`` (traces tested per second), with the FPR's 68 % interval scaled alike."""
    lo, hi = wp.get("fpr_interval") or (None, None)
    return {
        "fpr": wp["fpr"],
        "rate_hz": wp["fpr"] * trial_rate_hz,
        "interval_hz": [None if x is None else x * trial_rate_hz for x in (lo, hi)],
    }


def snr_at_level(centre: np.ndarray, eff: np.ndarray, level: float) -> float:
    """Lowest SNR at which a binned efficiency curve reaches ``level`` (linear interpolation
    between bin centres); the first centre if the first bin is already above; NaN if never."""
    ok = np.isfinite(eff)
    centre, eff = np.asarray(centre)[ok], np.asarray(eff)[ok]
    above = np.nonzero(eff >= level)[0]
    if above.size == 0:
        return math.nan
    i = int(above[0])
    if i == 0:
        return float(centre[0])
    x0, x1, y0, y1 = centre[i - 1], centre[i], eff[i - 1], eff[i]
    return float(x0 + (level - y0) * (x1 - x0) / (y1 - y0)) if y1 != y0 else float(x1)


def snr_at_efficiency(wp: dict[str, Any], level: float) -> float | None:
    """SNR at which a working point's efficiency curve reaches ``level``; None if it never does."""
    e = wp["efficiency_vs_snr"]
    centre = (np.asarray(e["snr_low"]) + np.asarray(e["snr_high"])) / 2
    eff = np.array([np.nan if v is None else v for v in e["efficiency"]], dtype=float)
    v = snr_at_level(centre, eff, level)
    return None if math.isnan(v) else v


def score_stats(values: np.ndarray) -> dict[str, Any]:
    """Mean, spread and tail of a set of scores (e.g. of noise-only traces)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"n": 0}
    return {
        "n": int(v.size),
        "mean": float(v.mean()),
        "std": float(v.std()),
        "median": float(np.median(v)),
        "q99": float(np.quantile(v, 0.99)),
        "max": float(v.max()),
    }


# -- ROC and bootstrap -----------------------------------------------------------------------------
class _Ranked:
    """Scores sorted once (descending) with the positions where a run of equal scores ends."""

    def __init__(self, scores: np.ndarray, labels: np.ndarray) -> None:
        self.order = np.argsort(-scores, kind="stable")
        self.sorted = scores[self.order]
        self.is_sig = labels[self.order] == 1
        ends = np.ones(len(scores), dtype=bool)
        ends[:-1] = self.sorted[1:] != self.sorted[:-1]
        self.ends = np.nonzero(ends)[0]

    def curve(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Weighted counts of signal (tp) and background (fp) at or above each distinct score."""
        w = weights[self.order]
        tp = np.cumsum(np.where(self.is_sig, w, 0.0))[self.ends]
        fp = np.cumsum(np.where(self.is_sig, 0.0, w))[self.ends]
        return tp, fp, self.sorted[self.ends]


def _step_tpr(tp: np.ndarray, fp: np.ndarray, n_sig: float, n_bg: float, fpr: np.ndarray) -> np.ndarray:
    """TPR of the best threshold whose FPR does not exceed each value of ``fpr`` (0 if none)."""
    idx = np.searchsorted(fp, np.asarray(fpr) * n_bg + 1e-9, side="right") - 1
    return np.where(idx >= 0, tp[np.maximum(idx, 0)] / n_sig, 0.0)


def _auc(tp: np.ndarray, fp: np.ndarray, n_sig: float, n_bg: float) -> float:
    x = np.concatenate([[0.0], fp / n_bg])
    y = np.concatenate([[0.0], tp / n_sig])
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def _threshold_in_curve(fp: np.ndarray, values: np.ndarray, k: int) -> float:
    """Threshold (pass: score > threshold) that lets at most k weighted background traces through."""
    idx = np.searchsorted(fp, k + 1e-9, side="right")  # first distinct score that would exceed k
    return float(values[idx]) if idx < len(values) else -np.inf


def bootstrap(
    score_sets: Sequence[np.ndarray],
    labels: np.ndarray,
    snr: np.ndarray,
    *,
    fprs: Sequence[float],
    snr_edges: np.ndarray,
    n_bootstrap: int,
    seed: int = 0,
    fpr_grid: np.ndarray = ROC_GRID,
) -> list[dict[str, np.ndarray]]:
    """Bootstrap replicates of AUC, the ROC on ``fpr_grid``, the TPR at each FPR and the SNR at
    50 % / 90 % efficiency, for several methods scored on the same traces.

    Returns one dict per method with arrays ``auc`` (B,), ``roc`` (B, G), ``tpr`` (B, W),
    ``snr_50`` and ``snr_90`` (B, W; NaN where the level is not reached or the FPR is not
    available). Every method sees the same resampled traces.
    """
    labels = np.asarray(labels).astype(int)
    snr = np.asarray(snr, dtype=np.float64)
    sig_idx = np.nonzero(labels == 1)[0]
    bg_idx = np.nonzero(labels == 0)[0]
    n_sig, n_bg = len(sig_idx), len(bg_idx)
    ranked = [_Ranked(np.asarray(s, dtype=np.float64), labels) for s in score_sets]
    ks = [math.floor(f * n_bg + 1e-9) for f in fprs]
    edges = np.asarray(snr_edges, dtype=float)
    centre = (edges[:-1] + edges[1:]) / 2
    sig_bin = np.digitize(snr[sig_idx], edges) - 1  # -1 / len(edges) - 1 = outside
    in_range = (sig_bin >= 0) & (sig_bin < len(centre))
    out = [
        {
            "auc": np.empty(n_bootstrap),
            "roc": np.empty((n_bootstrap, len(fpr_grid))),
            "tpr": np.full((n_bootstrap, len(fprs)), np.nan),
            "snr_50": np.full((n_bootstrap, len(fprs)), np.nan),
            "snr_90": np.full((n_bootstrap, len(fprs)), np.nan),
        }
        for _ in score_sets
    ]
    rng = np.random.default_rng(seed)
    for b in range(n_bootstrap):
        w = np.zeros(len(labels))
        w[sig_idx] = np.bincount(rng.integers(0, n_sig, n_sig), minlength=n_sig)
        w[bg_idx] = np.bincount(rng.integers(0, n_bg, n_bg), minlength=n_bg)
        w_sig = w[sig_idx]
        n_per_bin = np.bincount(sig_bin[in_range], weights=w_sig[in_range], minlength=len(centre))
        for r, res, scores in zip(ranked, out, score_sets, strict=True):
            tp, fp, values = r.curve(w)
            res["auc"][b] = _auc(tp, fp, n_sig, n_bg)
            res["roc"][b] = _step_tpr(tp, fp, n_sig, n_bg, fpr_grid)
            sig_scores = np.asarray(scores)[sig_idx]
            for j, k in enumerate(ks):
                if k < 1:
                    continue
                thr = _threshold_in_curve(fp, values, k)
                passed = sig_scores > thr
                res["tpr"][b, j] = float(np.sum(w_sig * passed)) / n_sig
                sel = in_range & passed
                k_per_bin = np.bincount(sig_bin[sel], weights=w_sig[sel], minlength=len(centre))
                with np.errstate(invalid="ignore", divide="ignore"):
                    eff = np.where(n_per_bin > 0, k_per_bin / n_per_bin, np.nan)
                res["snr_50"][b, j] = snr_at_level(centre, eff, 0.5)
                res["snr_90"][b, j] = snr_at_level(centre, eff, 0.9)
    return out


def interval(values: np.ndarray, cl: float = CONFIDENCE) -> list[float | None]:
    """Central ``cl`` interval of bootstrap replicates; NaN (not reached) counts as +infinity,
    and an infinite bound is written as None."""
    v = np.asarray(values, dtype=np.float64)
    v = np.where(np.isnan(v), np.inf, v)
    if v.size == 0:
        return [None, None]
    # order statistics (no interpolation, which is undefined next to infinity)
    lo = np.quantile(v, (1 - cl) / 2, method="lower")
    hi = np.quantile(v, (1 + cl) / 2, method="higher")
    return [float(x) if np.isfinite(x) else None for x in (lo, hi)]


def roc_points(scores: np.ndarray, labels: np.ndarray, fpr_grid: np.ndarray = ROC_GRID) -> dict[str, list[float]]:
    """ROC on a log-spaced FPR grid: at each grid FPR the TPR of the best threshold whose FPR does
    not exceed it (achievable operating points); grid points below 1 / n_background are dropped
    except FPR 0."""
    labels = np.asarray(labels).astype(int)
    r = _Ranked(np.asarray(scores, dtype=np.float64), labels)
    n_sig, n_bg = int(np.sum(labels == 1)), int(np.sum(labels == 0))
    tp, fp, _ = r.curve(np.ones(len(labels)))
    tpr = _step_tpr(tp, fp, n_sig, n_bg, fpr_grid)
    keep = (fpr_grid >= 1.0 / max(n_bg, 1)) | (fpr_grid == 0)
    return {"fpr": fpr_grid[keep].tolist(), "tpr": tpr[keep].tolist()}


# -- summaries -------------------------------------------------------------------------------------
def summarise(
    scores: np.ndarray,
    labels: np.ndarray,
    snr: np.ndarray,
    *,
    fprs: tuple[float, ...] = (1e-2, 1e-3, 1e-4),
    snr_edges: np.ndarray | None = None,
    has_transient: np.ndarray | None = None,
    n_bootstrap: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """All metrics of one method on one labelled test set, JSON-ready (see docs/formats.md)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    snr = np.asarray(snr, dtype=np.float64)
    if len(np.unique(labels)) < 2:
        msg = "metrics need both signal (label 1) and background (label 0) traces"
        raise ValueError(msg)
    snr_edges = default_snr_edges(snr, labels) if snr_edges is None else np.asarray(snr_edges, dtype=float)
    bg = labels == 0
    out: dict[str, Any] = {
        "n_test": len(labels),
        "n_signal": int(np.sum(~bg)),
        "n_background": int(np.sum(bg)),
        "confidence_level": CONFIDENCE,
        "n_bootstrap": int(n_bootstrap),
        "auc": float(roc_auc_score(labels, scores)),
        "background_scores": {"all": score_stats(scores[bg])},
    }
    transient = None
    if has_transient is not None:
        transient = np.asarray(has_transient).astype(int)  # 1 = transient, 0 = none, other = unknown
        out["n_background_noise"] = int(np.sum(bg & (transient == 0)))
        out["n_background_transient"] = int(np.sum(bg & (transient == 1)))
        out["background_scores"]["noise"] = score_stats(scores[bg & (transient == 0)])
        out["background_scores"]["transient"] = score_stats(scores[bg & (transient == 1)])
    roc = roc_points(scores, labels)
    reps = bootstrap([scores], labels, snr, fprs=fprs, snr_edges=snr_edges, n_bootstrap=n_bootstrap, seed=seed)[0]
    if n_bootstrap > 0:
        out["auc_interval"] = interval(reps["auc"])
        grid_keep = np.isin(ROC_GRID, roc["fpr"])
        band = reps["roc"][:, grid_keep]
        roc["tpr_lower"] = np.quantile(band, (1 - CONFIDENCE) / 2, axis=0).tolist()
        roc["tpr_upper"] = np.quantile(band, (1 + CONFIDENCE) / 2, axis=0).tolist()
    out["roc"] = roc
    out["working_points"] = _working_points(scores, labels, snr, fprs, snr_edges, transient, reps)
    if transient is not None and np.any(bg & (transient == 0)) and np.any(~bg & (transient == 0)):
        keep = transient == 0
        reps_noise = bootstrap(
            [scores[keep]], labels[keep], snr[keep], fprs=fprs, snr_edges=snr_edges, n_bootstrap=n_bootstrap, seed=seed
        )[0]
        wps = _working_points(scores[keep], labels[keep], snr[keep], fprs, snr_edges, None, reps_noise)
        n_tr = int(np.sum(bg & (transient == 1)))
        for wp in wps:
            wp["background"] = "noise"
            if wp.get("available"):
                wp["false_alarms"]["noise"] = wp["false_alarms"]["all"]
                k = int(np.sum(scores[bg & (transient == 1)] > wp["threshold"]))
                wp["false_alarms"]["transient"] = _rate(k, n_tr)
        out["working_points_noise"] = wps
    return out


def default_snr_edges(snr: np.ndarray, labels: np.ndarray) -> np.ndarray:
    finite = snr[(labels == 1) & np.isfinite(snr)]
    hi = math.ceil(finite.max()) if finite.size else 10
    return np.arange(0, hi + 1, 1.0)


def _rate(k: int, n: int) -> dict[str, Any]:
    lo, hi = clopper_pearson(np.array([k]), np.array([n]))
    return {
        "n": int(n),
        "false_positives": int(k),
        "rate": (k / n) if n else None,
        "interval": _nan_to_none(np.array([lo[0], hi[0]])),
    }


def _working_points(
    scores: np.ndarray,
    labels: np.ndarray,
    snr: np.ndarray,
    fprs: Sequence[float],
    snr_edges: np.ndarray,
    transient: np.ndarray | None,
    reps: dict[str, np.ndarray],
) -> list[dict[str, Any]]:
    background = scores[labels == 0]
    wps = []
    for j, target in enumerate(fprs):
        thr = threshold_at_fpr(background, target)
        if thr is None:
            wps.append(
                {
                    "target_fpr": target,
                    "available": False,
                    "reason": f"{background.size} background traces allow no FPR below {1 / max(background.size, 1):.2g}",
                }
            )
            continue
        wp = operating_point(scores, labels, snr, thr, snr_edges, target_fpr=target, has_transient=transient)
        if reps["tpr"].shape[0] > 0:
            wp["tpr_bootstrap_interval"] = interval(reps["tpr"][:, j])
            wp["snr_50_interval"] = interval(reps["snr_50"][:, j])
            wp["snr_90_interval"] = interval(reps["snr_90"][:, j])
        wps.append(wp)
    return wps


def operating_point(
    scores: np.ndarray,
    labels: np.ndarray,
    snr: np.ndarray,
    threshold: float,
    snr_edges: np.ndarray,
    *,
    target_fpr: float | None = None,
    has_transient: np.ndarray | None = None,
) -> dict[str, Any]:
    """Counts, rates and the efficiency curve of one threshold (pass: score > threshold)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    bg = labels == 0
    background = scores[bg]
    signal = scores[~bg]
    n_fp = int(np.sum(background > threshold))
    n_tp = int(np.sum(signal > threshold))
    fpr_lo, fpr_hi = clopper_pearson(np.array([n_fp]), np.array([background.size]))
    tpr_lo, tpr_hi = clopper_pearson(np.array([n_tp]), np.array([signal.size]))
    false_alarms = {"all": _rate(n_fp, background.size)}
    if has_transient is not None:
        tr = np.asarray(has_transient).astype(int)  # 1 = transient, 0 = none, other = unknown
        for name, mask in (("noise", bg & (tr == 0)), ("transient", bg & (tr == 1))):
            false_alarms[name] = _rate(int(np.sum(scores[mask] > threshold)), int(np.sum(mask)))
    wp = {
        "target_fpr": target_fpr,
        "available": True,
        "threshold": float(threshold),
        "fpr": n_fp / max(background.size, 1),
        "fpr_interval": [float(fpr_lo[0]), float(fpr_hi[0])],
        "n_false_positives": n_fp,
        "tpr": n_tp / max(signal.size, 1),
        "tpr_interval": _nan_to_none(np.array([tpr_lo[0], tpr_hi[0]])),
        "confusion": {"tp": n_tp, "fn": int(signal.size - n_tp), "fp": n_fp, "tn": int(background.size - n_fp)},
        "false_alarms": false_alarms,
        "efficiency_vs_snr": efficiency_vs_snr(scores, labels, snr, threshold, snr_edges),
    }
    for level in EFFICIENCY_LEVELS:
        wp[f"snr_{round(level * 100)}"] = snr_at_efficiency(wp, level)
    return wp


def _nan_to_none(a: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, dtype=float)]
