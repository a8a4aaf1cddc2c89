"""The workflow on a real SLURM cluster, through workflow/profiles/slurm and real sbatch/sacct.

`tests/slurm/cluster.sh` starts a single-node cluster from Debian's packages (munged, mariadbd,
slurmdbd, slurmctld, slurmd, all private to CRNN_SLURM_DIR) for this module and stops every
daemon by PID afterwards, also when a test fails. Every job is then checked in SLURM's
accounting database (`sacct`), matched to its Snakemake rule by the job comment the executor
plugin sets; the job tables are printed to the terminal.

Needs root and the packages (`tests/slurm/cluster.sh install`); skipped otherwise, except under
CI=true, where `.ci/run` installs them and a skip would hide a broken setup, so it fails instead.
Run only these tests with `python -m pytest -m slurm`.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_crnn

pytestmark = [pytest.mark.slurm, pytest.mark.workflow, pytest.mark.slow, pytest.mark.xdist_group("slurm")]

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
PROFILE = REPO / "workflow" / "profiles" / "slurm"
PACKAGES = ("munge", "slurmctld", "slurmd", "slurm-client", "slurmdbd", "mariadb-server")
IN_CI = os.environ.get("CI", "").lower() in ("true", "1")  # as in .ci/run
# The profile is used as it is; only how often Snakemake polls is made faster for a short test.
FAST_POLLING = ("--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2")
TIMEOUT_S = 900
EVAL_CHUNKS = 2  # scale_out.evaluate_chunks of the SLURM runs
SLURM_DIR = Path(os.environ.get("CRNN_SLURM_DIR", "/var/tmp/crnn-slurm"))  # as in cluster.sh
LOCK = SLURM_DIR.with_name(SLURM_DIR.name + ".lock")
LOCK_WAIT_S = 1200


def _why_not_available() -> str | None:
    if shutil.which("dpkg-query") is None:
        return "needs a Debian/Ubuntu machine (dpkg and apt) to run SLURM from its packages"
    if os.geteuid() != 0:
        return "needs root: it starts munged, mariadbd, slurmdbd, slurmctld and slurmd"
    if (os.cpu_count() or 1) < 2:
        return "needs 2 CPUs: the SLURM profile's training jobs ask for 2"
    missing = [
        p
        for p in PACKAGES
        if "install ok installed"
        not in subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True, check=False
        ).stdout
    ]
    if missing:
        return f"SLURM packages not installed ({', '.join(missing)}): run `tests/slurm/cluster.sh install` (apt)"
    system_conf = Path("/etc/slurm/slurm.conf")
    ours = SLURM_DIR / "etc" / "slurm.conf"
    if system_conf.exists() and not (system_conf.is_symlink() and Path(os.readlink(system_conf)) == ours):
        return f"{system_conf} belongs to another SLURM on this machine; the test cluster would shadow it"
    return None


def _skip_or_fail(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true, but the SLURM tests cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def slurm_env():
    """Start the test cluster; yield the environment for its clients; stop it whatever happens."""
    reason = _why_not_available()
    if reason:
        _skip_or_fail(reason)
    # one test session at a time on a machine: a second one waits for the first to stop its cluster
    with open(LOCK, "w") as lock:
        t0 = time.monotonic()
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - t0 > LOCK_WAIT_S:
                    _skip_or_fail(f"another test session kept the SLURM test cluster ({LOCK}) for {LOCK_WAIT_S} s")
                time.sleep(2)
        start = subprocess.run([str(CLUSTER), "start"], check=False, timeout=180)
        if start.returncode == 3:  # a cluster we did not start is in the way: leave it alone
            _skip_or_fail(
                "a SLURM test cluster is already running, or /etc/slurm/slurm.conf is another SLURM's "
                "(see the message above; `tests/slurm/cluster.sh stop` stops a leftover test cluster)"
            )
        try:
            if start.returncode != 0:  # start has already stopped what it had started
                pytest.fail(f"tests/slurm/cluster.sh start failed (exit {start.returncode}); see the messages above")
            conf = subprocess.run([str(CLUSTER), "env"], check=True, capture_output=True, text=True).stdout
            yield {
                **os.environ,
                "SLURM_CONF": conf.strip().split("=", 1)[1],
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                "TF_CPP_MIN_LOG_LEVEL": "2",
            }
        finally:
            subprocess.run([str(CLUSTER), "stop"], check=False, timeout=180)


def run_snakemake(env: dict, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Snakemake with the SLURM profile; on timeout SIGINT (it ignores SIGTERM while waiting for jobs)."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--workflow-profile",
        str(PROFILE),
        "--directory",
        str(workdir),
        *FAST_POLLING,
        *args,
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)  # the plugin then scancels its jobs
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        pytest.fail(f"snakemake did not finish within {TIMEOUT_S} s:\n{out[-6000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def run_id(output: str) -> str:
    """The run's UUID: the plugin gives it to every job as the SLURM job name."""
    for line in output.splitlines():
        if "SLURM run ID:" in line:
            return line.split("SLURM run ID:", 1)[1].strip()
    raise AssertionError(f"no 'SLURM run ID' in the snakemake output:\n{output[-4000:]}")


def sacct_jobs(env: dict, run: str) -> list[dict[str, str]]:
    """Every job of a run as sacct reports it, with the rule taken from the job comment."""
    fields = ("JobID", "Comment", "State", "ExitCode", "Partition", "AllocTRES", "Elapsed")
    rows: list[dict[str, str]] = []
    for _ in range(20):  # a job's final state reaches the database a moment after it ends
        out = subprocess.run(
            ["sacct", "-X", "-P", "-n", "--name", run, "-S", "now-2days", "-o", ",".join(fields)],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        ).stdout
        rows = [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines() if line]
        if rows and all(r["State"] not in ("PENDING", "RUNNING", "COMPLETING") for r in rows):
            break
        time.sleep(0.5)
    for r in rows:
        # comment "rule_<rule>" or "rule_<rule>_wildcards_<values>"
        r["Rule"], _, r["Wildcards"] = r["Comment"].removeprefix("rule_").partition("_wildcards_")
    return sorted(rows, key=lambda r: int(r["JobID"]))


def show(title: str, rows: list[dict[str, str]], capsys) -> str:
    header = (
        f"  {'JobID':>6}  {'rule':<20} {'wildcards':<13} {'state':<10} {'exit':<5} {'partition':<9} "
        f"{'elapsed':<8} AllocTRES"
    )
    lines = [title, header]
    lines += [
        f"  {r['JobID']:>6}  {r['Rule']:<20} {r['Wildcards']:<13} {r['State']:<10} {r['ExitCode']:<5} "
        f"{r['Partition']:<9} {r['Elapsed']:<8} {r['AllocTRES']}"
        for r in rows
    ]
    text = "\n".join(lines)
    with capsys.disabled():  # in the terminal and CI log even when the test passes
        print(f"\n{text}", flush=True)
    return text


def jobs(rows: Iterable[dict[str, str]]) -> list[tuple[str, str]]:
    return sorted((r["Rule"], r["Wildcards"]) for r in rows)


def rule_counts(rows: list[dict[str, str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["Rule"]] = counts.get(r["Rule"], 0) + 1
    return counts


@pytest.fixture(scope="module")
def broken_then_repaired(slurm_env, tmp_path_factory) -> dict:
    """The whole test-config workflow on SLURM, first with a broken (truncated) upload, then again
    after the repair: one pair of runs for both tests below, since each run takes minutes.

    The first run makes everything that does not need the upload (keep-going) and fails its
    ingestion; the rerun makes the rest, so between them every rule runs as a SLURM job.
    """
    base = tmp_path_factory.mktemp("slurm_run")
    work = base / "run"
    source = base / "input.root"
    good = (REPO / "data" / "example_traces.root").read_bytes()
    source.write_bytes(good[: len(good) // 3])  # a truncated upload: ingesting it must fail
    extra = base / "extra.yaml"
    # the simulation and the scoring of the test split as two parallel jobs each; one baseline and
    # one shift suffice to run each rule as a job; a second ROOT input beside the example file that
    # config/config.yaml always adds
    extra.write_text(
        f"scale_out:\n  simulate_chunks: 2\n  evaluate_chunks: {EVAL_CHUNKS}\nevaluate:\n  baselines: [matched_filter]\n"
        "robustness:\n  only: [band_plus_5mhz]\n"
        "ingest:\n  upload:\n"
        f"    path: {source}\n    format: root\n    tree: events\n    branch: trace\n    unit: V\n"
        "    sampling_rate_hz: 180.0e+6\n    label_branch: label\n    snr_branch: snr\n"
    )
    args = ("--configfile", str(REPO / "config" / "test.yaml"), str(extra))
    results = work / yaml.safe_load((REPO / "config" / "test.yaml").read_text())["results_dir"]
    out: dict = {"work": work, "source": source, "extra": extra, "results": results}

    t0 = time.monotonic()
    out["first_proc"] = run_snakemake(slurm_env, work, *args)
    out["first_s"] = time.monotonic() - t0
    out["first"] = sacct_jobs(slurm_env, run_id(out["first_proc"].stdout))
    merged = results / "simulate" / "traces.h5"
    out["merged_stamp"] = merged.stat().st_mtime_ns if merged.exists() else None
    out["dataset_after_first"] = (results / "dataset" / "train.h5").exists()

    source.write_bytes(good)  # the input is repaired; the same command again
    t0 = time.monotonic()
    out["second_proc"] = run_snakemake(slurm_env, work, *args)
    out["second_s"] = time.monotonic() - t0
    out["second"] = sacct_jobs(slurm_env, run_id(out["second_proc"].stdout))
    return out


def test_every_rule_runs_as_a_completed_slurm_job(broken_then_repaired, capsys):
    run = broken_then_repaired
    work, extra, res = run["work"], run["extra"], run["results"]
    assert run["second_proc"].returncode == 0, run["second_proc"].stdout[-8000:]
    rows = sorted(run["first"] + run["second"], key=lambda r: int(r["JobID"]))
    table = show(f"SLURM jobs of the two test-config runs ({run['first_s'] + run['second_s']:.0f} s):", rows, capsys)
    # the broken upload's two attempts (checked in the next test) are the only jobs that did not complete
    broken = [r for r in rows if r["Rule"] == "ingest_traces" and r["Wildcards"] == "upload" and r["State"] == "FAILED"]
    assert len(broken) == 2 and all(r in run["first"] for r in broken), table
    completed = [r for r in rows if r not in broken]

    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    n_ingest = len(default["ingest"]) + 1  # the test config keeps the default's inputs; the upload
    n_baselines = len(yaml.safe_load(extra.read_text())["evaluate"]["baselines"])
    n_shifts = len(yaml.safe_load(extra.read_text())["robustness"]["only"])
    assert rule_counts(completed) == {
        "simulate_traces": 2,
        "merge_traces": 1,
        "ingest_traces": n_ingest,
        "build_dataset": 1,
        "train_classifier": 2,
        "evaluate_classifier": 2,
        "evaluate_baseline": n_baselines,
        # the test split scored in EVAL_CHUNKS jobs per method, joined by the evaluate jobs
        "score_classifier_chunk": 2 * EVAL_CHUNKS,
        "score_baseline_chunk": n_baselines * EVAL_CHUNKS,
        "write_report": 1,
        "report_page": 1,
        # the robustness suite: one job per shift of test.yaml, one scoring job per model and baseline
        "simulate_shift": n_shifts,
        "evaluate_robustness": 2 + n_baselines,
    }, table
    assert all(r["State"] == "COMPLETED" and r["ExitCode"] == "0:0" for r in completed), table
    for r in rows:
        if r["Rule"] == "train_classifier":  # the profile's GPU request reached SLURM and was granted
            assert r["Partition"] == "gpu" and "gres/gpu=1" in r["AllocTRES"] and "cpu=2" in r["AllocTRES"], table
        else:
            assert r["Partition"] == "debug" and "gres/gpu" not in r["AllocTRES"], table
    # each job submitted by these runs also left SLURM's own log (slurm-keep-successful-logs)
    slurm_logs = list((work / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert sorted(p.stem for p in slurm_logs) == sorted(r["JobID"] for r in rows)

    assert (res / "report" / "summary.html").exists()
    assert (res / "simulate" / "traces.h5").exists() and not list((res / "simulate" / "chunks").glob("*.h5"))
    for model in ("gru", "lstm"):
        assert (res / "models" / model / "model.keras").exists()
        # SLURM handed the job its (placeholder) GPU; crnn saw it and said the CPU build cannot use it
        log = (res / "logs" / "train_classifier" / f"{model}.log").read_text()
        assert "this job was given GPU(s) CUDA_VISIBLE_DEVICES=" in log, log[-2000:]


def test_a_failed_job_is_reported_and_a_rerun_makes_only_what_is_missing(broken_then_repaired, capsys):
    run = broken_then_repaired
    proc, first, source = run["first_proc"], run["first"], run["source"]
    table = show(f"SLURM jobs of the run with a broken input ({run['first_s']:.0f} s):", first, capsys)
    assert proc.returncode != 0, proc.stdout[-6000:]
    failed = [r for r in first if r["State"] != "COMPLETED"]
    # the job failed in SLURM, was retried once (profile: retries 1), failed again ...
    assert [(r["Rule"], r["Wildcards"], r["State"]) for r in failed] == [("ingest_traces", "upload", "FAILED")] * 2, (
        table
    )
    # ... and Snakemake said so: the rule, the SLURM job and crnn's own message from the job's log
    assert "Error in rule ingest_traces" in proc.stdout, proc.stdout[-6000:]
    assert f"SLURM-job '{failed[-1]['JobID']}' failed" in proc.stdout, proc.stdout[-6000:]
    assert "crnn ingest: error:" in proc.stdout and str(source) in proc.stdout, proc.stdout[-6000:]
    # every job that did not need the broken input ran to the end (keep-going), among them the
    # ingestion of the example files that config/config.yaml always adds, the robustness shift and
    # the scoring of the shift by the baseline (which needs no model)
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    made_first = jobs(r for r in first if r["State"] == "COMPLETED")
    assert made_first == sorted(
        [
            *(("ingest_traces", name) for name in default["ingest"]),
            ("merge_traces", ""),
            ("simulate_shift", "band_plus_5mhz"),
            ("simulate_traces", "0"),
            ("simulate_traces", "1"),
            ("evaluate_robustness", "matched_filter"),
        ]
    ), table
    assert run["merged_stamp"] is not None and not run["dataset_after_first"]

    proc, second = run["second_proc"], run["second"]
    table = show(f"SLURM jobs of the rerun after the repair ({run['second_s']:.0f} s):", second, capsys)
    assert proc.returncode == 0, proc.stdout[-6000:]
    # only the missing outputs were made: nothing of the first run was run again (the simulation
    # among them), the repaired ingestion and all that depends on it were
    made_second = jobs(second)
    assert not set(made_first) & set(made_second), table
    assert [j for j in made_second if j[0] in ("ingest_traces", "build_dataset")] == [
        ("build_dataset", ""),
        ("ingest_traces", "upload"),
    ], table
    assert {j[0] for j in made_second} == {
        "ingest_traces",
        "build_dataset",
        "train_classifier",
        "evaluate_classifier",
        "evaluate_baseline",
        "score_classifier_chunk",
        "score_baseline_chunk",
        "evaluate_robustness",
        "write_report",
        "report_page",
    }, table
    assert all(r["State"] == "COMPLETED" for r in second), table
    assert (run["results"] / "simulate" / "traces.h5").stat().st_mtime_ns == run["merged_stamp"]
    assert (run["results"] / "dataset" / "train.h5").exists()


def test_scores_of_chunk_jobs_joined_equal_one_unsharded_evaluate(broken_then_repaired, tmp_path):
    """scale_out.evaluate_chunks on SLURM (issue 18): the test split was scored by EVAL_CHUNKS jobs per
    method and joined; the metrics equal those of one `crnn evaluate` of the whole split, run here
    with the workflow's settings (the defaults) and seed, exactly (the scoring time aside)."""
    run = broken_then_repaired
    assert run["second_proc"].returncode == 0, run["second_proc"].stdout[-4000:]
    work, res = run["work"], run["results"]
    seed = yaml.safe_load((REPO / "config" / "test.yaml").read_text())["seed"]
    # the paths as the workflow's jobs give them (relative to its folder: metrics.json records them)
    test, val = res.relative_to(work) / "dataset" / "test.h5", res.relative_to(work) / "dataset" / "val.h5"
    whole = {
        "gru": ("--model", res.relative_to(work) / "models" / "gru" / "model.keras", "--name", "gru"),
        "matched_filter": ("--baseline", "matched_filter", "--noise", val),
    }
    for method, args in whole.items():
        out = tmp_path / method
        run_crnn("evaluate", "--test", test, *args, "--output-dir", out, "--seed", str(seed), cwd=work)
        joined = json.loads((res / "evaluate" / method / "metrics.json").read_text())
        alone = json.loads((out / "metrics.json").read_text())
        for m in (joined, alone):
            m.pop("scoring_time_s")
        assert json.dumps(joined, sort_keys=True) == json.dumps(alone, sort_keys=True), method
    # the chunks' scores were temporary: only the joined scores are kept
    assert not list((res / "evaluate" / "chunks").rglob("*.h5"))
