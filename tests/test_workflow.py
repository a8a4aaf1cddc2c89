"""The Snakemake workflow: lint, dry run, and the whole pipeline on the tiny test config."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
from conftest import REPO

pytestmark = pytest.mark.workflow
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([*SNAKEMAKE, *args], check=False, cwd=cwd, capture_output=True, text=True, env=env)


def test_lint_is_clean():
    proc = snakemake("--lint")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dry_run_plans_every_stage(tmp_path):
    proc = snakemake("-n", "--directory", str(tmp_path), "--cores", "1")
    assert proc.returncode == 0, proc.stderr
    for rule in ("simulate_traces", "ingest_traces", "build_dataset", "train_classifier", "evaluate_classifier",
                 "evaluate_baseline", "write_report"):
        assert rule in proc.stdout
    assert proc.stdout.count("rule train_classifier:") == 2


def test_config_typos_are_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("simulate:\n  n_trace: 10\n")
    proc = snakemake("-n", "--configfile", str(bad), "--directory", str(tmp_path), "--cores", "1")
    assert proc.returncode != 0
    assert "n_trace" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_whole_pipeline_on_the_test_config(tmp_path):
    work = tmp_path / "run"
    work.mkdir()
    proc = snakemake("--cores", "2", "--directory", str(work), "--configfile", str(REPO / "config" / "test.yaml"),
                     "--show-failed-logs")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    res = work / "results"
    for model in ("gru", "lstm"):
        assert (res / "models" / model / "model.keras").exists()
        card = json.loads((res / "models" / model / "model.card.json").read_text())
        assert card["model"]["cell"] == model and card["model"]["units"] == 8
        assert card["data"]["train"]["n_traces"] == round(0.6 * 3400)
    summary = json.loads((res / "report" / "summary.json").read_text())
    assert {r["method"] for r in summary["rows"]} == {"gru", "lstm", "envelope"}
    with h5py.File(res / "dataset" / "test.h5") as f:
        assert f["traces"].shape == (850, 2, 500)
    # every job wrote its log: simulate, 3 x ingest, dataset, 2 x train, 2 x evaluate, baseline, report
    assert len(list((work / "logs").rglob("*.log"))) == 11
    # converted-only inputs exist but are not in the dataset
    with h5py.File(res / "ingest" / "example_coreas.h5") as f:
        assert f["traces"].shape == (4, 2, 500) and f.attrs["sampling_rate_hz"] == 180e6
    report = tmp_path / "report.html"
    proc = snakemake("--cores", "1", "--directory", str(work), "--configfile", str(REPO / "config" / "test.yaml"),
                     "--report", str(report))
    assert proc.returncode == 0, proc.stderr[-4000:]
    html = report.read_text(errors="replace")
    assert report.stat().st_size > 100_000
    for needle in ("summary.html", "roc.png", "efficiency.png", "training.png", "scores.png"):
        assert needle in html
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    shutil.copy(report, artifacts / "test_report.html")
