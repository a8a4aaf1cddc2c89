"""Noise and pulse physics: sky temperature, noise RMS and spectrum, pulse and SNR definition."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from crnn.detector import RandomiseSettings
from crnn.errors import CrnnError
from crnn.noise import CWLine, ReceiverSettings, SiderealSettings, StationaryNoise, TransientForm, add_cw_lines
from crnn.physics import bandpass_response, cane_sky_temperature_k, noise_voltage_psd_v2_per_hz
from crnn.simulate import SimulationSettings, Simulator

REPO = Path(__file__).resolve().parents[1]


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
    """10,000 galactic + thermal traces: mean power spectrum within 5 % of the model in every 1 MHz bin."""
    rx = ReceiverSettings()
    noise = StationaryNoise(rx, noise_temperature_k=40.0)
    x = noise.generate(10_000, np.random.default_rng(0)).astype(np.float64)
    assert x.shape == (10_000, 2, 500)
    # RMS against the value computed independently from temperature, band and load
    f_fine = np.linspace(1e6, 89.9e6, 20_000)
    t_k = cane_sky_temperature_k(f_fine) + 40.0
    h2 = np.abs(bandpass_response(f_fine, rx.band_hz, rx.filter_order)) ** 2
    v_rms = np.sqrt(np.trapezoid(noise_voltage_psd_v2_per_hz(t_k) * h2, f_fine))
    assert np.sqrt(np.mean(x**2)) == pytest.approx(v_rms, rel=0.01)
    assert noise.expected_rms_v == pytest.approx(v_rms, rel=0.01)
    # one-sided PSD estimate in V^2/Hz per rfft bin, then 1 MHz bins across the band
    psd = 2 * np.mean(np.abs(np.fft.rfft(x, axis=-1)) ** 2, axis=(0, 1)) / (rx.sampling_rate_hz * rx.n_samples)
    model = noise.psd_v2_per_hz * np.abs(rx.response) ** 2
    f = rx.frequencies_hz
    edges = np.arange(30e6, 80e6 + 1, 1e6)
    for lo, hi in itertools.pairwise(edges):
        sel = (f >= lo) & (f < hi)
        assert psd[sel].mean() == pytest.approx(model[sel].mean(), rel=0.05), f"{lo / 1e6:.0f}-{hi / 1e6:.0f} MHz"
    # galactic noise dominates: the spectrum falls steeply across the band
    assert psd[np.argmin(np.abs(f - 35e6))] > 4 * psd[np.argmin(np.abs(f - 75e6))]


def test_sidereal_modulation_scales_the_galactic_power():
    rx = ReceiverSettings()
    m = 0.3
    noise = StationaryNoise(rx, noise_temperature_k=40.0, sidereal=SiderealSettings(modulation_fraction=m))
    rng = np.random.default_rng(1)
    peak = noise.generate(3000, rng, lst_hours=np.full(3000, 17.75)).astype(float)
    trough = noise.generate(3000, rng, lst_hours=np.full(3000, 17.75 - 12)).astype(float)
    gal = StationaryNoise(rx, noise_temperature_k=0.0).expected_rms_v ** 2
    sys = StationaryNoise(rx, noise_temperature_k=40.0, galactic=False).expected_rms_v ** 2
    expected = ((1 + m) * gal + sys) / ((1 - m) * gal + sys)
    assert np.mean(peak**2) / np.mean(trough**2) == pytest.approx(expected, rel=0.03)


def test_snr_is_peak_signal_over_background_rms():
    quiet = (TransientForm(kind="ringing", probability=0.0),)
    settings = SimulationSettings(n_traces=200, signal_fraction=1.0, cw_lines=(), transients=quiet)
    full = Simulator(settings, seed=5).block(0, 200)
    # the same block without pulses: identical random draws for the background
    bg = Simulator(
        SimulationSettings(signal_fraction=1.0, cw_lines=(), snr_range=(1e-9, 1e-9), transients=quiet), seed=5
    ).block(0, 200)
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


def test_same_seed_gives_bitwise_identical_files_whatever_the_length(tmp_path):
    from crnn.simulate import simulate
    from crnn.tracefile import read_traces

    simulate(SimulationSettings(n_traces=2500), tmp_path / "a.h5", seed=4)
    simulate(SimulationSettings(n_traces=2500), tmp_path / "a2.h5", seed=4)
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "a2.h5").read_bytes()
    simulate(SimulationSettings(n_traces=1200), tmp_path / "b.h5", seed=4)
    a, b = read_traces(tmp_path / "a.h5"), read_traces(tmp_path / "b.h5")
    np.testing.assert_array_equal(a.traces[:1200], b.traces)
    np.testing.assert_array_equal(a.labels[:1200], b.labels)


def test_cw_lines_have_the_configured_frequency_amplitude_and_drift():
    rx = ReceiverSettings(n_channels=1, n_samples=1800)
    line = CWLine(frequency_hz=61e6, amplitude_rel_noise=2.0, probability=1.0)
    x = np.zeros((50, 1, 1800), np.float32)
    add_cw_lines(x, (line,), 1.5, rx.sampling_rate_hz, np.random.default_rng(0))
    spec = np.abs(np.fft.rfft(x[:, 0].astype(float), axis=-1))
    f = np.fft.rfftfreq(1800, 1 / rx.sampling_rate_hz)
    assert np.all(f[np.argmax(spec, axis=1)] == pytest.approx(61e6, abs=0.2e6))
    assert np.abs(x).max(axis=(1, 2)) == pytest.approx(np.full(50, 3.0), rel=1e-3)  # 2.0 x noise RMS 1.5
    drifting = CWLine(frequency_hz=61e6, amplitude_rel_noise=1.0, amplitude_drift=0.5, frequency_drift_hz=5e6)
    y = np.zeros((200, 1, 1800), np.float32)
    add_cw_lines(y, (drifting,), 1.0, rx.sampling_rate_hz, np.random.default_rng(1))
    first, last = np.abs(y[..., :200]).max(axis=(1, 2)), np.abs(y[..., -200:]).max(axis=(1, 2))
    assert np.max(np.abs(last - first)) > 0.3 and np.all(np.maximum(first, last) <= 1.5 + 1e-3)
    f_first = f[np.argmax(np.abs(np.fft.rfft(y[:, 0, :600], n=1800)), axis=-1)]
    f_last = f[np.argmax(np.abs(np.fft.rfft(y[:, 0, -600:], n=1800)), axis=-1)]
    assert np.max(np.abs(f_last - f_first)) > 2e6 and np.all(np.abs(f_last - f_first) <= 5e6 + 0.5e6)


def test_cw_lines_and_transients_appear_at_configured_rates():
    sim = Simulator(SimulationSettings(randomise=RandomiseSettings(enabled=False)), seed=3)
    data = [sim.block(k) for k in range(10)]
    kind = np.concatenate([d.meta["transient_kind"] for d in data])
    n = kind.size
    for code, p in enumerate((0.06, 0.02, 0.02), start=1):  # ringing, pulse_train, burst
        # a later kind overwrites an earlier one in the rare traces that get two
        assert np.mean(kind == code) == pytest.approx(p, abs=4 * np.sqrt(p / n) + 0.003)
    n_cw = np.concatenate([d.meta["n_cw_lines"] for d in data])
    assert n_cw.mean() == pytest.approx(0.8, abs=0.03)  # lines on in 50 % and 30 % of traces
    x = data[0].traces.astype(float)
    spec = np.mean(np.abs(np.fft.rfft(x, axis=-1)) ** 2, axis=(0, 1))
    f = ReceiverSettings().frequencies_hz
    i = np.argmin(np.abs(f - 67.25e6))
    neighbours = np.r_[spec[i - 8 : i - 3], spec[i + 4 : i + 9]]
    assert spec[i] > 5 * np.median(neighbours)


@pytest.mark.parametrize("kind", ["ringing", "pulse_train", "burst"])
def test_transient_amplitudes_follow_the_config(kind):
    on = (TransientForm(kind=kind, probability=0.5, amplitude_rel_noise=(4.0, 6.0)),)
    off = (TransientForm(kind=kind, probability=0.0, amplitude_rel_noise=(4.0, 6.0)),)
    base = {"signal_fraction": 0.0, "cw_lines": ()}
    with_t = Simulator(SimulationSettings(transients=on, **base), seed=8).block(0)
    without = Simulator(SimulationSettings(transients=off, **base), seed=8).block(0)
    diff = with_t.traces.astype(float) - without.traces.astype(float)
    has = with_t.meta["transient_kind"] == 1
    assert 0.45 < has.mean() < 0.55
    ratio = np.abs(diff[has]).max(axis=(1, 2)) / with_t.meta["noise_rms"][has]
    assert np.all((ratio > 4 - 1e-3) & (ratio < 6 + 1e-3))
    assert np.all(diff[~has] == 0)


def test_adc_digitisation_counts_and_clips():
    rx = ReceiverSettings(gain_db=60.0, adc_bits=8, adc_full_scale_v=0.05)
    data = Simulator(SimulationSettings(receiver=rx, cw_lines=()), seed=2).block(0)
    x = data.traces
    assert data.unit == "ADC"
    assert np.all(x == np.round(x)) and x.min() >= -128 and x.max() <= 127
    assert np.sum(x == 127) > 0  # the strongest pulses and transients clip
    lsb = 0.1 / 256
    rms_v = Simulator(SimulationSettings(receiver=ReceiverSettings(gain_db=60.0), cw_lines=()), seed=2).block(0)
    np.testing.assert_allclose(data.meta["noise_rms"], rms_v.meta["noise_rms"] / lsb, rtol=1e-5)


def test_measured_background_is_used_as_is(tmp_path):
    from crnn.ingest import ingest
    from crnn.simulate import BackgroundSettings
    from crnn.tracefile import read_traces

    measured = ingest(REPO / "data" / "grand" / "tadc_example_L1_0000.root", tmp_path / "bg.h5")
    counts = read_traces(measured).traces
    rx = ReceiverSettings(
        sampling_rate_hz=500e6, n_samples=2048, n_channels=3, band_hz=(50e6, 200e6), gain_db=45.0, adc_bits=14
    )
    settings = SimulationSettings(
        receiver=rx, signal_fraction=0.0, background=BackgroundSettings(measured_file=str(measured))
    )
    data = Simulator(settings, seed=1).block(0, 100)
    np.testing.assert_array_equal(data.traces, counts[data.meta["measured_index"]])
    with_pulses = Simulator(
        SimulationSettings(receiver=rx, signal_fraction=1.0, snr_range=(5.0, 5.0), background=settings.background),
        seed=1,
    ).block(0, 100)
    rms = np.sqrt(np.mean(counts[with_pulses.meta["measured_index"]].astype(float) ** 2, axis=(1, 2)))
    np.testing.assert_allclose(with_pulses.meta["noise_rms"], rms, rtol=1e-4)
    signal = with_pulses.traces - counts[with_pulses.meta["measured_index"]]
    assert np.abs(signal).max(axis=(1, 2)) == pytest.approx(5 * rms, rel=0.05, abs=1.0)
    bad = SimulationSettings(background=BackgroundSettings(measured_file=str(measured)))
    with pytest.raises(CrnnError, match=r"5e\+08 Hz, but the receiver samples at 1\.8e\+08 Hz"):
        Simulator(bad, seed=1)


def test_real_gp13_noise_as_background(tmp_path, realdata):
    from crnn.ingest import ingest
    from crnn.simulate import BackgroundSettings

    src = realdata / "grand" / "noise_traces_gp13_2024_01_night_datafiles_185-190_merged.root"
    measured = ingest(src, tmp_path / "gp13.h5")
    rx = ReceiverSettings(
        sampling_rate_hz=500e6, n_samples=2048, n_channels=3, band_hz=(50e6, 200e6), gain_db=45.0, adc_bits=14
    )
    data = Simulator(
        SimulationSettings(receiver=rx, background=BackgroundSettings(measured_file=str(measured))), seed=1
    ).block(0, 200)
    assert data.unit == "ADC" and set(np.unique(data.meta["measured_index"])) <= set(range(36))
    assert np.all(data.meta["snr"][data.labels == 1] >= 2)
