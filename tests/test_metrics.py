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
