"""`crnn calibrate`: working points set on the target's own noise, and how `crnn predict` uses them.

All tests use the committed model fixture (tests/data/model_v0_1: 180 MHz, 2 x 500, band 30-80 MHz)
and noise simulated here; nothing is trained.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import REPO, run_crnn

from crnn.classifier import load_classifier
from crnn.errors import CrnnError
from crnn.metrics import threshold_at_fpr
from crnn.modelcard import file_sha256
from crnn.noise import ReceiverSettings
from crnn.simulate import SimulationSettings, simulate
from crnn.tracefile import TraceSet, read_traces, write_traces

FIXTURE = REPO / "tests" / "data" / "model_v0_1"
FIXTURE_CARD = json.loads((FIXTURE / "model.card.json").read_text())
SHIFTED = SimulationSettings(
    n_traces=20_000, signal_fraction=0.0, noise_temperature_k=300.0, receiver=ReceiverSettings(band_hz=(35e6, 75e6))
)


@pytest.fixture(scope="module")
def shifted_noise(tmp_path_factory):
    """Two files of 20,000 noise-only traces of a hotter, narrower-band detector (seeds 101, 102)."""
    d = tmp_path_factory.mktemp("shifted")
    simulate(SHIFTED, d / "night_a.h5", seed=101)
    simulate(SHIFTED, d / "night_b.h5", seed=102)
    return d / "night_a.h5", d / "night_b.h5"


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, shifted_noise):
    out = tmp_path_factory.mktemp("cal") / "calibrated"
    proc = run_crnn(
        "calibrate", "--model", FIXTURE, "--background", shifted_noise[0], "--output", out, "--skip-unreachable"
    )
    return out, proc


def test_calibrated_working_point_holds_its_fpr_on_fresh_noise_of_the_shifted_detector(calibrated, shifted_noise):
    out, proc = calibrated
    a, b = shifted_noise
    assert sorted(p.name for p in out.iterdir()) == ["model.card.json", "model.keras"]
    card = json.loads((out / "model.card.json").read_text())
    cal = card["calibration"]
    assert cal["n_traces"] == 20_000 and cal["files"][0]["n_used"] == 20_000
    assert cal["files"][0]["sha256"] == file_sha256(a)
    assert (cal["sampling_rate_hz"], cal["n_channels"], cal["n_samples"], cal["unit"]) == (180e6, 2, 500, "V")
    assert cal["band_hz"] == [35e6, 75e6]
    wp = card["working_point"]
    assert wp["target_fpr"] == 1e-3 and wp["chosen_on"] == f"calibration background {a}"
    assert card["training_working_point"] == FIXTURE_CARD["working_point"]
    by_fpr = {p["target_fpr"]: p for p in cal["working_points"]}
    assert by_fpr[1e-4] == {
        "target_fpr": 1e-4,
        "available": False,
        "n_needed": 100_000,
        "reason": "needs >= 100000 noise traces, 20000 given",
    }
    assert by_fpr[1e-2]["available"] and by_fpr[1e-3]["available"]
    assert [p["target_fpr"] for p in card["working_points"]] == [1e-2, 1e-3]
    # the threshold is the (1 - FPR) quantile rule of crnn.metrics on the model's own scores of file a
    clf = load_classifier(FIXTURE)
    scores_a = clf.predict(read_traces(a).traces, sampling_rate_hz=180e6)
    assert wp["threshold"] == pytest.approx(threshold_at_fpr(scores_a, 1e-3), abs=1e-6)
    assert by_fpr[1e-3]["calibration_fpr"] == pytest.approx(np.mean(scores_a > wp["threshold"]), abs=1e-4)
    # the acceptance test: on another 20,000 traces of that noise the FPR is near 1e-3
    proc = run_crnn("predict", "--model", out, "--input", b, "--output", out.parent / "b.h5")
    with h5py.File(out.parent / "b.h5") as f:
        assert f.attrs["threshold"] == pytest.approx(wp["threshold"])
        fpr_b = float(f["decision"][:].mean())
    assert 0.5e-3 <= fpr_b <= 2e-3, fpr_b
    assert "calibrated on night_a.h5 (20000 traces)" in proc.stderr
    # The training threshold of this fixture (the top of 66 validation noise traces) happens to give a
    # similar FPR on this shifted noise (about 1e-3), so no "clearly different" claim is asserted here.


def test_predict_on_the_calibration_file_reports_the_calibrated_threshold(calibrated, shifted_noise, tmp_path):
    out, _ = calibrated
    card = json.loads((out / "model.card.json").read_text())
    thr = card["working_point"]["threshold"]
    proc = run_crnn("predict", "-m", out / "model.keras", "-i", shifted_noise[0], "-o", tmp_path / "a.h5")
    with h5py.File(tmp_path / "a.h5") as f:
        assert f.attrs["threshold"] == pytest.approx(thr)
        assert int(f["decision"][:].sum()) == next(
            p["n_false_alarms"] for p in card["calibration"]["working_points"] if p["target_fpr"] == 1e-3
        )
    lines = [ln for ln in proc.stderr.splitlines() if "calibrated on this file" in ln]
    assert len(lines) == 1 and f"threshold {thr:.4g}" in lines[0] and "calibration background" in lines[0]
    # the uncalibrated model says so, on one line
    proc = run_crnn("predict", "-m", FIXTURE, "-i", shifted_noise[0], "-o", tmp_path / "u.h5")
    lines = [ln for ln in proc.stderr.splitlines() if "not calibrated for this data" in ln]
    assert len(lines) == 1 and "training validation split" in lines[0] and "run crnn calibrate" in lines[0]


def test_python_api_gives_the_calibration_and_tampered_weights_are_still_refused(calibrated, tmp_path):
    out, _ = calibrated
    clf = load_classifier(out)
    assert clf.calibration["n_traces"] == 20_000
    assert clf.threshold == clf.card["working_point"]["threshold"] != FIXTURE_CARD["working_point"]["threshold"]
    assert clf.training_threshold == FIXTURE_CARD["working_point"]["threshold"]
    assert clf.threshold_at(1e-2) == clf.card["calibration"]["working_points"][0]["threshold"]
    assert clf.card["model_sha256"] == FIXTURE_CARD["model_sha256"]  # the weights are a byte copy
    bad = tmp_path / "tampered"
    shutil.copytree(out, bad)
    data = bytearray((bad / "model.keras").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / "model.keras").write_bytes(bytes(data))
    with pytest.raises(CrnnError, match="does not match its card"):
        load_classifier(bad)


def test_recalibrating_keeps_the_training_working_point_and_replaces_the_folder(calibrated, shifted_noise, tmp_path):
    from crnn.calibrate import calibrate

    out, _ = calibrated
    again = tmp_path / "again"
    for background in shifted_noise:  # the second run replaces the folder of the first
        calibrate(out, [background], again, fprs=(1e-2,), working_point_fpr=1e-2)
    card = json.loads((again / "model.card.json").read_text())
    assert card["training_working_point"] == FIXTURE_CARD["working_point"]
    assert card["calibration"]["files"][0]["path"] == str(shifted_noise[1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]  # no temporary folder left


def _write(path, n=50, channels=2, samples=500, rate=180e6, unit="V", nan_at=None, labels=None, band=None):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, channels, samples)).astype(np.float32) * 1e-5
    if nan_at is not None:
        x[nan_at, 1, 17] = np.nan
    meta = {} if labels is None else {"labels": np.asarray(labels, dtype=np.int8)}
    write_traces(path, TraceSet(x, rate, unit, meta), attrs={"band_hz": list(band)} if band else None)
    return path


@pytest.mark.parametrize(
    ("kwargs", "args", "needles"),
    [
        ({"rate": 200e6}, [], ["'sampling_rate_hz' = 2e+08 Hz", "takes 1.8e+08 Hz", "does not resample"]),
        ({"channels": 3}, [], ["'traces' has 3 channel(s)", "takes 2"]),
        ({"samples": 600}, [], ["'traces' has 600 samples", "takes exactly 500"]),
        ({"unit": "furlong"}, [], ["'unit' = 'furlong'", "cannot take", "expected one of"]),
        (
            {"n": 1000, "nan_at": 700},
            ["--fprs", "1e-2", "--working-point-fpr", "1e-2"],
            ["'traces' holds 1 non-finite", "NaN at trace 700", "expected finite"],
        ),
        ({"n": 2000}, ["--skip-unreachable"], ["working point FPR 0.001", "needs at least 10000", "2000 were given"]),
    ],
    ids=["rate", "channels", "length", "unit", "nan", "working-point-unreachable"],
)
def test_refusals_name_file_and_field_and_leave_no_output(tmp_path, kwargs, args, needles):
    src = _write(tmp_path / "noise.h5", **kwargs)
    outs = tmp_path / "outs"
    outs.mkdir()
    proc = run_crnn("calibrate", "-m", FIXTURE, "-b", src, "-o", outs / "cal", *args, check=False)
    assert proc.returncode == 2, proc.stderr
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("crnn calibrate: error:")]
    assert len(err) == 1 and str(src) in err[0], proc.stderr
    for needle in needles:
        assert needle in err[0], err[0]
    assert list(outs.iterdir()) == []


def test_too_few_traces_for_1e4_says_how_many_are_needed(shifted_noise, tmp_path):
    proc = subprocess.run(  # also: python -m crnn.calibrate works
        [
            sys.executable,
            "-m",
            "crnn.calibrate",
            "-m",
            str(FIXTURE),
            "-b",
            str(shifted_noise[0]),
            "-o",
            str(tmp_path / "cal"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        check=False,
    )
    assert proc.returncode == 2
    assert "FPR 0.0001: it needs at least 100000" in proc.stderr and "20000 were given" in proc.stderr
    assert "--skip-unreachable" in proc.stderr
    assert not (tmp_path / "cal").exists() and list(tmp_path.iterdir()) == []


def test_signal_traces_are_left_out(tmp_path):
    from crnn.calibrate import calibrate

    labels = np.zeros(1100, dtype=np.int8)
    labels[:100] = 1
    src = _write(tmp_path / "mixed.h5", n=1100, labels=labels)
    calibrate(FIXTURE, [src], tmp_path / "cal", fprs=(1e-2,), working_point_fpr=1e-2)
    cal = json.loads((tmp_path / "cal" / "model.card.json").read_text())["calibration"]
    assert cal["n_traces"] == 1000 and cal["files"][0]["n_excluded_signal"] == 100
    clf = load_classifier(FIXTURE)
    scores = clf.predict(read_traces(src).traces[100:], sampling_rate_hz=180e6)
    assert cal["working_points"][0]["threshold"] == pytest.approx(threshold_at_fpr(scores, 1e-2), abs=1e-6)


def test_predict_warns_once_each_for_band_rate_and_unit(tmp_path, caplog):
    from crnn.predict import predict_files

    odd = _write(tmp_path / "odd.h5", n=20, samples=556, rate=200e6, unit="mV", band=(35e6, 75e6))
    same = _write(tmp_path / "same.h5", n=20, band=(30e6, 80e6))
    with caplog.at_level(logging.INFO, logger="crnn"):
        predict_files(FIXTURE, [odd, same], tmp_path / "s.h5", chunk_size=8)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "crnn.predict"]
    assert len(warnings) == 3, warnings
    assert all("\n" not in w and w.startswith(str(odd)) for w in warnings)
    band, rate, unit = warnings
    assert "band_hz [35000000.0, 75000000.0] differs from the model's [30000000.0, 80000000.0]" in band
    assert "sampling rate 2e+08 Hz differs from the model's 1.8e+08 Hz" in rate
    assert "unit mV differs from the model's training unit V" in unit
    info = [r.getMessage() for r in caplog.records if "not calibrated for this data" in r.getMessage()]
    assert [m.split(":")[0] for m in info] == [str(odd), str(same)]  # one line per input, not per chunk
