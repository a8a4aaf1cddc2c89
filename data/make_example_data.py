"""Make the small example inputs shipped in data/ (run: python data/make_example_data.py).

* example_traces.root: a ROOT TTree ``events`` written with uproot, branches ``trace``
  (float32[2][500], volts), ``label`` (int8), ``snr`` (float32) and ``event_id`` (int64):
  400 traces of the default acquisition (30-80 MHz, 180 MHz, 500 samples, 2 channels).
* example_traces.h5: 200 traces in the canonical layout, written with plain h5py (no crnn
  code), as another program would write them.
* example_coreas.hdf5: a CoREAS-layout HDF5 file (4 observers, 0.2 ns, [t, Ex, Ey, Ez] in
  statV/cm, CORSIKA axes, steering attributes on /CoREAS), holding band-limited impulses of
  about 100 uV/m made from crnn's analytic pulse model at 5 GHz.
* grand/tadc_example_L1_0000.root + grand/run_example_L1_0000.root: GRANDroot-style trees:
  ``tadc`` (``trace_ch`` int16 ADC counts [1][3][2048] per entry = one detector unit per event,
  ``du_id``, ``run_number``, ``event_number``) and ``trun`` (``run_number``, ``du_id``,
  ``t_bin_size`` = 2 ns per unit): 20 GRAND-like background traces (50-200 MHz, 500 MHz).
  Real GRANDroot stores ``trace_ch`` as nested vectors, which uproot cannot write; crnn reads
  both (the tests use the real files in ../shared/realdata).

Each uses its own seed, different from the pipeline's, so they add new traces.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import uproot

from crnn.noise import ReceiverSettings
from crnn.pulse import PulseModel, PulseSettings
from crnn.simulate import SimulationSettings, Simulator

HERE = Path(__file__).parent
STATV_PER_CM_TO_V_PER_M = 2.99792458e4


def make_root_and_h5() -> None:
    root_set = Simulator(SimulationSettings(), seed=20261128).block(0, 400)
    branches = {
        "trace": root_set.traces.astype(np.float32),
        "label": root_set.meta["labels"].astype(np.int8),
        "snr": root_set.meta["snr"].astype(np.float32),
        "event_id": np.arange(400, dtype=np.int64),
    }
    with uproot.recreate(HERE / "example_traces.root") as f:
        # mktree: a classic TTree (assigning a dict would write an RNTuple in uproot >= 5.7)
        tree = f.mktree("events", {k: np.dtype((v.dtype, v.shape[1:])) for k, v in branches.items()})
        tree.extend(branches)
    h5_set = Simulator(SimulationSettings(), seed=20261129).block(0, 200)
    with h5py.File(HERE / "example_traces.h5", "w") as f:
        ds = f.create_dataset("traces", data=h5_set.traces.astype(np.float32))
        ds.attrs["sampling_rate_hz"] = 180e6
        ds.attrs["unit"] = "V"
        f.create_dataset("labels", data=h5_set.meta["labels"].astype(np.int8))
        f.create_dataset("snr", data=h5_set.meta["snr"].astype(np.float32))


def make_coreas() -> None:
    rx = ReceiverSettings(sampling_rate_hz=5e9, n_samples=2000, n_channels=3, band_hz=(20e6, 1e9), filter_order=4)
    pulses = PulseModel(rx, PulseSettings(arrival_fraction_range=(0.3, 0.5))).generate(4, np.random.default_rng(7))
    dt_s = 1 / rx.sampling_rate_hz
    t = np.arange(rx.n_samples) * dt_s - 200e-9
    with h5py.File(HERE / "example_coreas.hdf5", "w") as f:
        f.attrs["version_major"] = 0
        f.attrs["version_minor"] = 2
        co = f.create_group("CoREAS")
        co.attrs.update({"TimeResolution": dt_s, "ShowerZenithAngle": 30.0, "ShowerAzimuthAngle": 180.0,
                         "PrimaryParticleEnergy": 1e18, "PrimaryParticleType": 14, "GeomagneticAngle": "60.0",
                         "Comment": "example made by crnn data/make_example_data.py, not a CoREAS simulation"})
        obs = co.create_group("observers")
        for i, w in enumerate(pulses.waveforms):
            field_v_per_m = 100e-6 * (1 + i) * w  # (3, T): north, west, up components
            data = np.column_stack([t, field_v_per_m.T / STATV_PER_CM_TO_V_PER_M])
            name = f"pos_{50 * (i + 1)}_0"
            ds = obs.create_dataset(name, data=data.astype(np.float64))
            ds.attrs["name"] = name
            ds.attrs["position"] = np.array([5000.0 * (i + 1), 0.0, 140000.0])
        hl = f.create_group("highlevel")
        hl.attrs.update({"energy": 1e18, "zenith": np.deg2rad(30.0), "azimuth": np.pi})


def make_grand() -> None:
    folder = HERE / "grand"
    folder.mkdir(exist_ok=True)
    rx = ReceiverSettings(sampling_rate_hz=500e6, n_samples=2048, n_channels=3, band_hz=(50e6, 200e6), gain_db=45.0)
    sim = Simulator(SimulationSettings(receiver=rx, signal_fraction=0.0, cw_lines=()), seed=20261130)
    volts = sim.block(0, 20).traces.astype(np.float64)
    lsb_v = 0.9 / 2**13  # 14-bit ADC over +-0.9 V
    counts = np.clip(np.floor(volts / lsb_v), -(2**13), 2**13 - 1).astype(np.int16)
    n = len(counts)
    tadc = {
        "trace_ch": counts[:, None],  # one detector unit per event
        "du_id": np.arange(1001, 1001 + n, dtype=np.uint16)[:, None],
        "run_number": np.full(n, 42, dtype=np.uint32),
        "event_number": np.arange(n, dtype=np.uint32),
    }
    with uproot.recreate(folder / "tadc_example_L1_0000.root") as f:
        f.mktree("tadc", {k: np.dtype((v.dtype, v.shape[1:])) for k, v in tadc.items()}).extend(tadc)
    trun = {
        "run_number": np.array([42], dtype=np.uint32),
        "du_id": np.arange(1001, 1001 + n, dtype=np.uint16)[None],
        "t_bin_size": np.full((1, n), 2.0, dtype=np.float32),
    }
    with uproot.recreate(folder / "run_example_L1_0000.root") as f:
        f.mktree("trun", {k: np.dtype((v.dtype, v.shape[1:])) for k, v in trun.items()}).extend(trun)


if __name__ == "__main__":
    make_root_and_h5()
    make_coreas()
    make_grand()
