"""The Snakemake workflow: lint, dry run, and the whole pipeline on the tiny test config."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
from conftest import REPO, run_crnn, snakemake

pytestmark = pytest.mark.workflow


def test_lint_is_clean():
    proc = snakemake("--lint")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dry_run_plans_every_stage(tmp_path):
    proc = snakemake("-n", "--directory", str(tmp_path), "--cores", "1")
    assert proc.returncode == 0, proc.stderr
    for rule in (
        "simulate_traces",
        "ingest_traces",
        "build_dataset",
        "train_classifier",
        "evaluate_classifier",
        "evaluate_baseline",
        "simulate_shift",
        "evaluate_robustness",
        "write_report",
    ):
        assert rule in proc.stdout
    assert proc.stdout.count("rule train_classifier:") == 2
    from crnn.robustness import DEFAULT_SHIFTS

    runnable = [n for n, v in DEFAULT_SHIFTS.items() if all((REPO / p).exists() for p in v.get("requires", []))]
    assert proc.stdout.count("rule simulate_shift:") == len(runnable)  # the default shifts that have their files
    assert proc.stdout.count("rule evaluate_robustness:") == 6  # 2 models + 4 baselines


def test_robustness_shift_with_a_missing_required_file_is_skipped_and_listed(tmp_path):
    cfg = tmp_path / "shifts.yaml"
    cfg.write_text(
        "robustness:\n  only: [receiver_150k, faraway]\n  shifts:\n    faraway:\n"
        "      description: a detector whose noise file is not here\n"
        "      simulate: {galactic_scale: 2.0}\n      requires: [data/no_such_noise_file.h5]\n"
    )
    proc = snakemake("-n", "-p", "--configfile", str(cfg), "--directory", str(tmp_path), "--cores", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("rule simulate_shift:") == 1 and "shifts/receiver_150k.h5" in proc.stdout
    assert "shifts/faraway.h5" not in proc.stdout
    assert proc.stdout.count("--skipped faraway=data/no_such_noise_file.h5") == 6  # every method lists it
    cfg.write_text("robustness:\n  only: [no_such_shift]\n")
    proc = snakemake("-n", "--configfile", str(cfg), "--directory", str(tmp_path), "--cores", "1")
    assert proc.returncode != 0 and "no_such_shift" in proc.stdout + proc.stderr


def test_config_typos_are_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("simulate:\n  n_trace: 10\n")
    proc = snakemake("-n", "--configfile", str(bad), "--directory", str(tmp_path), "--cores", "1")
    assert proc.returncode != 0
    assert "n_trace" in proc.stdout + proc.stderr


def test_simulation_chunks_run_as_jobs_and_merge_into_the_single_job_file(tmp_path):
    cfg = tmp_path / "chunks.yaml"
    cfg.write_text("seed: 4\nsimulate:\n  n_traces: 2500\nscale_out:\n  simulate_chunks: 3\n")
    proc = snakemake(
        "results/simulate/traces.h5", "--cores", "2", "--directory", str(tmp_path), "--configfile", str(cfg)
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert log.count("rule simulate_traces:") == 3 and log.count("rule merge_traces:") == 1
    assert sorted(p.name for p in (tmp_path / "results" / "logs" / "simulate_traces").iterdir()) == [
        "0.log",
        "1.log",
        "2.log",
    ]
    assert not list((tmp_path / "results" / "simulate" / "chunks").glob("*.h5"))  # temporary: removed after merging
    run_crnn("simulate", "-o", tmp_path / "single.h5", "--n-traces", "2500", "--seed", "4")
    merged = (tmp_path / "results" / "simulate" / "traces.h5").read_bytes()
    assert merged == (tmp_path / "single.h5").read_bytes()

    cfg.write_text("simulate:\n  n_traces: 2500\nscale_out:\n  simulate_chunks: 4\n")
    proc = snakemake("-n", "--cores", "1", "--directory", str(tmp_path / "dry"), "--configfile", str(cfg))
    assert proc.returncode != 0
    assert "makes only 3 block(s) of 1000 traces; use at most 3 chunks" in proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.xdist_group("pipeline")  # with the browser tests: one pipeline_run per session
def test_whole_pipeline_on_the_test_config(pipeline_run):
    work, res, report = pipeline_run["work"], pipeline_run["results"], pipeline_run["report"]
    for model in ("gru", "lstm"):
        assert (res / "models" / model / "model.keras").exists()
        card = json.loads((res / "models" / model / "model.card.json").read_text())
        assert card["model"]["cell"] == model and card["model"]["units"] == 8
        assert card["data"]["train"]["n_traces"] == round(0.6 * 3400)
    summary = json.loads((res / "report" / "summary.json").read_text())
    methods = {"gru", "lstm", "amplitude", "envelope", "power", "matched_filter"}
    assert {r["method"] for r in summary["rows"]} == methods
    # 425 background test traces: FPR 1e-2 is measurable, 1e-3 and 1e-4 are not; the report falls back to 1e-2
    assert summary["working_point_fpr"] == 0.01
    for r in summary["rows"]:
        assert r["tpr_at_fpr_0.01"] is not None and r["tpr_at_fpr_0.001"] is None
        assert "mean_score_noise" in r and "false_alarm_rate_transient_at_fpr_0.01" in r
        assert "snr50_ratio_to_matched_filter_at_fpr_0.01" in r
    mf = next(r for r in summary["rows"] if r["method"] == "matched_filter")
    assert mf["noise_snr50_ratio_to_matched_filter_at_fpr_0.01"] == 1.0
    with h5py.File(res / "dataset" / "test.h5") as f:
        assert f["traces"].shape == (850, 2, 500)
        # simulated traces carry has_transient, the ingested ROOT example does not: -1 = unknown
        assert set(np.unique(f["has_transient"][:])) == {-1, 0, 1}
    # every job wrote its log: simulate, 3 x ingest, dataset, 2 x train, 2 x evaluate, 4 baselines,
    # 2 shifts, 6 robustness evaluations, report, report page (all in the results folder)
    assert len(list((res / "logs").rglob("*.log"))) == 23 and not (work / "logs").exists()
    # the run's report.html is a workflow output: the summary page
    assert (res / "report.html").read_bytes() == (res / "report" / "summary.html").read_bytes()
    # the robustness suite: the two shifts of test.yaml, simulated with their own seeds, every method scored
    shifts = ("band_plus_5mhz", "receiver_300k")
    from crnn.robustness import DEFAULT_SHIFTS

    for shift in shifts:
        k = list(DEFAULT_SHIFTS).index(shift)  # its place among the default shifts
        with h5py.File(res / "robustness" / "shifts" / f"{shift}.h5") as f:
            assert f["traces"].shape == (2000, 2, 500) and f.attrs["seed"] == 2 + 1000 + k
    for method in methods:
        rob = json.loads((res / "robustness" / f"{method}.json").read_text())
        assert rob["format"] == "crnn-robustness/1" and [s["name"] for s in rob["shifts"]] == list(shifts)
        for s in rob["shifts"]:
            assert s["threshold_noise"]["available"] and s["transient_pass"]["rate"] is not None
            assert all(0 <= e["efficiency"] <= 1 for e in s["efficiency_noise"])
    rob = summary["robustness"]
    assert [s["name"] for s in rob["shifts"]] == ["in-domain test split", *shifts]
    assert set(rob["methods"]) == methods and rob["fpr"] == 0.01
    summary_page = (res / "report" / "summary.html").read_text()
    assert "Robustness to other detectors" in summary_page
    assert all(f'data-shift="{s}"' in summary_page for s in shifts)
    # converted-only inputs exist but are not in the dataset
    with h5py.File(res / "ingest" / "example_coreas.h5") as f:
        assert f["traces"].shape == (4, 2, 500) and f.attrs["sampling_rate_hz"] == 180e6
    for method in methods:
        assert (res / "evaluate" / method / "gallery.png").stat().st_size > 10_000
    html = report.read_text(errors="replace")
    assert report.stat().st_size > 100_000
    for needle in (
        "summary.html",
        "roc.png",
        "efficiency.png",
        "snr.png",
        "training.png",
        "scores.png",
        "confusion.png",
        "gallery.png",
    ):
        assert needle in html
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    shutil.copy(report, artifacts / "test_report.html")


def _snapshot(folder):
    return {p.relative_to(folder): (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.rglob("*") if p.is_file()}


def test_a_second_config_with_its_own_results_dir_leaves_the_first_run_untouched(tmp_path):
    """Two configs, each with its own results_dir, run in one working directory: the second run writes
    only into its own folder (outputs and logs) and the first run's files stay as they were."""
    runs = {}
    for name, seed in (("first", 5), ("second", 6)):
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(f"seed: {seed}\nresults_dir: runs/{name}\nsimulate:\n  n_traces: 1000\n")
        runs[name] = cfg
    targets = ("simulate/traces.h5", "ingest/example_root.h5")
    work = tmp_path / "work"
    for name, cfg in runs.items():
        proc = snakemake(
            *(f"runs/{name}/{t}" for t in targets), "--cores", "2", "--directory", str(work), "--configfile", str(cfg)
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        if name == "first":
            first = _snapshot(work / "runs" / "first")
            assert {str(p) for p in first} >= {
                *targets,
                "logs/simulate_traces.log",
                "logs/ingest_traces/example_root.log",
            }
    assert _snapshot(work / "runs" / "first") == first  # not one byte or time stamp changed
    second = _snapshot(work / "runs" / "second")
    assert {str(p) for p in second} >= {*targets, "logs/simulate_traces.log"}
    assert (
        second[next(p for p in second if str(p) == targets[0])][1]
        != first[next(p for p in first if str(p) == targets[0])][1]
    )
    assert sorted(p.name for p in work.iterdir() if not p.name.startswith(".")) == ["runs"]  # no logs/ nor results/

    # the second config's whole workflow (every job, forced) names only files in its own folder,
    # its report.html among them
    proc = snakemake("-n", "-F", "--cores", "1", "--directory", str(work), "--configfile", str(runs["second"]))
    assert proc.returncode == 0, proc.stderr[-3000:]
    paths = [
        p.strip()
        for line in proc.stdout.splitlines()
        if line.strip().startswith(("output:", "log:"))
        for p in line.split(":", 1)[1].split(",")
    ]
    assert len(paths) > 40 and all(p.startswith("runs/second/") for p in paths), paths
    assert "runs/second/report.html" in paths and "rule report_page:" in proc.stdout
