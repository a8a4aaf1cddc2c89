"""The simulated detector: fixed or randomised antenna and chain, separate sky and receiver noise
paths, per-component random streams, per-trace parameters, pulse library, held-out transients."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from crnn.detector import ANTENNA_KINDS, PARAMETER_NAMES, RandomiseSettings
from crnn.errors import CrnnError
from crnn.noise import CWLine, ReceiverSettings, TransientForm
from crnn.pulse import PulseSettings
from crnn.simulate import COMPONENTS, META_NAMES, SimulationSettings, Simulator
from crnn.tracefile import TraceSet, TraceWriter

FIXED = RandomiseSettings(enabled=False)


def _psd(x: np.ndarray) -> np.ndarray:
    return np.mean(np.abs(np.fft.rfft(x.astype(np.float64), axis=-1)) ** 2, axis=(0, 1))


def test_receiver_noise_passes_the_chain_only_and_sky_noise_the_antenna_too():
    antenna = {"family": "resonance", "frequency_hz": 55e6, "q": 8.0}
    rx = ReceiverSettings(antenna_response=antenna)
    f = rx.frequencies_hz
    band = (f > 35e6) & (f < 75e6)
    chain2 = np.abs(rx.chain_transfer()[0]) ** 2
    ant2 = np.abs(rx.antenna_transfer()[0]) ** 2
    base = dict(cw_lines=(), transients=(), signal_fraction=0.0, randomise=FIXED, receiver=rx)
    receiver_only = Simulator(SimulationSettings(galactic_noise=False, noise_temperature_k=300.0, **base), 1).block(0)
    sky_only = Simulator(SimulationSettings(noise_temperature_k=0.0, **base), 1).block(0)
    # receiver noise: the shape of |chain|^2, not of the resonant antenna
    ratio = _psd(receiver_only.traces)[band] / chain2[band]
    assert np.std(ratio) / np.mean(ratio) < 0.15
    assert np.std(_psd(receiver_only.traces)[band] / (chain2 * ant2)[band]) > 0.5 * np.mean(
        _psd(receiver_only.traces)[band] / (chain2 * ant2)[band]
    )
    # sky noise: T_sky |antenna|^2 |chain|^2
    from crnn.physics import cane_sky_temperature_k

    model = cane_sky_temperature_k(f) * ant2 * chain2
    ratio = _psd(sky_only.traces)[band] / model[band]
    assert np.std(ratio) / np.mean(ratio) < 0.15


def test_pulses_pass_antenna_and_chain():
    antenna = {"family": "log_periodic", "tau": 0.8, "band_hz": [30e6, 80e6]}
    rx = ReceiverSettings(antenna_response=antenna, n_channels=1)
    settings = SimulationSettings(receiver=rx, randomise=FIXED, signal_fraction=1.0, cw_lines=(), transients=())
    sim = Simulator(settings, 4)
    _, signals = sim.draw_with_signals(0)
    path = rx.antenna_transfer()[0] * rx.chain_transfer()[0]
    spec = np.fft.rfft(signals[:, 0].astype(np.float64), axis=-1)
    f = rx.frequencies_hz
    band = (f > 35e6) & (f < 75e6)
    # the pulse spectrum divided by the path is the analytic |E(f)| = 10^(b f): smooth, real shape
    slope = np.nanmean(np.abs(spec[:, band] / path[band]), axis=0)
    assert np.all(np.isfinite(slope))
    # the group delay of the log-periodic antenna shows: low frequencies come later than without it
    plain = Simulator(dataclasses.replace(settings, receiver=ReceiverSettings(n_channels=1)), 4).draw_with_signals(0)[1]
    t_with = np.argmax(np.abs(signals[:, 0]), axis=-1)
    t_without = np.argmax(np.abs(plain[:, 0]), axis=-1)
    assert np.median(t_with - t_without) > 2  # tens of ns later (5.6 ns per sample)


def test_randomised_detectors_vary_and_are_written_per_trace():
    sim = Simulator(SimulationSettings(), seed=5)
    block = sim.block(0)
    assert tuple(block.meta) == META_NAMES
    for name in PARAMETER_NAMES:
        assert name in block.meta
    m = block.meta
    assert np.all(m["detector_randomised"] == 1)
    assert len(np.unique(m["response_highpass_hz"])) == 64  # chains_per_block distinct detectors
    lo, hi = np.min(m["response_highpass_hz"]), np.max(m["response_highpass_hz"])
    assert 22e6 < lo < 26e6 and 34e6 < hi < 38e6  # 30 MHz +- 0.15 x 50 MHz
    assert set(np.unique(m["antenna_kind"])) == set(range(len(ANTENNA_KINDS)))
    spread = m["group_delay_spread_s"]
    assert np.nanmin(spread) < 30e-9 and np.nanmax(spread) > 80e-9  # from near-flat to strongly dispersive
    t = m["noise_temperature_k"]
    assert 20 <= t.min() and t.max() <= 400 and len(np.unique(t)) == len(t)
    # noise RMS follows the drawn detector: it spreads far more than in the fixed world
    fixed = Simulator(SimulationSettings(randomise=FIXED), seed=5).block(0)
    assert np.all(fixed.meta["detector_randomised"] == 0)
    spread_r = np.std(np.log(m["noise_rms"]))
    spread_f = np.std(np.log(fixed.meta["noise_rms"]))
    assert spread_r > 3 * spread_f
    # random CW lines at frequencies anywhere in the (widened) band
    f_cw = m["cw_frequency_hz"][np.isfinite(m["cw_frequency_hz"])]
    assert f_cw.min() < 30e6 and f_cw.max() > 80e6 and np.mean(m["n_cw_lines"]) > 1.5


def test_digital_chains_fall_to_zero_at_nyquist_and_are_recorded():
    import dataclasses

    from crnn.detector import Detector, RandomiseSettings

    receiver = SimulationSettings().receiver
    mixed = Detector(
        receiver,
        dataclasses.replace(RandomiseSettings(), digital_probability=0.5),
        noise_temperature_k=40.0,
        galactic_scale=1.0,
    ).draw(4000, np.random.default_rng(3))
    digital = mixed.params["response_digital"] == 1
    assert 0.3 < digital.mean() < 0.7
    at_nyquist = np.abs(mixed.chain[:, 0, -1])  # last rfft bin: the Nyquist frequency
    assert np.all(at_nyquist[digital] < 1e-6) and np.median(at_nyquist[~digital]) > 1e-5
    # without digital chains the same generator gives the same detectors
    plain = Detector(
        receiver,
        dataclasses.replace(RandomiseSettings(), digital_probability=0.0),
        noise_temperature_k=40.0,
        galactic_scale=1.0,
    )
    a = plain.draw(500, np.random.default_rng(3))
    assert np.all(a.params["response_digital"] == 0)
    b = Detector(
        receiver,
        dataclasses.replace(RandomiseSettings(), digital_probability=0.0),
        noise_temperature_k=40.0,
        galactic_scale=1.0,
    ).draw(500, np.random.default_rng(3))
    np.testing.assert_array_equal(a.chain, b.chain)


def test_each_component_has_its_own_random_stream():
    base = SimulationSettings()
    more_cw = dataclasses.replace(base, cw_lines=(*base.cw_lines, CWLine(frequency_hz=40e6, probability=1.0)))
    more_tr = dataclasses.replace(base, transients=(*base.transients, TransientForm(kind="chirp", probability=0.5)))
    a = Simulator(base, 7).block(0)
    for other in (more_cw, more_tr):
        b = Simulator(other, 7).block(0)
        for key in (
            "labels",
            "snr",
            "pulse_time_s",
            "polarisation_angle_rad",
            "response_lowpass_hz",
            "noise_temperature_k",
        ):
            np.testing.assert_array_equal(a.meta[key], b.meta[key], err_msg=key)
    # the components' streams are distinct, not copies of one seed
    sim = Simulator(base, 7)
    assert len({int(sim.rng(0, c).integers(2**62)) for c in COMPONENTS}) == len(COMPONENTS)
    # the same seed gives the same bytes; another seed other traces
    np.testing.assert_array_equal(a.traces, Simulator(base, 7).block(0).traces)
    assert not np.array_equal(a.traces, Simulator(base, 8).block(0).traces)


def test_chirp_transients_sweep_across_the_band():
    settings = SimulationSettings(
        randomise=FIXED,
        cw_lines=(),
        signal_fraction=0.0,
        transients=(TransientForm(kind="chirp", probability=1.0, duration_s=(1e-6, 2e-6)),),
    )
    block = Simulator(settings, 3).block(0, 200)
    assert np.all(block.meta["transient_kind"] == 1)
    # a chirp is far above the noise and spread over time (not a single impulse)
    x = block.traces[:, 0]
    loud = np.abs(x) > 2 * block.meta["noise_rms"][:, None]
    assert np.median(loud.sum(axis=-1)) > 20


def test_pulse_library_pulses_are_folded_through_the_detector(tmp_path):
    fs, t = 180e6, 500
    # a library of two bipolar field pulses (E_ns, E_ew), well inside the trace
    lib = np.zeros((2, 2, t), dtype=np.float32)
    lib[0, 0, 100], lib[0, 0, 101], lib[0, 1, 100] = 1.0, -0.8, 0.3
    lib[1, 0, 250], lib[1, 1, 250], lib[1, 1, 252] = -0.2, 1.0, -0.5
    path = tmp_path / "library.h5"
    with TraceWriter(path, n_channels=2, n_samples=t, sampling_rate_hz=fs, unit="V/m") as w:
        w.append(TraceSet(lib, fs, "V/m"))
    settings = SimulationSettings(
        randomise=FIXED,
        signal_fraction=1.0,
        cw_lines=(),
        transients=(),
        pulse=PulseSettings(library_file=str(path), library_fraction=0.5),
    )
    sim = Simulator(settings, 2)
    block, signals = sim.draw_with_signals(0)
    idx = block.meta["pulse_library_index"]
    assert set(np.unique(idx)) == {-1, 0, 1}
    assert 0.4 < np.mean(idx >= 0) < 0.6
    assert np.all(np.isnan(block.meta["spectral_slope_log10_per_hz"][idx >= 0]))
    # a library pulse is the library field through the chain, shifted in time: same spectrum magnitude
    h = settings.receiver.response
    k = np.nonzero(idx == 1)[0][0]
    got = np.abs(np.fft.rfft(signals[k], axis=-1))
    want = np.abs(np.fft.rfft(lib[1].astype(np.float64), axis=-1) * h)
    scale = got[1].max() / want[1].max()
    # (the Nyquist bin of a real trace keeps only its real part)
    np.testing.assert_allclose(got[:, :-1], want[:, :-1] * scale, atol=1e-3 * got.max())


def test_pulse_library_of_another_acquisition_is_refused(tmp_path):
    path = tmp_path / "library.h5"
    with TraceWriter(path, n_channels=2, n_samples=400, sampling_rate_hz=180e6, unit="V/m") as w:
        w.append(TraceSet(np.ones((1, 2, 400), dtype=np.float32), 180e6, "V/m"))
    settings = SimulationSettings(pulse=PulseSettings(library_file=str(path)))
    with pytest.raises(CrnnError, match=r"library\.h5: pulse library traces have \(channels, samples\) = \(2, 400\)"):
        Simulator(settings, 1)


def test_bad_randomisation_ranges_are_refused():
    with pytest.raises(CrnnError, match="antenna_probabilities"):
        Simulator(SimulationSettings(randomise=RandomiseSettings(antenna_probabilities=(0.5, 0.5, 0.5))), 1)
    with pytest.raises(CrnnError, match="edge_order"):
        Simulator(SimulationSettings(randomise=RandomiseSettings(edge_order=(5, 2))), 1)
