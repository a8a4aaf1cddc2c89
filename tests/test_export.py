"""`crnn export` (ONNX float and int8) and `crnn predict --engine onnxruntime`: the exported model
scores as the Keras model does, without TensorFlow, and bad input stops with one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import REPO, run_crnn

pytest.importorskip("onnxruntime", reason="the export extra (pip install 'crnn[export]') is not installed")
pytest.importorskip("tf2onnx", reason="the export extra (pip install 'crnn[export]') is not installed")

from crnn.classifier import load_classifier, load_onnx_classifier
from crnn.modelcard import file_sha256
from crnn.tracefile import read_traces

FRAMEWORKS = ("tensorflow", "keras", "jax", "torch")


@pytest.fixture(scope="module")
def gru_export(tmp_path_factory, tiny_model, splits):
    """The tiny GRU (spectral whitening, conv front end) exported with the CLI, checked on the test split."""
    out = tmp_path_factory.mktemp("export") / "gru_onnx"
    run_crnn("export", "--model", tiny_model, "--format", "onnx", "--output", out, "--test-split", splits["test"])
    return out


def test_onnx_export_holds_the_whole_model_and_its_card(gru_export, tiny_model, splits):
    card = json.loads((gru_export / "model.card.json").read_text())
    keras_card = json.loads(tiny_model.with_name("model.card.json").read_text())
    assert sorted(p.name for p in gru_export.iterdir()) == ["model.card.json", "model.onnx"]
    # what the trigger must know travels with it, unchanged
    for key in ("input_shape", "sampling_rate_hz", "band_hz", "normalisation", "working_point", "working_points"):
        assert card[key] == keras_card[key], key
    assert card["model_sha256"] == file_sha256(gru_export / "model.onnx")
    assert card["export"]["source_model_sha256"] == keras_card["model_sha256"]
    assert card["export"]["format"] == "onnx"
    # raw traces in: normalisation and whitening are inside the graph (no FFT operator left)
    assert {"Sqrt", "MatMul"} <= set(card["export"]["operators"])  # the normalisation, the matrix DFT
    assert not {"DFT", "RFFT"} & set(card["export"]["operators"])
    # ONNX Runtime scores the test split as Keras does, measured here again
    ts = read_traces(splits["test"])
    keras_scores = load_classifier(tiny_model).predict(ts.traces, sampling_rate_hz=ts.sampling_rate_hz)
    onnx_scores = load_onnx_classifier(gru_export).predict(ts.traces, sampling_rate_hz=ts.sampling_rate_hz)
    assert keras_scores.std() > 1e-3  # scores that differ from trace to trace: a real comparison
    np.testing.assert_allclose(onnx_scores, keras_scores, rtol=0, atol=1e-5)
    assert card["export"]["check"]["max_abs_score_difference_vs_keras"] <= 1e-5


def test_predict_with_onnxruntime_matches_keras_without_tensorflow(gru_export, tiny_model, splits, tmp_path):
    keras_out, onnx_out = tmp_path / "keras.h5", tmp_path / "onnx.h5"
    run_crnn("predict", "--model", tiny_model, "--input", splits["test"], "--output", keras_out)
    probe = (
        "import sys\nfrom crnn.cli import main\n"
        f"rc = main(['predict', '--engine', 'onnxruntime', '--model', {str(gru_export)!r}, '--input', "
        f"{str(splits['test'])!r}, '--output', {str(onnx_out)!r}])\n"
        f"print(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules))\nsys.exit(rc)"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"  # no TensorFlow, Keras, JAX or PyTorch
    with h5py.File(keras_out) as k, h5py.File(onnx_out) as o:
        assert sorted(k) == sorted(o)  # the same datasets: scores, decision, metadata
        np.testing.assert_allclose(o["scores"][:], k["scores"][:], rtol=0, atol=1e-5)
        np.testing.assert_array_equal(o["decision"][:], k["decision"][:])
        for key in ("index", "file_index", "window_start_s", "labels"):
            np.testing.assert_array_equal(o[key][:], k[key][:])
        assert o.attrs["threshold"] == k.attrs["threshold"]
        assert (o.attrs["engine"], k.attrs["engine"]) == ("onnxruntime", "keras")


def test_lstm_exports_and_scores_as_keras(tmp_path, splits):
    from crnn.export import export_model
    from crnn.models import ModelSettings
    from crnn.train import TrainingSettings, train

    model = train(
        splits["train"],
        splits["val"],
        tmp_path / "lstm",
        model_settings=ModelSettings(cell="lstm", units=8, conv_filters=8),
        training=TrainingSettings(epochs=1, batch_size=256),
        seed=2,
        name="lstm",
    )
    out = export_model(model, tmp_path / "lstm_onnx")
    card = json.loads((out / "model.card.json").read_text())
    assert "LSTM" in card["export"]["operators"]  # the fused recurrent layer became ONNX's own LSTM
    x = read_traces(splits["val"]).traces[:300]
    np.testing.assert_allclose(
        load_onnx_classifier(out).predict(x, sampling_rate_hz=180e6),
        load_classifier(model).predict(x, sampling_rate_hz=180e6),
        rtol=0,
        atol=1e-5,
    )


def _refused(proc, *words):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1, proc.stderr[-2000:]
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


def test_bad_input_one_line_exit_2_no_output(tmp_path, tiny_model, gru_export, splits):
    out = tmp_path / "out"
    # a file that is not a crnn model
    _refused(run_crnn("export", "--model", splits["test"], "--output", out, check=False), "test.h5", ".keras")
    fake = tmp_path / "fake" / "model.keras"
    fake.parent.mkdir()
    fake.write_bytes(b"not a zip archive")
    _refused(run_crnn("export", "--model", fake, "--output", out, check=False), "model.card.json", "card")
    # an unknown format
    _refused(
        run_crnn("export", "--model", tiny_model, "--format", "tflite", "--output", out, check=False),
        "tflite",
        "onnx",
        "int8",
    )
    assert not out.exists()
    # an exported model without its card
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "model.onnx").write_bytes((gru_export / "model.onnx").read_bytes())
    scores = tmp_path / "scores.h5"
    _refused(
        run_crnn(
            "predict",
            "--engine",
            "onnxruntime",
            "--model",
            bare,
            "--input",
            splits["test"],
            "--output",
            scores,
            check=False,
        ),
        "model.card.json",
    )
    # the Keras engine on an export folder says which engine scores it
    _refused(
        run_crnn("predict", "--model", gru_export, "--input", splits["test"], "--output", scores, check=False),
        "--engine onnxruntime",
    )
    assert not scores.exists()
    # the export packages not installed (a None entry in sys.modules makes their import fail)
    code = (
        "import sys\nsys.modules['tf2onnx'] = None\nfrom crnn.cli import main\n"
        f"sys.exit(main(['export', '--model', {str(tiny_model)!r}, '--output', {str(out)!r}]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    _refused(proc, "tf2onnx", "crnn[export]")
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_int8_keeps_the_float_models_auc(tmp_path, good_model):
    from crnn.dataset import build_dataset
    from crnn.detector import RandomiseSettings
    from crnn.simulate import SimulationSettings, simulate

    # a fresh labelled split of the good model's kind of data (clear pulses), another seed
    simulate(
        SimulationSettings(n_traces=1200, snr_range=(6.0, 10.0), randomise=RandomiseSettings(enabled=False)),
        tmp_path / "sim.h5",
        seed=77,
    )
    parts = {s: tmp_path / f"{s}.h5" for s in ("train", "val", "test")}  # train: the calibration traces
    build_dataset([tmp_path / "sim.h5"], parts, fractions=(0.45, 0.1, 0.45), seed=5)
    out = tmp_path / "int8"
    run_crnn(
        "export",
        "--model",
        good_model,
        "--format",
        "int8",
        "--output",
        out,
        "--calibration",
        parts["train"],
        "--test-split",
        parts["test"],
        "--n-calibration",
        "256",
    )
    card = json.loads((out / "model.card.json").read_text())
    split = card["export"]["test_split"]
    assert card["export"]["format"] == "int8"
    assert card["export"]["quantisation"]["quantised_operators"]  # the graph holds int8 operators
    # the int8 model is a different model (scores move) with the float model's ranking power
    assert card["export"]["check"]["max_abs_score_difference_int8_vs_float"] > 1e-5
    assert split["float"]["auc"] > 0.9
    assert abs(split["int8"]["auc"] - split["float"]["auc"]) < 0.01
    # the score is not quantised: the graph's output comes from the float sigmoid, not from a
    # DequantizeLinear (256 probability levels put the top background and most pulses on one level)
    import onnx

    graph = onnx.load(str(out / "model.onnx")).graph
    producer = {o: n for n in graph.node for o in n.output}
    last = producer[graph.output[0].name]
    while last.op_type == "Identity":
        last = producer[last.input[0]]
    assert last.op_type == "Sigmoid", [(n.name, n.op_type) for n in graph.node[-6:]]
    # measured here again with predict --engine onnxruntime on the int8 folder
    scores = tmp_path / "scores.h5"
    run_crnn("predict", "--engine", "onnxruntime", "--model", out, "--input", parts["test"], "--output", scores)
    from sklearn.metrics import roc_auc_score

    with h5py.File(scores) as f:
        assert abs(roc_auc_score(f["labels"][:], f["scores"][:]) - split["int8"]["auc"]) < 1e-9


def test_inspect_shows_an_export_and_its_trigger_budget(gru_export):
    card = json.loads((gru_export / "model.card.json").read_text())
    proc = run_crnn("inspect", gru_export, "--trial-rate-hz", "2000")
    assert "crnn model exported as onnx" in proc.stdout
    assert f"input {card['export']['onnx_input']}" in proc.stdout
    wp = card["working_point"]
    line = next(ln for ln in proc.stdout.splitlines() if ln.strip().startswith("FPR 1e-3 "))
    # FPR times the trial rate: 1e-3 x 2,000 traces/s = 2 false triggers per second per antenna
    assert f"threshold {wp['threshold']:.4g}" in line and "2 false triggers/s at the target FPR" in line
    assert f"{wp['val_fpr'] * 2000:.4g}/s at the FPR measured on the validation background" in line
    assert run_crnn("inspect", gru_export, "--trial-rate-hz", "0", check=False).returncode == 2
