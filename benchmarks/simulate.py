"""Suite ``simulate``: traces/s and peak memory of ``crnn simulate`` on the default acquisition.

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


def run(args: argparse.Namespace, quick: bool) -> dict[str, Any]:
    n = 2_000 if quick else args.sim_traces
    repeat = args.repeat or DEFAULT_REPEAT
    rates, peaks = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeat):
            out = Path(tmp) / f"sim{i}.h5"
            code = (
                "import time, json;"
                "from crnn.simulate import SimulationSettings, simulate;"
                f"t=time.perf_counter(); simulate(SimulationSettings(n_traces={n}), {str(out)!r}, seed={i});"
                "dt=time.perf_counter()-t;"
                f"print(json.dumps({{'dt': dt, 'rss_kb': {PEAK_RSS_KB}}}))"
            )
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                  env=env_with())
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            rates.append(n / res["dt"])
            peaks.append(res["rss_kb"] / 1024)
            out.unlink()
    return {
        "n_traces": n,
        "repeat": repeat,
        "measurements": [
            measurement("simulate, default acquisition, written to HDF5", "traces/s", rates),
            measurement("peak RSS of the simulating process", "MiB", peaks),
        ],
    }


def markdown(result: dict[str, Any]) -> str:
    return (
        f"Default acquisition (2 channels x 500 samples at 180 MHz, galactic + thermal noise, CW lines, "
        f"transients, pulses in half the traces), {result['n_traces']:,} traces written to a canonical HDF5 "
        f"file, one process (`crnn.simulate.simulate`) per repeat.\n\n" + measurements_table(result)
    )
