"""Noise and pulse physics: sky temperature, noise RMS and spectrum, pulse and SNR definition."""

from __future__ import annotations

import numpy as np
import pytest

from crnn.noise import ReceiverSettings, StationaryNoise
from crnn.physics import bandpass_response, cane_sky_temperature_k, noise_voltage_psd_v2_per_hz
from crnn.simulate import SimulationSettings, Simulator


def test_cane_sky_temperature_matches_published_values():
    t = cane_sky_temperature_k(np.array([30e6, 50e6, 80e6, 200e6]))
    assert t == pytest.approx([17_781, 4_822, 1_453, 141], rel=0.01)
    # power law close to nu^-2.55 over 30-80 MHz
    slope = np.log(t[2] / t[0]) / np.log(80 / 30)
    assert slope == pytest.approx(-2.55, abs=0.05)


def test_sky_noise_voltage_in_30_80_mhz_is_13_6_uv():
    f = np.linspace(30e6, 80e6, 5001)
    v_rms = np.sqrt(np.trapezoid(noise_voltage_psd_v2_per_hz(cane_sky_temperature_k(f)), f))
    assert v_rms == pytest.approx(13.6e-6, rel=0.01)


def test_bandpass_is_3db_down_at_band_edges():
    h = bandpass_response(np.array([30e6, 55e6, 80e6, 10e6, 150e6]), (30e6, 80e6), 10)
    assert np.abs(h[:3]) == pytest.approx([2**-0.5, 1.0, 2**-0.5], abs=1e-3)
    assert np.all(np.abs(h[3:]) < 1e-3)


def test_noise_rms_and_spectrum_follow_the_temperature_model():
    rx = ReceiverSettings()
    noise = StationaryNoise(rx, noise_temperature_k=40.0)
    x = noise.generate(4000, np.random.default_rng(0))
    assert x.shape == (4000, 2, 500)
    assert np.sqrt(np.mean(x**2)) == pytest.approx(noise.expected_rms_v, rel=0.01)
    # mean power spectrum vs the model S_v |H|^2, in band, within 5 % per bin
    spec = np.mean(np.abs(np.fft.rfft(x, axis=-1)) ** 2, axis=(0, 1))
    model = noise.psd_v2_per_hz * np.abs(rx.response) ** 2 * rx.sampling_rate_hz * rx.n_samples / 2
    f = rx.frequencies_hz
    band = (f > 32e6) & (f < 78e6)
    assert spec[band] / model[band] == pytest.approx(np.ones(band.sum()), rel=0.05)
    # galactic noise dominates: spectrum falls steeply across the band
    assert spec[np.argmin(np.abs(f - 35e6))] > 4 * spec[np.argmin(np.abs(f - 75e6))]


def test_snr_is_peak_signal_over_background_rms():
    settings = SimulationSettings(n_traces=200, signal_fraction=1.0, cw_lines=(),
                                  transients=SimulationSettings().transients.__class__(probability=0.0))
    sim = Simulator(settings, seed=5)
    full = sim.block(0, 200)
    # the same block without pulses: identical random draws for the background
    bg = Simulator(SimulationSettings(n_traces=200, signal_fraction=1.0, cw_lines=(), snr_range=(1e-9, 1e-9),
                                      transients=settings.transients), seed=5).block(0, 200)
    signal = full.traces.astype(float) - bg.traces.astype(float)
    peak = np.max(np.abs(signal), axis=(1, 2))
    rms = full.meta["noise_rms"]
    assert peak / rms == pytest.approx(full.meta["snr"], rel=1e-3)
    assert np.sqrt(np.mean(bg.traces.astype(float) ** 2, axis=(1, 2))) == pytest.approx(rms, rel=1e-3)
    assert np.all((full.meta["snr"] >= 2) & (full.meta["snr"] <= 10))


def test_pulse_is_short_and_in_band():
    sim = Simulator(SimulationSettings(), seed=1)
    p = sim.pulses.generate(500, np.random.default_rng(2)).waveforms
    assert np.max(np.abs(p), axis=(1, 2)) == pytest.approx(np.ones(500))
    # 90 % of the pulse energy within ~25 samples (140 ns), as for a 30-80 MHz impulse
    e = np.sum(p**2, axis=1)
    e_sorted = np.sort(e, axis=1)[:, ::-1]
    n90 = np.argmax(np.cumsum(e_sorted, axis=1) >= 0.9 * e.sum(axis=1, keepdims=True), axis=1) + 1
    assert np.median(n90) < 25
    spec = np.mean(np.abs(np.fft.rfft(p, axis=-1)) ** 2, axis=(0, 1))
    f = ReceiverSettings().frequencies_hz
    in_band = spec[(f >= 30e6) & (f <= 80e6)].sum()
    assert in_band / spec.sum() > 0.9


def test_simulation_is_reproducible_and_independent_of_length():
    a = Simulator(SimulationSettings(), seed=11)
    b = Simulator(SimulationSettings(), seed=11)
    np.testing.assert_array_equal(a.block(3, 100).traces, b.block(3, 100).traces)
    c = Simulator(SimulationSettings(), seed=12)
    assert not np.allclose(a.block(3, 100).traces, c.block(3, 100).traces)


def test_chunking_does_not_change_the_output(tmp_path):
    from crnn.simulate import simulate
    from crnn.tracefile import read_traces

    simulate(SimulationSettings(n_traces=2500), tmp_path / "a.h5", seed=4)
    simulate(SimulationSettings(n_traces=1200), tmp_path / "b.h5", seed=4)
    a, b = read_traces(tmp_path / "a.h5"), read_traces(tmp_path / "b.h5")
    np.testing.assert_array_equal(a.traces[:1200], b.traces)
    np.testing.assert_array_equal(a.labels[:1200], b.labels)


def test_transients_and_cw_lines_appear_at_configured_rates():
    sim = Simulator(SimulationSettings(), seed=3)
    data = sim.block(0, 1000)
    assert data.meta["has_transient"].mean() == pytest.approx(0.1, abs=0.03)
    # the two default lines are on in 50 % and 30 % of traces: 0.8 lines per trace on average
    assert data.meta["n_cw_lines"].mean() == pytest.approx(0.8, abs=0.06)
    # CW line at 67.25 MHz visible in the mean spectrum of traces that carry it
    x = data.traces.astype(float)
    spec = np.mean(np.abs(np.fft.rfft(x, axis=-1)) ** 2, axis=(0, 1))
    f = ReceiverSettings().frequencies_hz
    i = np.argmin(np.abs(f - 67.25e6))
    neighbours = np.r_[spec[i - 8 : i - 3], spec[i + 4 : i + 9]]
    assert spec[i] > 5 * np.median(neighbours)
