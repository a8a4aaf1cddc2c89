"""`crnn predict` and the Python API: formats, resampling, sliding windows, safety, versioning."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import uproot
from conftest import REPO, run_crnn

from crnn import load_classifier
from crnn.detector import RandomiseSettings
from crnn.noise import ReceiverSettings
from crnn.predict import predict_files
from crnn.pulse import PulseModel, PulseSettings
from crnn.simulate import SimulationSettings, Simulator
from crnn.tracefile import TraceSet, write_traces

EXAMPLE_H5 = REPO / "data" / "example_traces.h5"


def _read_outputs(stem):
    with h5py.File(stem.with_suffix(".h5")) as f:
        h5 = {k: f[k][:] for k in ("index", "scores", "decision", "window_start_s", "file_index")}
    with open(stem.with_suffix(".csv")) as f:
        rows = list(csv.DictReader(f))
    with uproot.open(stem.with_suffix(".root")) as f:
        root = f["scores"].arrays(library="np")
    return h5, rows, root


def _assert_outputs_agree(stem, n):
    h5, rows, root = _read_outputs(stem)
    assert len(rows) == n and len(root["score"]) == n and len(h5["scores"]) == n
    np.testing.assert_allclose([float(r["score"]) for r in rows], h5["scores"], rtol=1e-6)
    np.testing.assert_array_equal(root["score"], h5["scores"])
    np.testing.assert_array_equal([int(r["decision"]) for r in rows], h5["decision"])
    np.testing.assert_array_equal(root["decision"], h5["decision"])
    np.testing.assert_array_equal(root["index"], h5["index"])
    return h5


def _same_scores_as_the_cli(stem, cli_h5):
    """The CLI's .h5 (two inference streams) holds the scores of the in-process run, in the same order."""
    with h5py.File(cli_h5) as f, h5py.File(stem.with_suffix(".h5")) as g:
        for key in ("index", "file_index", "window_start_s"):
            np.testing.assert_array_equal(f[key][:], g[key][:])
        np.testing.assert_allclose(f["scores"][:], g["scores"][:], atol=1e-5)
        assert f.attrs["threshold"] == g.attrs["threshold"]


def test_plain_h5py_file_to_h5_csv_and_root(tmp_path, tiny_model):
    # the CLI writes one format; the same scoring writes all three in this process (no TensorFlow
    # start per format), and the three must agree exactly
    run_crnn(
        "predict", "--model", tiny_model, "--input", EXAMPLE_H5, "--output", tmp_path / "cli.h5", "--chunk-size", "64"
    )
    for suffix in (".h5", ".csv", ".root"):
        predict_files(tiny_model, [EXAMPLE_H5], tmp_path / f"s{suffix}", chunk_size=64)
    h5 = _assert_outputs_agree(tmp_path / "s", 200)
    _same_scores_as_the_cli(tmp_path / "s", tmp_path / "cli.h5")
    clf = load_classifier(tiny_model)
    with h5py.File(EXAMPLE_H5) as f:
        x, labels = f["traces"][:], f["labels"][:]
    np.testing.assert_allclose(h5["scores"], clf.predict(x, sampling_rate_hz=180e6), atol=1e-5)
    np.testing.assert_array_equal(h5["index"], np.arange(200))  # input order
    np.testing.assert_array_equal(h5["decision"], (h5["scores"] > clf.threshold).astype(np.int8))
    for out in ("s.h5", "cli.h5"):
        with h5py.File(tmp_path / out) as f:
            np.testing.assert_array_equal(f["labels"][:], labels)  # metadata carried through
            assert f.attrs["threshold"] == pytest.approx(clf.threshold)


def test_several_inputs_by_glob_and_working_points(tmp_path, tiny_model):
    for i in range(2):
        shutil.copy(EXAMPLE_H5, tmp_path / f"night_{i}.h5")
    run_crnn(
        "predict",
        "-m",
        tiny_model,
        "-i",
        str(tmp_path / "night_*.h5"),
        "-o",
        tmp_path / "a.h5",
        "--working-point",
        "0.01",
    )
    clf = load_classifier(tiny_model)
    with h5py.File(tmp_path / "a.h5") as f:
        assert f["scores"].shape == (400,)
        np.testing.assert_array_equal(f["file_index"][:], np.repeat([0, 1], 200))
        np.testing.assert_array_equal(f["scores"][:200], f["scores"][200:])
        assert f.attrs["threshold"] == pytest.approx(clf.threshold_at(0.01))
    proc = run_crnn(
        "predict", "-m", tiny_model, "-i", EXAMPLE_H5, "-o", tmp_path / "b.h5", "--working-point", "0.5", check=False
    )
    assert proc.returncode == 2 and "no working point at FPR 0.5" in proc.stderr
    run_crnn("predict", "-m", tiny_model, "-i", EXAMPLE_H5, "-o", tmp_path / "c.h5", "--threshold", "0.0")
    with h5py.File(tmp_path / "c.h5") as f:
        assert f["decision"][:].sum() == 200


@pytest.mark.parametrize(
    ("rate", "channels", "samples", "needle"),
    [
        (180e6, 3, 500, "traces have 3 channel(s), but model model.keras expects 2"),
        (180e6, 2, 300, "traces have 300 samples, but model model.keras expects at least 500"),
    ],
)
def test_predict_refuses_incompatible_traces(tmp_path, tiny_model, rate, channels, samples, needle):
    src = tmp_path / "other.h5"
    with h5py.File(src, "w") as f:
        ds = f.create_dataset("traces", data=np.ones((5, channels, samples), np.float32))
        ds.attrs["sampling_rate_hz"] = rate
        ds.attrs["unit"] = "V"
    proc = run_crnn("predict", "-m", tiny_model, "-i", src, "-o", tmp_path / "s.h5", check=False)
    assert proc.returncode == 2
    assert needle in proc.stderr and str(src) in proc.stderr
    assert not (tmp_path / "s.h5").exists()


def test_unknown_unit_and_lambda_model_are_refused(tmp_path, tiny_model):
    import keras

    from crnn.modelcard import card_path, file_sha256

    src = tmp_path / "odd.h5"
    with h5py.File(src, "w") as f:
        ds = f.create_dataset("traces", data=np.ones((5, 2, 500), np.float32))
        ds.attrs.update({"sampling_rate_hz": 180e6, "unit": "furlong"})
    proc = run_crnn("predict", "-m", tiny_model, "-i", src, "-o", tmp_path / "s.h5", check=False)
    assert proc.returncode == 2 and "unknown unit 'furlong'" in proc.stderr
    inputs = keras.Input((2, 500))
    out = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Lambda(lambda t: t[:, 0, :])(inputs))
    evil = tmp_path / "evil.keras"
    keras.Model(inputs, out).save(evil)
    card = json.loads(card_path(tiny_model).read_text())
    card["model_sha256"] = file_sha256(evil)
    card_path(evil).write_text(json.dumps(card))
    proc = run_crnn("predict", "-m", evil, "-i", EXAMPLE_H5, "-o", tmp_path / "e.h5", check=False)
    assert proc.returncode == 2 and "arbitrary code" in proc.stderr and "--trust-model" in proc.stderr
    assert not (tmp_path / "e.h5").exists() and not (tmp_path / "s.h5").exists()
    run_crnn("predict", "-m", evil, "-i", EXAMPLE_H5, "-o", tmp_path / "e.h5", "--trust-model")
    assert (tmp_path / "e.h5").exists()


def test_resampling_from_200_mhz_keeps_the_separation(good_model):
    rx = ReceiverSettings(sampling_rate_hz=200e6, n_samples=556)
    fixed = RandomiseSettings(enabled=False)  # the detector the fixture model was trained on
    data = Simulator(SimulationSettings(receiver=rx, snr_range=(6.0, 10.0), randomise=fixed), seed=77).block(0, 400)
    clf = load_classifier(good_model)
    scores = clf.predict(data.traces, sampling_rate_hz=200e6)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(data.labels, scores) > 0.95
    # the same as resampling first with crnn's resampler and then scoring at 180 MHz
    from crnn.resample import resample

    again = clf.predict(resample(data.traces, 200e6, 180e6, band_hz=(30e6, 80e6)), sampling_rate_hz=180e6)
    np.testing.assert_allclose(scores, again, atol=1e-4)


def test_sliding_windows_find_a_pulse_near_the_end_of_a_long_trace(good_model):
    rx = ReceiverSettings(n_samples=2000)
    sim = Simulator(
        SimulationSettings(
            receiver=rx, signal_fraction=0.0, cw_lines=(), transients=(), randomise=RandomiseSettings(enabled=False)
        ),
        seed=5,
    )
    noise = sim.block(0, 40)
    pulses = PulseModel(rx, PulseSettings(arrival_fraction_range=(0.88, 0.9))).generate(40, np.random.default_rng(3))
    x = noise.traces.astype(float) + 8 * noise.meta["noise_rms"][:, None, None] * pulses.waveforms
    clf = load_classifier(good_model)
    scores, t_best = clf.score(x, sampling_rate_hz=180e6)
    quiet, _ = clf.score(noise.traces, sampling_rate_hz=180e6)
    assert np.median(scores) > 0.9 and np.median(quiet) < 0.5
    found = scores > 0.5
    # the best window holds the pulse (which peaks near sample 1780)
    window_s = 500 / 180e6
    assert np.all((t_best[found] <= pulses.time_s[found]) & (pulses.time_s[found] <= t_best[found] + window_s))
    assert found.mean() > 0.8


def test_coreas_and_grand_real_files_to_all_three_formats(tmp_path, tiny_model, realdata):
    coreas = realdata / "coreas" / "example_data.hdf5"
    grand = realdata / "grand" / "noise_traces_gp13_2024_01_night_datafiles_185-190_merged.root"
    # the CLI once per input, to .h5; the same settings in this process to all three formats
    # CoREAS pulses at 10 GHz: 55 times the model's rate, resampled only when asked
    run_crnn("predict", "-m", tiny_model, "-i", coreas, "-o", tmp_path / "cli_c.h5", "--pad", "--force-resample")
    run_crnn("predict", "-m", tiny_model, "-i", grand, "-o", tmp_path / "cli_g.h5", "--channels", "0", "1")
    for suffix in (".h5", ".csv", ".root"):
        predict_files(tiny_model, [coreas], tmp_path / f"c{suffix}", pad=True, force_resample=True)
        predict_files(tiny_model, [grand], tmp_path / f"g{suffix}", channels=(0, 1))
    _assert_outputs_agree(tmp_path / "c", 8)
    h5 = _assert_outputs_agree(tmp_path / "g", 36)
    _same_scores_as_the_cli(tmp_path / "c", tmp_path / "cli_c.h5")
    _same_scores_as_the_cli(tmp_path / "g", tmp_path / "cli_g.h5")
    # 2048 samples at 500 MHz = 737 at 180 MHz: two windows, the best one starts at 0 or 237 samples
    assert set(np.round(h5["window_start_s"] * 180e6).astype(int)) <= {0, 237}
    for out in ("g.h5", "cli_g.h5"):
        with h5py.File(tmp_path / out) as f:
            assert f["du_id"].shape == (36,)
    proc = run_crnn("predict", "-m", tiny_model, "-i", grand, "-o", tmp_path / "x.h5", check=False)
    assert proc.returncode == 2 and "3 channel(s), but model model.keras expects 2" in proc.stderr


def test_a_model_saved_by_crnn_0_1_still_loads_and_scores_the_same():
    fixture = REPO / "tests" / "data" / "model_v0_1"
    clf = load_classifier(fixture)
    assert clf.card["crnn_version"] == "0.1.0" and clf.card["keras_version"].startswith("3.")
    expected = json.loads((fixture / "expected_scores.json").read_text())["scores"]
    with h5py.File(EXAMPLE_H5) as f:
        scores = clf.predict(f["traces"][:50], sampling_rate_hz=180e6)
    np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_python_api_three_lines(tiny_model):
    clf = load_classifier(tiny_model)
    with h5py.File(EXAMPLE_H5) as f:
        scores = clf.predict(f["traces"][:10], sampling_rate_hz=f["traces"].attrs["sampling_rate_hz"])
    assert scores.shape == (10,) and np.all((scores >= 0) & (scores <= 1))
    assert clf.card["n_samples"] == 500


PARALLEL_CHILD = """
import json, sys
import numpy as np
from crnn.classifier import configure_parallel_inference, load_classifier
streams = configure_parallel_inference(2)
clf = load_classifier(sys.argv[1], streams=streams)
x = np.random.default_rng(5).standard_normal((5000, clf.n_channels, clf.n_samples), dtype=np.float32)
side_by_side = clf.predict(x, sampling_rate_hz=clf.sampling_rate_hz)
clf.streams = 1
one_by_one = clf.predict(x, sampling_rate_hz=clf.sampling_rate_hz)
print("RESULT " + json.dumps({"streams": streams, "max_diff": float(np.abs(side_by_side - one_by_one).max()),
                              "n": int(side_by_side.size), "spread": float(np.ptp(one_by_one))}))
"""


def test_batches_scored_side_by_side_give_the_same_scores_in_input_order(tiny_model):
    proc = subprocess.run(
        [sys.executable, "-c", PARALLEL_CHILD, str(tiny_model)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert proc.returncode == 0 and line, proc.stderr[-3000:]
    result = json.loads(line[7:])
    # a fresh process: TensorFlow's thread pools could be set, so two streams are in use
    assert result["streams"] == 2
    assert result["n"] == 5000 and result["spread"] > 0
    # same windows, same order (5 batches of 1,024 traces, out of order would differ by far more)
    assert result["max_diff"] < 1e-5


def test_parallel_inference_is_refused_quietly_once_tensorflow_runs(tiny_model):
    from crnn.classifier import configure_parallel_inference, load_classifier

    clf = load_classifier(tiny_model)  # TensorFlow runs in this process from here on
    clf.predict(np.zeros((2, clf.n_channels, clf.n_samples), np.float32) + 1.0, sampling_rate_hz=clf.sampling_rate_hz)
    assert configure_parallel_inference(2) == 1


@pytest.mark.parametrize(
    ("rate_hz", "n_samples", "needle"),
    [
        (90e6, 250, "its Nyquist frequency 4.5e+07 Hz lies below the upper band edge 8e+07 Hz"),
        (1e3, 16, "its Nyquist frequency 500 Hz lies below the upper band edge"),
        (1.8e9, 5000, "differs from the 1.8e+08 Hz of model model.keras by a factor 10, more than 8"),
    ],
)
def test_resampling_far_from_the_model_rate_is_refused_unless_forced(tmp_path, rate_hz, n_samples, needle):
    """Issue 15, item 7: no 268 GiB allocation for a 1 kHz file, no made-up band for 90 MHz."""
    path = tmp_path / "in.h5"
    x = np.random.default_rng(0).normal(size=(4, 2, n_samples)).astype(np.float32)
    write_traces(path, TraceSet(x, rate_hz, "V", {}))
    model = REPO / "tests" / "data" / "model_v0_1" / "model.keras"
    proc = run_crnn("predict", "-m", model, "-i", path, "-o", tmp_path / "s.h5", check=False)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if "error:" in line or "Traceback" in line]
    assert len(errors) == 1 and errors[0].startswith("crnn predict: error: "), proc.stderr
    assert needle in errors[0] and "--force-resample" in errors[0], errors[0]
    assert not (tmp_path / "s.h5").exists()
    if rate_hz == 90e6:  # asked for: scored (the first rule alone)
        run_crnn("predict", "-m", model, "-i", path, "-o", tmp_path / "s.h5", "--force-resample")
        with h5py.File(tmp_path / "s.h5") as f:
            assert f["scores"].shape == (4,)
