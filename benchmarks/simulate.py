"""Suite ``simulate``: traces/s and peak memory of ``crnn simulate`` on the default acquisition,
with randomised detectors (the default) and with one fixed detector.

Noise, interference and pulses in half the traces, written to a canonical HDF5 file, each repeat
in a fresh subprocess (its peak RSS does not include this process).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import PEAK_RSS_KB, env_with, measurement, measurements_table

NAME = "simulate"
DEFAULT_REPEAT = 3


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sim-traces", type=int, default=20_000, help="simulate: traces per run")


#: the two detector modes: randomised per trace (the default training world) and one fixed detector
MODES = {
    "randomised detectors (default)": "SimulationSettings(n_traces={n})",
    "one fixed detector (randomise.enabled false)": "SimulationSettings(n_traces={n}, randomise=RandomiseSettings(enabled=False))",
}


def run(args: argparse.Namespace, quick: bool) -> dict[str, Any]:
    n = 2_000 if quick else args.sim_traces
    repeat = args.repeat or DEFAULT_REPEAT
    measurements = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode, settings in MODES.items():
            rates, peaks = [], []
            for i in range(repeat):
                out = Path(tmp) / f"sim{i}.h5"
                code = (
                    "import time, json;"
                    "from crnn.detector import RandomiseSettings;"
                    "from crnn.simulate import SimulationSettings, simulate;"
                    f"t=time.perf_counter(); simulate({settings.format(n=n)}, {str(out)!r}, seed={i});"
                    "dt=time.perf_counter()-t;"
                    f"print(json.dumps({{'dt': dt, 'rss_kb': {PEAK_RSS_KB}}}))"
                )
                proc = subprocess.run(
                    [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env_with()
                )
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                rates.append(n / res["dt"])
                peaks.append(res["rss_kb"] / 1024)
                out.unlink()
            measurements += [
                measurement(f"simulate, {mode}, written to HDF5", "traces/s", rates),
                measurement(f"peak RSS of the simulating process, {mode}", "MiB", peaks),
            ]
    return {"n_traces": n, "repeat": repeat, "measurements": measurements}


def markdown(result: dict[str, Any]) -> str:
    return (
        f"Default acquisition (2 channels x 500 samples at 180 MHz, galactic + thermal noise, CW lines, "
        f"transients, pulses in half the traces), {result['n_traces']:,} traces written to a canonical HDF5 "
        f"file, one process (`crnn.simulate.simulate`) per repeat; with the default randomised detectors "
        f"(64 drawn per 1,000-trace block, per-trace channel jitter, receiver temperature, sky scale and CW "
        f"lines) and with one fixed detector.\n\n" + measurements_table(result)
    )
