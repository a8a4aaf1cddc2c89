"""Suite ``train_memory``: the peak memory of streamed training does not grow with the split size.

Simulates two training splits of N and ``--factor`` x N traces (default 50,000 and 200,000 of
2 x 500 float32 samples: 0.2 and 0.8 GB) and one validation split, then trains the default GRU
for one epoch on each with ``streaming: always`` in a subprocess, and reports the peak resident
memory (``ru_maxrss``) of each subprocess and their ratio (target: <= 1.10).

    python -m benchmarks train_memory [--memory-traces 50000] [--memory-factor 4] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NAME = "train_memory"
TARGET_RATIO = 1.10
QUICK_N = 3000

CHILD = """
import json, resource, sys, time
t = time.perf_counter()
from crnn.cli import main
rc = main(sys.argv[1:])
dt = time.perf_counter() - t
print("RESULT " + json.dumps({"rc": rc, "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "dt": dt}))
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--memory-traces",
        type=int,
        default=50_000,
        help="train_memory: traces of the smaller training split (default 50,000)",
    )
    p.add_argument(
        "--memory-factor",
        type=int,
        default=4,
        help="train_memory: the larger split has this many times the traces (default 4)",
    )
    p.add_argument("--memory-val", type=int, default=5_000, help="train_memory: traces of the validation split")
    p.add_argument("--memory-threads", type=int, default=0, help="train_memory: CPU threads of the training (0 = all)")


def _train_child(train: Path, val: Path, out: Path, threads: int) -> dict[str, float]:
    training = {"epochs": 1, "streaming": "always", "checkpoint": False}
    cmd = [
        sys.executable,
        "-c",
        CHILD,
        "train",
        "--train",
        str(train),
        "--val",
        str(val),
        "-o",
        str(out),
        "--training",
        json.dumps(training),
        "--threads",
        str(threads),
        "--restart",
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, check=False, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        msg = f"training on {train} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        raise RuntimeError(msg)
    result = json.loads(line[7:])
    if result["rc"] != 0:
        msg = f"crnn train on {train} ended with exit code {result['rc']}:\n{proc.stderr[-3000:]}"
        raise RuntimeError(msg)
    return result


def run(args: argparse.Namespace, quick: bool) -> dict:
    from crnn.simulate import SimulationSettings, simulate
    from crnn.tracefile import TraceFile

    n_small = QUICK_N if quick else args.memory_traces
    n_val = min(args.memory_val, max(500, n_small // 2))
    sizes = {"N": n_small, f"{args.memory_factor}N": args.memory_factor * n_small}
    rss: dict[str, list[float]] = {k: [] for k in sizes}
    seconds: dict[str, list[float]] = {k: [] for k in sizes}
    file_mb: dict[str, float] = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="crnn-train-memory-") as tmp:
        d = Path(tmp)
        simulate(SimulationSettings(n_traces=n_val), d / "val.h5", seed=101)
        for i, (label, n) in enumerate(sizes.items()):
            simulate(SimulationSettings(n_traces=n), d / f"train_{label}.h5", seed=102 + i)
            with TraceFile(d / f"train_{label}.h5") as tf:
                file_mb[label] = tf.n_traces * tf.n_channels * tf.n_samples * 4 / 1e6
        simulate_s = time.perf_counter() - t0
        for r in range(max(1, args.repeat or 1)):
            for label in sizes:
                res = _train_child(d / f"train_{label}.h5", d / "val.h5", d / f"out_{label}_{r}", args.memory_threads)
                rss[label].append(res["rss_kb"] / 1024)
                seconds[label].append(res["dt"])
    big = f"{args.memory_factor}N"
    ratios = [b / s for s, b in zip(rss["N"], rss[big], strict=True)]
    return {
        "suite": NAME,
        "quick": quick,
        "n_traces": sizes,
        "n_val": n_val,
        "traces_mb": file_mb,
        "simulate_s": round(simulate_s, 1),
        "target_ratio": TARGET_RATIO,
        "measurements": [
            {"name": "peak RSS, N traces", "unit": "MB", "values": rss["N"]},
            {"name": f"peak RSS, {big} traces", "unit": "MB", "values": rss[big]},
            {"name": f"peak RSS ratio {big} / N", "unit": "", "values": ratios},
            {"name": "training process time, N traces (1 epoch, incl. start-up)", "unit": "s", "values": seconds["N"]},
            {
                "name": f"training process time, {big} traces (1 epoch, incl. start-up)",
                "unit": "s",
                "values": seconds[big],
            },
        ],
    }


def markdown(result: dict) -> str:
    sizes = result["n_traces"]
    mb = result.get("traces_mb", {})
    rows = ["| measurement | value |", "|---|---|"]
    for m in result["measurements"]:
        values = m["values"]
        value = sorted(values)[len(values) // 2] if values else float("nan")
        unit = f" {m['unit']}" if m["unit"] else ""
        text = f"{value:.3f}" if not m["unit"] else f"{value:.0f}{unit}"
        rows.append(f"| {m['name']} | {text} |")
    ratio = sorted(result["measurements"][2]["values"])[len(result["measurements"][2]["values"]) // 2]
    verdict = "meets" if ratio <= result["target_ratio"] else "misses"
    head = (
        f"Streamed training (default GRU, 1 epoch) on {', '.join(f'{k} = {v:,} traces ({mb.get(k, 0):.0f} MB)' for k, v in sizes.items())}; "
        f"the ratio {verdict} the target of <= {result['target_ratio']:.2f}."
    )
    return head + "\n\n" + "\n".join(rows) + "\n"
