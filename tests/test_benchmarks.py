"""The benchmark runner (python -m benchmarks): statistics, docs sections, the PyTorch peer's shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.__main__ import load_suites, update_docs
from benchmarks.common import summary
from benchmarks.train import _same_padding

REPO = Path(__file__).resolve().parents[1]


def test_summary_gives_median_and_spread():
    s = summary([5.0, 1.0, 3.0])
    assert (s["median"], s["min"], s["max"], s["n"]) == (3.0, 1.0, 5.0, 3)
    assert "q1" not in s  # quartiles only from 4 repeats on
    s = summary([4.0, 1.0, 3.0, 2.0, 100.0])
    assert s["median"] == 3.0
    assert s["q1"] == 2.0
    assert s["q3"] == 4.0


def test_update_docs_replaces_only_the_suite_section(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# B\n\nhand text\n\n<!-- bench:simulate -->\nold\n<!-- /bench:simulate -->\n\nmore hand text\n")
    update_docs(doc, "simulate", "<!-- bench:simulate -->\nnew\n<!-- /bench:simulate -->")
    text = doc.read_text()
    assert "old" not in text
    assert "new" in text
    assert text.startswith("# B\n\nhand text\n")
    assert text.endswith("more hand text\n")
    update_docs(doc, "train", "<!-- bench:train -->\nT\n<!-- /bench:train -->")  # no markers yet: appended
    assert doc.read_text().count("<!-- bench:train -->") == 1
    assert "more hand text" in doc.read_text()


def test_every_suite_has_the_interface():
    suites = load_suites()
    assert {"simulate", "noise", "ingest", "train", "predict", "quality", "pipeline"} <= set(suites)
    for name, mod in suites.items():
        assert mod.NAME == name
        assert callable(mod.add_arguments)
        assert callable(mod.run)
        assert callable(mod.markdown)


def test_torch_peer_has_the_shape_of_the_crnn_model():
    torch = pytest.importorskip("torch")
    from benchmarks.train import torch_peer
    from crnn.models import ModelSettings, build_classifier

    for cell in ("gru", "lstm"):
        s = ModelSettings(cell=cell)
        keras_model = build_classifier((2, 500), s)
        peer = torch_peer(s, 2, 500)
        n_torch = sum(p.numel() for p in peer.parameters())
        # nn.LSTM has a second bias vector (4 x units) that Keras' LSTM folds into one
        extra = 4 * s.units if cell == "lstm" else 0
        assert n_torch == keras_model.count_params() + extra
        conv_out = keras_model.get_layer("conv_2").output.shape[1]
        x = torch.zeros(3, 4, 500)  # the trace and its whitened copy
        y = peer.conv_2(torch.nn.functional.pad(peer.conv_1(torch.nn.functional.pad(x, peer.pad1)), peer.pad2))
        assert y.shape[-1] == conv_out == -(-500 // s.conv_strides)
        assert peer(torch.zeros(3, 2, 500)).shape == (3,)


def test_torch_peer_whitens_like_the_crnn_layer():
    torch = pytest.importorskip("torch")
    import keras

    from benchmarks.train import torch_peer
    from crnn.models import ModelSettings, build_classifier

    s = ModelSettings()
    model = build_classifier((2, 500), s)
    keras_white = keras.Model(model.input, model.get_layer("trace_and_white").output)
    # coloured noise with a CW line: whitening changes it a lot, so a wrong step shows
    rng = np.random.default_rng(3)
    x = np.cumsum(rng.normal(size=(4, 2, 500)), axis=-1) + 5 * np.sin(0.3 * np.arange(500))
    x = x.astype(np.float32)
    want = np.asarray(keras_white(x))
    peer = torch_peer(s, 2, 500)
    t = peer.normalise(torch.from_numpy(x))
    got = torch.cat([t, peer.normalise(peer.white(t))], dim=1).numpy()
    assert np.abs(want[:, 2:] - x[:, :, :] / np.sqrt((x**2).mean(axis=(1, 2), keepdims=True))).max() > 0.1
    np.testing.assert_allclose(got, want, atol=1e-3)  # float32 running sums in the keras layer


@pytest.mark.parametrize(("length", "kernel", "stride"), [(500, 9, 4), (500, 9, 1), (125, 4, 8), (7, 9, 2)])
def test_same_padding_gives_the_keras_output_length(length, kernel, stride):
    left, right = _same_padding(length, kernel, stride)
    assert 0 <= right - left <= 1
    assert (length + left + right - kernel) // stride + 1 == -(-length // stride)


def test_quick_run_writes_json_with_stats_and_machine(tmp_path):
    docs = tmp_path / "benchmarks.md"
    docs.write_text("untouched\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "simulate",
            "noise",
            "--quick",
            "--output-dir",
            str(tmp_path),
            "--docs",
            str(docs),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for suite in ("simulate", "noise"):
        assert f"[bench] {suite}: done" in proc.stdout
        result = json.loads((tmp_path / f"{suite}.json").read_text())
        assert result["quick"] is True
        assert result["machine"]["cores"] >= 1
        assert result["machine"]["cpu"]
        for m in result["measurements"]:
            assert len(m["values"]) == 1
            assert m["stats"]["median"] == m["values"][0]
        rate = next(m for m in result["measurements"] if m["unit"] == "traces/s")
        assert rate["values"][0] > 0
    assert docs.read_text() == "untouched\n"  # --quick never writes the docs
