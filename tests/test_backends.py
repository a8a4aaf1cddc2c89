"""The same model code and ``crnn train`` run under Keras' TensorFlow, JAX and PyTorch backends (CPU).

Each backend runs in its own subprocess with ``KERAS_BACKEND`` set, as a user would run it; a
backend is skipped only when it cannot be imported in this environment.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}

BUILD_SCRIPT = """
import json, sys
import numpy as np
import keras
from crnn.models import ModelSettings, build_classifier
from crnn.train import configure_threads, report_devices

configure_threads(1)
out = {"backend": keras.backend.backend(), "devices": report_devices()}
x = np.random.default_rng(0).normal(size=(5, 2, 500)).astype("float32") * 3e-6
for label, settings in (("default", ModelSettings()),
                        ("bilstm", ModelSettings(cell="lstm", units=16, bidirectional=True))):
    model = build_classifier((2, 500), settings)
    y = np.asarray(keras.ops.convert_to_numpy(model(x, training=False)))
    out[label] = {"shape": list(y.shape), "min": float(y.min()), "max": float(y.max()),
                  "finite": bool(np.isfinite(y).all()), "params": int(model.count_params())}
print("RESULT " + json.dumps(out))
"""


def _env(backend: str) -> dict[str, str]:
    return {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}


@pytest.fixture(scope="module")
def tiny_splits(tmp_path_factory) -> dict[str, Path]:
    """400 simulated traces split into train/val (a few hundred traces: one epoch in seconds)."""
    from crnn.dataset import build_dataset
    from crnn.simulate import SimulationSettings, simulate

    d = tmp_path_factory.mktemp("tiny")
    simulate(SimulationSettings(n_traces=400), d / "sim.h5", seed=11)
    parts = {s: d / f"{s}.h5" for s in ("train", "val", "test")}
    build_dataset([d / "sim.h5"], parts, fractions=(0.6, 0.3, 0.1), seed=2)
    return parts


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_backend_builds_models_and_trains(backend, tiny_splits, tmp_path):
    if importlib.util.find_spec(BACKENDS[backend]) is None:
        pytest.skip(f"backend {backend}: the package {BACKENDS[backend]!r} is not installed (pip install -e '.[test]')")
    proc = subprocess.run(
        [sys.executable, "-c", BUILD_SCRIPT],
        cwd=REPO,
        env=_env(backend),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(next(line[7:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")))
    assert result["backend"] == backend
    assert result["devices"] == ["CPU"]
    for label in ("default", "bilstm"):
        r = result[label]
        assert r["shape"] == [5, 1]
        assert r["finite"] and 0.0 <= r["min"] <= r["max"] <= 1.0
    assert result["bilstm"]["params"] > 0 and result["default"]["params"] > 0

    out = tmp_path / backend
    training = {"epochs": 1, "batch_size": 64, "streaming": "always"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "crnn",
            "train",
            "--train",
            str(tiny_splits["train"]),
            "--val",
            str(tiny_splits["val"]),
            "-o",
            str(out),
            "--name",
            f"gru_{backend}",
            "--model",
            json.dumps({"units": 8, "conv_filters": 8}),
            "--training",
            json.dumps(training),
            "--threads",
            "1",
        ],
        cwd=REPO,
        env=_env(backend),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    card = json.loads((out / "model.card.json").read_text())
    assert card["backend"] == backend
    assert card["training"]["epochs_run"] == 1 and card["training"]["streamed"] is True
    assert 0.0 <= card["working_point"]["threshold"] <= 1.0
    assert (out / "model.keras").stat().st_size > 0
    assert not (out / "checkpoint").exists()
