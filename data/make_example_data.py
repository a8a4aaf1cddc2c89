"""Make the small example inputs shipped in data/ (run: python data/make_example_data.py).

* example_traces.root: a ROOT TTree ``events`` written with uproot, branches ``trace``
  (float32[2][500], volts), ``label`` (int8), ``snr`` (float32) and ``event_id`` (int64):
  400 traces of the default acquisition (30-80 MHz, 180 MHz, 500 samples, 2 channels).
* example_traces.h5: 200 traces in the canonical layout, written with plain h5py (no crnn
  code), as another program would write them.

Both use their own seeds, different from the pipeline's, so they add new traces.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import uproot

from crnn.simulate import SimulationSettings, Simulator

HERE = Path(__file__).parent


def main() -> None:
    sim = Simulator(SimulationSettings(), seed=20261128)
    root_set = sim.block(0, 400)
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


if __name__ == "__main__":
    main()
