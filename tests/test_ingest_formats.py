"""Ingest of CoREAS HDF5, GRANDroot and other ROOT files: real third-party files and bad input."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import uproot

from crnn.errors import CrnnError, MissingFieldError
from crnn.ingest import Conversion, RootMapping, detect_format, ingest
from crnn.physics import bandpass_response
from crnn.resample import resample
from crnn.tracefile import read_traces

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
EPS0_C = 8.8541878128e-12 * 299_792_458.0  # W/(V^2): energy fluence = eps0 c int E^2 dt
STATV = 2.99792458e4


def fluence_j_per_m2(e_v_per_m: np.ndarray, fs_hz: float) -> np.ndarray:
    return EPS0_C * np.sum(e_v_per_m**2, axis=-1) / fs_hz


# -- real third-party files ----------------------------------------------------------------


def test_real_coreas_file_matches_h5py(tmp_path, realdata):
    path = realdata / "coreas" / "example_data.hdf5"
    assert detect_format(path) == "coreas"
    data = read_traces(
        ingest(path, tmp_path / "c.h5", conversion=Conversion(polarisations=("north_south", "east_west", "vertical")))
    )
    with h5py.File(path) as f:
        names = list(f["CoREAS/observers"])
        raw = np.stack([f["CoREAS/observers"][n][:] for n in names])
        dt = f["CoREAS"].attrs["TimeResolution"]
        energy = f["CoREAS"].attrs["PrimaryParticleEnergy"]
    assert data.traces.shape == (8, 3, 4082) and data.unit == "V/m"
    assert data.sampling_rate_hz == pytest.approx(1 / dt)
    np.testing.assert_allclose(data.traces[:, 0], raw[:, :, 1] * STATV, rtol=1e-6)  # north = Ex
    np.testing.assert_allclose(data.traces[:, 1], -raw[:, :, 2] * STATV, rtol=1e-6)  # east = -Ey
    np.testing.assert_allclose(data.traces[:, 2], raw[:, :, 3] * STATV, rtol=1e-6)
    assert [o.decode() if isinstance(o, bytes) else o for o in data.meta["observer"]] == names
    assert data.meta["primary_energy_ev"][0] == pytest.approx(energy)
    with h5py.File(path) as f:
        pos = f["CoREAS/observers"][names[2]].attrs["position"]
    assert data.meta["position_north_m"][2] == pytest.approx(pos[0] / 100)


def test_coreas_fluence_is_kept_by_resampling_to_180_mhz(tmp_path, realdata):
    path = realdata / "coreas" / "example_data.hdf5"
    band = (30e6, 80e6)
    out = read_traces(
        ingest(path, tmp_path / "c.h5", conversion=Conversion(resample_hz=180e6, band_hz=band, n_samples=500))
    )
    assert out.traces.shape == (8, 2, 500) and out.sampling_rate_hz == 180e6
    with h5py.File(path) as f:
        raw = np.stack([f["CoREAS/observers"][n][:] for n in f["CoREAS/observers"]])
    fs = 1e10
    e = np.stack([raw[:, :, 1], -raw[:, :, 2]], axis=1) * STATV
    spec = np.fft.rfft(e, axis=-1) * bandpass_response(np.fft.rfftfreq(e.shape[-1], 1 / fs), band, 10)
    reference = fluence_j_per_m2(np.fft.irfft(spec, n=e.shape[-1], axis=-1), fs)
    kept = fluence_j_per_m2(out.traces.astype(np.float64), 180e6)
    assert reference.min() > 0
    np.testing.assert_allclose(kept, reference, rtol=0.02)


def test_real_grand_noise_matches_uproot(tmp_path, realdata):
    path = realdata / "grand" / "noise_traces_gp13_2024_01_night_datafiles_185-190_merged.root"
    assert detect_format(path) == "grandroot"
    data = read_traces(ingest(path, tmp_path / "g.h5"))
    with uproot.open(path) as f:
        t = f["tadc"]
        raw = np.stack([np.asarray(x.tolist(), dtype=np.int16) for x in t["trace_ch"].array()])  # (36, 1, 3, 2048)
        du = np.concatenate(t["du_id"].array(library="np"))
    assert data.traces.shape == (36, 3, 2048) and data.unit == "ADC" and data.sampling_rate_hz == 500e6
    np.testing.assert_array_equal(data.traces, raw[:, 0].astype(np.float32))
    np.testing.assert_array_equal(data.meta["du_id"], du)
    assert data.attrs["sampling_rate_source"] == "tadc.adc_sampling_frequency"


@pytest.mark.parametrize(
    ("folder", "pattern", "shape", "rate", "unit"),
    [
        ("sim_xiaodushan_adcnoise", "adc_*_L1_*.root", (49, 3, 2048), 500e6, "ADC"),
        ("sim_xiaodushan_adcnoise", "efield_*_L0_*.root", (49, 3, 8192), 2e9, "uV/m"),
        ("sim_xiaodushan_adcnoise", "efield_*_L1_*.root", (49, 3, 2048), 500e6, "uV/m"),
        ("sim_xiaodushan_voltage", "tvoltage_*with-noise.root", (5, 3, 2048), 2e9, "uV"),
        ("sim_xiaodushan_voltage", "tvoltage_*no-noise.root", (5, 3, 2048), 2e9, "uV"),
    ],
)
def test_real_grand_simulation_trees(tmp_path, realdata, folder, pattern, shape, rate, unit):
    path = next((realdata / "grand" / folder).glob(pattern))
    data = read_traces(ingest(path, tmp_path / "g.h5"))
    assert data.traces.shape == shape and data.sampling_rate_hz == pytest.approx(rate) and data.unit == unit
    with uproot.open(path) as f:
        tree = f[next(k for k in ("tadc", "tefield", "tvoltage") if k in f)]
        branch = "trace_ch" if "trace_ch" in tree.keys() else "trace"
        first = np.asarray(tree[branch].array(entry_stop=1)[0].tolist())  # (n_du, 3, T) of entry 0
        events = tree["event_number"].array(library="np")
    np.testing.assert_allclose(data.traces[: len(first)], first.astype(np.float32), rtol=1e-6)
    assert data.meta["event_number"][0] == events[0]


def test_real_rnog_fixed_size_class_branch(tmp_path, realdata):
    path = realdata / "rnog" / "pulser_data_21.root"
    branch = "waveforms/radiant_data[24][2048]"
    data = read_traces(
        ingest(
            path,
            tmp_path / "r.h5",
            root=RootMapping(
                tree="combined", branch=branch, unit="ADC", sampling_rate_hz=3.2e9, id_branches=("header/event_number",)
            ),
        )
    )
    with uproot.open(path) as f:
        raw = f["combined"][branch].array(library="np")
        events = f["combined"]["header/event_number"].array(library="np")
    assert data.traces.shape == (5, 24, 2048) and data.sampling_rate_hz == 3.2e9
    np.testing.assert_array_equal(data.traces, raw.astype(np.float32))
    np.testing.assert_array_equal(data.meta["header_event_number"], events)


# -- the project's own example files ---------------------------------------------------------


def test_example_grand_file_finds_its_run_tree(tmp_path):
    path = DATA / "grand" / "tadc_example_L1_0000.root"
    data = read_traces(ingest(path, tmp_path / "g.h5"))
    assert data.traces.shape == (20, 3, 2048) and data.sampling_rate_hz == 500e6
    assert data.attrs["sampling_rate_source"] == "run_example_L1_0000.root:trun.t_bin_size"
    np.testing.assert_array_equal(data.meta["du_id"], np.arange(1001, 1021))


def test_example_coreas_resampled_into_the_default_acquisition(tmp_path):
    data = read_traces(
        ingest(
            DATA / "example_coreas.hdf5",
            tmp_path / "c.h5",
            conversion=Conversion(resample_hz=180e6, band_hz=(30e6, 80e6), n_samples=500),
        )
    )
    assert data.traces.shape == (4, 2, 500)
    with h5py.File(DATA / "example_coreas.hdf5") as f:
        raw = np.stack([f["CoREAS/observers"][n][:] for n in f["CoREAS/observers"]])
    e = np.stack([raw[:, :, 1], -raw[:, :, 2]], axis=1) * STATV
    expected = resample(e, 5e9, 180e6, band_hz=(30e6, 80e6))
    np.testing.assert_allclose(data.traces[..., : expected.shape[-1]], expected, rtol=1e-4, atol=1e-9)
    assert np.all(data.traces[..., expected.shape[-1] :] == 0)  # zero-padded to 500 samples
    peak = np.abs(data.traces).max(axis=(1, 2))
    assert np.all((peak > 1e-6) & (peak < 1e-3))  # tens of uV/m


def test_resampling_a_sine_is_exact_and_keeps_energy():
    t = np.arange(2000) / 200e6
    x = np.sin(2 * np.pi * 53e6 * t)
    y = resample(x, 200e6, 180e6)
    assert y.shape == (1800,)
    t2 = np.arange(1800) / 180e6
    np.testing.assert_allclose(y[20:-20], np.sin(2 * np.pi * 53e6 * t2[20:-20]), atol=1e-6)
    assert np.mean(y**2) == pytest.approx(0.5, rel=1e-3)
    # a tone above the new Nyquist frequency (90 MHz) is removed, not aliased
    z = resample(np.sin(2 * np.pi * 95e6 * t), 200e6, 180e6)
    assert np.sqrt(np.mean(z**2)) < 1e-6


# -- bad input ----------------------------------------------------------------------------


def _coreas(path, *, drop=None, observer=None, attrs=None):
    with h5py.File(path, "w") as f:
        co = f.create_group("CoREAS")
        co.attrs.update(attrs if attrs is not None else {"TimeResolution": 1e-10})
        obs = co.create_group("observers") if drop != "observers" else co.create_group("observer")
        data = observer if observer is not None else np.column_stack([np.arange(100) * 1e-10, np.zeros((100, 3))])
        obs.create_dataset("pos_0_0", data=data)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"drop": "observers"}, r"no group 'observers'.*did you mean 'observer'"),
        ({"attrs": {"Comment": "x"}}, r"/CoREAS: no attribute 'TimeResolution'"),
        ({"observer": np.zeros((100, 3))}, r"pos_0_0: expected an \(n, 4\) array"),
        ({"observer": np.column_stack([np.arange(100) * 1e-10, np.full((100, 3), np.nan)])}, "NaN or Inf"),
        ({"observer": np.column_stack([np.arange(100) * 2e-10, np.zeros((100, 3))])}, "one sampling rate per file"),
    ],
)
def test_bad_coreas_files(tmp_path, kwargs, needle):
    _coreas(tmp_path / "c.hdf5", **kwargs)
    with pytest.raises(CrnnError, match=needle):
        ingest(tmp_path / "c.hdf5", tmp_path / "out.h5", fmt="coreas")
    assert not list(tmp_path.glob("*out*")) and not list(tmp_path.glob(".out*"))


def test_grand_file_without_a_run_tree_says_what_to_give(tmp_path):
    src = DATA / "grand" / "tadc_example_L1_0000.root"
    (tmp_path / src.name).write_bytes(src.read_bytes())
    with pytest.raises(CrnnError, match=r"cannot find the sampling rate.*--sampling-rate-hz or --run-file"):
        ingest(tmp_path / src.name, tmp_path / "out.h5")
    data = read_traces(
        ingest(tmp_path / src.name, tmp_path / "ok.h5", run_file=DATA / "grand" / "run_example_L1_0000.root")
    )
    assert data.sampling_rate_hz == 500e6
    assert not (tmp_path / "out.h5").exists()


def test_grand_inconsistent_bin_sizes_are_refused(tmp_path):
    src = DATA / "grand" / "tadc_example_L1_0000.root"
    (tmp_path / src.name).write_bytes(src.read_bytes())
    trun = {
        "run_number": np.array([42], np.uint32),
        "du_id": np.arange(1001, 1021, dtype=np.uint16)[None],
        "t_bin_size": np.r_[np.full(10, 2.0), np.full(10, 0.5)].astype(np.float32)[None],
    }
    with uproot.recreate(tmp_path / "run_x_L1_0000.root") as f:
        f.mktree("trun", {k: np.dtype((v.dtype, v.shape[1:])) for k, v in trun.items()}).extend(trun)
    with pytest.raises(CrnnError, match="inconsistent sampling rates"):
        ingest(tmp_path / src.name, tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()


def test_foreign_and_missing_files(tmp_path):
    (tmp_path / "a.txt").write_text("x,y\n1,2\n")
    with pytest.raises(CrnnError, match="neither HDF5 nor ROOT"):
        ingest(tmp_path / "a.txt", tmp_path / "o.h5")
    with pytest.raises(CrnnError, match="no such file"):
        ingest(tmp_path / "missing.root", tmp_path / "o.h5")
    with pytest.raises(CrnnError, match="needs a mapping"):
        ingest(DATA / "example_traces.root", tmp_path / "o.h5")
    with pytest.raises(MissingFieldError, match="no tree 'tadc'"):
        ingest(DATA / "example_traces.root", tmp_path / "o.h5", fmt="grandroot")
    assert not (tmp_path / "o.h5").exists()


def test_empty_root_tree_is_refused(tmp_path):
    with uproot.recreate(tmp_path / "empty.root") as f:
        f.mktree("events", {"trace": np.dtype(("f4", (2, 16)))})
    with pytest.raises(CrnnError, match=r"empty\.root:events: tree has no entries"):
        ingest(tmp_path / "empty.root", tmp_path / "o.h5", root=RootMapping(unit="V", sampling_rate_hz=1e8))
    assert not (tmp_path / "o.h5").exists()


def test_string_trace_branch_is_refused(tmp_path):
    with uproot.recreate(tmp_path / "s.root") as f:
        f["events"] = {"trace": np.array(["a", "bb", "c"])}
    with pytest.raises(CrnnError, match=r"branch 'trace' must hold numeric traces|jagged"):
        ingest(tmp_path / "s.root", tmp_path / "o.h5", root=RootMapping(unit="V", sampling_rate_hz=1e8))
    assert not (tmp_path / "o.h5").exists()
