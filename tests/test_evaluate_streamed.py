"""`crnn evaluate` streamed (issue 18): the test split is read and scored in pieces, and the scores
(so every metric, which is computed from them, the labels and the SNRs alone) equal those of
scoring the whole split in memory as earlier versions did, bit for bit."""

from __future__ import annotations

import itertools
import json

import h5py
import numpy as np
import pytest

from crnn.baselines import baseline_scores
from crnn.evaluate import CARRIED, EvaluationSettings, evaluate
from crnn.metrics import summarise
from crnn.tracefile import read_traces
from tests.conftest import REPO

MODEL = REPO / "tests" / "data" / "model_v0_1"


@pytest.fixture(scope="module")
def small_file(tmp_path_factory, sim_file):
    """The first 1,200 of the 3,000 simulated traces: three pieces of the matched filter's 409."""
    from crnn.tracefile import write_traces

    path = tmp_path_factory.mktemp("small") / "small.h5"
    return write_traces(path, read_traces(sim_file).subset(slice(0, 1200)))


def _file(method, sim_file, small_file):
    return small_file if method == "matched_filter" else sim_file


@pytest.mark.parametrize("method", ["amplitude", "matched_filter", "model"])
def test_scores_in_pieces_equal_the_whole_split_in_memory(tmp_path, sim_file, small_file, method):
    """3,000 test traces (1,200 for the matched filter) in the smallest pieces each method allows
    (2,048 traces for the simple baselines, 409 for the five-template matched filter, 4,096 for a
    model)."""
    test = _file(method, sim_file, small_file)
    whole = read_traces(test)
    background = whole.traces[whole.labels == 0]
    if method == "model":
        from crnn.classifier import load_classifier

        expected = load_classifier(MODEL).predict(whole.traces, sampling_rate_hz=whole.sampling_rate_hz)
        kwargs = {"model": MODEL}
    else:
        expected = baseline_scores(
            method,
            whole.traces,
            whole.sampling_rate_hz,
            noise_traces=background if method == "matched_filter" else None,
        )
        kwargs = {"baseline": method}
    settings = EvaluationSettings(n_bootstrap=20)
    metrics = evaluate(test, tmp_path / "ev", chunk_traces=1, settings=settings, seed=2, **kwargs)
    with h5py.File(tmp_path / "ev" / "scores.h5") as f:
        assert np.array_equal(f["scores"][()], expected)
        assert np.array_equal(f["labels"][()], whole.labels)
        assert np.array_equal(f["snr"][()], whole.meta["snr"])
        for key in CARRIED:
            if key in whole.meta:
                assert np.array_equal(f[key][()], whole.meta[key], equal_nan=True), key
    reference = summarise(
        expected,
        whole.labels.astype(int),
        whole.meta["snr"].astype(np.float64),
        fprs=settings.fprs,
        snr_edges=np.asarray(settings.snr_edges),
        has_transient=whole.meta["has_transient"].astype(int),
        n_bootstrap=20,
        seed=2,
    )
    assert json.dumps({k: metrics[k] for k in reference}, default=str) == json.dumps(reference, default=str)
    if method == "matched_filter":
        assert metrics["matched_filter"]["noise_spectrum_from"].endswith("(background of the test split)")


@pytest.mark.parametrize(("method", "n_chunks"), [("amplitude", 3), ("matched_filter", 2)])
def test_chunks_scored_apart_and_joined_give_the_unchunked_outputs(tmp_path, sim_file, small_file, method, n_chunks):
    """Sharded scoring (`--chunk I --n-chunks N`, then `--scores`): 3,000 traces in 2 pieces (amplitude:
    one chunk empty) or 1,200 in 3 (matched filter); metrics and scores equal the unchunked run's exactly."""
    test = _file(method, sim_file, small_file)
    n = read_traces(test).n_traces
    settings = EvaluationSettings(n_bootstrap=20)
    whole = evaluate(test, tmp_path / "whole", baseline=method, settings=settings, seed=2, chunk_traces=1)
    chunks = [
        evaluate(
            test, tmp_path / f"c{i}", baseline=method, settings=settings, seed=2, chunk_traces=1, chunk=(i, n_chunks)
        )
        for i in reversed(range(n_chunks))
    ]
    rows = sorted(tuple(c["rows"]) for c in chunks)
    assert rows[0][0] == 0 and all(a[1] == b[0] for a, b in itertools.pairwise(rows)) and rows[-1][1] == n
    assert not (tmp_path / "c0" / "metrics.json").exists()
    joined = evaluate(
        test,
        tmp_path / "joined",
        baseline=method,
        settings=settings,
        seed=2,
        scores_from=[tmp_path / f"c{i}" / "scores.h5" for i in range(n_chunks)],
    )
    for m in (whole, joined):
        m.pop("scoring_time_s")
    assert json.dumps(joined, default=str) == json.dumps(whole, default=str)
    with h5py.File(tmp_path / "whole" / "scores.h5") as a, h5py.File(tmp_path / "joined" / "scores.h5") as b:
        assert sorted(a) == sorted(b) and all(np.array_equal(a[k][()], b[k][()], equal_nan=True) for k in a)


def test_a_missing_chunk_is_refused(tmp_path, sim_file):
    from crnn.errors import CrnnError

    evaluate(sim_file, tmp_path / "c1", baseline="amplitude", chunk=(1, 2))
    with pytest.raises(CrnnError, match=r"the scores of chunk\(s\) \[0\] of 2 are missing"):
        evaluate(sim_file, tmp_path / "joined", baseline="amplitude", scores_from=[tmp_path / "c1" / "scores.h5"])
    assert not (tmp_path / "joined").exists()


def test_the_workflow_scores_each_method_in_evaluate_chunks_jobs_and_joins_them(tmp_path):
    from tests.conftest import snakemake

    cfg = tmp_path / "chunks.yaml"
    cfg.write_text("scale_out:\n  evaluate_chunks: 3\nevaluate:\n  baselines: [amplitude]\n")
    proc = snakemake(
        "-n",
        "-p",
        "--configfile",
        str(REPO / "config" / "test.yaml"),
        str(cfg),
        "--directory",
        str(tmp_path),
        "--cores",
        "1",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert log.count("rule score_baseline_chunk:") == 3 and log.count("rule score_classifier_chunk:") == 6
    for i in range(3):
        assert f"--chunk {i} --n-chunks 3" in log
    chunks = " ".join(f"results/test/evaluate/chunks/amplitude/{i}/scores.h5" for i in range(3))
    assert f"--scores {chunks}" in log
