"""Shared fixtures: small simulated files, a quickly trained model, paths to real data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"


def pytest_configure(config) -> None:
    """Under ``--dist loadgroup`` (tasks.py test), pytest-xdist sends the tests of one xdist_group to
    one worker by adding ``@group`` to their ids. pytest 9.2 keeps a node's id where xdist 3.8 sets
    it, so the groups are silently split and each worker builds the shared fixtures again (the
    pipeline ran twice). Stop such a run at once, naming the versions (the lock pins a pair that
    groups)."""
    if getattr(config.option, "dist", None) != "loadgroup" or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    from importlib.metadata import version

    from packaging.version import Version

    pytest_version, xdist_version = Version(version("pytest")), Version(version("pytest-xdist"))
    if pytest_version >= Version("9.2") and xdist_version <= Version("3.8.0"):
        raise pytest.UsageError(
            f"pytest-xdist {xdist_version} does not group tests (xdist_group) under pytest {pytest_version}: "
            "install the locked versions (python3 tasks.py test; pyproject.toml asks pytest<9.2)"
        )


def run_crnn(*args: str, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real ``crnn`` CLI in a subprocess, as a user or a Snakemake rule would."""
    proc = subprocess.run(
        [sys.executable, "-m", "crnn", *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"crnn {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session")
def sim_file(tmp_path_factory) -> Path:
    """3,000 simulated traces of the default acquisition through its fixed detector (seed 7): the
    stages' tests check properties of one known detector (e.g. the matched filter's statistic on
    pure noise); the randomised detectors have tests of their own (test_detector.py, the workflow)."""
    from crnn.detector import RandomiseSettings
    from crnn.simulate import SimulationSettings, simulate

    path = tmp_path_factory.mktemp("sim") / "traces.h5"
    simulate(SimulationSettings(n_traces=3000, randomise=RandomiseSettings(enabled=False)), path, seed=7)
    return path


@pytest.fixture(scope="session")
def splits(tmp_path_factory, sim_file) -> dict[str, Path]:
    from crnn.dataset import build_dataset

    d = tmp_path_factory.mktemp("splits")
    out = {s: d / f"{s}.h5" for s in ("train", "val", "test")}
    build_dataset([sim_file], out, fractions=(0.6, 0.2, 0.2), seed=3)
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, splits) -> Path:
    """A small GRU trained for two epochs (seconds): enough to test saving, loading, predicting."""
    from crnn.models import ModelSettings
    from crnn.train import TrainingSettings, train

    out = tmp_path_factory.mktemp("model")
    return train(
        splits["train"],
        splits["val"],
        out,
        model_settings=ModelSettings(cell="gru", units=16, conv_filters=8),
        training=TrainingSettings(epochs=2, batch_size=128),
        seed=1,
        name="tiny_gru",
    )


@pytest.fixture(scope="session")
def good_model(tmp_path_factory) -> Path:
    """A GRU trained on clear pulses (SNR 6-10) for four short epochs: it finds pulses (val AUC > 0.95)."""
    from crnn.dataset import build_dataset
    from crnn.detector import RandomiseSettings
    from crnn.models import ModelSettings
    from crnn.simulate import SimulationSettings, simulate
    from crnn.train import TrainingSettings, train

    d = tmp_path_factory.mktemp("good")
    fixed = RandomiseSettings(enabled=False)
    simulate(SimulationSettings(n_traces=4000, snr_range=(6.0, 10.0), randomise=fixed), d / "sim.h5", seed=21)
    parts = {s: d / f"{s}.h5" for s in ("train", "val", "test")}
    build_dataset([d / "sim.h5"], parts, fractions=(0.7, 0.15, 0.15), seed=1)
    return train(
        parts["train"],
        parts["val"],
        d / "gru",
        model_settings=ModelSettings(cell="gru", units=16),
        training=TrainingSettings(epochs=4, batch_size=64),
        seed=1,
        name="gru",
    )


def snakemake(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run Snakemake of this environment in a subprocess."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args], check=False, cwd=cwd, capture_output=True, text=True, env=env
    )


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory) -> dict[str, Path]:
    """The whole workflow on config/test.yaml (about a minute), then its Snakemake report.

    Shared by the workflow test and the browser test, so the pipeline runs once per session.
    """
    base = tmp_path_factory.mktemp("pipeline")
    work = base / "run"
    work.mkdir()
    config = str(REPO / "config" / "test.yaml")
    proc = snakemake("--cores", "2", "--directory", str(work), "--configfile", config, "--show-failed-logs")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = base / "report.html"
    proc = snakemake("--cores", "1", "--directory", str(work), "--configfile", config, "--report", str(report))
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = work / yaml.safe_load((REPO / "config" / "test.yaml").read_text())["results_dir"]
    return {"work": work, "results": results, "report": report}


@pytest.fixture
def realdata() -> Path:
    if not REALDATA.exists():
        pytest.skip(f"real third-party files expected in {REALDATA} (../shared/realdata beside the clone)")
    return REALDATA
