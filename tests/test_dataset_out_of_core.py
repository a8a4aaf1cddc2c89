"""`crnn dataset` out of core (issue 18): memory bounded by ``--memory-budget-mb``, not by the input.

Small inputs of short traces and a budget of a few kB force many buckets; the splits must be the
same files whatever the budget, hold every input trace exactly once, and meet the fractions within
one trace. Bad input (a budget too small for one chunk, a full disk, inputs that disagree) is one
line, exit 2, and leaves no new split and no temporary behind.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from crnn.dataset import SPLITS, build_dataset
from crnn.tracefile import TraceSet, read_traces, write_traces
from tests.conftest import REPO, run_crnn
from tests.test_faults import _errors, _temporaries, _tmpfs

N_SAMPLES = 32  # short traces: a tiny budget then still holds a chunk
TINY_MB = 0.05  # about 130 traces a bucket: 2,300 traces make some 20 buckets


def _input(path: Path, n: int, seed: int, *, rate_hz: float = 180e6, extra: bool = True) -> Path:
    rng = np.random.default_rng(seed)
    meta = {"labels": (rng.random(n) < 0.5).astype(np.int8), "snr": rng.uniform(2, 10, n).astype(np.float32)}
    if extra:  # a number only this input has: filled with -1 for the other
        meta["event_id"] = np.arange(n, dtype=np.int32)
    write_traces(path, TraceSet(rng.normal(size=(n, 1, N_SAMPLES)).astype(np.float32), rate_hz, "V", meta))
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("ooc")
    return [_input(d / "a.h5", 1500, 1), _input(d / "b.h5", 800, 2, extra=False)]


def _splits(folder: Path) -> dict[str, Path]:
    folder.mkdir(exist_ok=True)
    return {s: folder / f"{s}.h5" for s in SPLITS}


def test_two_budgets_give_identical_split_files_and_the_tiny_one_many_buckets(tmp_path, inputs, caplog):
    with caplog.at_level(logging.INFO, logger="crnn.dataset"):
        tiny = build_dataset(
            inputs, _splits(tmp_path / "tiny"), fractions=(0.6, 0.15, 0.25), seed=4, memory_budget_mb=TINY_MB
        )
    buckets = [int(m.group(1)) for m in re.finditer(r"in (\d+) bucket\(s\)", caplog.text)]
    assert buckets and buckets[0] >= 15, caplog.text
    large = build_dataset(inputs, _splits(tmp_path / "large"), fractions=(0.6, 0.15, 0.25), seed=4)
    for s in SPLITS:
        assert tiny[s].read_bytes() == large[s].read_bytes(), s
    other = build_dataset(
        inputs, _splits(tmp_path / "other"), fractions=(0.6, 0.15, 0.25), seed=5, memory_budget_mb=TINY_MB
    )
    assert other["test"].read_bytes() != tiny["test"].read_bytes()  # the seed, not the budget, sets the split


@pytest.mark.parametrize(("fractions", "seed"), [((0.6, 0.15, 0.25), 4), ((0.05, 0.9, 0.05), 11)])
def test_every_input_trace_is_in_exactly_one_split_and_the_fractions_hold_within_one(tmp_path, inputs, fractions, seed):
    out = build_dataset(inputs, _splits(tmp_path / "s"), fractions=fractions, seed=seed, memory_budget_mb=TINY_MB)
    originals = [read_traces(p) for p in inputs]
    n = sum(o.n_traces for o in originals)
    seen = np.zeros(n, dtype=int)
    offsets = np.cumsum([0, *(o.n_traces for o in originals)])
    for k, s in enumerate(SPLITS):
        part = read_traces(out[s])
        assert abs(part.n_traces - fractions[k] * n) <= 1, (s, part.n_traces, fractions[k] * n)
        src, row = part.meta["source_id"], part.meta["source_index"]
        np.add.at(seen, offsets[src] + row, 1)
        for i, o in enumerate(originals):  # each trace and its metadata are its input's
            mine = src == i
            assert np.array_equal(part.traces[mine], o.traces[row[mine]])
            assert np.array_equal(part.meta["labels"][mine], o.meta["labels"][row[mine]])
            assert np.array_equal(part.meta["snr"][mine], o.meta["snr"][row[mine]])
        assert np.array_equal(part.meta["event_id"][src == 0], row[src == 0])
        assert np.all(part.meta["event_id"][src == 1] == -1)
        assert not np.all(np.diff(offsets[src] + row) > 0)  # shuffled, not in input order
    assert np.all(seen == 1)


@pytest.fixture
def old_splits(tmp_path, inputs) -> dict[str, bytes]:
    """Splits of an earlier run in tmp_path/out: a failed run must leave them as they are."""
    out = build_dataset(inputs, _splits(tmp_path / "out"), seed=2, memory_budget_mb=TINY_MB)
    return {s: p.read_bytes() for s, p in out.items()}


def _cli(inputs: list[Path], folder: Path, *extra: object):
    return run_crnn(
        "dataset",
        *(a for p in inputs for a in ("-i", p)),
        "--train",
        folder / "train.h5",
        "--val",
        folder / "val.h5",
        "--test",
        folder / "test.h5",
        "--seed",
        "3",
        *extra,
        check=False,
    )


@pytest.mark.parametrize("case", ["budget", "disagree"])
def test_bad_input_is_one_line_exit_2_and_keeps_the_old_splits(tmp_path, inputs, old_splits, case):
    folder = tmp_path / "out"
    if case == "budget":
        proc = _cli(inputs, folder, "--memory-budget-mb", "0.01")
        expected = "dataset.memory_budget_mb: 0.01 MB cannot hold one chunk of 64 traces"
    else:
        fast = _input(tmp_path / "fast.h5", 50, 3, rate_hz=500e6)
        proc = _cli([*inputs, fast], folder, "--memory-budget-mb", str(TINY_MB))
        expected = f"{fast}: sampling_rate_hz = 5e+08 Hz does not match {inputs[0]}"
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = _errors(proc.stderr)
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert {s: (folder / f"{s}.h5").read_bytes() for s in SPLITS} == old_splits
    assert _temporaries(folder) == []


@pytest.fixture
def small_disk(tmp_path):
    yield from _tmpfs(tmp_path / "disk", "2m")


#: `crnn dataset` with the check of free space before the work left out: the disk fills meanwhile
_NO_SPACE_CHECK = (
    "import sys; from crnn import cli, dataset; dataset._check_space = lambda *a: None; "
    "sys.exit(cli.main(sys.argv[1:]))"
)


@pytest.mark.parametrize(
    ("when", "n_traces"),
    [
        ("checked before the work", 10_000),  # 1.6 MB of scratch file and as much of splits on a 2 MB disk
        ("full while the scratch file is made", 20_000),
        ("full while a split is written", 10_000),
    ],
)
def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, small_disk, when, n_traces):
    big = _input(tmp_path / "big.h5", n_traces, 5)
    argv = [
        "dataset",
        "-i",
        str(big),
        *(a for s in SPLITS for a in (f"--{s}", str(small_disk / f"{s}.h5"))),
        "--memory-budget-mb",
        str(TINY_MB),
    ]
    if when == "checked before the work":
        proc = run_crnn(*argv, check=False)
    else:
        proc = subprocess.run(
            [sys.executable, "-c", _NO_SPACE_CHECK, *argv], capture_output=True, text=True, check=False, cwd=REPO
        )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = _errors(proc.stderr)
    assert len(lines) == 1 and "Traceback" not in proc.stderr and "no space left on the device" in lines[0], proc.stderr
    assert re.match(rf"crnn dataset: error: {small_disk}/(train|val|test)\.h5: cannot write it", lines[0]), lines[0]
    assert ("are free" in lines[0]) == (when == "checked before the work"), lines[0]
    assert os.listdir(small_disk) == []


def test_text_metadata_travel_through_the_buckets(tmp_path):
    """Per-trace texts (variable length in HDF5) that every input has are carried, trace by trace."""
    n = 300
    path = tmp_path / "named.h5"
    write_traces(
        path,
        TraceSet(
            np.zeros((n, 1, N_SAMPLES), np.float32),
            180e6,
            "V",
            {
                "labels": (np.arange(n) % 2).astype(np.int8),
                "station": np.array([f"st{i:0{1 + i % 4}d}" for i in range(n)], dtype=object),
            },
        ),
    )
    out = build_dataset([path], _splits(tmp_path / "s"), seed=1, memory_budget_mb=TINY_MB)
    for p in out.values():
        with h5py.File(p) as f:
            rows, names = f["source_index"][()], f["station"].asstr()[()]
        assert [f"st{i:0{1 + i % 4}d}" for i in rows] == list(names)


def test_the_default_budget_is_the_schemas():
    from crnn.dataset import DEFAULT_MEMORY_BUDGET_MB
    from crnn.settings import schema_node

    assert schema_node("dataset.memory_budget_mb")["default"] == DEFAULT_MEMORY_BUDGET_MB <= 1000
