"""Ingest (canonical HDF5 and ROOT trees through uproot) and dataset mixing and splitting."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import uproot

from crnn.dataset import build_dataset
from crnn.errors import CrnnError, MissingFieldError
from crnn.ingest import RootMapping, ingest
from crnn.tracefile import read_traces, write_traces

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_ROOT = REPO / "data" / "example_traces.root"
EXAMPLE_H5 = REPO / "data" / "example_traces.h5"
MAPPING = RootMapping(
    tree="events",
    branch="trace",
    unit="V",
    sampling_rate_hz=180e6,
    label_branch="label",
    snr_branch="snr",
    id_branches=("event_id",),
)


def test_root_example_round_trips_through_uproot(tmp_path):
    out = ingest(EXAMPLE_ROOT, tmp_path / "x.h5", root=MAPPING, chunk_size=64)
    data = read_traces(out)
    with uproot.open(EXAMPLE_ROOT) as f:
        tree = f["events"]
        np.testing.assert_array_equal(data.traces, tree["trace"].array(library="np"))
        np.testing.assert_array_equal(data.labels, tree["label"].array(library="np"))
        np.testing.assert_array_equal(data.meta["event_id"], tree["event_id"].array(library="np"))
    assert data.sampling_rate_hz == 180e6 and data.unit == "V"


def test_missing_tree_and_branch_list_the_closest_names(tmp_path):
    with pytest.raises(MissingFieldError, match=r"no tree 'event'.*did you mean 'events'"):
        ingest(EXAMPLE_ROOT, tmp_path / "x.h5", root=RootMapping(tree="event", unit="V", sampling_rate_hz=1e8))
    with pytest.raises(MissingFieldError, match=r"example_traces\.root:events: no branch 'traces'.*'trace'"):
        ingest(EXAMPLE_ROOT, tmp_path / "x.h5", root=RootMapping(branch="traces", unit="V", sampling_rate_hz=1e8))
    assert not list(tmp_path.iterdir())


def test_root_jagged_nan_and_inconsistent_rates_are_refused(tmp_path):
    import awkward as ak

    jagged = ak.Array([[1.0, 2.0, 3.0], [1.0, 2.0]])
    with uproot.recreate(tmp_path / "jag.root") as f:
        f["events"] = {"trace": jagged}
    with pytest.raises(CrnnError, match="jagged"):
        ingest(tmp_path / "jag.root", tmp_path / "o1.h5", root=RootMapping(unit="V", sampling_rate_hz=1e8))
    x = np.zeros((20, 2, 16), np.float32)
    x[13, 0, 4] = np.nan
    with uproot.recreate(tmp_path / "nan.root") as f:
        f["events"] = {"trace": x, "rate": np.r_[np.full(10, 1e8), np.full(10, 2e8)]}
    with pytest.raises(CrnnError, match=r"nan\.root:events: branch 'trace' holds NaN or Inf at trace 13"):
        ingest(
            tmp_path / "nan.root", tmp_path / "o2.h5", root=RootMapping(unit="V", sampling_rate_hz=1e8), chunk_size=8
        )
    with pytest.raises(CrnnError, match="inconsistent sampling rates"):
        ingest(tmp_path / "nan.root", tmp_path / "o3.h5", root=RootMapping(unit="V", sampling_rate_branch="rate"))
    assert not list(tmp_path.glob("o*.h5")) and not list(tmp_path.glob(".o*"))


def test_truncated_root_file_is_refused(tmp_path):
    data = EXAMPLE_ROOT.read_bytes()
    (tmp_path / "cut.root").write_bytes(data[: len(data) // 3])
    with pytest.raises(CrnnError, match=r"cut\.root"):
        ingest(tmp_path / "cut.root", tmp_path / "o.h5", root=MAPPING)
    assert not (tmp_path / "o.h5").exists()


def test_real_grand_simulation_with_a_varying_number_of_units(tmp_path, realdata):
    folder = realdata / "grand" / "sim_xiaodushan_adcnoise"
    path = next(folder.glob("adc_*_L1_*.root"))
    out = ingest(
        path,
        tmp_path / "adc.h5",
        root=RootMapping(tree="tadc", branch="trace_ch", unit="ADC", sampling_rate_hz=500e6, id_branches=("du_id",)),
    )
    data = read_traces(out)
    assert data.traces.shape == (49, 3, 2048)  # 44 + 5 detector units in two events
    np.testing.assert_array_equal(data.meta["entry"], np.r_[np.zeros(44), np.ones(5)])
    np.testing.assert_array_equal(data.meta["unit_index"], np.r_[np.arange(44), np.arange(5)])
    with uproot.open(path) as f:
        du = f["tadc"]["du_id"].array(library="np")
    np.testing.assert_array_equal(data.meta["du_id"], np.concatenate(du))


def test_rntuple_input_reads_like_a_ttree(tmp_path):
    x = np.random.default_rng(0).normal(size=(30, 2, 64)).astype(np.float32)
    with uproot.recreate(tmp_path / "nt.root") as f:
        nt = f.mkrntuple("events", {"trace": np.dtype(("f4", (2, 64))), "label": np.dtype("i1")})
        nt.extend({"trace": x, "label": np.ones(30, np.int8)})
    with uproot.open(tmp_path / "nt.root") as f:
        assert f.classnames()["events;1"] == "ROOT::RNTuple"
    data = read_traces(
        ingest(
            tmp_path / "nt.root",
            tmp_path / "nt.h5",
            root=RootMapping(unit="uV", sampling_rate_hz=1e9, label_branch="label"),
        )
    )
    np.testing.assert_array_equal(data.traces, x)
    assert data.unit == "uV" and data.labels.sum() == 30


def test_canonical_copy_with_channel_selection_and_label(tmp_path):
    with pytest.raises(CrnnError, match="already holds labels"):  # a labelled file keeps its labels
        ingest(EXAMPLE_H5, tmp_path / "x.h5", label=0)
    out = ingest(EXAMPLE_H5, tmp_path / "x.h5", channels=(1,), label=0, relabel=True)
    data = read_traces(out)
    with h5py.File(EXAMPLE_H5) as f:
        np.testing.assert_array_equal(data.traces[:, 0], f["traces"][:, 1])
    assert data.labels.sum() == 0 and data.n_channels == 1
    with pytest.raises(CrnnError, match="channel"):
        ingest(EXAMPLE_H5, tmp_path / "y.h5", channels=(2,))


def test_real_grand_measured_noise_reads_through_a_root_mapping(tmp_path, realdata):
    path = realdata / "grand" / "noise_traces_gp13_2024_01_night_datafiles_185-190_merged.root"
    out = ingest(
        path,
        tmp_path / "grand.h5",
        root=RootMapping(
            tree="tadc", branch="trace_ch", unit="ADC", sampling_rate_hz=500e6, id_branches=("event_number",)
        ),
        label=0,
    )
    data = read_traces(out)
    assert data.traces.shape == (36, 3, 2048)  # 36 entries of 1 detector unit x 3 channels
    np.testing.assert_array_equal(data.meta["entry"], np.arange(36))
    assert np.all(np.abs(data.traces) < 2**13)  # 14-bit ADC counts
    assert data.traces.std() > 1


def test_dataset_splits_are_disjoint_shuffled_and_complete(splits, sim_file):
    parts = {k: read_traces(v) for k, v in splits.items()}
    n = {k: p.n_traces for k, p in parts.items()}
    assert n == {"train": 1800, "val": 600, "test": 600}
    idx = np.concatenate([p.meta["source_index"] for p in parts.values()])
    assert sorted(idx.tolist()) == list(range(3000))
    assert not np.all(np.diff(parts["train"].meta["source_index"]) > 0)  # shuffled
    original = read_traces(sim_file)
    i = parts["test"].meta["source_index"][:5]
    np.testing.assert_array_equal(parts["test"].traces[:5], original.traces[i])
    np.testing.assert_array_equal(parts["test"].labels[:5], original.labels[i])


def test_dataset_refuses_mismatched_inputs(tmp_path, sim_file):
    from crnn.tracefile import TraceSet

    write_traces(
        tmp_path / "fast.h5",
        TraceSet(np.zeros((10, 2, 500), np.float32), 200e6, "V", {"labels": np.zeros(10, np.int8)}),
    )
    outs = {s: tmp_path / f"{s}.h5" for s in ("train", "val", "test")}
    with pytest.raises(CrnnError, match=r"fast\.h5: sampling_rate_hz = 2e\+08 Hz does not match"):
        build_dataset([sim_file, tmp_path / "fast.h5"], outs)
    write_traces(tmp_path / "nolab.h5", TraceSet(np.zeros((10, 2, 500), np.float32), 180e6, "V"))
    with pytest.raises(MissingFieldError, match=r"nolab\.h5: no dataset 'labels'.*--label"):
        build_dataset([sim_file, tmp_path / "nolab.h5"], outs)
    assert not any(p.exists() for p in outs.values())
    build_dataset([sim_file, tmp_path / "nolab.h5"], outs, labels={str(tmp_path / "nolab.h5"): 0})
    total = sum(read_traces(p).n_traces for p in outs.values())
    assert total == 3010


def test_metadata_missing_in_some_inputs_is_filled_not_dropped(tmp_path, sim_file):
    from crnn.tracefile import TraceSet

    write_traces(
        tmp_path / "other.h5",
        TraceSet(
            np.zeros((10, 2, 500), np.float32), 180e6, "V", {"labels": np.zeros(10, np.int8), "event_id": np.arange(10)}
        ),
    )
    outs = {s: tmp_path / f"{s}.h5" for s in ("train", "val", "test")}
    build_dataset([sim_file, tmp_path / "other.h5"], outs)
    data = read_traces(outs["train"])
    from_other = data.meta["source_id"] == 1
    assert np.all(data.meta["has_transient"][from_other] == -1)  # unknown
    assert set(np.unique(data.meta["has_transient"][~from_other])) <= {0, 1}
    assert np.all(np.isnan(data.meta["noise_rms"][from_other]))
    assert np.all(data.meta["event_id"][~from_other] == -1)


def test_dataset_keeps_per_trace_numbers_that_only_some_inputs_have(tmp_path, sim_file):
    """Simulated traces say which carry a transient; measured ones cannot: -1 (or NaN) = unknown."""
    from crnn.tracefile import TraceSet

    other = TraceSet(
        np.zeros((20, 2, 500), np.float32),
        180e6,
        "V",
        {"labels": np.zeros(20, np.int8), "station": np.array(["a"] * 20, dtype="S1")},
    )
    write_traces(tmp_path / "measured.h5", other)
    outs = {s: tmp_path / f"{s}.h5" for s in ("train", "val", "test")}
    build_dataset([sim_file, tmp_path / "measured.h5"], outs, fractions=(0.5, 0.25, 0.25), seed=1)
    parts = [read_traces(p) for p in outs.values()]
    meta = {k: np.concatenate([p.meta[k] for p in parts]) for k in parts[0].meta}
    from_measured = meta["source_id"] == 1
    assert set(np.unique(meta["has_transient"][from_measured])) == {-1}
    assert set(np.unique(meta["has_transient"][~from_measured])) == {0, 1}
    assert np.all(np.isnan(meta["noise_rms"][from_measured])) and np.all(meta["noise_rms"][~from_measured] > 0)
    assert "station" not in meta  # not a number: dropped, as before
