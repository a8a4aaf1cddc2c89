"""Suite ``noise``: simulated noise traces/s on one core, and the peak memory as the run grows.

Galactic + thermal noise, 2 x 500 samples, no interference, no pulses, made block by block
(1,000 traces per block) in one process pinned to one core, not written to disk. The peak RSS is
read ten times during the run: it must not grow with the number of traces.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from typing import Any

from benchmarks.common import PEAK_RSS_KB, env_with, fmt, measurement, measurements_table

NAME = "noise"
DEFAULT_REPEAT = 3


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--noise-traces", type=int, default=2_000_000, help="noise: traces per run")


def run(args: argparse.Namespace, quick: bool) -> dict[str, Any]:
    n = 20_000 if quick else args.noise_traces
    repeat = args.repeat or DEFAULT_REPEAT
    every = max(1, -(-n // 1000) // 10)  # blocks between two memory readings (10 readings)
    code = (
        "import json, time;"
        "from crnn.simulate import BLOCK_SIZE, SimulationSettings, Simulator;"
        "sim = Simulator(SimulationSettings(signal_fraction=0.0, cw_lines=(), transients=()), seed=1);"
        f"n = {n}; t = time.perf_counter(); rss = [];"
        f"[rss.append({PEAK_RSS_KB}) for k in range(-(-n // BLOCK_SIZE))"
        f" if sim.block(k) is not None and (k + 1) % {every} == 0];"
        "dt = time.perf_counter() - t;"
        "print(json.dumps({'dt': dt, 'rss_kb': rss}))"
    )
    env = env_with(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, "-c", code]
    pinned = hasattr(os, "sched_setaffinity") and shutil.which("taskset") is not None
    if pinned:
        cmd = ["taskset", "-c", str(min(os.sched_getaffinity(0))), *cmd]
    rates, peaks, growth = [], [], []
    for _ in range(repeat):
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        rss = [r / 1024 for r in res["rss_kb"]]
        rates.append(n / res["dt"])
        peaks.append(rss[-1])
        growth.append(rss[-1] - rss[0])
        readings = [round(r) for r in rss]
    return {
        "n_traces": n,
        "repeat": repeat,
        "pinned_to_one_core": pinned,
        "rss_readings_every_traces": every * 1000,
        "rss_readings_mib_last_run": readings,
        "measurements": [
            measurement("noise traces, 1 core", "traces/s", rates),
            measurement("peak RSS at the end of the run", "MiB", peaks),
            measurement("peak RSS growth from the first to the last reading", "MiB", growth),
        ],
    }


def markdown(result: dict[str, Any]) -> str:
    readings = ", ".join(str(r) for r in result["rss_readings_mib_last_run"])
    return (
        f"Galactic + thermal noise, 2 x 500 samples, no CW lines, transients or pulses, {result['n_traces']:,} "
        f"traces made block by block in one process"
        f"{' pinned to one core (`taskset`)' if result['pinned_to_one_core'] else ''}, not written to disk.\n\n"
        + measurements_table(result)
        + f"\n\nPeak RSS of the last run every {fmt(result['rss_readings_every_traces'])} traces: {readings} MiB."
    )
