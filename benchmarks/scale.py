"""Suite ``scale``: wall time and peak RSS of the stages beyond memory as the input grows (issue 18).

For each size (default 1M, 2M and 5M traces of 2 x 500 float32 samples, 4 GB a million) a canonical
file of random traces with labels is written into a temporary folder (``CRNN_BENCH_TMP`` puts it on
another disk), then ``crnn dataset`` splits it (fractions 0.6 0.15 0.25) and ``crnn evaluate``
scores its test split with the amplitude baseline and with a model (``--scale-model``; by default
the config's ``gru``, trained for one epoch on 2,000 traces: memory and speed do not depend on the
weights); each stage runs in a subprocess whose peak RSS is measured
alone. The growth of each stage's peak RSS from the smallest to the largest size is reported: the
dataset stage holds some 50 bytes a trace beside its budget, evaluate 4 bytes of score and about 30 of
metadata a trace. The free disk is checked first: a size needs about three times its traces (input,
the dataset's scratch file, the splits). The folder is removed after each size.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import crnn_cmd, env_with, fmt, measurement, median, run_measured, table, train_small_model
from benchmarks.ingest import write_canonical

NAME = "scale"
BYTES_PER_TRACE = 2 * 500 * 4
STAGES = ("dataset", "evaluate amplitude", "evaluate model")  # dataset always runs: it makes the test split


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scale-traces",
        type=int,
        nargs="+",
        default=[1_000_000, 2_000_000, 5_000_000],
        help="scale: input sizes in traces",
    )
    p.add_argument(
        "--scale-budget-mb",
        type=float,
        default=None,
        help="scale: crnn dataset --memory-budget-mb (default: the stage's default)",
    )
    p.add_argument(
        "--scale-stages",
        nargs="+",
        choices=STAGES,
        default=list(STAGES),
        metavar="STAGE",
        help=f"scale: stages to run ({', '.join(STAGES)})",
    )
    p.add_argument(
        "--scale-model",
        default=None,
        help="scale: model that crnn evaluate scores the test split with (default: a default-shaped "
        "gru of --config, trained for one epoch)",
    )


def _check_disk(folder: Path, n_traces: int) -> None:
    need = 3.1 * n_traces * BYTES_PER_TRACE
    free = shutil.disk_usage(folder).free
    if free < need:
        msg = f"scale: {n_traces:,} traces need about {need / 1e9:.1f} GB free in {folder}; {free / 1e9:.1f} GB are"
        raise RuntimeError(msg)


def run(args: argparse.Namespace, quick: bool) -> dict[str, Any]:
    sizes = [20_000, 40_000] if quick else sorted(args.scale_traces)
    budget = ["--memory-budget-mb", str(args.scale_budget_mb)] if args.scale_budget_mb else []
    measurements = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("CRNN_BENCH_TMP")) as models:
        model = args.scale_model
        if model is None and "evaluate model" in args.scale_stages:
            from benchmarks.train import model_settings

            model = str(train_small_model(Path(models) / "gru", model_settings(args.config, "gru"), name="gru"))
        for n in sizes:
            measurements += _run_size(n, budget, model, args.scale_stages)
    return {
        "sizes": sizes,
        "memory_budget_mb": args.scale_budget_mb,
        "stages": args.scale_stages,
        "model": args.scale_model or f"gru of {Path(args.config).name}, one epoch",
        "measurements": measurements,
    }


def _run_size(n: int, budget: list[str], model: str | None, stages: list[str]) -> list[dict[str, Any]]:
    measurements = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("CRNN_BENCH_TMP")) as tmp:
        d = Path(tmp)
        _check_disk(d, n)
        write_canonical(d / "in.h5", n * BYTES_PER_TRACE / 1e9)
        splits = [f"--{s}" for s in ("train", "val", "test")]
        cmd = crnn_cmd(
            "dataset",
            "-i",
            str(d / "in.h5"),
            *(a for s in splits for a in (s, str(d / f"{s[2:]}.h5"))),
            "--fractions",
            "0.6",
            "0.15",
            "0.25",
            *budget,
        )
        runs = {"dataset": run_measured(cmd, env=env_with())}
        (d / "in.h5").unlink()
        (d / "train.h5").unlink()
        method = {"evaluate amplitude": ["--baseline", "amplitude"], "evaluate model": ["--model", str(model)]}
        for stage in STAGES[1:]:
            if stage in stages:
                runs[stage] = run_measured(
                    crnn_cmd(
                        "evaluate",
                        "--test",
                        str(d / "test.h5"),
                        "-o",
                        str(d / stage.split()[-1]),
                        *method[stage],
                        "--n-bootstrap",
                        "20",
                    ),
                    env=env_with(),
                )
    for stage, (dt, rss) in runs.items():
        measurements += [
            measurement(f"{stage}, {n:,} traces: time", "s", [dt], stage=stage, n_traces=n),
            measurement(f"{stage}, {n:,} traces: peak RSS", "MiB", [rss], stage=stage, n_traces=n),
        ]
    return measurements


def markdown(result: dict[str, Any]) -> str:
    sizes = result["sizes"]
    by = {(m["stage"], m["n_traces"], m["unit"]): median(m) for m in result["measurements"]}
    rows = []
    for stage in result.get("stages", STAGES):
        cells = [stage]
        for n in sizes:
            cells.append(f"{fmt(by[(stage, n, 's')], 's')}, {fmt(by[(stage, n, 'MiB')], 'MiB')}")
        cells.append(f"{by[(stage, sizes[-1], 'MiB')] / by[(stage, sizes[0], 'MiB')]:.2f}")
        rows.append(cells)
    budget = result["memory_budget_mb"]
    return (
        "Each stage in a subprocess (peak RSS of that process alone) on random traces of 2 x 500 float32 samples; "
        f"`crnn dataset` with {'the default memory budget' if budget is None else f'--memory-budget-mb {budget:g}'}, "
        f"the test split (a quarter) scored by `crnn evaluate` with the amplitude baseline and with "
        f"{result['model']}, 20 bootstrap replicates.\n\n"
        + table(
            ["stage", *(f"{n:,} traces: time, peak RSS" for n in sizes), f"peak RSS {sizes[-1]:,} / {sizes[0]:,}"], rows
        )
    )
