"""Simulation in chunks: N chunk jobs merged give the file of one job, bit for bit."""

from __future__ import annotations

import hashlib
import random

import h5py
import numpy as np
import pytest
from conftest import run_crnn

from crnn.errors import CrnnError
from crnn.merge import merge_chunks
from crnn.simulate import SimulationSettings, chunk_blocks, simulate

SETTINGS = SimulationSettings(n_traces=3500)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    path = tmp_path_factory.mktemp("single") / "traces.h5"
    return simulate(SETTINGS, path, seed=5)


def test_chunks_cover_every_block_once_in_order():
    for n_traces in (1, 999, 1000, 1001, 3500, 70_000):
        n_blocks = -(-n_traces // 1000)
        for n_chunks in range(1, min(n_blocks, 9) + 1):
            parts = chunk_blocks(n_traces, n_chunks)
            assert [k for part in parts for k in part] == list(range(n_blocks))
            assert all(len(part) >= 1 for part in parts)
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
    with pytest.raises(CrnnError, match="can be split into 1 to 4 chunk"):
        chunk_blocks(3500, 5)


@pytest.mark.parametrize("n_chunks", [2, 3, 4])
def test_merged_chunks_equal_a_single_run_bit_for_bit(tmp_path, single, n_chunks):
    chunks = [simulate(SETTINGS, tmp_path / f"c{i}.h5", seed=5, chunk=i, n_chunks=n_chunks) for i in range(n_chunks)]
    with h5py.File(chunks[-1]) as f:
        assert f.attrs["chunk"] == n_chunks - 1 and f.attrs["n_chunks"] == n_chunks
        assert f["traces"].shape[0] == 3500 - f.attrs["first_trace"]
    random.Random(n_chunks).shuffle(chunks)  # the order of the inputs does not matter
    merged = merge_chunks(chunks, tmp_path / "merged.h5")
    assert sha256(merged) == sha256(single)  # the same bytes: data, dtypes, layout and attributes
    with h5py.File(merged) as a, h5py.File(single) as b:  # and, said plainly, the same data
        assert sorted(a) == sorted(b) and dict(a.attrs).keys() == dict(b.attrs).keys()
        for name in b:
            np.testing.assert_array_equal(a[name][:], b[name][:])
            assert a[name].dtype == b[name].dtype


def test_merge_through_the_cli_and_its_errors(tmp_path, single):
    for i in range(2):
        run_crnn(
            "simulate",
            "-o",
            tmp_path / f"c{i}.h5",
            "--n-traces",
            "3500",
            "--seed",
            "5",
            "--chunk",
            str(i),
            "--n-chunks",
            "2",
        )
    run_crnn("merge", "-i", tmp_path / "c1.h5", "-i", tmp_path / "c0.h5", "-o", tmp_path / "m.h5")
    assert sha256(tmp_path / "m.h5") == sha256(single)

    cases = [
        (["-i", tmp_path / "c0.h5"], "chunk(s) [1] of 2 missing"),
        (["-i", tmp_path / "c0.h5", "-i", tmp_path / "c0.h5"], "chunk 0 is given twice"),
        (["-i", single], "not a chunk of `crnn simulate --chunk I --n-chunks N`"),
    ]
    run_crnn(
        "simulate", "-o", tmp_path / "other1.h5", "--n-traces", "3500", "--seed", "6", "--chunk", "1", "--n-chunks", "2"
    )
    cases.append(
        (["-i", tmp_path / "c0.h5", "-i", tmp_path / "other1.h5"], "are chunks of different runs: attribute 'seed'")
    )
    run_crnn(
        "simulate", "-o", tmp_path / "three1.h5", "--n-traces", "3500", "--seed", "5", "--chunk", "1", "--n-chunks", "3"
    )
    cases.append((["-i", tmp_path / "c0.h5", "-i", tmp_path / "three1.h5"], "is chunk 1 of 3 chunks"))
    for args, needle in cases:
        proc = run_crnn("merge", *args, "-o", tmp_path / "bad.h5", check=False)
        assert proc.returncode == 2, proc.stderr
        assert needle in proc.stderr
        assert not (tmp_path / "bad.h5").exists()

    proc = run_crnn(
        "simulate", "-o", tmp_path / "x.h5", "--n-traces", "3500", "--chunk", "2", "--n-chunks", "2", check=False
    )
    assert proc.returncode == 2 and "chunk must be in 0..1" in proc.stderr
    proc = run_crnn("simulate", "-o", tmp_path / "x.h5", "--n-traces", "3500", "--n-chunks", "2", check=False)
    assert proc.returncode == 2 and "needs a chunk index" in proc.stderr
