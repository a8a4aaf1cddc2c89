"""`crnn inspect` reads every format that ingest and predict read, and predict's outputs: it names
the format and gives the numbers that `crnn ingest` finds in the same file."""

from __future__ import annotations

import re

import h5py
import pytest
from conftest import REPO

from crnn.cli import main
from crnn.ingest import Conversion, ingest
from crnn.rootmap import RootMapping
from crnn.tracefile import read_traces

DATA = REPO / "data"
MODEL = REPO / "tests" / "data" / "model_v0_1"
ROOT_MAPPING = ["--unit", "V", "--sampling-rate-hz", "180e6", "--label-branch", "label"]


def inspect(capsys, *args) -> str:
    assert main(["inspect", *map(str, args)]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def summary(out: str) -> tuple[str, int, int, int, str, float]:
    """format, traces, channels, samples, unit and sampling rate (Hz) from inspect's output."""
    fmt = re.search(r"^  format: (\w+)", out, re.M).group(1)
    n, ch, ns, unit = re.search(
        r"^  traces: (\d+) x (\d+) channel\(s\) x (\d+) samples \(([^)]+)\)", out, re.M
    ).groups()
    rate = float(re.search(r"^  sampling rate: ([\d.e+]+) MHz", out, re.M).group(1)) * 1e6
    return fmt, int(n), int(ch), int(ns), unit, rate


def as_ingested(tmp_path, path, root=None) -> tuple[int, int, int, str, float]:
    data = read_traces(ingest(path, tmp_path / "ingested.h5", root=root, conversion=Conversion()))
    return (*data.traces.shape, data.unit, data.sampling_rate_hz)


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("example_traces.h5", "canonical"),
        ("example_coreas.hdf5", "coreas"),
        ("grand/tadc_example_L1_0000.root", "grandroot"),
    ],
)
def test_example_files_name_their_format_and_the_ingested_numbers(tmp_path, capsys, name, fmt):
    got = summary(inspect(capsys, DATA / name))
    assert got[0] == fmt
    assert got[1:5] == as_ingested(tmp_path, DATA / name)[:4]
    assert got[5] == pytest.approx(as_ingested(tmp_path, DATA / name)[4])


def test_a_root_tree_is_read_with_its_mapping_and_asks_for_it_without(tmp_path, capsys):
    path = DATA / "example_traces.root"
    out = inspect(capsys, path, *ROOT_MAPPING)
    mapping = RootMapping(unit="V", sampling_rate_hz=180e6, label_branch="label")
    assert summary(out) == ("root", *as_ingested(tmp_path, path, root=mapping))
    assert "events: TTree" in out and "trace: float[2][500]" in out
    out = inspect(capsys, path)  # no mapping: the trees, and what to give to read the traces
    assert "format: root (detected); give the mapping (--tree, --branch, --unit, --sampling-rate-hz)" in out
    assert "events: TTree" in out and "traces:" not in out


def test_a_wrong_tree_is_one_error_line(capsys):
    assert main(["inspect", str(DATA / "example_traces.root"), "--tree", "nope", *ROOT_MAPPING]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no tree 'nope'" in err[0] and "'events'" in err[0], err


@pytest.mark.parametrize("suffix", [".h5", ".csv", ".root"])
def test_predict_outputs_are_recognised(tmp_path, capsys, suffix):
    scores = tmp_path / f"scores{suffix}"
    assert main(["predict", "-m", str(MODEL), "-i", str(DATA / "example_traces.h5"), "-o", str(scores)]) == 0
    capsys.readouterr()
    out = inspect(capsys, scores)
    assert "crnn predict output" in out and f"format: predict output ({suffix[1:]})" in out
    n_above = int(re.search(r"traces: 200 scored, (\d+) above the threshold", out).group(1))
    if suffix == ".h5":
        with h5py.File(scores) as f:
            assert n_above == int(f["decision"][:].sum())
            assert f"threshold: {f.attrs['threshold']}" in out
    assert "input files: 1" in out and "columns: " in out


REAL = [
    ("coreas/example_data.hdf5", "coreas", None),
    ("grand/noise_traces_gp13_2024_01_night_datafiles_185-190_merged.root", "grandroot", None),
    ("grand/sim_xiaodushan_voltage/tvoltage_1618-1618_L0_0000_with-rf_with-noise.root", "grandroot", None),
    (
        "rnog/pulser_data_21.root",
        "root",
        [
            "--tree",
            "combined",
            "--branch",
            "waveforms/radiant_data[24][2048]",
            "--unit",
            "ADC",
            "--sampling-rate-hz",
            "3.2e9",
        ],
    ),
]


@pytest.mark.parametrize(
    ("name", "fmt", "flags"), REAL, ids=[*[r[0].split("/")[0] for r in REAL][:2], "tvoltage", "rnog"]
)
def test_real_files_name_their_format_and_the_ingested_numbers(tmp_path, capsys, realdata, name, fmt, flags):
    path = realdata / name
    got = summary(inspect(capsys, path, *(flags or [])))
    root = None
    if flags:
        root = RootMapping(tree="combined", branch=flags[3], unit="ADC", sampling_rate_hz=3.2e9)
    want = as_ingested(tmp_path, path, root=root)
    assert got[0] == fmt and got[1:5] == want[:4] and got[5] == pytest.approx(want[4])
