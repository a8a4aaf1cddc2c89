"""Every stage through the real `crnn` command: outputs, error messages, exit codes, no partial files."""

from __future__ import annotations

import csv
import json

import h5py
import numpy as np
import pytest
from conftest import REPO, run_crnn

EXAMPLE_H5 = REPO / "data" / "example_traces.h5"


def test_help_lists_every_stage():
    out = run_crnn("--help").stdout
    for stage in (
        "simulate",
        "merge",
        "ingest",
        "dataset",
        "train",
        "evaluate",
        "robustness",
        "report",
        "calibrate",
        "predict",
        "inspect",
    ):
        assert stage in out


def test_simulate_ingest_dataset_and_inspect(tmp_path):
    run_crnn(
        "simulate",
        "-o",
        tmp_path / "sim.h5",
        "--n-traces",
        "1200",
        "--seed",
        "3",
        "--settings",
        '{"transients": [{"kind": "burst", "probability": 0.2}]}',
    )
    with h5py.File(tmp_path / "sim.h5") as f:
        assert f["traces"].shape == (1200, 2, 500) and f["traces"].dtype == np.float32
        assert f.attrs["sampling_rate_hz"] == 180e6 and f.attrs["unit"] == "V"
        assert 0.13 < f["has_transient"][:].mean() < 0.27
    run_crnn(
        "ingest",
        "-i",
        REPO / "data" / "example_traces.root",
        "-o",
        tmp_path / "root.h5",
        "--tree",
        "events",
        "--branch",
        "trace",
        "--unit",
        "V",
        "--sampling-rate-hz",
        "180e6",
        "--label-branch",
        "label",
        "--snr-branch",
        "snr",
    )
    run_crnn(
        "dataset",
        "-i",
        tmp_path / "sim.h5",
        "-i",
        tmp_path / "root.h5",
        "--train",
        tmp_path / "tr.h5",
        "--val",
        tmp_path / "va.h5",
        "--test",
        tmp_path / "te.h5",
        "--seed",
        "2",
    )
    with h5py.File(tmp_path / "te.h5") as f:
        assert f["traces"].shape[0] == 400  # 25 % of 1600
        assert set(np.unique(f["source_id"][:])) == {0, 1}
    out = run_crnn("inspect", tmp_path / "te.h5").stdout
    assert "400 x 2 channel(s) x 500 samples (V)" in out and "180 MHz" in out and "labels:" in out
    out = run_crnn("inspect", REPO / "data" / "example_traces.root").stdout
    assert "events: TTree" in out and "trace" in out


def test_unknown_setting_is_an_error_with_a_suggestion(tmp_path):
    proc = run_crnn("simulate", "-o", tmp_path / "x.h5", "--settings", '{"n_trace": 10}', check=False)
    assert proc.returncode == 2
    assert "unknown key 'n_trace'; did you mean 'n_traces'?" in proc.stderr
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.parametrize("stage", ["ingest", "dataset", "train", "evaluate", "predict", "inspect"])
@pytest.mark.parametrize("problem", ["missing_dataset", "wrong_shape", "nan", "empty", "truncated"])
def test_every_stage_refuses_bad_input_cleanly(tmp_path, stage, problem, tiny_model):
    bad = tmp_path / "bad.h5"
    good = np.random.default_rng(0).normal(size=(40, 2, 500)).astype(np.float32)
    labels = np.r_[np.zeros(20), np.ones(20)].astype(np.int8)
    if problem == "empty":
        bad.write_bytes(b"")
        needle = "empty"
    elif problem == "truncated":
        with h5py.File(tmp_path / "full.h5", "w") as f:
            f.create_dataset("traces", data=good).attrs.update({"sampling_rate_hz": 180e6, "unit": "V"})
        data = (tmp_path / "full.h5").read_bytes()
        bad.write_bytes(data[: len(data) // 2])
        needle = "truncated"
    else:
        with h5py.File(bad, "w") as f:
            if problem == "missing_dataset":
                f.create_dataset("waveforms", data=good)
                needle = "no dataset 'traces'"
            elif problem == "wrong_shape":
                f.create_dataset("traces", data=good[:, :, :, None])
                needle = "shape"
            else:
                x = good.copy()
                x[5, 1, 10] = np.nan
                f.create_dataset("traces", data=x)
                needle = "NaN"
            f.attrs["sampling_rate_hz"] = 180e6
            f.attrs["unit"] = "V"
            f.create_dataset("labels", data=labels)
            f.create_dataset("snr", data=labels * 5.0)
    out = tmp_path / "out"
    args = {
        "ingest": ["ingest", "-i", bad, "-o", out / "x.h5"],
        "predict": ["predict", "-m", tiny_model, "-i", bad, "-o", out / "x.h5"],
        "dataset": ["dataset", "-i", bad, "--train", out / "a.h5", "--val", out / "b.h5", "--test", out / "c.h5"],
        "train": ["train", "--train", bad, "--val", bad, "-o", out, "--epochs", "1"],
        "evaluate": ["evaluate", "--test", bad, "--baseline", "envelope", "-o", out],
        "inspect": ["inspect", bad],
    }[stage]
    proc = run_crnn(*args, check=False)
    assert proc.returncode == 2, proc.stderr
    err_lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(err_lines) == 1, proc.stderr
    assert str(bad) in err_lines[0] and needle in err_lines[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists() or not any(out.rglob("*")), list(out.rglob("*"))


def test_report_refuses_broken_metrics(tmp_path):
    good = tmp_path / "m.json"
    good.write_text('{"method": "gru", "auc": 0.9, "roc": {"fpr": [0, 1], "tpr"')  # cut short
    proc = run_crnn("report", "--metrics", good, "-o", tmp_path / "rep", check=False)
    assert proc.returncode == 2 and str(good) in proc.stderr and "metrics JSON" in proc.stderr
    (tmp_path / "n.json").write_text('{"method": "gru"}')
    proc = run_crnn("report", "--metrics", tmp_path / "n.json", "-o", tmp_path / "rep", check=False)
    assert proc.returncode == 2 and "lack 'auc'" in proc.stderr
    assert not (tmp_path / "rep").exists()


def test_train_evaluate_report_predict(tmp_path, splits):
    model_dir = tmp_path / "models" / "gru"
    run_crnn(
        "train",
        "--train",
        splits["train"],
        "--val",
        splits["val"],
        "-o",
        model_dir,
        "--name",
        "gru",
        "--model",
        '{"cell": "gru", "units": 8, "conv_filters": 8}',
        "--training",
        '{"epochs": 1}',
    )
    card = json.loads((model_dir / "model.card.json").read_text())
    assert card["name"] == "gru" and card["training"]["epochs_run"] == 1
    with open(model_dir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and {"loss", "val_loss", "auc", "val_auc"} <= set(rows[0])
    run_crnn("evaluate", "--test", splits["test"], "--model", model_dir / "model.keras", "-o", tmp_path / "ev" / "gru")
    run_crnn(
        "evaluate",
        "--test",
        splits["test"],
        "--baseline",
        "envelope",
        "-o",
        tmp_path / "ev" / "envelope",
        "--n-bootstrap",
        "20",
    )
    run_crnn(
        "evaluate",
        "--test",
        splits["test"],
        "--baseline",
        "matched_filter",
        "--noise",
        splits["val"],
        "-o",
        tmp_path / "ev" / "matched_filter",
        "--settings",
        '{"baseline": {"matched_filter_templates": 3}}',
        "--signal-model",
        '{"receiver": {"band_hz": [30.0e6, 80.0e6]}, "pulse": {}}',
        "--n-bootstrap",
        "20",
    )
    m = json.loads((tmp_path / "ev" / "gru" / "metrics.json").read_text())
    assert m["method"] == "gru" and m["n_test"] == 600 and "card_working_point" in m
    assert [wp["target_fpr"] for wp in m["working_points"]] == [1e-2, 1e-3, 1e-4]
    assert m["working_points"][1]["available"] is False  # 300 background traces cannot resolve 1e-3
    assert m["report_working_point"]["target_fpr"] == 1e-2  # 1e-3 is not measurable: falls back to 1e-2
    assert m["auc_interval"][0] <= m["auc"] <= m["auc_interval"][1]
    mf = json.loads((tmp_path / "ev" / "matched_filter" / "metrics.json").read_text())
    assert mf["matched_filter"]["templates"] == 3 and str(splits["val"]) in mf["matched_filter"]["noise_spectrum_from"]
    assert mf["n_bootstrap"] == 20 and mf["score_meaning"].startswith("matched-filter SNR")
    assert 3.8 < mf["background_scores"]["noise"]["mean"] < 4.8  # max over lags, phase, polarisation of pure noise
    for name in ("roc.png", "efficiency.png", "gallery.png", "scores.h5"):
        assert (tmp_path / "ev" / "gru" / name).stat().st_size > 1000
    run_crnn(
        "report",
        "--metrics",
        *(tmp_path / "ev" / k / "metrics.json" for k in ("gru", "envelope", "matched_filter")),
        "--history",
        model_dir / "history.csv",
        "--card",
        model_dir / "model.card.json",
        "-o",
        tmp_path / "rep",
    )
    html = (tmp_path / "rep" / "summary.html").read_text()
    assert "<td>gru</td>" in html and "<td>envelope</td>" in html and "<td>matched_filter</td>" in html
    assert html.count('<img src="data:image/png;base64,') == 7 + 3  # comparison plots and three galleries
    for name in ("roc.png", "efficiency.png", "snr.png", "scores.png", "confusion.png", "training.png"):
        assert (tmp_path / "rep" / name).read_bytes()[:4] == b"\x89PNG"
    rows = json.loads((tmp_path / "rep" / "summary.json").read_text())["rows"]
    ref = next(r for r in rows if r["method"] == "matched_filter")
    assert ref["snr50_ratio_to_matched_filter_at_fpr_0.01"] in (1.0, None)
    run_crnn("predict", "-m", model_dir, "-i", EXAMPLE_H5, "-o", tmp_path / "s.csv")
    with open(tmp_path / "s.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["index"]) for r in rows] == list(range(200))
    assert all(r["decision"] in ("0", "1") for r in rows)
