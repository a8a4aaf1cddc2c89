"""`crnn --help` loads no deep-learning framework and prints no TensorFlow log lines (its time is
measured by the `cli` benchmark suite, not here)."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO

from crnn.cli import STAGES

FRAMEWORKS = ("tensorflow", "keras", "jax", "torch")
# what TensorFlow's C++ start-up writes to stderr (absl, oneDNN, CPU-feature notes)
TF_LOG_MARKS = ("absl::InitializeLog", "oneDNN", "cpu_feature_guard", "tensorflow", "I0000", "W0000")


def _python(*args: str) -> subprocess.CompletedProcess:
    """A fresh interpreter with this checkout first and the user's environment (no TF log level set)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, env=env, check=False)


def _frameworks_loaded(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules))"
    proc = _python("-c", probe)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return eval(proc.stdout.strip().splitlines()[-1])


def test_crnn_help_lists_every_stage_without_tensorflow_log_lines():
    proc = _python("-m", "crnn", "--help")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert all(stage in proc.stdout for stage in STAGES)
    out = proc.stdout + proc.stderr
    assert not [mark for mark in TF_LOG_MARKS if mark in out], proc.stderr[-2000:]


def test_importing_the_cli_and_building_its_help_imports_no_framework():
    assert _frameworks_loaded("import crnn.cli\ncrnn.cli.build_parser()") == []


def test_a_stage_help_imports_no_framework():
    # train's own help: the stage module loads Keras only when training starts
    code = "import crnn.cli\ntry:\n    crnn.cli.main(['train', '--help'])\nexcept SystemExit:\n    pass"
    assert _frameworks_loaded(code) == []


def test_crnn_version_names_the_commit_and_the_installed_packages_without_a_framework():
    from importlib import metadata

    proc = _python("-m", "crnn", "--version")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in proc.stdout.strip().splitlines())
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    assert lines["crnn"].startswith("0.") and (not head or f"(git {head}" in lines["crnn"]), lines
    for name in ("keras", "numpy", "h5py"):
        assert lines[name] == metadata.version(name)
    backend, version = lines["backend"].split()
    assert backend in ("tensorflow", "jax", "torch", "numpy", "openvino") and version[0].isdigit(), lines
    assert (
        _frameworks_loaded("import crnn.cli\ntry:\n    crnn.cli.main(['--version'])\nexcept SystemExit:\n    pass")
        == []
    )
