#!/usr/bin/env python3
"""The two things a user does with crnn, each with its own set-up (standard library only).

    python3 tasks.py demo    # make .venv, install crnn, run the whole pipeline, build the report
    python3 tasks.py test    # make .venv, install crnn with test tools, run the test suite

Extra arguments after ``demo`` go to Snakemake (e.g. ``--configfile my.yaml``); after ``test``
they go to pytest (e.g. ``-k simulate``). Set CRNN_VENV to use another environment folder.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("CRNN_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


def say(msg: str) -> None:
    print(f"[crnn] {msg}", flush=True)


def run(cmd: list[str], **kw) -> None:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run(cmd, check=True, cwd=ROOT, env=env, **kw)


def setup(extras: str, pre: list[str] | None = None) -> None:
    """Create the virtual environment and install crnn into it, once per pyproject change.

    ``pre`` are pinned requirements installed before crnn, so that its extras resolve to them.
    """
    if sys.version_info < (3, 11):
        sys.exit(f"crnn needs Python >= 3.11; this is {sys.version.split()[0]}")
    stamp = VENV / f".crnn-installed-{extras or 'base'}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest and PY.exists():
        return
    if not PY.exists():
        say(f"creating virtual environment {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    t0 = time.time()
    say("installing crnn and its dependencies (tensorflow, keras, snakemake, ...)")
    run([str(PY), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    if pre:
        run([str(PY), "-m", "pip", "install", "--quiet", *pre])
    target = f".[{extras}]" if extras else "."
    run([str(PY), "-m", "pip", "install", "--quiet", "-e", target])
    stamp.write_text(digest)
    say(f"installed in {time.time() - t0:.0f} s")


def results_dir(args: list[str]) -> Path:
    """The run's results folder (config key ``results_dir``): from ``--config results_dir=...``, else
    from the last of config/config.yaml and the ``--configfile`` files (in Snakemake's order) that sets it."""
    files, override, key = [ROOT / "config" / "config.yaml"], None, None
    for a in args:
        if a.startswith("--"):
            key, _, value = a.partition("=")
            a = value if value else None
        if a is None:
            continue
        if key in ("--configfile", "--configfiles"):
            files.append(ROOT / a)
        elif key == "--config" and a.startswith("results_dir="):
            override = a.split("=", 1)[1]
    if override is None:
        code = ("import sys, yaml; d = None\nfor f in sys.argv[1:]: d = (yaml.safe_load(open(f)) or {}).get('results_dir', d)\n"
                "print(d or 'results')")
        override = subprocess.run([str(PY), "-c", code, *map(str, files)], check=True, capture_output=True,
                                  text=True).stdout.strip()
    return ROOT / override


def demo(args: list[str]) -> None:
    setup("")
    cores = str(os.cpu_count() or 1)
    results = results_dir(args)
    # the Snakemake report (every plot with its caption), written after the run; the workflow's own
    # report.html is the summary page, rebuilt by plain `snakemake`
    snakemake_report = results / "snakemake_report.html"
    t0 = time.time()
    say("running the pipeline (snakemake)")
    run([str(BIN / "snakemake"), "--cores", cores, "--show-failed-logs", "--report", str(snakemake_report),
         "--report-after-run", *args])
    say(f"pipeline finished in {time.time() - t0:.0f} s")
    summary = results / "report" / "summary.json"
    if summary.exists():
        import json

        rows = json.loads(summary.read_text())["rows"]
        for r in rows:
            ratio = r.get("noise_snr50_ratio_to_matched_filter_at_fpr_0.001")
            say(
                f"{r['method']:>14}: AUC {r['auc']:.4f}, TPR at FPR 1e-3 "
                f"{(r.get('tpr_at_fpr_0.001') or 0):.3f}"
                + (f", 50 % SNR in noise-only background {ratio:.2f} x the matched filter's" if ratio else "")
            )
    say(f"report: {results / 'report.html'} (Snakemake report with captions: {snakemake_report})")
    say(f"models: {results / 'models'} (model.keras + model.card.json each)")


def test(args: list[str]) -> None:
    # The test extra pulls in PyTorch (for the backend tests). Installed first with this exact
    # pin, pip takes the CPU-only wheel that this machine's package mirror holds; left to
    # resolve `torch>=2.3` itself, pip would download a multi-GB CUDA build.
    # The export extra: tests/test_export.py and the predict benchmark's ONNX Runtime engines.
    setup("test,export", pre=["torch==2.13.0"])
    # Two worker processes (pytest-xdist): much of the suite waits on subprocesses, Snakemake,
    # SLURM's polling and Chromium, so two keep both cores busy. Tests that share one expensive
    # run carry the same xdist_group mark and stay on one worker. `-n 0` runs in this process.
    workers = [] if any(a == "-n" or a.startswith(("-n", "--numprocesses")) for a in args) else [
        "-n", "2", "--dist", "loadgroup"]
    run([str(PY), "-m", "pytest", *workers, *args])


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("demo", "test"):
        sys.exit(__doc__)
    task, args = sys.argv[1], sys.argv[2:]
    try:
        {"demo": demo, "test": test}[task](args)
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode or 1)


if __name__ == "__main__":
    main()
