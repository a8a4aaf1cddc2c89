"""ROC, thresholds, binomial intervals and the classical envelope baseline."""

from __future__ import annotations

import numpy as np
import pytest

from crnn.baselines import envelope_snr
from crnn.metrics import clopper_pearson, efficiency_vs_snr, summarise, threshold_at_fpr
from crnn.noise import ReceiverSettings, StationaryNoise


def test_threshold_lets_through_at_most_the_target_fraction():
    bg = np.arange(1000, dtype=float)  # scores 0..999
    thr = threshold_at_fpr(bg, 1e-2)
    assert np.sum(bg > thr) == 10
    assert threshold_at_fpr(bg, 1e-4) is None  # 1000 traces cannot resolve 1e-4


def test_auc_and_tpr_on_hand_made_scores():
    labels = np.array([0] * 4 + [1] * 4)
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.4, 0.5, 0.9, 0.95])
    m = summarise(scores, labels, np.array([0] * 4 + [3, 3, 5, 5.0]), fprs=(0.25,), snr_edges=np.array([2, 4, 6.0]))
    # 14 of the 16 signal/background pairs are ordered correctly (0.4 and 0.5 lie below 0.8)
    assert m["auc"] == pytest.approx(14 / 16)
    wp = m["working_points"][0]
    assert wp["threshold"] == 0.3 and wp["fpr"] == 0.25 and wp["tpr"] == 1.0
    assert wp["efficiency_vs_snr"]["efficiency"] == [1.0, 1.0]
    assert wp["confusion"] == {"tp": 4, "fn": 0, "fp": 1, "tn": 3}


@pytest.mark.parametrize(("k", "n"), [(5, 10), (1, 40), (37, 40), (300, 1000)])
def test_clopper_pearson_bounds_have_the_defining_tail_probabilities(k, n):
    from scipy.stats import binom

    (lo,), (hi,) = clopper_pearson(np.array([k]), np.array([n]))
    alpha = 1 - 0.683
    # the lower bound is the p at which seeing >= k passes has probability alpha/2, the upper
    # bound the p at which seeing <= k has probability alpha/2
    assert binom.sf(k - 1, n, lo) == pytest.approx(alpha / 2, rel=1e-6)
    assert binom.cdf(k, n, hi) == pytest.approx(alpha / 2, rel=1e-6)
    assert lo < k / n < hi


def test_clopper_pearson_edges():
    lo, hi = clopper_pearson(np.array([0, 10, 0]), np.array([10, 10, 0]))
    assert lo[0] == 0 and hi[1] == 1 and np.isnan(lo[2]) and np.isnan(hi[2])


def test_efficiency_bins_count_only_signal():
    scores = np.array([1.0, 0.0, 1.0, 1.0, 0.0])
    labels = np.array([0, 1, 1, 1, 1])
    snr = np.array([0, 2.5, 2.7, 3.5, 3.6])
    e = efficiency_vs_snr(scores, labels, snr, 0.5, np.array([2.0, 3.0, 4.0]))
    assert e["n"] == [2, 2] and e["passed"] == [1, 1] and e["efficiency"] == [0.5, 0.5]


def test_envelope_of_pure_noise_matches_the_published_value():
    # band-limited 30-80 MHz Gaussian noise at 180 MS/s, 500 samples: mean max envelope / RMS = 3.54
    noise = StationaryNoise(ReceiverSettings(n_channels=1), noise_temperature_k=5000.0, galactic=False)
    x = noise.generate(3000, np.random.default_rng(1))
    assert np.mean(envelope_snr(x, 180e6)) == pytest.approx(3.54, abs=0.12)


def test_envelope_finds_a_strong_pulse():
    noise = StationaryNoise(ReceiverSettings(n_channels=1), noise_temperature_k=5000.0, galactic=False)
    x = noise.generate(200, np.random.default_rng(2))
    rms = np.sqrt(np.mean(x**2))
    x[:, 0, 250] += 20 * rms
    assert np.all(envelope_snr(x, 180e6) > 8)


def _toy(seed=0, n=4000):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.5).astype(int)
    snr = np.where(labels == 1, rng.uniform(2, 10, n), 0.0)
    has_transient = (rng.random(n) < 0.1).astype(int)
    scores = rng.normal(size=n) + labels * snr / 2 + has_transient * 3.0
    return scores, labels, snr, has_transient


def test_bootstrap_replicates_are_paired_and_reproducible():
    from crnn.metrics import bootstrap

    scores, labels, snr, _ = _toy()
    edges = np.arange(2, 11, 1.0)
    a, b = bootstrap([scores, scores], labels, snr, fprs=(1e-2,), snr_edges=edges, n_bootstrap=30, seed=3)
    again = bootstrap([scores], labels, snr, fprs=(1e-2,), snr_edges=edges, n_bootstrap=30, seed=3)[0]
    for key in ("auc", "roc", "tpr", "snr_50", "snr_90"):
        np.testing.assert_array_equal(a[key], b[key])
        np.testing.assert_array_equal(a[key], again[key])
    # replicates scatter around the point estimate
    from sklearn.metrics import roc_auc_score

    auc = roc_auc_score(labels, scores)
    assert a["auc"].min() < auc < a["auc"].max() and a["auc"].std() < 0.01


def test_roc_points_and_auc_agree_with_the_threshold_rule():
    from crnn.metrics import _auc, _Ranked, roc_points

    scores, labels, *_ = _toy(1)
    scores = np.round(scores, 1)  # ties
    from sklearn.metrics import roc_auc_score

    tp, fp, _ = _Ranked(scores, labels).curve(np.ones(len(labels)))
    assert _auc(tp, fp, labels.sum(), (labels == 0).sum()) == pytest.approx(roc_auc_score(labels, scores))
    roc = roc_points(scores, labels)
    for f in (1e-2, 1e-1):
        thr = threshold_at_fpr(scores[labels == 0], f)
        i = int(np.searchsorted(roc["fpr"], f))
        assert roc["fpr"][i] == pytest.approx(f)
        assert roc["tpr"][i] == pytest.approx(np.mean(scores[labels == 1] > thr))


def test_summary_splits_false_alarms_by_kind_of_background():
    scores, labels, snr, tr = _toy(2)
    tr[:40] = -1  # unknown kind (e.g. ingested traces): counted only in "all"
    m = summarise(
        scores, labels, snr, fprs=(1e-2, 1e-4), snr_edges=np.arange(2, 11, 1.0), has_transient=tr, n_bootstrap=50
    )
    bg = labels == 0
    assert m["n_background_noise"] == np.sum(bg & (tr == 0)) and m["n_background_transient"] == np.sum(bg & (tr == 1))
    wp, unavailable = m["working_points"]
    assert unavailable["available"] is False and "allow no FPR" in unavailable["reason"]
    fa = wp["false_alarms"]
    assert fa["noise"]["n"] + fa["transient"]["n"] < fa["all"]["n"]
    # the transient background (score offset 3) triggers far more often than the noise-only one
    assert fa["transient"]["rate"] > 10 * fa["noise"]["rate"]
    for key in ("tpr_bootstrap_interval", "snr_50_interval"):
        lo, hi = wp[key]
        value = wp["tpr"] if key.startswith("tpr") else wp["snr_50"]
        assert lo <= value <= hi
    assert m["auc_interval"][0] < m["auc"] < m["auc_interval"][1]
    assert len(m["roc"]["tpr_lower"]) == len(m["roc"]["fpr"])
    assert m["background_scores"]["transient"]["mean"] > m["background_scores"]["noise"]["mean"] + 2
    # thresholds set on noise-only background: lower threshold, more pulses, transients let through
    noise_wp = m["working_points_noise"][0]
    assert noise_wp["background"] == "noise" and noise_wp["threshold"] < wp["threshold"]
    assert noise_wp["tpr"] > wp["tpr"]
    assert noise_wp["false_alarms"]["transient"]["rate"] > 0.5
    assert sum(noise_wp["efficiency_vs_snr"]["n"]) == np.sum((labels == 1) & (tr == 0) & (snr >= 2) & (snr < 10))


def test_interval_treats_not_reached_as_infinite():
    from crnn.metrics import interval

    assert interval(np.arange(200.0)) == [31.0, 168.0]
    assert interval(np.r_[np.full(50, np.nan), np.arange(150.0)])[1] is None
    assert interval(np.full(10, np.nan)) == [None, None]
