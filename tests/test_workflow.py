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
from conftest import REPO, run_crnn

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


def test_simulation_chunks_run_as_jobs_and_merge_into_the_single_job_file(tmp_path):
    cfg = tmp_path / "chunks.yaml"
    cfg.write_text("seed: 4\nsimulate:\n  n_traces: 2500\nscale_out:\n  simulate_chunks: 3\n")
    proc = snakemake("results/simulate/traces.h5", "--cores", "2", "--directory", str(tmp_path),
                     "--configfile", str(cfg))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert log.count("rule simulate_traces:") == 3 and log.count("rule merge_traces:") == 1
    assert sorted(p.name for p in (tmp_path / "logs" / "simulate_traces").iterdir()) == ["0.log", "1.log", "2.log"]
    assert not list((tmp_path / "results" / "simulate" / "chunks").glob("*.h5"))  # temporary: removed after merging
    run_crnn("simulate", "-o", tmp_path / "single.h5", "--n-traces", "2500", "--seed", "4")
    merged = (tmp_path / "results" / "simulate" / "traces.h5").read_bytes()
    assert merged == (tmp_path / "single.h5").read_bytes()

    cfg.write_text("simulate:\n  n_traces: 2500\nscale_out:\n  simulate_chunks: 4\n")
    proc = snakemake("-n", "--cores", "1", "--directory", str(tmp_path / "dry"), "--configfile", str(cfg))
    assert proc.returncode != 0
    assert "makes only 3 block(s) of 1000 traces; use at most 3 chunks" in proc.stdout + proc.stderr


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
    # every job wrote its log: simulate, ingest, dataset, 2 x train, 2 x evaluate, baseline, report
    assert len(list((work / "logs").rglob("*.log"))) == 9
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
