#!/usr/bin/env python3
"""The two things a user does with crnn, each with its own set-up (standard library only).

    python3 tasks.py demo    # make .venv, install crnn, run the whole pipeline, build the report
    python3 tasks.py test    # make .venv, install crnn with test tools, run the test suite
    python3 tasks.py lock    # refresh the pinned versions in requirements/ (after a pyproject change)
    python3 tasks.py fmt     # apply ruff format, ruff check --fix and snakefmt to the sources
    python3 tasks.py lint    # the checks CI runs: ruff, ruff format --check, snakefmt --check, snakemake --lint

Extra arguments after ``demo`` go to Snakemake (e.g. ``--configfile my.yaml``); after ``test``
they go to pytest (e.g. ``-k simulate``); after ``lock`` to pip-compile (``--upgrade`` moves every
pin to the newest release that pyproject.toml allows; without it the pins already in the lock are
kept and only what is new or no longer fits is resolved). Set CRNN_VENV to use another environment
folder.

``demo`` and ``test`` install exactly the versions of the lock (``requirements/base.txt``, and
``requirements/test.txt`` for the test tools and every other optional group), as pip constraints:
pyproject.toml keeps compatible ranges for people who install crnn into their own environment.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("CRNN_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
#: the lock: pinned versions of every package of the base install, and of the test environment
#: (the test extra with every other optional group), made by `python3 tasks.py lock`
LOCKS = {"base": ROOT / "requirements" / "base.txt", "test": ROOT / "requirements" / "test.txt"}
#: the tools that make the lock and check the code: a venv of their own, never the project's
#: (.pre-commit-config.yaml pins the same ruff and snakefmt; tests/test_lock.py checks)
TOOLS_VENV = ROOT / ".venv-tools"
TOOLS = ("pip-tools==7.7.0", "ruff==0.17.5", "snakefmt==2.1.0", "uv==0.13.9")
#: the lock above is for this Python and machine (pip-compile resolves for the one it runs on); the
#: others get requirements/platforms/{base,test}-py{X.Y}-{machine}.txt, resolved by uv for that
#: target and constrained to the native lock's pins, so that they differ only where a package has
#: another build there (tensorflow for tensorflow-cpu on aarch64) or is not needed
NATIVE_TARGET = ("3.11", "x86_64")
LOCK_TARGETS = tuple((py, machine) for py in ("3.11", "3.12", "3.13") for machine in ("x86_64", "aarch64"))
#: what ruff checks and formats, and what snakefmt formats (rules: pyproject.toml [tool.ruff], [tool.snakefmt])
PYTHON_SOURCES = ("crnn", "tests", "benchmarks")
SNAKEMAKE_SOURCES = ("Snakefile", "workflow")


def say(msg: str) -> None:
    print(f"[crnn] {msg}", flush=True)


def lock_path(kind: str, python: str | None = None, machine: str | None = None) -> Path:
    """The lock of ``kind`` (base or test) for a Python (X.Y) and machine; by default this one's."""
    python = python or f"{sys.version_info[0]}.{sys.version_info[1]}"
    machine = machine or platform.machine()
    if (python, machine) == NATIVE_TARGET:
        return LOCKS[kind]
    return ROOT / "requirements" / "platforms" / f"{kind}-py{python}-{machine}.txt"


def run(cmd: list[str], **kw) -> None:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run(cmd, check=True, cwd=ROOT, env=env, **kw)


def setup(kind: str) -> None:
    """Create the virtual environment and install crnn into it with the locked versions, once per
    change of pyproject.toml or of the lock: ``base`` (the dependencies) or ``test`` (with every
    optional group: the test tools, bench, ..., all of requirements/test.txt)."""
    if sys.version_info < (3, 11):
        sys.exit(f"crnn needs Python >= 3.11; this is {sys.version.split()[0]}")
    stamp = VENV / f".crnn-installed-{kind}"
    lock = lock_path(kind)
    if not lock.exists():
        say(f"no lock for Python {sys.version_info[0]}.{sys.version_info[1]} on {platform.machine()} "
            f"({lock.relative_to(ROOT)}): installing with the pins of {LOCKS[kind].relative_to(ROOT)}")
        lock = LOCKS[kind]
    extras = ",".join(optional_groups()) if kind == "test" else ""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + lock.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest and PY.exists():
        return
    if not PY.exists():
        say(f"creating virtual environment {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    t0 = time.time()
    say("installing crnn and its dependencies (tensorflow, keras, snakemake, ...)")
    run([str(PY), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    target = f".[{extras}]" if extras else "."
    run([str(PY), "-m", "pip", "install", "--quiet", "-c", str(lock), "-e", target])
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
    setup("base")
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
    # The test extra pulls in PyTorch (for the backend tests). With the lock's exact pin pip takes
    # the CPU-only wheel (2.13.0+cpu) where the package index holds one (this machine's does);
    # left to resolve `torch>=2.3` itself, pip would download a multi-GB CUDA build.
    # Every optional group comes with it, export included (tests/test_export.py, the predict benchmark).
    setup("test")
    # Two worker processes (pytest-xdist): much of the suite waits on subprocesses, Snakemake,
    # SLURM's polling and Chromium, so two keep both cores busy. Tests that share one expensive
    # run carry the same xdist_group mark and stay on one worker. `-n 0` runs in this process.
    workers = [] if any(a == "-n" or a.startswith(("-n", "--numprocesses")) for a in args) else [
        "-n", "2", "--dist", "loadgroup"]
    run([str(PY), "-m", "pytest", *workers, *args])


def tools() -> Path:
    """The tool venv (pip-tools), made once; its bin folder."""
    tbin = TOOLS_VENV / ("Scripts" if os.name == "nt" else "bin")
    stamp = TOOLS_VENV / ".crnn-tools"
    if not (stamp.exists() and stamp.read_text() == " ".join(TOOLS)):
        say(f"installing {', '.join(TOOLS)} into {TOOLS_VENV}")
        venv.EnvBuilder(with_pip=True, clear=True).create(TOOLS_VENV)
        subprocess.run([str(tbin / "python"), "-m", "pip", "install", "--quiet", *TOOLS], check=True)
        stamp.write_text(" ".join(TOOLS))
    return tbin


def optional_groups() -> list[str]:
    """The optional-dependency groups of pyproject.toml (test, bench, ...), as they are now."""
    import tomllib

    return sorted(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("optional-dependencies", {}))


def lock(args: list[str]) -> None:
    """Compile requirements/base.txt (the dependencies) and requirements/test.txt (every optional
    group, new ones included, constrained to base.txt's pins) with pip-compile, for this Python and
    platform (the lock's header names the Python). pip-compile reads pip's own configuration: index,
    find-links and the constraint files it names. Local version labels (``2.13.0+cpu``) are cut to
    the public version, which pip still matches to the local build where the index holds one."""
    tbin = tools()
    LOCKS["base"].parent.mkdir(exist_ok=True)
    common = [str(tbin / "pip-compile"), "--quiet", "--strip-extras", "--allow-unsafe", "--no-emit-index-url",
              "--no-emit-find-links", "--resolver=backtracking", *args]
    env = {**os.environ, "CUSTOM_COMPILE_COMMAND": "python3 tasks.py lock"}
    groups = optional_groups()
    for name, extra in (("base", []), ("test", ["-c", str(LOCKS["base"].relative_to(ROOT)),
                                                 *(f"--extra={g}" for g in groups)])):
        out = LOCKS[name]
        say(f"locking {out.relative_to(ROOT)}" + (f" (groups: {', '.join(groups)})" if extra else ""))
        subprocess.run([*common, *extra, "--output-file", str(out.relative_to(ROOT)), "pyproject.toml"],
                       check=True, cwd=ROOT, env=env)
        out.write_text(_without_local_versions(out))
    # the other Pythons and machines: uv resolves for a target it does not run on
    for python, machine in LOCK_TARGETS:
        if (python, machine) == NATIVE_TARGET:
            continue
        for name in ("base", "test"):
            out = lock_path(name, python, machine)
            out.parent.mkdir(exist_ok=True)
            extra = [f"--extra={g}" for g in groups] if name == "test" else []
            say(f"locking {out.relative_to(ROOT)}")
            subprocess.run([str(tbin / "uv"), "pip", "compile", "--quiet", "--no-header", "--no-annotate",
                            "--python-version", python, "--python-platform", f"{machine}-unknown-linux-gnu",
                            "-c", str(LOCKS[name].relative_to(ROOT)), *extra,
                            "--output-file", str(out.relative_to(ROOT)), "pyproject.toml"],
                           check=True, cwd=ROOT, env=env)
            out.write_text(f"# Python {python}, Linux {machine}: made by `python3 tasks.py lock` (uv pip compile, "
                           f"constrained to {LOCKS[name].relative_to(ROOT)})\n" + _without_local_versions(out))
    say("lock written: requirements/base.txt, requirements/test.txt and requirements/platforms/ (commit all)")


def _without_local_versions(path: Path) -> str:
    """The lock's text with ``2.13.0+cpu`` cut to ``2.13.0``: pip still matches it to a local build."""
    return re.sub(r"^([A-Za-z0-9._-]+==[^\s+]+)\+[A-Za-z0-9.]+", r"\1", path.read_text(), flags=re.M)


def lint(args: list[str]) -> None:
    """CI's lint step: ruff check, ruff format --check, snakefmt --check and snakemake --lint; each
    runs, then the task fails if any found something (``python3 tasks.py fmt`` fixes most)."""
    tbin = tools()
    setup("test")  # snakemake --lint runs in the project's environment, the one the tests use
    checks = {
        "ruff check": [str(tbin / "ruff"), "check", *PYTHON_SOURCES],
        "ruff format --check": [str(tbin / "ruff"), "format", "--check", *PYTHON_SOURCES],
        "snakefmt --check": [str(tbin / "snakefmt"), "--check", *SNAKEMAKE_SOURCES],
        "snakemake --lint": [str(BIN / "snakemake"), "--lint", "-s", "Snakefile"],
    }
    failed = [name for name, cmd in checks.items() if subprocess.run([*cmd, *args] if name == "ruff check" else cmd,
                                                                     cwd=ROOT, check=False).returncode != 0]
    if failed:
        say(f"lint failed: {', '.join(failed)} (`python3 tasks.py fmt` applies ruff's and snakefmt's fixes)")
        sys.exit(1)
    say("lint: ruff check, ruff format --check, snakefmt --check and snakemake --lint found nothing")


def fmt(args: list[str]) -> None:
    """Apply the formatters and ruff's safe fixes: ruff format, ruff check --fix, snakefmt."""
    tbin = tools()
    subprocess.run([str(tbin / "ruff"), "format", *PYTHON_SOURCES], cwd=ROOT, check=True)
    subprocess.run([str(tbin / "ruff"), "check", "--fix", "--exit-zero", *PYTHON_SOURCES], cwd=ROOT, check=True)
    subprocess.run([str(tbin / "snakefmt"), *SNAKEMAKE_SOURCES], cwd=ROOT, check=True)
    say("formatted; `python3 tasks.py lint` lists what is left to fix by hand")


def main() -> None:
    tasks = {"demo": demo, "test": test, "lock": lock, "lint": lint, "fmt": fmt}
    if len(sys.argv) < 2 or sys.argv[1] not in tasks:
        sys.exit(__doc__)
    task, args = sys.argv[1], sys.argv[2:]
    try:
        tasks[task](args)
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode or 1)


if __name__ == "__main__":
    main()
