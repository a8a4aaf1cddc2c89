"""Detector responses (crnn.responses): families, tables, group delays, validation."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from crnn import responses as R
from crnn.errors import CrnnError
from crnn.physics import bandpass_response

RATE = 500e6
N = 1000
# ../shared/realdata beside the clone (as in conftest.py); CRNN_REALDATA overrides it (e.g. from a git worktree)
RESP_DIR = Path(os.environ.get("CRNN_REALDATA", Path(__file__).parents[1] / ".." / "shared" / "realdata")) / "responses"

FAMILY_SPECS = {
    "analog_butterworth": {"band_hz": [30e6, 80e6], "order": 5},
    "analog_chebyshev": {"band_hz": [30e6, 80e6], "order": 4, "ripple_db": 1.0},
    "analog_bandpass": {
        "band_hz": [30e6, 80e6],
        "highpass_order": 3,
        "lowpass_order": 6,
        "highpass_kind": "bessel",
        "lowpass_kind": "cheby1",
        "ripple_db": 0.5,
    },
    "digital_butterworth": {"band_hz": [30e6, 80e6], "order": 5},
    "digital_chebyshev": {"band_hz": [30e6, 80e6], "order": 4, "ripple_db": 1.0},
    "digital_bandpass": {
        "band_hz": [30e6, 80e6],
        "highpass_order": 4,
        "lowpass_order": 7,
        "highpass_kind": "butter",
        "lowpass_kind": "cheby1",
        "ripple_db": 0.5,
    },
    "zero_phase": {"band_hz": [30e6, 80e6], "order": 5},
    "log_periodic": {"band_hz": [30e6, 80e6], "tau": 0.8},
    "resonance": {"frequency_hz": 59e6, "q": 11.0},
    "echo": {"delays_s": [25e-9, 40e-9], "amplitudes": [0.4, -0.2]},
    "cable": {"loss_db_per_sqrt_mhz": 1.2},
    "tilt": {"slope_db_per_mhz": -0.15, "reference_frequency_hz": 30e6, "band_hz": [30e6, 80e6], "phase": "minimum"},
    "gain": {"gain_db": 6.0},
    "delay": {"delay_s": 37e-9},
    "chain": {
        "parts": [
            {"family": "resonance", "frequency_hz": 55e6, "q": 5.0},
            {"family": "cable", "loss_db_per_sqrt_mhz": 0.9},
        ]
    },
}


def _impulse_check(response, t0: int = 100) -> None:
    """A unit impulse at sample t0 through apply_response, rfft'd again, equals H within 1 %."""
    x = np.zeros((2, 3, N))
    x[..., t0] = 1.0
    y = R.apply_response(x, response, RATE)
    assert y.shape == x.shape and y.dtype == np.float32
    f = np.fft.rfftfreq(N, 1 / RATE)
    got = np.fft.rfft(y.astype(np.float64), axis=-1)[1, 2] * np.exp(2j * np.pi * f * t0 / RATE)
    want = response.transfer(f)
    inner = slice(1, -1)  # DC and Nyquist bins are real in an rfft
    got, want = got[inner], want[inner]
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, atol=0.01 * scale, rtol=0)
    strong = np.abs(want) > 0.1 * scale
    np.testing.assert_allclose(np.abs(got[strong]), np.abs(want[strong]), rtol=0.01)
    dphi = np.angle(got[strong] * np.conj(want[strong]))
    assert np.abs(dphi).max() < 0.01


def test_families_are_complete():
    assert set(FAMILY_SPECS) | {"table"} == set(R.RESPONSE_FAMILIES)


@pytest.mark.parametrize("family", sorted(FAMILY_SPECS))
def test_impulse_through_each_family_matches_transfer(family):
    r = R.build_response({"family": family, **FAMILY_SPECS[family]}, sampling_rate_hz=RATE)
    f = np.fft.rfftfreq(N, 1 / RATE)
    h = r.transfer(f)
    assert h.dtype == np.complex128 and h.shape == f.shape
    assert np.abs(h).max() > 0.1
    _impulse_check(r)


@pytest.mark.parametrize("family", sorted(FAMILY_SPECS))
def test_transfer_is_fast(family):
    r = R.build_response({"family": family, **FAMILY_SPECS[family]}, sampling_rate_hz=RATE)
    f = np.linspace(0, RATE / 2, 251)
    r.transfer(f)
    t = time.perf_counter()
    for _ in range(50):
        r.transfer(f)
    assert (time.perf_counter() - t) / 50 < 1e-3


def test_analog_butterworth_equals_physics_bandpass():
    f = np.linspace(0, 250e6, 501)
    for band, order in (((30e6, 80e6), 5), ((30e6, 80e6), 10), ((50e6, 200e6), 3)):
        r = R.build_response(
            {"family": "analog_butterworth", "band_hz": list(band), "order": order}, sampling_rate_hz=RATE
        )
        want = bandpass_response(f, band, order)
        np.testing.assert_allclose(r.transfer(f), want, rtol=0, atol=1e-9 * np.abs(want).max())


def test_separate_edges_and_kinds():
    f = np.array([30e6, 80e6, 300e6, 5e6])
    r = R.build_response(
        {"family": "analog_butterworth", "band_hz": [30e6, 80e6], "highpass_order": 4, "lowpass_order": 0},
        sampling_rate_hz=RATE,
    )
    g = np.abs(r.transfer(f))
    np.testing.assert_allclose(g[:3], [2**-0.5, 1.0, 1.0], rtol=2e-3)  # -3 dB at the high-pass edge, no low-pass
    assert g[3] < (5 / 30) ** 4 * 1.01
    cheb = R.AnalogBandpass((30e6, 80e6), 0, 5, "butter", "cheby1", 1.0)
    assert np.abs(cheb.transfer(np.array([80e6])))[0] == pytest.approx(10 ** (-1 / 20), rel=1e-6)
    bes = R.AnalogBandpass((30e6, 80e6), 0, 5, "butter", "bessel", 1.0)
    assert np.abs(bes.transfer(np.array([80e6])))[0] == pytest.approx(2**-0.5, rel=1e-3)
    # a Bessel edge is nearly flat in delay, a Chebyshev edge is not
    fb = np.linspace(10e6, 70e6, 61)
    assert np.ptp(R.group_delay_s(bes, fb)) < 0.2 * np.ptp(R.group_delay_s(cheb, fb))


def test_digital_filters_follow_scipy_freqz_not_the_analog_phase():
    from scipy import signal

    f = np.linspace(1e6, 240e6, 300)
    r = R.build_response({"family": "digital_butterworth", "band_hz": [30e6, 80e6], "order": 5}, sampling_rate_hz=RATE)
    sos = signal.butter(5, [30e6, 80e6], btype="bandpass", fs=RATE, output="sos")
    _, want = signal.sosfreqz(sos, worN=f, fs=RATE)
    np.testing.assert_allclose(r.transfer(f), want, atol=1e-9)
    assert np.abs(r.transfer(f) - bandpass_response(f, (30e6, 80e6), 5)).max() > 0.05
    c = R.build_response(
        {"family": "digital_chebyshev", "band_hz": [30e6, 80e6], "order": 4, "ripple_db": 2.0}, sampling_rate_hz=RATE
    )
    b, a = signal.cheby1(4, 2.0, [30e6, 80e6], btype="bandpass", fs=RATE)
    np.testing.assert_allclose(c.transfer(f), signal.freqz(b, a, worN=f, fs=RATE)[1], atol=1e-8)


@pytest.mark.parametrize("kind", ["butter", "cheby1", "bessel"])
def test_digital_bandpass_edges_are_scipy_digital_filters(kind):
    """Each edge of digital_bandpass equals scipy's digital design of that edge (pre-warped bilinear
    transform), and the band-pass is the product: zero at Nyquist, unlike the analog edges."""
    from scipy import signal

    f = np.linspace(1e6, RATE / 2, 400)
    design = {
        "butter": signal.butter,
        "cheby1": lambda n, *a, **k: signal.cheby1(n, 0.5, *a, **k),
        "bessel": lambda n, *a, **k: signal.bessel(n, *a, norm="mag", **k),
    }[kind]
    want = np.ones(len(f), dtype=complex)
    for order, edge, btype in ((3, 30e6, "highpass"), (6, 80e6, "lowpass")):
        b, a = design(order, edge, btype=btype, fs=RATE)
        want *= signal.freqz(b, a, worN=f, fs=RATE)[1]
    r = R.build_response(
        {
            "family": "digital_bandpass",
            "band_hz": [30e6, 80e6],
            "highpass_order": 3,
            "lowpass_order": 6,
            "highpass_kind": kind,
            "lowpass_kind": kind,
            "ripple_db": 0.5,
        },
        sampling_rate_hz=RATE,
    )
    np.testing.assert_allclose(r.transfer(f), want, atol=1e-8)
    assert abs(r.transfer(np.array([RATE / 2]))[0]) < 1e-6
    analog = R.build_response(
        {
            "family": "analog_bandpass",
            "band_hz": [30e6, 80e6],
            "highpass_order": 3,
            "lowpass_order": 6,
            "highpass_kind": kind,
            "lowpass_kind": kind,
            "ripple_db": 0.5,
        },
        sampling_rate_hz=RATE,
    )
    assert abs(analog.transfer(np.array([RATE / 2]))[0]) > 1e-5


def test_zero_phase_is_the_butterworth_magnitude():
    f = np.linspace(0, 200e6, 201)
    h = R.ZeroPhase((30e6, 80e6), 5).transfer(f)
    assert np.all(h.imag == 0)
    np.testing.assert_allclose(h.real, np.abs(bandpass_response(f, (30e6, 80e6), 5)), rtol=1e-9, atol=1e-15)


def test_group_delay_of_resonance_log_periodic_and_butterworth():
    res = R.Resonance(59e6, 11.0)
    assert R.group_delay_s(res, np.array([59e6]))[0] == pytest.approx(11 / (np.pi * 59e6), rel=1e-4)
    assert np.abs(res.transfer(np.array([59e6])))[0] == pytest.approx(1.0)
    assert (R.group_delay_s(res, np.linspace(30e6, 80e6, 51)) > 0).all()
    for tau in (0.75, 0.9):
        lp = R.LogPeriodic((30e6, 80e6), tau)
        f = np.array([30e6, 50e6, 80e6])
        np.testing.assert_allclose(R.group_delay_s(lp, f), 1 / (2 * f * np.log(1 / tau)), rtol=1e-4)
    assert R.group_delay_s(R.LogPeriodic((30e6, 80e6), 0.75), np.array([30e6]))[0] == pytest.approx(57.9e-9, rel=1e-3)
    # docs/responses.md: a 20th-order (N = 10) Butterworth 30-80 MHz: 35.9-136.8 ns, spread 100.8 ns (+-1 MHz aperture)
    bw = R.AnalogButterworth((30e6, 80e6), 10)
    gd = R.group_delay_s(bw, np.linspace(30e6, 80e6, 201), aperture_hz=2e6)
    assert gd.min() == pytest.approx(35.9e-9, rel=0.03)
    assert np.ptp(gd) == pytest.approx(100.8e-9, rel=0.05)
    bw5 = R.group_delay_s(R.AnalogButterworth((50e6, 200e6), 5), np.linspace(50e6, 200e6, 301), aperture_hz=2e6)
    assert np.ptp(bw5) == pytest.approx(20.6e-9, rel=0.05)


def test_cable_echo_delay_gain_tilt_values():
    c = R.Cable(1.716)  # docs: 115 m RG58, 2.9 -> 1.8 ns over 30-80 MHz, 9.4 / 15.4 dB
    f = np.array([30e6, 80e6])
    np.testing.assert_allclose(20 * np.log10(np.abs(c.transfer(f))), [-9.40, -15.35], atol=0.02)
    np.testing.assert_allclose(R.group_delay_s(c, f), [2.87e-9, 1.76e-9], rtol=0.02)
    e = R.Echo((30e-9,), (0.5,))
    fr = np.linspace(30e6, 200e6, 2000)
    g = np.abs(e.transfer(fr))
    assert g.max() == pytest.approx(1.5, rel=1e-3) and g.min() == pytest.approx(0.5, rel=1e-3)
    assert R.group_delay_s(R.Delay(37e-9), np.array([10e6, 90e6])) == pytest.approx([37e-9, 37e-9], rel=1e-6)
    assert np.abs(R.Gain(-6.0).transfer(np.array([1.0])))[0] == pytest.approx(10 ** (-0.3))
    t = R.Tilt(-0.2, 30e6)
    np.testing.assert_allclose(20 * np.log10(np.abs(t.transfer(np.array([30e6, 80e6])))), [0.0, -10.0])
    tm = R.Tilt(-0.2, 30e6, (30e6, 80e6), "minimum")
    np.testing.assert_allclose(
        np.abs(tm.transfer(np.array([20e6, 55e6, 90e6]))), 10 ** (np.array([0.0, -5.0, -10.0]) / 20)
    )
    assert R.group_delay_s(tm, np.array([40e6]))[0] > 0  # a falling gain delays (minimum phase, causal)


def test_minimum_phase_of_a_butterworth_magnitude_recovers_its_delay(tmp_path):
    """A Butterworth is minimum-phase: |H| alone (a table) must give back its group-delay curve."""
    f = np.arange(0.1e6, 2000e6, 0.1e6)
    h = bandpass_response(f, (30e6, 80e6), 5)
    path = tmp_path / "bw.csv"
    np.savetxt(path, np.c_[f, np.abs(h)], delimiter=",", header="frequency_hz,gain", comments="")
    r = R.build_response(
        {"family": "table", "file": "bw.csv", "phase": "minimum"}, sampling_rate_hz=RATE, base_dir=tmp_path
    )
    fb = np.linspace(30e6, 80e6, 26)
    got = R.group_delay_s(r, fb, aperture_hz=0.4e6)
    want = R.group_delay_s(R.AnalogButterworth((30e6, 80e6), 5), fb)
    np.testing.assert_allclose(got, want, atol=1e-9)  # about 0.3 ns off: the table ends at 2 GHz


def _write_table(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _gp_table():
    f = np.linspace(20e6, 100e6, 17)
    gain = 1.0 + 0.5 * np.sin(f / 20e6)
    phase = -2 * np.pi * f * 30e-9 + 0.3 * np.cos(f / 15e6)
    return f, gain, phase


@pytest.mark.parametrize(
    "layout",
    ["csv_canonical", "semicolon_deg_mhz_db", "whitespace_noheader", "hdf5", "group_delay", "implicit_frequency"],
)
def test_written_tables_interpolate_their_values(tmp_path, layout):
    f, gain, phase = _gp_table()
    if layout == "csv_canonical":
        np.savetxt(
            tmp_path / "t.csv", np.c_[f, gain, phase], delimiter=",", header="frequency_hz,gain,phase_rad", comments=""
        )
        spec = {"file": "t.csv"}
    elif layout == "semicolon_deg_mhz_db":
        wrapped = np.rad2deg(np.angle(np.exp(1j * phase)))
        np.savetxt(
            tmp_path / "t.txt",
            np.c_[f / 1e6, 20 * np.log10(gain), wrapped],
            delimiter=";",
            header="! a comment\nFreq;S21 mag;S21 ang",
            comments="",
        )
        spec = {
            "file": "t.txt",
            "frequency_column": "Freq",
            "frequency_unit": "MHz",
            "gain_column": "S21 mag",
            "gain_unit": "db",
            "phase_column": "S21 ang",
            "phase_unit": "deg",
        }
    elif layout == "whitespace_noheader":
        np.savetxt(tmp_path / "t.dat", np.c_[f / 1e3, -20 * np.log10(gain), phase])
        spec = {
            "file": "t.dat",
            "columns": ["f_khz", "att", "ph"],
            "frequency_column": "f_khz",
            "frequency_unit": "kHz",
            "gain_column": "att",
            "gain_unit": "db_loss",
            "phase_column": 2,
        }
    elif layout == "hdf5":
        with h5py.File(tmp_path / "t.h5", "w") as h:
            h["frequency_hz"], h["gain_db"], h["phase_deg"] = f, 20 * np.log10(gain), np.rad2deg(phase)
        spec = {"file": "t.h5"}
    elif layout == "group_delay":
        tau = -np.gradient(phase, f) / (2 * np.pi)
        np.savetxt(
            tmp_path / "t.csv",
            np.c_[f, gain, tau],
            delimiter=",",
            header="frequency_hz,gain,group_delay_s",
            comments="",
        )
        spec = {"file": "t.csv"}
    else:
        np.savetxt(tmp_path / "t.txt", 20 * np.log10(gain))
        spec = {
            "file": "t.txt",
            "columns": ["gain_db"],
            "frequency_start_hz": f[0],
            "frequency_step_hz": f[1] - f[0],
            "phase": "zero",
        }
    r = R.build_response({"family": "table", **spec}, sampling_rate_hz=RATE, base_dir=tmp_path)
    h = r.transfer(f)
    np.testing.assert_allclose(np.abs(h), gain, rtol=1e-6)
    if layout == "implicit_frequency":
        assert np.all(np.angle(h) == 0)
    elif layout == "group_delay":  # integrated phase: the same delay curve, a constant apart
        np.testing.assert_allclose(
            R.group_delay_s(r, f[1:-1], aperture_hz=1e6), -np.gradient(phase, f)[1:-1] / (2 * np.pi), rtol=0.1
        )
    else:
        np.testing.assert_allclose(np.angle(h * np.exp(-1j * phase)), 0, atol=1e-6)
    # linear interpolation in between, H = 0 outside (never extrapolated)
    mid = 0.5 * (f[3] + f[4])
    assert np.abs(r.transfer(np.array([mid])))[0] == pytest.approx(0.5 * (gain[3] + gain[4]), rel=1e-6)
    assert np.all(r.transfer(np.array([10e6, 150e6])) == 0)
    _impulse_check(r)


def test_table_taper_and_band_warning(tmp_path, caplog):
    f, gain, phase = _gp_table()
    np.savetxt(
        tmp_path / "t.csv", np.c_[f, gain, phase], delimiter=",", header="frequency_hz,gain,phase_rad", comments=""
    )
    r = R.build_response(
        {"family": "table", "file": "t.csv", "taper_hz": 10e6}, sampling_rate_hz=RATE, base_dir=tmp_path
    )
    g = np.abs(r.transfer(np.array([20e6, 25e6, 60e6, 100e6])))
    assert g[0] == 0 and g[3] == 0
    assert g[1] == pytest.approx(0.5 * np.interp(25e6, f, gain), rel=1e-6)
    assert g[2] == pytest.approx(np.interp(60e6, f, gain), rel=1e-6)
    with caplog.at_level(logging.WARNING, logger="crnn.responses"):
        R.build_response(
            {"family": "table", "file": "t.csv", "band_hz": [10e6, 90e6]}, sampling_rate_hz=RATE, base_dir=tmp_path
        )
    assert "t.csv: the table covers 2e+07-1e+08 Hz but the band is 1e+07-9e+07 Hz" in caplog.text


BAD = {
    "nan": ("frequency_hz,gain,phase_rad\n1e6,1,0\n2e6,nan,0\n3e6,1,0\n4e6,1,0\n", "'gain'", "nan"),
    "unsorted": ("frequency_hz,gain,phase_rad\n1e6,1,0\n3e6,1,0\n2e6,1,0\n4e6,1,0\n", "'frequency_hz'", "increasing"),
    "duplicate": ("frequency_hz,gain,phase_rad\n1e6,1,0\n2e6,1,0\n2e6,1,0\n4e6,1,0\n", "'frequency_hz'", "duplicate"),
    "few": ("frequency_hz,gain,phase_rad\n1e6,1,0\n2e6,1,0\n3e6,1,0\n", "'frequency_hz'", "at least 4"),
    "negative": ("frequency_hz,gain,phase_rad\n1e6,1,0\n2e6,-0.1,0\n3e6,1,0\n4e6,1,0\n", "'gain'", ">= 0"),
    "no_phase": ("frequency_hz,gain\n1e6,1\n2e6,1\n3e6,1\n4e6,1\n", "phase", "phase: minimum"),
    "text_cell": ("frequency_hz,gain,phase_rad\n1e6,1,0\n2e6,x,0\n3e6,1,0\n4e6,1,0\n", "'gain'", "row 3"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_tables_are_refused_in_one_line(tmp_path, case):
    text, column, expected = BAD[case]
    p = _write_table(tmp_path, f"{case}.csv", text)
    with pytest.raises(CrnnError) as exc:
        R.build_response({"family": "table", "file": str(p)}, sampling_rate_hz=RATE)
    msg = str(exc.value)
    assert "\n" not in msg and str(p) in msg and column in msg and expected in msg


def test_unknown_column_lists_available_and_missing_file(tmp_path):
    p = _write_table(tmp_path, "t.csv", "frequency_hz,gain_db,phase_deg\n1e6,1,0\n2e6,1,0\n3e6,1,0\n4e6,1,0\n")
    with pytest.raises(CrnnError) as exc:
        R.build_response({"family": "table", "file": str(p), "gain_column": "gain_dB"}, sampling_rate_hz=RATE)
    msg = str(exc.value)
    assert str(p) in msg and "'gain_dB'" in msg and msg.index("'gain_db'") < msg.index("'frequency_hz'")
    assert "did you mean 'gain_db'" in msg
    dup = _write_table(tmp_path, "dup.csv", "f, v, v\n1e6,1,0\n2e6,2,0\n3e6,3,0\n4e6,4,0\n")
    r = R.build_response(
        {"family": "table", "file": str(dup), "frequency_column": "f", "gain_column": 1, "phase_column": "v.1"},
        sampling_rate_hz=RATE,
    )
    assert np.abs(r.transfer(np.array([2e6])))[0] == 2.0
    with pytest.raises(CrnnError, match=r"nope\.csv: response table not found"):
        R.build_response({"family": "table", "file": "nope.csv"}, sampling_rate_hz=RATE, base_dir=tmp_path)


def test_unknown_family_and_key_list_valid_ones():
    with pytest.raises(CrnnError, match=r"did you mean 'resonance'.*valid families: analog_butterworth"):
        R.build_response({"family": "resonanse", "frequency_hz": 1e6}, sampling_rate_hz=RATE)
    with pytest.raises(CrnnError, match=r"unknown key 'Q'.*valid keys: frequency_hz, q"):
        R.build_response({"family": "resonance", "frequency_hz": 1e6, "Q": 3}, sampling_rate_hz=RATE)
    with pytest.raises(CrnnError, match="Nyquist"):
        R.build_response({"family": "digital_butterworth", "band_hz": [30e6, 80e6]}, sampling_rate_hz=100e6)
    with pytest.raises(CrnnError, match="same length"):
        R.build_response({"family": "echo", "delays_s": [1e-8], "amplitudes": [0.1, 0.2]}, sampling_rate_hz=RATE)


def test_chain_channels_transfer_matrix_and_presets():
    a, b = R.Resonance(55e6, 5.0), R.Cable(0.9)
    f = np.linspace(10e6, 200e6, 50)
    np.testing.assert_allclose(R.chain(a, b).transfer(f), a.transfer(f) * b.transfer(f))
    rs = R.build_channel_responses([{"family": "gain", "gain_db": 0.0}, {"family": "delay", "delay_s": 1e-8}], 2, RATE)
    m = R.transfer_matrix(rs, f)
    assert m.shape == (2, 50) and m.dtype == np.complex128
    x = np.zeros((4, 2, N))
    x[:, :, 200] = 1.0
    y = R.apply_response(x, R.transfer_matrix(rs, np.fft.rfftfreq(N, 1 / RATE)), RATE)
    assert np.argmax(y[0, 0]) == 200 and np.argmax(y[0, 1]) == 205  # 10 ns = 5 samples at 500 MHz
    assert len(R.build_channel_responses({"family": "gain"}, 3, RATE)) == 3
    with pytest.raises(CrnnError, match="one spec per channel"):
        R.build_channel_responses([{"family": "gain"}], 3, RATE)
    fb = np.linspace(30e6, 80e6, 51)
    aera = R.build_response(R.AERA_LIKE, sampling_rate_hz=RATE)
    gd = R.group_delay_s(aera, fb)
    assert (gd > 0).all() and gd[0] > gd[25]  # LPDA chirp: low frequencies last
    grand = R.build_response(R.GRAND_LIKE, sampling_rate_hz=RATE)
    g = R.group_delay_s(grand, np.array([40e6, 70e6, 100e6, 150e6, 180e6]))
    assert 20e-9 < g[0] < 30e-9 and np.all((g[1:] > 8e-9) & (g[1:] < 12e-9))
    z = R.build_channel_responses(R.GRAND_LIKE_CHANNELS, 3, RATE)[2]
    ripple = np.abs(z.transfer(np.linspace(70e6, 180e6, 500)))
    assert ripple.max() / ripple.min() > 1.6  # the 30 ns echo of amplitude 0.3: (1.3 / 0.7)


# ------------------------------------------------------------------ the real tables in ../shared
REAL = {
    "SHP-25+__UNIT_1.s2p": {},
    "SHP-48+_Minus40degC.S2P": {},
    "ULP-216+_Plus25DegC.s2p": {"parameter": "s21"},
    "NTU01_LNA_LOGMAG.CSV": {
        "phase_file": "NTU01_LNA_PHASE.CSV",
        "skiprows": 3,
        "columns": ["frequency_hz", "value", "unused"],
        "gain_column": "value",
        "gain_unit": "db",
        "phase_column": "value",
        "phase_unit": "deg",
    },
    "CableAntennuation_James2016.csv": {
        "frequency_column": "FREQ (Hz)",
        "gain_column": "Diff (dB)",
        "gain_unit": "db",
        "phase_column": "Phase (deg)",
        "phase_unit": "deg",
    },
    "surface_placeholder.csv": {
        "frequency_column": "Frequency [Hz]",
        "gain_column": "Gain",
        "phase_column": "phase [rad]",
        "negative_gain": "clip",
    },
}
# group-delay spread over 30-80 MHz (docs/responses.md section 3, [CK]; points within 20 dB of the maximum)
SPREAD_30_80_NS = {
    "SHP-25+__UNIT_1.s2p": 34.4,
    "SHP-48+_Minus40degC.S2P": 27.8,
    "ULP-216+_Plus25DegC.s2p": 0.2,
    "NTU01_LNA_LOGMAG.CSV": 3.7,
    "CableAntennuation_James2016.csv": 1.0,
    "surface_placeholder.csv": 4.5,
}
DELAY_AT_30_NS = {"SHP-25+__UNIT_1.s2p": 38.3, "SHP-48+_Minus40degC.S2P": 30.2}


@pytest.fixture
def responses_dir() -> Path:
    if not RESP_DIR.exists():
        pytest.skip(f"real response tables expected in {RESP_DIR} (../shared/realdata beside the clone)")
    return RESP_DIR


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_tables_read_with_the_documented_numbers(responses_dir, name):
    r = R.build_response({"family": "table", "file": name, **REAL[name]}, sampling_rate_hz=RATE, base_dir=responses_dir)
    f = np.arange(30e6, 80e6 + 1, 0.25e6)
    h = r.transfer(f)
    gd = R.group_delay_s(r, f, aperture_hz=2e6)
    keep = np.abs(h) >= np.abs(h).max() * 0.1
    spread = np.ptp(gd[keep]) * 1e9
    assert spread == pytest.approx(SPREAD_30_80_NS[name], abs=0.1 + 0.03 * SPREAD_30_80_NS[name])
    if name == "CableAntennuation_James2016.csv":
        assert np.mean(gd) == pytest.approx(23e-9, abs=1e-9)
    if name in DELAY_AT_30_NS:  # the high-pass edge delays (positive group delay: causal, no conjugation)
        assert gd[0] * 1e9 == pytest.approx(DELAY_AT_30_NS[name], abs=0.5)
    # the tabulated values themselves, at the table's own frequencies inside 30-80 MHz
    tf, tg, tph = r.frequency_hz, r.gain, r.phase_rad
    inside = (tf >= 30e6) & (tf <= 80e6)
    _impulse_table_check(r, tf[inside], tg[inside], tph[inside])


def _impulse_table_check(r, f_tab, gain_tab, phase_tab):
    """An impulse through apply_response on a fine grid (50 kHz bins), read back at the table's own frequencies."""
    rate, n = 400e6, 8000
    x = np.zeros(n)
    x[0] = 1.0
    spec = np.fft.rfft(R.apply_response(x, r, rate).astype(np.float64))
    f = np.fft.rfftfreq(n, 1 / rate)
    got = np.interp(f_tab, f, spec.real) + 1j * np.interp(f_tab, f, spec.imag)
    assert len(f_tab) >= 4
    np.testing.assert_allclose(np.abs(got), gain_tab, rtol=0.01)
    np.testing.assert_allclose(np.angle(got * np.exp(-1j * phase_tab)), 0, atol=0.01)


def test_real_touchstone_values_equal_the_raw_columns(responses_dir):
    """S21 from scikit-rf equals columns 3 and 4 (dB, deg) of the raw file (README: standard order)."""
    path = responses_dir / "SHP-25+__UNIT_1.s2p"
    raw = np.array(
        [
            [float(v) for v in line.split()]
            for line in path.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith(("!", "#"))
        ]
    )
    r = R.build_response({"family": "table", "file": str(path)}, sampling_rate_hz=RATE)
    f = raw[:, 0] * 1e6
    sel = (f > 20e6) & (f < 300e6)
    h = r.transfer(f[sel])
    np.testing.assert_allclose(20 * np.log10(np.abs(h)), raw[sel, 3], atol=1e-6)
    np.testing.assert_allclose(np.angle(h * np.exp(-1j * np.deg2rad(raw[sel, 4]))), 0, atol=1e-6)


def test_real_magnitude_only_tables(responses_dir, caplog):
    rcu = R.build_response(
        {
            "family": "table",
            "file": "RCU_gain.txt",
            "columns": ["gain_db"],
            "frequency_start_hz": 30e6,
            "frequency_step_hz": 1e6,
            "phase": "minimum",
        },
        sampling_rate_hz=RATE,
        base_dir=responses_dir,
    )
    g = 20 * np.log10(np.abs(rcu.transfer(np.linspace(30e6, 80e6, 51))))
    assert (g.max(), g.min()) == pytest.approx(
        (0.83, -8.50), abs=0.01
    )  # docs: +0.83 to -8.50 dB over 30-80 MHz (a 9.3 dB tilt)
    with caplog.at_level(logging.WARNING, logger="crnn.responses"):
        cab = R.build_response(
            {
                "family": "table",
                "file": "attenuation_RG58_115m.txt",
                "columns": ["frequency_mhz", "loss_db"],
                "frequency_column": "frequency_mhz",
                "frequency_unit": "MHz",
                "phase": "zero",
            },
            sampling_rate_hz=RATE,
            base_dir=responses_dir,
            band_hz=(50e6, 200e6),
        )
    assert "attenuation_RG58_115m.txt" in caplog.text
    np.testing.assert_allclose(-20 * np.log10(np.abs(cab.transfer(np.array([30e6, 80e6])))), [9.38, 15.36], atol=0.01)
    with pytest.raises(CrnnError, match=r"surface_placeholder.csv: column 'Gain' .* >= 0; found -0.0385809 at row 2"):
        R.build_response(
            {
                "family": "table",
                "file": "surface_placeholder.csv",
                **{k: v for k, v in REAL["surface_placeholder.csv"].items() if k != "negative_gain"},
            },
            sampling_rate_hz=RATE,
            base_dir=responses_dir,
        )


# ------------------------------------------------------------------ ingest folds a response in
def test_ingest_coreas_folds_a_response_and_becomes_volts(tmp_path):
    from crnn.ingest import Conversion, _response_args, ingest
    from crnn.resample import resample
    from crnn.tracefile import read_traces

    src = Path(__file__).resolve().parents[1] / "data" / "example_coreas.hdf5"
    spec = [
        {
            "family": "chain",
            "parts": [
                {"family": "gain", "gain_db": 20 * np.log10(2.0)},  # 2 m effective length
                {"family": "resonance", "frequency_hz": 59e6, "q": 5.0},
            ],
        },
        {"family": "delay", "delay_s": 20e-9},
    ]
    conv = Conversion(resample_hz=180e6, band_hz=(30e6, 80e6), response=spec)
    out = ingest(src, tmp_path / "v.h5", conversion=conv)
    data = read_traces(out)
    assert data.unit == "V"
    with h5py.File(out) as f:
        assert f["traces"].attrs.get("unit", f.attrs.get("unit")) == "V"
        assert "resonance" in f.attrs["response_json"] and f.attrs["unit_before_response"] == "V/m"
    field = read_traces(ingest(src, tmp_path / "e.h5", conversion=Conversion()))
    rate = field.sampling_rate_hz
    rs = R.build_channel_responses(spec, 2, rate)
    h = R.transfer_matrix(rs, np.fft.rfftfreq(field.traces.shape[-1], 1 / rate))
    expected = resample(
        R.apply_response(field.traces.astype(np.float64), h, rate).astype(np.float64), rate, 180e6, band_hz=(30e6, 80e6)
    )
    np.testing.assert_allclose(data.traces, expected, rtol=1e-3, atol=1e-6 * np.abs(expected).max())
    assert np.abs(data.traces).max() > 0
    plain = read_traces(ingest(src, tmp_path / "p.h5", conversion=Conversion(resample_hz=180e6, band_hz=(30e6, 80e6))))
    assert plain.unit == "V/m" and not np.allclose(plain.traces, data.traces)
    # --response: inline YAML or a file whose folder resolves table paths
    assert _response_args("{family: gain, gain_db: 3}") == {
        "response": {"family": "gain", "gain_db": 3},
        "response_base_dir": None,
    }
    (tmp_path / "r.yaml").write_text("family: delay\ndelay_s: 1.0e-8\n")
    assert _response_args(str(tmp_path / "r.yaml"))["response_base_dir"] == str(tmp_path.resolve())
    with pytest.raises(CrnnError, match="unknown family"):
        ingest(src, tmp_path / "x.h5", conversion=Conversion(response={"family": "nope"}))


@pytest.mark.parametrize("case", ["nan", "unsorted", "few"])
def test_crnn_simulate_refuses_a_bad_response_table_without_output(tmp_path, case):
    """The whole stage: one error line naming the file and the column, exit 2, no trace file."""
    import json

    from conftest import run_crnn

    text, column, expected = BAD[case]
    table = _write_table(tmp_path, f"{case}.csv", text)
    settings = {
        "randomise": {"enabled": False},
        "receiver": {"chain_response": {"family": "table", "file": str(table)}},
    }
    out = tmp_path / "sim.h5"
    proc = run_crnn("simulate", "-o", out, "--n-traces", "100", "--settings", json.dumps(settings), check=False)
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr
    assert str(table) in errors[0] and column in errors[0] and expected in errors[0]
    assert "Traceback" not in proc.stderr and not out.exists() and not list(tmp_path.glob(".*.tmp"))
