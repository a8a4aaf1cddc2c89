"""Suite ``pipeline``: wall time of the demo pipeline, as ``python3 tasks.py demo`` runs it.

Snakemake with the repository's Snakefile on config/config.yaml (``--quick``: config/test.yaml),
all cores, into a new temporary folder (``--directory``), then the Snakemake report, each repeat
from scratch. The package install that ``tasks.py demo`` does first is not included. One repeat
by default: the full demo takes several minutes (about 7 on 2 cores).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, cores, env_with, fmt, measurement, measurements_table, run_measured

NAME = "pipeline"
DEFAULT_REPEAT = 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pipeline-config",
        default=None,
        help="pipeline: config file (default config/config.yaml; config/test.yaml with --quick)",
    )
    p.add_argument("--pipeline-cores", type=int, default=0, help="pipeline: snakemake --cores (0 = all)")


def snakemake() -> list[str]:
    exe = Path(sys.executable).parent / "snakemake"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "snakemake"]


def run(args: argparse.Namespace, quick: bool) -> dict[str, Any]:
    config = args.pipeline_config or str(REPO / "config" / ("test.yaml" if quick else "config.yaml"))
    n_cores = args.pipeline_cores or cores()
    repeat = args.repeat or DEFAULT_REPEAT
    env = env_with(PATH=f"{Path(sys.executable).parent}:{env_with()['PATH']}")
    walls, reports, peaks, totals = [], [], [], []
    for _ in range(repeat):
        tmp = Path(tempfile.mkdtemp(prefix="crnn-bench-pipeline-"))
        try:
            base = [
                *snakemake(),
                "-s",
                str(REPO / "Snakefile"),
                "--directory",
                str(tmp),
                "--cores",
                str(n_cores),
                "--configfile",
                config,
            ]
            dt, rss = run_measured([*base, "--quiet", "all"], env=env, cwd=tmp)
            # the Snakemake report beside the results folder (whose report.html is a workflow output)
            dr, _ = run_measured([*base, "--report", str(tmp / "snakemake_report.html")], env=env, cwd=tmp)
            if not (tmp / "snakemake_report.html").exists():
                raise RuntimeError(f"pipeline: no report written in {tmp}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        walls.append(dt)
        reports.append(dr)
        totals.append(dt + dr)
        peaks.append(rss)
    return {
        "config": str(Path(config).relative_to(REPO)) if Path(config).is_relative_to(REPO) else config,
        "cores": n_cores,
        "repeat": repeat,
        "measurements": [
            measurement("pipeline (snakemake, all rules)", "s", walls),
            measurement("report (snakemake --report)", "s", reports),
            measurement("demo in all (pipeline + report)", "s", totals),
            measurement("largest process: peak RSS", "MiB", peaks),
        ],
    }


def markdown(result: dict[str, Any]) -> str:
    total = next(m for m in result["measurements"] if m["name"].startswith("demo"))
    minutes = sorted(total["values"])[len(total["values"]) // 2] / 60
    return (
        f"`snakemake --cores {result['cores']} --configfile {result['config']}` into a new temporary folder, "
        f"then `snakemake --report`, as `python3 tasks.py demo` runs them (without its package install); "
        f"{result['repeat']} run(s) from scratch (one by default: the full demo takes minutes). "
        f"Demo in all: about {fmt(minutes)} min.\n\n" + measurements_table(result)
    )
