"""`crnn predict` and the Python API on files written by other programs."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from conftest import REPO, run_crnn

from crnn import load_classifier

EXAMPLE_H5 = REPO / "data" / "example_traces.h5"


def test_predict_reads_a_plain_h5py_file_in_input_order(tmp_path, tiny_model):
    out = tmp_path / "scores.h5"
    run_crnn("predict", "--model", tiny_model, "--input", EXAMPLE_H5, "--output", out, "--chunk-size", "64")
    clf = load_classifier(tiny_model)
    with h5py.File(EXAMPLE_H5) as f:
        x = f["traces"][:]
        labels = f["labels"][:]
    expected = clf.predict(x, sampling_rate_hz=180e6)
    with h5py.File(out) as f:
        assert f["scores"].dtype == np.float32 and f["scores"].shape == (200,)
        np.testing.assert_allclose(f["scores"][:], expected, atol=1e-5)
        assert f["decision"].dtype == np.int8
        np.testing.assert_array_equal(f["decision"][:], (expected > clf.threshold).astype(np.int8))
        np.testing.assert_array_equal(f["labels"][:], labels)
        assert f.attrs["threshold"] == pytest.approx(clf.threshold)


@pytest.mark.parametrize(
    ("rate", "channels", "needle"),
    [
        (200e6, 2, "sampling_rate_hz = 2e+08 Hz, but model model.keras was trained on 1.8e+08 Hz traces"),
        (180e6, 3, "traces have 3 channel(s), but model model.keras expects 2"),
    ],
)
def test_predict_refuses_incompatible_traces(tmp_path, tiny_model, rate, channels, needle):
    src = tmp_path / "other.h5"
    with h5py.File(src, "w") as f:
        ds = f.create_dataset("traces", data=np.zeros((5, channels, 500), np.float32))
        ds.attrs["sampling_rate_hz"] = rate
        ds.attrs["unit"] = "V"
    proc = run_crnn("predict", "-m", tiny_model, "-i", src, "-o", tmp_path / "s.h5", check=False)
    assert proc.returncode == 2
    assert needle in proc.stderr and str(src) in proc.stderr
    assert not (tmp_path / "s.h5").exists()


def test_python_api_three_lines(tiny_model):
    clf = load_classifier(tiny_model)
    with h5py.File(EXAMPLE_H5) as f:
        scores = clf.predict(f["traces"][:10], sampling_rate_hz=f["traces"].attrs["sampling_rate_hz"])
    assert scores.shape == (10,) and np.all((scores >= 0) & (scores <= 1))
    assert clf.card["n_samples"] == 500
