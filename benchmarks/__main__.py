"""Run a benchmark suite and print its result as JSON.

    python -m benchmarks simulate [--n-traces 20000] [--repeat 3]

Suites so far:

* ``simulate``: traces per second of ``crnn simulate`` on the default acquisition (noise,
  interference and pulses, written to a canonical file), and the peak resident memory of a
  subprocess running it (so the measurement does not include this process).
* ``noise``: simulated noise traces per second (galactic + thermal, 2 x 500 samples, no
  interference, no pulses) made block by block in one process on one core, for ``--n-traces``
  (default 10 million, not written to disk), with the process's peak memory; memory must not
  grow with the number of traces.
* ``ingest``: MB/s and peak memory of ``crnn ingest`` on a large canonical HDF5 file
  (``--size-gb``, default 4; written first, with random numbers, in chunks) and on a ROOT TTree
  of fixed-size trace arrays (``--root-size-gb``, default 0.5), each run in a subprocess.
* ``predict``: traces/s of a trained model (``--model``, default the demo's GRU) alone, on
  (N, 2, 500) float32 arrays in memory, and end to end with ``crnn predict`` from a canonical
  HDF5 file of simulated traces to an ``.h5`` output (including start-up and model loading).

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


def _peak_rss_of(cmd: list[str]) -> tuple[float, float]:
    """Wall time (s) and peak RSS (MiB) of ``cmd``, measured in a fresh wrapper process."""
    wrapper = (
        "import json, resource, subprocess, sys, time;"
        "t = time.perf_counter(); subprocess.run(sys.argv[1:], check=True, capture_output=True);"
        "print(json.dumps([time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))"
    )
    proc = subprocess.run([sys.executable, "-c", wrapper, *cmd], check=True, capture_output=True, text=True)
    dt, rss_kb = json.loads(proc.stdout.strip().splitlines()[-1])
    return dt, rss_kb / 1024


def _write_big_canonical(path: Path, size_gb: float) -> int:
    import h5py
    import numpy as np

    n = int(size_gb * 1e9 / (2 * 500 * 4))
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("traces", shape=(n, 2, 500), dtype="f4", chunks=(1024, 2, 500))
        ds.attrs["sampling_rate_hz"] = 180e6
        ds.attrs["unit"] = "V"
        lab = f.create_dataset("labels", shape=(n,), dtype="i1")
        step = 16384
        block = rng.standard_normal((step, 2, 500), dtype=np.float32)
        for i in range(0, n, step):
            m = min(step, n - i)
            ds[i : i + m] = block[:m]
            lab[i : i + m] = (np.arange(i, i + m) % 2).astype("i1")
    return n


def _write_big_root(path: Path, size_gb: float) -> int:
    import numpy as np
    import uproot

    n = int(size_gb * 1e9 / (2 * 500 * 4))
    rng = np.random.default_rng(0)
    step = 16384
    block = rng.standard_normal((step, 2, 500), dtype=np.float32)
    with uproot.recreate(path, compression=None) as f:
        tree = f.mktree("events", {"trace": np.dtype(("f4", (2, 500))), "label": np.dtype("i1")})
        for i in range(0, n, step):
            m = min(step, n - i)
            tree.extend({"trace": block[:m], "label": (np.arange(i, i + m) % 2).astype("i1")})
    return n


def bench_ingest(size_gb: float, root_size_gb: float) -> dict[str, object]:
    out: dict[str, object] = {"suite": "ingest", "machine": machine()}
    crnn = [sys.executable, "-m", "crnn", "ingest"]
    with tempfile.TemporaryDirectory(dir=os.environ.get("CRNN_BENCH_TMP")) as tmp:
        big = Path(tmp) / "big.h5"
        n = _write_big_canonical(big, size_gb)
        mb = big.stat().st_size / 1e6
        dt, rss = _peak_rss_of([*crnn, "-i", str(big), "-o", str(Path(tmp) / "copy.h5")])
        out["canonical"] = {"traces": n, "file_mb": round(mb), "seconds": round(dt, 1),
                            "mb_per_s": round(mb / dt), "peak_rss_mib": round(rss)}
        big.unlink()
        (Path(tmp) / "copy.h5").unlink()
        root = Path(tmp) / "big.root"
        n = _write_big_root(root, root_size_gb)
        mb = root.stat().st_size / 1e6
        dt, rss = _peak_rss_of([*crnn, "-i", str(root), "-o", str(Path(tmp) / "root.h5"), "--tree", "events",
                                "--branch", "trace", "--unit", "V", "--sampling-rate-hz", "180e6",
                                "--label-branch", "label"])
        out["root"] = {"traces": n, "file_mb": round(mb), "seconds": round(dt, 1),
                       "mb_per_s": round(mb / dt), "peak_rss_mib": round(rss)}
    return out


def bench_noise(n_traces: int) -> dict[str, object]:
    code = (
        "import json, os, resource, time;"
        "from crnn.simulate import BLOCK_SIZE, SimulationSettings, Simulator;"
        "sim = Simulator(SimulationSettings(signal_fraction=0.0, cw_lines=(), transients=()), seed=1);"
        f"n = {n_traces}; t = time.perf_counter(); rss = [];"
        "[rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) for k in range(-(-n // BLOCK_SIZE))"
        " if sim.block(k) is not None and k % 1000 == 0];"
        "dt = time.perf_counter() - t;"
        "print(json.dumps({'dt': dt, 'rss_kb': rss}))"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", code]
    if hasattr(os, "sched_setaffinity"):
        cmd = ["taskset", "-c", "0", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "suite": "noise", "n_traces": n_traces, "cores": 1,
        "traces_per_s": n_traces / res["dt"],
        "peak_rss_mib_every_million_traces": [round(r / 1024) for r in res["rss_kb"]],
        "machine": machine(),
    }


def bench_predict(model: str, n_traces: int, repeat: int) -> dict[str, object]:
    import numpy as np

    from crnn.classifier import load_classifier
    from crnn.simulate import SimulationSettings, simulate

    clf = load_classifier(model)
    x = np.random.default_rng(0).standard_normal((n_traces, clf.n_channels, clf.n_samples), dtype=np.float32)
    clf.predict(x[:4096], sampling_rate_hz=clf.sampling_rate_hz)  # trace the function once
    rates = []
    for _ in range(repeat):
        t = time.perf_counter()
        clf.predict(x, sampling_rate_hz=clf.sampling_rate_hz)
        rates.append(n_traces / (time.perf_counter() - t))
    e2e = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.h5"
        simulate(SimulationSettings(n_traces=n_traces), src, seed=1)
        for i in range(repeat):
            dt, _ = _peak_rss_of([sys.executable, "-m", "crnn", "predict", "-m", model, "-i", str(src),
                                  "-o", str(Path(tmp) / f"out{i}.h5")])
            e2e.append(n_traces / dt)
    return {
        "suite": "predict", "model": model, "n_traces": n_traces, "repeat": repeat,
        "model_only_traces_per_s": {"median": statistics.median(rates), "min": min(rates), "max": max(rates)},
        "end_to_end_traces_per_s": {"median": statistics.median(e2e), "min": min(e2e), "max": max(e2e)},
        "machine": machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("suite", choices=["simulate", "noise", "ingest", "predict"])
    parser.add_argument("--model", default="results/models/gru/model.keras", help="predict: model to time")
    parser.add_argument("--n-traces", type=int, default=20_000, help="simulate: traces per run")
    parser.add_argument("--repeat", type=int, default=3, help="simulate: repetitions")
    parser.add_argument("--size-gb", type=float, default=4.0, help="ingest: size of the canonical file")
    parser.add_argument("--root-size-gb", type=float, default=0.5, help="ingest: size of the ROOT file")
    args = parser.parse_args()
    if args.suite == "simulate":
        result = bench_simulate(args.n_traces, args.repeat)
    elif args.suite == "noise":
        result = bench_noise(args.n_traces if args.n_traces != 20_000 else 10_000_000)
    elif args.suite == "predict":
        result = bench_predict(args.model, args.n_traces, args.repeat)
    else:
        result = bench_ingest(args.size_gb, args.root_size_gb)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
