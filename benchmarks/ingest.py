"""Suite ``ingest``: MB/s and peak memory of ``crnn ingest`` from canonical HDF5 and from ROOT.

The input files are made first (random float32 traces of 2 x 500 samples with labels; the HDF5
file in chunks, the ROOT TTree with ``float[2][500]`` entries, uncompressed), then each repeat runs
``crnn ingest`` in a subprocess whose peak RSS is measured alone. Set ``CRNN_BENCH_TMP`` to put
the (GB-sized) files on another disk.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import crnn_cmd, env_with, fmt, measurement, median, run_measured, spread, table

NAME = "ingest"
DEFAULT_REPEAT = 3


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size-gb", type=float, default=4.0, help="ingest: size of the canonical HDF5 file")
    p.add_argument("--root-size-gb", type=float, default=0.5, help="ingest: size of the ROOT file")


def write_canonical(path: Path, size_gb: float) -> int:
    import h5py
    import numpy as np

    n = max(1, int(size_gb * 1e9 / (2 * 500 * 4)))
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("traces", shape=(n, 2, 500), dtype="f4", chunks=(min(n, 1024), 2, 500))
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


def write_root(path: Path, size_gb: float) -> int:
    import numpy as np
    import uproot

    n = max(1, int(size_gb * 1e9 / (2 * 500 * 4)))
    rng = np.random.default_rng(0)
    step = 16384
    block = rng.standard_normal((step, 2, 500), dtype=np.float32)
    with uproot.recreate(path, compression=None) as f:
        tree = f.mktree("events", {"trace": np.dtype(("f4", (2, 500))), "label": np.dtype("i1")})
        for i in range(0, n, step):
            m = min(step, n - i)
            tree.extend({"trace": block[:m], "label": (np.arange(i, i + m) % 2).astype("i1")})
    return n


def run(args: argparse.Namespace, quick: bool) -> dict[str, Any]:
    size_gb, root_gb = (0.02, 0.01) if quick else (args.size_gb, args.root_size_gb)
    repeat = args.repeat or DEFAULT_REPEAT
    inputs: dict[str, Any] = {}
    measurements = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("CRNN_BENCH_TMP")) as tmp:
        for kind in ("canonical", "root"):
            src = Path(tmp) / ("big.h5" if kind == "canonical" else "big.root")
            n = write_canonical(src, size_gb) if kind == "canonical" else write_root(src, root_gb)
            mb = src.stat().st_size / 1e6
            extra = (
                []
                if kind == "canonical"
                else [
                    "--tree",
                    "events",
                    "--branch",
                    "trace",
                    "--unit",
                    "V",
                    "--sampling-rate-hz",
                    "180e6",
                    "--label-branch",
                    "label",
                ]
            )
            rates, peaks, times = [], [], []
            for i in range(repeat):
                out = Path(tmp) / f"out{i}.h5"
                dt, rss = run_measured(crnn_cmd("ingest", "-i", str(src), "-o", str(out), *extra), env=env_with())
                out.unlink()
                rates.append(mb / dt)
                peaks.append(rss)
                times.append(dt)
            src.unlink()
            inputs[kind] = {"traces": n, "file_mb": round(mb, 1)}
            label = "canonical HDF5" if kind == "canonical" else "ROOT TTree"
            measurements += [
                measurement(f"{label}: throughput", "MB/s", rates, input=kind),
                measurement(f"{label}: time", "s", times, input=kind),
                measurement(f"{label}: peak RSS", "MiB", peaks, input=kind),
            ]
    return {
        "size_gb": size_gb,
        "root_size_gb": root_gb,
        "repeat": repeat,
        "inputs": inputs,
        "measurements": measurements,
    }


def markdown(result: dict[str, Any]) -> str:
    rows = []
    for kind, label in (("canonical", "canonical HDF5"), ("root", "ROOT TTree, `float[2][500]`, uncompressed")):
        ms = {m["unit"]: m for m in result["measurements"] if m.get("input") == kind}
        inp = result["inputs"][kind]
        rows.append(
            [
                label,
                f"{inp['traces']:,}",
                fmt(inp["file_mb"], "MB"),
                fmt(median(ms["s"]), "s"),
                fmt(median(ms["MB/s"]), "MB/s"),
                spread(ms["MB/s"]),
                fmt(median(ms["MiB"]), "MiB"),
            ]
        )
    return (
        "`crnn ingest` in a subprocess (peak RSS of that process alone), input made first from random float32 "
        "traces of 2 x 500 samples with labels.\n\n"
        + table(
            [
                "input",
                "traces",
                "size",
                "time (median)",
                "throughput (median)",
                "throughput spread",
                "peak RSS (median)",
            ],
            rows,
        )
    )
