"""Run a benchmark suite and print its result as JSON.

    python -m benchmarks simulate [--n-traces 20000] [--repeat 3]

Suites so far:

* ``simulate``: traces per second of ``crnn simulate`` on the default acquisition (noise,
  interference and pulses, written to a canonical file), and the peak resident memory of a
  subprocess running it (so the measurement does not include this process).

Each measurement is repeated; the median and the spread (min, max) are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def machine() -> dict[str, object]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}


def bench_simulate(n_traces: int, repeat: int) -> dict[str, object]:
    rates, peaks = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeat):
            out = Path(tmp) / f"sim{i}.h5"
            code = (
                "import time, resource, json;"
                "from crnn.simulate import SimulationSettings, simulate;"
                f"t=time.perf_counter(); simulate(SimulationSettings(n_traces={n_traces}), {str(out)!r}, seed={i});"
                "dt=time.perf_counter()-t;"
                "print(json.dumps({'dt': dt, 'rss_kb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))"
            )
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            rates.append(n_traces / res["dt"])
            peaks.append(res["rss_kb"] / 1024)
    return {
        "suite": "simulate",
        "n_traces": n_traces,
        "repeat": repeat,
        "traces_per_s": {"median": statistics.median(rates), "min": min(rates), "max": max(rates)},
        "peak_rss_mib": {"median": statistics.median(peaks), "min": min(peaks), "max": max(peaks)},
        "machine": machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("suite", choices=["simulate"])
    parser.add_argument("--n-traces", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(bench_simulate(args.n_traces, args.repeat), indent=2))


if __name__ == "__main__":
    main()
