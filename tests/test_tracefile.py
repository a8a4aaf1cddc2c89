"""The canonical trace file: round trips, layout rules and the errors for bad files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from crnn.errors import CrnnError, MissingFieldError
from crnn.tracefile import TraceFile, TraceSet, TraceWriter, read_traces, write_traces


def _write_plain(path, traces, *, rate=180e6, unit="V", on_root=False, **datasets):
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("traces", data=traces)
        target = f if on_root else ds
        if rate is not None:
            target.attrs["sampling_rate_hz"] = rate
        if unit is not None:
            target.attrs["unit"] = unit
        for k, v in datasets.items():
            f.create_dataset(k, data=v)


def test_round_trip_keeps_traces_and_metadata(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2, 64)).astype(np.float32)
    meta = {
        "labels": (rng.random(50) < 0.5).astype(np.int8),
        "snr": rng.random(50).astype(np.float32),
        "event_id": np.arange(50),
    }
    write_traces(tmp_path / "a.h5", TraceSet(x, 200e6, "uV", meta))
    back = read_traces(tmp_path / "a.h5")
    np.testing.assert_array_equal(back.traces, x)
    assert back.sampling_rate_hz == 200e6 and back.unit == "uV"
    for k, v in meta.items():
        np.testing.assert_array_equal(back.meta[k], v)


def test_two_dimensional_traces_mean_one_channel_and_attrs_may_sit_on_root(tmp_path):
    _write_plain(tmp_path / "a.h5", np.zeros((5, 100), np.float32), on_root=True)
    with TraceFile(tmp_path / "a.h5") as tf:
        assert tf.shape == (5, 1, 100)
        assert tf.read_all().traces.shape == (5, 1, 100)


def test_missing_traces_dataset_names_closest_key(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("trace", data=np.zeros((3, 10)))
        f.create_dataset("label", data=np.zeros(3))
    with pytest.raises(MissingFieldError) as err:
        TraceFile(tmp_path / "a.h5")
    msg = str(err.value)
    assert str(tmp_path / "a.h5") in msg and "'traces'" in msg and "did you mean 'trace'" in msg


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"rate": None}, "sampling_rate_hz"),
        ({"unit": None}, "no attribute 'unit'"),
        ({"rate": -5.0}, "positive"),
    ],
)
def test_missing_or_bad_attributes(tmp_path, kwargs, needle):
    _write_plain(tmp_path / "a.h5", np.zeros((3, 2, 10), np.float32), **kwargs)
    with pytest.raises(CrnnError, match=needle):
        TraceFile(tmp_path / "a.h5")


def test_wrong_shape_dtype_and_lengths_are_refused(tmp_path):
    _write_plain(tmp_path / "a.h5", np.zeros((3, 2, 2, 10), np.float32))
    with pytest.raises(CrnnError, match=r"shape \(N, C, T\).*found 4-D"):
        TraceFile(tmp_path / "a.h5")
    _write_plain(tmp_path / "b.h5", np.array([["a", "b"]], dtype="S1"))
    with pytest.raises(CrnnError, match="real numbers"):
        TraceFile(tmp_path / "b.h5")
    _write_plain(tmp_path / "c.h5", np.zeros((3, 2, 10), np.float32), labels=np.zeros(4, np.int8))
    with pytest.raises(CrnnError, match="'labels' must have length N = 3"):
        TraceFile(tmp_path / "c.h5")
    _write_plain(tmp_path / "d.h5", np.zeros((0, 2, 10), np.float32))
    with pytest.raises(CrnnError, match="empty"):
        TraceFile(tmp_path / "d.h5")


def test_nan_is_reported_with_its_position(tmp_path):
    x = np.zeros((10, 2, 20), np.float32)
    x[7, 1, 3] = np.nan
    _write_plain(tmp_path / "a.h5", x)
    with TraceFile(tmp_path / "a.h5") as tf, pytest.raises(CrnnError, match="NaN at trace 7, channel 1, sample 3"):
        tf.read_all()


def test_labels_must_be_zero_or_one(tmp_path):
    _write_plain(tmp_path / "a.h5", np.zeros((3, 1, 10), np.float32), labels=np.array([0, 2, 1], np.int8))
    with TraceFile(tmp_path / "a.h5") as tf, pytest.raises(CrnnError, match="0 or 1"):
        tf.read_all()


def test_empty_truncated_and_foreign_files(tmp_path):
    (tmp_path / "empty.h5").write_bytes(b"")
    with pytest.raises(CrnnError, match="empty"):
        TraceFile(tmp_path / "empty.h5")
    _write_plain(tmp_path / "full.h5", np.random.default_rng(0).normal(size=(200, 2, 500)).astype(np.float32))
    data = (tmp_path / "full.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(CrnnError, match=r"cut\.h5.*truncated"):
        TraceFile(tmp_path / "cut.h5").read_all()
    (tmp_path / "text.h5").write_text("time,value\n0,1\n")
    with pytest.raises(CrnnError, match="not a readable HDF5"):
        TraceFile(tmp_path / "text.h5")
    with pytest.raises(CrnnError, match="no such file"):
        TraceFile(tmp_path / "missing.h5")


def test_writer_leaves_nothing_behind_on_error(tmp_path):
    target = tmp_path / "out.h5"
    with (
        pytest.raises(RuntimeError),
        TraceWriter(target, n_channels=1, n_samples=8, sampling_rate_hz=1e8, unit="V") as w,
    ):
        w.append(TraceSet(np.zeros((4, 1, 8), np.float32), 1e8, "V"))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
