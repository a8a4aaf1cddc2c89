"""Classical triggers: the matched filter against its analytic expectation, and the SNR-like baselines."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm, rice

from crnn.baselines import (
    BASELINES,
    BaselineSettings,
    MatchedFilterBank,
    SignalModel,
    amplitude_snr,
    baseline_scores,
    expected_detection_probability,
    noise_power_spectrum,
    optimal_snr,
    power_snr,
    template_spectra,
)
from crnn.errors import CrnnError
from crnn.metrics import threshold_at_fpr
from crnn.noise import ReceiverSettings, StationaryNoise

FS = 180e6
T = 500
ONE_CHANNEL = SignalModel(receiver=ReceiverSettings(n_channels=1))


def _known_template(lag: int) -> np.ndarray:
    """The matched filter's own template (one of the pulse model's shapes) delayed by ``lag`` samples."""
    spec = template_spectra(ONE_CHANNEL, T, FS, 1)
    return np.roll(np.fft.irfft(spec[0], n=T), lag)


def _correlation_at(bank: MatchedFilterBank, x: np.ndarray, lag: int) -> np.ndarray:
    return np.concatenate([bank.correlate(x[i : i + 2000])[:, 0, 0, lag] for i in range(0, len(x), 2000)])


def test_matched_filter_reaches_the_analytic_detection_probability():
    """Known template, time and phase in white Gaussian noise: P_D = Q(Q^-1(P_FA) - rho) (physics.md 5.2).

    rho comes from the textbook formula 4 sum |s(f)|^2 / S_n(f) df, independently of the filter's
    own normalisation; the noise spectrum is estimated from noise-only traces as in the pipeline.
    """
    rng = np.random.default_rng(5)
    sigma, lag, rho = 1.0, 180, 3.0
    template = _known_template(lag)
    rho_unit = optimal_snr(template, 2 * sigma**2 / FS, FS)  # white noise: S_n = 2 sigma^2 dt
    assert rho_unit == pytest.approx(np.linalg.norm(template) / sigma, rel=1e-4)  # Parseval
    bank = MatchedFilterBank(
        template_spectra(ONE_CHANNEL, T, FS, 1), noise_power_spectrum(rng.normal(0, sigma, (2000, 1, T)))
    )
    n = 12_000
    noise = _correlation_at(bank, rng.normal(0, sigma, (n, 1, T)), lag).real
    signal = _correlation_at(bank, rng.normal(0, sigma, (n, 1, T)) + rho / rho_unit * template, lag).real
    # the filter's output is in units of the noise: N(0, 1) without, N(rho, 1) with the pulse
    assert noise.mean() == pytest.approx(0, abs=0.03) and noise.std() == pytest.approx(1, rel=0.03)
    assert signal.mean() == pytest.approx(rho, rel=0.03) and signal.std() == pytest.approx(1, rel=0.03)
    # threshold from the noise-only traces, as the pipeline sets it
    p_fa = 1e-2
    measured = np.mean(signal > threshold_at_fpr(noise, p_fa))
    expected = expected_detection_probability(p_fa, rho)
    assert expected == pytest.approx(0.750, abs=1e-3)
    assert measured == pytest.approx(expected, rel=0.10)
    # a rarer false-alarm rate, with the threshold of the (verified) unit normal
    measured = np.mean(signal > norm.isf(1e-3))
    assert measured == pytest.approx(expected_detection_probability(1e-3, rho), rel=0.10)


def test_matched_filter_baseline_with_unknown_time_and_phase():
    """The full statistic (max over lags and phase, per-trace normalisation) on the known template in
    white noise: its detection probability is that of the quadrature detector at the true lag,
    P_D = Q_1(rho, threshold) (Marcum Q, i.e. the Rice distribution), with the threshold of the
    maximum over lags set on noise-only traces; lags next to the pulse add little."""
    rng = np.random.default_rng(6)
    lag, rho = 260, 5.0
    template = _known_template(lag)
    amp = rho / optimal_snr(template, 2.0 / FS, FS)
    n = 4000
    kwargs = {"noise_traces": rng.normal(0, 1, (1000, 1, T)), "signal_model": ONE_CHANNEL}
    settings = BaselineSettings(matched_filter_templates=1)
    noise = baseline_scores("matched_filter", rng.normal(0, 1, (n, 1, T)), FS, settings, **kwargs)
    signal = baseline_scores("matched_filter", rng.normal(0, 1, (n, 1, T)) + amp * template, FS, settings, **kwargs)
    threshold = threshold_at_fpr(noise, 1e-2)
    assert 4.0 < threshold < 4.8  # max of about 500 correlated Rayleigh variables
    measured = np.mean(signal > threshold)
    expected = rice.sf(threshold, rho)
    assert measured == pytest.approx(expected, rel=0.10)
    # well above threshold the statistic is the optimal SNR (plus the noise in quadrature)
    assert np.median(signal) == pytest.approx(np.sqrt(rho**2 + 1), rel=0.05)


@pytest.mark.parametrize("angle_deg", [0, 30, 90, 135])
def test_matched_filter_finds_any_polarisation_and_phase(angle_deg):
    rng = np.random.default_rng(angle_deg)
    spec = template_spectra(SignalModel(), T, FS, 1)[0]
    phase = np.deg2rad(70)  # an asymmetric pulse shape: neither the template nor its quadrature
    wave = np.fft.irfft(spec * np.exp(1j * phase), n=T)
    rho = 12.0
    amp = rho / optimal_snr(wave, 2.0 / FS, FS)
    d = np.array([np.cos(np.deg2rad(angle_deg)), np.sin(np.deg2rad(angle_deg))])
    x = rng.normal(0, 1, (200, 2, T)) + amp * np.roll(wave, 300)[None, None, :] * d[None, :, None]
    bank = MatchedFilterBank(spec[None, :], noise_power_spectrum(rng.normal(0, 1, (500, 2, T))))
    assert np.median(bank.statistic(x)) == pytest.approx(np.sqrt(rho**2 + 2), rel=0.05)


def test_baselines_on_pure_noise_and_on_a_strong_pulse():
    noise = StationaryNoise(ReceiverSettings(n_channels=1), noise_temperature_k=5000.0, galactic=False)
    x = noise.generate(2000, np.random.default_rng(3))
    # max |x| / RMS of 500 samples of band-limited noise: about 3.2 (3.3 with the RMS taken outside the peak)
    assert np.mean(amplitude_snr(x, FS)) == pytest.approx(3.28, abs=0.1)
    assert np.mean(power_snr(x, FS)) == pytest.approx(4.6, abs=0.3)
    loud = x[:100].copy()
    rms = np.sqrt(np.mean(x**2))
    loud[:, 0, 250:255] += 15 * rms
    assert np.all(amplitude_snr(loud, FS) > 12) and np.all(power_snr(loud, FS) > 50)


def test_matched_filter_beats_the_envelope_in_gaussian_noise():
    """Without transients and CW lines the matched filter is the near-ideal trigger."""
    from crnn.detector import RandomiseSettings
    from crnn.simulate import SimulationSettings, Simulator

    fixed = RandomiseSettings(enabled=False)  # the detector the templates are made for
    settings = SimulationSettings(cw_lines=(), transients=(), snr_range=(2.0, 6.0), randomise=fixed)
    sim = Simulator(settings, seed=9)
    data, noise = sim.block(0), sim.block(1)
    y = data.labels
    tpr = {}
    for name in BASELINES:
        s = baseline_scores(name, data.traces, FS, noise_traces=noise.traces[noise.labels == 0])
        tpr[name] = np.mean(s[y == 1] > threshold_at_fpr(s[y == 0], 1e-2))
    assert tpr["matched_filter"] > max(tpr["amplitude"], tpr["envelope"], tpr["power"]) + 0.1, tpr


def test_matched_filter_refuses_unusable_inputs():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2, T))
    with pytest.raises(CrnnError, match="at least 20 noise-only traces"):
        baseline_scores("matched_filter", x, FS, noise_traces=x[:5])
    with pytest.raises(CrnnError, match="needs noise-only traces"):
        baseline_scores("matched_filter", x, FS)
    bank = MatchedFilterBank.from_signal_model(SignalModel(), x, FS, 2)
    with pytest.raises(CrnnError, match="400 samples"):
        bank.statistic(rng.normal(size=(3, 2, 400)))
    with pytest.raises(CrnnError, match="Nyquist"):
        template_spectra(SignalModel(receiver=ReceiverSettings(band_hz=(30e6, 120e6))), T, FS, 1)
    with pytest.raises(CrnnError, match="unknown baseline"):
        baseline_scores("fft_magic", x, FS)


def test_matched_filter_stays_sighted_on_a_detector_deaf_where_its_templates_are_not():
    """Templates of the default detector, traces through a digital Butterworth (no power near
    Nyquist): whitening by 1/P where the detector is deaf would blind the filter."""
    from crnn.detector import RandomiseSettings
    from crnn.noise import ReceiverSettings
    from crnn.simulate import SimulationSettings, Simulator

    chain = {"family": "digital_butterworth", "band_hz": [30e6, 80e6], "order": 5}
    settings = SimulationSettings(
        cw_lines=(),
        transients=(),
        snr_range=(6.0, 10.0),
        randomise=RandomiseSettings(enabled=False),
        receiver=ReceiverSettings(chain_response=chain),
    )
    sim = Simulator(settings, seed=4)
    data, noise = sim.block(0), sim.block(1)
    y = data.labels
    s = baseline_scores("matched_filter", data.traces, FS, noise_traces=noise.traces[noise.labels == 0])
    tpr = np.mean(s[y == 1] > threshold_at_fpr(s[y == 0], 1e-2))
    assert tpr > 0.8, tpr
