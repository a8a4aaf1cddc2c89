"""Training control: kill and resume, refusal to resume another run, determinism, streamed input."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_crnn

from crnn.errors import CrnnError
from crnn.tracefile import TraceSet, write_traces

SMALL_MODEL = {"units": 8, "conv_filters": 8}


def _start_train(splits: dict[str, Path], out: Path, training: dict, *extra: str) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "crnn",
        "train",
        "--train",
        str(splits["train"]),
        "--val",
        str(splits["val"]),
        "-o",
        str(out),
        "--model",
        json.dumps(SMALL_MODEL),
        "--training",
        json.dumps(training),
        "--threads",
        "1",
        *extra,
    ]
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


def _kill_after_first_checkpoint(proc: subprocess.Popen, out: Path, timeout_s: float = 120) -> int:
    """SIGKILL ``proc`` as soon as a checkpoint exists; return the epoch the checkpoint holds."""
    state = out / "checkpoint" / "state.json"
    t0 = time.monotonic()
    while not state.exists():
        assert proc.poll() is None, f"training ended before its first checkpoint:\n{proc.stdout.read()[-3000:]}"
        assert time.monotonic() - t0 < timeout_s, "no checkpoint appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    return json.loads(state.read_text())["epoch"]


def _history(out: Path) -> list[dict[str, str]]:
    with open(out / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def _history_epochs(out: Path) -> list[int]:
    return [int(r["epoch"]) for r in _history(out)]


def test_killed_training_resumes_and_ends_like_an_uninterrupted_run(tmp_path, splits):
    # patience above the epoch count: the run always ends after `epochs` epochs
    training = {"epochs": 6, "batch_size": 128, "early_stopping_patience": 10, "streaming": "always"}
    killed = tmp_path / "killed"
    proc = _start_train(splits, killed, training)
    saved_epoch = _kill_after_first_checkpoint(proc, killed)
    assert 1 <= saved_epoch < 6
    # nothing published: Snakemake sees no incomplete output; the history lives in the checkpoint
    assert not (killed / "model.keras").exists()
    assert not (killed / "history.csv").exists()
    assert _history_epochs(killed / "checkpoint")[:saved_epoch] == list(range(1, saved_epoch + 1))

    proc = run_crnn(
        "train",
        "--train",
        splits["train"],
        "--val",
        splits["val"],
        "-o",
        killed,
        "--model",
        json.dumps(SMALL_MODEL),
        "--training",
        json.dumps(training),
        "--threads",
        "1",
    )
    resumed = [line for line in proc.stderr.splitlines() if " from its checkpoint after epoch " in line]
    assert len(resumed) == 1, proc.stderr[-2000:]
    k = int(resumed[0].split("after epoch ")[1].split()[0])
    assert k >= 1

    whole = tmp_path / "whole"
    proc = run_crnn(
        "train",
        "--train",
        splits["train"],
        "--val",
        splits["val"],
        "-o",
        whole,
        "--model",
        json.dumps(SMALL_MODEL),
        "--training",
        json.dumps(training),
        "--threads",
        "1",
    )
    assert "from its checkpoint" not in proc.stderr
    card_k = json.loads((killed / "model.card.json").read_text())
    card_w = json.loads((whole / "model.card.json").read_text())
    assert card_k["training"]["epochs_run"] == card_w["training"]["epochs_run"] == 6
    assert _history_epochs(killed) == _history_epochs(whole) == list(range(1, 7))
    assert card_k["training"]["resumed"][0]["epoch"] == k
    assert card_w["training"]["resumed"] == []
    # the epochs before the kill are the same epochs (same seed, deterministic kernels)
    rows_k, rows_w = _history(killed), _history(whole)
    assert [r["loss"] for r in rows_k[:k]] == [r["loss"] for r in rows_w[:k]]
    # a finished run removes its checkpoint
    assert not (killed / "checkpoint").exists()
    assert not (whole / "checkpoint").exists()


def test_second_training_into_a_running_folder_is_refused(tmp_path, splits):
    # epochs and patience far above what runs before the first one is stopped: it trains throughout
    training = {"epochs": 200, "batch_size": 128, "early_stopping_patience": 500}
    out = tmp_path / "run"
    first = _start_train(splits, out, training)
    try:
        lock = out / ".train.lock"
        t0 = time.monotonic()
        while not (lock.exists() and lock.read_text().strip()):
            assert first.poll() is None, f"the first run ended:\n{first.stdout.read()[-3000:]}"
            assert time.monotonic() - t0 < 120, "the first run took no lock"
            time.sleep(0.02)
        assert lock.read_text().strip() == str(first.pid)
        second = _start_train(splits, out, training)
        text = second.communicate(timeout=120)[0]
        second.stdout.close()
        assert second.returncode == 2, text[-2000:]
        errors = [line for line in text.splitlines() if "another crnn train" in line]
        assert len(errors) == 1, text[-2000:]
        assert errors[0].startswith(f"crnn train: error: {out}: another crnn train (PID {first.pid}) "), errors[0]
        assert "Traceback" not in text
        assert first.poll() is None  # the refused run did not disturb the running one
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)
        first.stdout.close()
    assert first.returncode == 128 + signal.SIGTERM
    assert not lock.exists()  # released and removed by the interrupted run


def test_folder_lock_is_exclusive_and_released_on_return_and_on_error(tmp_path):
    from crnn.fileutil import folder_lock

    lock = tmp_path / ".x.lock"
    with folder_lock(tmp_path, ".x.lock", "crnn train") as path:
        assert path == lock and lock.read_text().strip() == str(os.getpid())
        # flock is per open file: a second holder in this very process is refused like another process
        with (
            pytest.raises(CrnnError, match=rf"^{tmp_path}: another crnn train \(PID {os.getpid()}\) is writing"),
            folder_lock(tmp_path, ".x.lock", "crnn train"),
        ):
            pass
    assert not lock.exists()
    with pytest.raises(RuntimeError), folder_lock(tmp_path, ".x.lock", "crnn train"):
        raise RuntimeError
    assert not lock.exists()
    with folder_lock(tmp_path, ".x.lock", "crnn train"):  # free again
        pass


def test_a_resume_killed_before_its_next_checkpoint_stays_in_the_card(tmp_path, splits):
    from crnn.models import ModelSettings
    from crnn.train import TrainingSettings, default_name, train

    training = {"epochs": 6, "batch_size": 128, "early_stopping_patience": 10, "streaming": "never"}
    out = tmp_path / "run"
    k = _kill_after_first_checkpoint(_start_train(splits, out, training), out)
    # resume, and SIGKILL it as soon as it says so: before it can write its next checkpoint
    proc = _start_train(splits, out, training)
    t0 = time.monotonic()
    for line in proc.stdout:
        if " from its checkpoint after epoch " in line:
            proc.send_signal(signal.SIGKILL)
            break
        assert time.monotonic() - t0 < 120, "no resume line"
    else:
        raise AssertionError(f"the second run did not resume (rc {proc.wait()})")
    proc.wait(timeout=30)
    proc.stdout.close()
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == k  # killed before its next checkpoint
    assert [r["epoch"] for r in state["resumes"]] == [k]
    # the third run (in process: same settings, same name as the CLI gives) finishes
    train(
        splits["train"],
        splits["val"],
        out,
        model_settings=ModelSettings(**SMALL_MODEL),
        training=TrainingSettings(**training),
        seed=1,
        name=default_name(out),
    )
    card = json.loads((out / "model.card.json").read_text())
    assert [r["epoch"] for r in card["training"]["resumed"]] == [k, k]  # both resumes, the killed one too
    assert card["training"]["epochs_run"] == 6


def test_a_truncated_checkpoint_is_one_line_with_a_restart_hint(tmp_path, splits):
    import shutil

    from crnn.models import ModelSettings
    from crnn.train import TrainingSettings, train

    training = {"epochs": 6, "batch_size": 128, "early_stopping_patience": 10, "streaming": "never"}
    killed = tmp_path / "killed"
    _kill_after_first_checkpoint(_start_train(splits, killed, training, "--name", "ck"), killed)
    for suffix in (".keras", ".npz", ".json"):  # the model, the best weights, the state
        out = tmp_path / suffix[1:]
        shutil.copytree(killed, out)
        victim = next(p for p in (out / "checkpoint").iterdir() if p.suffix == suffix)
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
        kept = sorted(p.name for p in (out / "checkpoint").iterdir())
        if suffix == ".keras":  # the CLI: one line, exit 2
            proc = run_crnn(
                "train",
                "--train",
                splits["train"],
                "--val",
                splits["val"],
                "-o",
                out,
                "--name",
                "ck",
                "--model",
                json.dumps(SMALL_MODEL),
                "--training",
                json.dumps(training),
                "--threads",
                "1",
                check=False,
            )
            assert proc.returncode == 2, proc.stderr[-2000:]
            assert "Traceback" not in proc.stderr
            err = proc.stderr.strip().splitlines()[-1]
            assert err.startswith(f"crnn train: error: {victim}: ") and "--restart" in err, err
        else:
            with pytest.raises(CrnnError, match=rf"^{victim}: .*--restart"):
                train(
                    splits["train"],
                    splits["val"],
                    out,
                    model_settings=ModelSettings(**SMALL_MODEL),
                    training=TrainingSettings(**training),
                    seed=1,
                    name="ck",
                )
        assert sorted(p.name for p in (out / "checkpoint").iterdir()) == kept  # left for the user to decide
        assert not (out / "model.keras").exists()


def test_resuming_with_other_settings_is_refused(tmp_path, splits):
    training = {"epochs": 6, "batch_size": 128, "early_stopping_patience": 10}
    out = tmp_path / "run"
    _kill_after_first_checkpoint(_start_train(splits, out, training), out)

    changed = {**training, "epochs": 2, "learning_rate": 1e-3}
    args = [
        "train",
        "--train",
        splits["train"],
        "--val",
        splits["val"],
        "-o",
        out,
        "--model",
        json.dumps(SMALL_MODEL),
        "--training",
        json.dumps(changed),
        "--threads",
        "1",
    ]
    proc = run_crnn(*args, check=False)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()[-1]
    assert "checkpoint" in err and "--restart" in err
    assert "changed: settings.training.epochs, settings.training.learning_rate)" in err
    assert not (out / "model.keras").exists()
    assert (out / "checkpoint" / "state.json").exists()  # kept for a resume with the right settings

    proc = run_crnn(*args, "--restart")
    assert "from its checkpoint" not in proc.stderr
    card = json.loads((out / "model.card.json").read_text())
    assert card["training"]["learning_rate"] == 1e-3
    assert card["training"]["epochs_run"] == 2
    assert card["training"]["resumed"] == []


def _weights(model_path: Path) -> list[np.ndarray]:
    import keras

    return keras.models.load_model(model_path).get_weights()


@pytest.mark.parametrize("streaming", ["never", "always"])
def test_same_seed_gives_identical_weights(tmp_path, splits, streaming):
    from crnn.models import ModelSettings
    from crnn.train import TrainingSettings, train

    settings = ModelSettings(**SMALL_MODEL)
    training = TrainingSettings(epochs=2, batch_size=128, streaming=streaming)
    paths = [
        train(splits["train"], splits["val"], tmp_path / name, model_settings=settings, training=training, seed=seed)
        for name, seed in (("a", 5), ("b", 5), ("c", 6))
    ]
    a, b, c = (_weights(p) for p in paths)
    assert len(a) == len(b) > 0
    for wa, wb in zip(a, b, strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(a, c, strict=True))


def test_streamed_and_in_memory_training_both_learn(tmp_path, splits):
    from crnn.models import ModelSettings
    from crnn.train import TrainingSettings, train

    cards = {}
    for streaming in ("never", "always"):
        path = train(
            splits["train"],
            splits["val"],
            tmp_path / streaming,
            model_settings=ModelSettings(units=16, conv_filters=8),
            training=TrainingSettings(epochs=3, batch_size=64, streaming=streaming),
            seed=2,
        )
        cards[streaming] = json.loads(path.with_suffix(".card.json").read_text())
    assert cards["never"]["training"]["streamed"] is False
    assert cards["always"]["training"]["streamed"] is True
    for card in cards.values():
        assert card["metrics"]["val_auc"] > 0.7
        assert card["training"]["epochs_run"] == 3
    assert abs(cards["never"]["metrics"]["val_auc"] - cards["always"]["metrics"]["val_auc"]) < 0.1
    # streaming 'auto' picks streaming when the splits exceed the memory budget
    path = train(
        splits["train"],
        splits["val"],
        tmp_path / "auto",
        model_settings=ModelSettings(**SMALL_MODEL),
        training=TrainingSettings(epochs=1, batch_size=128, memory_budget_mb=1.0),
        seed=2,
    )
    assert json.loads(path.with_suffix(".card.json").read_text())["training"]["streamed"] is True


def test_unknown_streaming_mode_is_an_error(tmp_path, splits):
    from crnn.models import ModelSettings
    from crnn.train import TrainingSettings, train

    with pytest.raises(CrnnError, match="streaming must be one of auto, always, never; found 'yes'"):
        train(
            splits["train"],
            splits["val"],
            tmp_path,
            model_settings=ModelSettings(),
            training=TrainingSettings(streaming="yes"),
        )
    assert not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def numbered_file(tmp_path_factory) -> Path:
    """10,000 traces whose first sample is the trace's index; label = index % 3 == 0."""
    n = 10_000
    x = np.zeros((n, 2, 8), dtype=np.float32)
    x[:, 0, 0] = np.arange(n)
    labels = (np.arange(n) % 3 == 0).astype(np.int8)
    path = tmp_path_factory.mktemp("numbered") / "numbered.h5"
    write_traces(path, TraceSet(x, 180e6, "V", {"labels": labels}))
    return path


def _epoch(ds) -> tuple[list[np.ndarray], list[tuple]]:
    ids, batches = [], []
    for i in range(len(ds)):
        batch = ds[i]
        batches.append(batch)
        ids.append(batch[0][:, 0, 0].astype(np.int64))
        assert len(ds._windows) <= 2  # the window served and the one read ahead
    return ids, batches


def test_stream_visits_every_trace_once_per_epoch_with_a_cross_chunk_shuffle(numbered_file):
    from crnn.stream import TraceStream

    chunk = 1000
    ds = TraceStream(
        numbered_file, 64, shuffle=True, seed=4, chunk_size=chunk, buffer_chunks=3, class_weight={0: 0.75, 1: 1.5}
    )
    try:
        ids0, batches = _epoch(ds)
        flat0 = np.concatenate(ids0)
        np.testing.assert_array_equal(np.sort(flat0), np.arange(10_000))
        assert not np.array_equal(flat0, np.arange(10_000))
        # labels and sample weights travel with their traces
        for (x, y, w), ids in zip(batches, ids0, strict=True):
            np.testing.assert_array_equal(y, (ids % 3 == 0).astype(np.float32))
            np.testing.assert_array_equal(w, np.where(ids % 3 == 0, 1.5, 0.75).astype(np.float32))
            assert x.dtype == np.float32 and x.shape[1:] == (2, 8)
        # a batch mixes traces of several chunks, and the chunk order itself is shuffled
        chunks_per_batch = [len(np.unique(ids // chunk)) for ids in ids0]
        assert min(chunks_per_batch) > 1
        assert sorted(np.unique(ids0[0] // chunk)) != [0, 1, 2]
        # after a full pass, batch 0 starts the next epoch: again every trace once, in another order
        ids1, _ = _epoch(ds)
        flat1 = np.concatenate(ids1)
        np.testing.assert_array_equal(np.sort(flat1), np.arange(10_000))
        assert not np.array_equal(flat0, flat1)
        assert ds.epoch == 1
    finally:
        ds.close()
    # the order is a function of (seed, epoch): a stream started at epoch 1 (a resumed run) repeats it
    again = TraceStream(numbered_file, 64, shuffle=True, seed=4, chunk_size=chunk, buffer_chunks=3, start_epoch=1)
    try:
        np.testing.assert_array_equal(np.concatenate(_epoch(again)[0]), flat1)
    finally:
        again.close()


def test_stream_without_shuffle_reads_in_file_order(numbered_file):
    from crnn.stream import TraceStream

    ds = TraceStream(numbered_file, 1000, shuffle=False, chunk_size=4096, with_labels=False)
    try:
        assert len(ds) == 12  # chunks of 4096 + 4096 + 1808 traces, each cut into batches of at most 1000
        out = [ds[i] for i in range(len(ds))]
        assert all(len(b) == 1 for b in out)
        np.testing.assert_array_equal(np.concatenate([b[0][:, 0, 0] for b in out]), np.arange(10_000))
        with pytest.raises(IndexError):
            ds[len(ds)]
    finally:
        ds.close()


def test_mixed_precision_keeps_normalisation_and_output_in_float32(tmp_path, splits):
    import keras

    from crnn.classifier import load_classifier
    from crnn.models import ModelSettings
    from crnn.train import TrainingSettings, train

    path = train(
        splits["train"],
        splits["val"],
        tmp_path,
        model_settings=ModelSettings(**SMALL_MODEL),
        training=TrainingSettings(epochs=1, batch_size=128, mixed_precision=True),
        seed=4,
    )
    # the global policy is put back for whatever runs next in this process
    assert keras.config.dtype_policy().name == "float32"
    card = json.loads(path.with_suffix(".card.json").read_text())
    assert card["training"]["dtype_policy"] == "mixed_float16"
    clf = load_classifier(path)
    dtypes = {layer.name: layer.dtype_policy.compute_dtype for layer in clf.model.layers}
    assert dtypes["normalise"] == "float32" and dtypes["score"] == "float32"
    assert dtypes["conv_1"] == "float16"
    from crnn.tracefile import read_traces

    test = read_traces(splits["val"])
    volts = test.traces[:256]
    scores = clf.predict(volts, sampling_rate_hz=test.sampling_rate_hz)
    assert np.all(np.isfinite(scores)) and np.ptp(scores) > 0
    # traces in volts square to ~1e-10, below float16's range: the float32 normalisation keeps
    # the scores the same for microvolts and for volts (float16 rounding of the normalised input)
    scaled = clf.predict(volts * 1e6, sampling_rate_hz=test.sampling_rate_hz)
    np.testing.assert_allclose(scaled, scores, atol=1e-3)


def test_time_limit_cuts_the_epoch_it_falls_in_and_keeps_it(tmp_path, splits):
    from crnn.models import ModelSettings
    from crnn.train import TrainingSettings, train

    path = train(
        splits["train"],
        splits["val"],
        tmp_path,
        model_settings=ModelSettings(**SMALL_MODEL),
        training=TrainingSettings(epochs=50, batch_size=128, max_time_s=1e-3, checkpoint=False),
        seed=4,
    )
    card = json.loads(path.with_suffix(".card.json").read_text())
    # one batch always runs; then the limit has passed: the first epoch is cut, validated and kept
    from crnn.tracefile import TraceFile

    with TraceFile(splits["train"]) as tf:
        n_batches = -(-tf.n_traces // 128)
    assert card["training"]["epochs_run"] == 1
    assert card["training"]["time_limit_cut"]["epoch"] == 1
    assert card["training"]["time_limit_cut"]["batches"] == 1 and card["training"]["time_limit_cut"]["of"] == n_batches
    assert np.isfinite(float(_history(tmp_path)[0]["val_loss"]))
    full = train(
        splits["train"],
        splits["val"],
        tmp_path / "full",
        model_settings=ModelSettings(**SMALL_MODEL),
        training=TrainingSettings(epochs=1, batch_size=128, max_time_s=0, checkpoint=False),
        seed=4,
    )
    epoch_s = float(_history(tmp_path / "full")[0]["epoch_time_s"])
    # a limit of 2.5 epochs: two whole epochs, then the third is cut about half-way
    budget = 2.5 * epoch_s
    path = train(
        splits["train"],
        splits["val"],
        tmp_path / "b",
        model_settings=ModelSettings(**SMALL_MODEL),
        training=TrainingSettings(
            epochs=50, batch_size=128, max_time_s=budget, early_stopping_patience=50, checkpoint=False
        ),
        seed=4,
    )
    card = json.loads(path.with_suffix(".card.json").read_text())
    assert card["training"]["epochs_run"] >= 2, card["training"]
    cut = card["training"]["time_limit_cut"]
    # cut inside an epoch; or, where the limit came within an epoch's last batch, that epoch ended whole
    assert cut is None or (cut["epoch"] == card["training"]["epochs_run"] and 0 < cut["batches"] < cut["of"]), cut
    # the whole budget is used, and little more: the cut epoch's validation is the overrun
    assert 0.8 * budget <= card["training"]["train_time_s"] <= budget + 0.5 * epoch_s, (card["training"], epoch_s)
    assert json.loads(full.with_suffix(".card.json").read_text())["training"]["time_limit_cut"] is None


def test_transient_weight_weights_hard_negatives_in_both_reading_modes(tmp_path):
    """training.transient_weight multiplies the loss weight of background traces with a transient:
    the per-trace weights follow has_transient, the stream serves them with their traces, and a
    split without has_transient is refused by name."""
    from crnn.errors import MissingFieldError
    from crnn.stream import TraceStream
    from crnn.train import _open_split, _sample_weights

    n = 3000
    x = np.zeros((n, 2, 8), dtype=np.float32)
    x[:, 0, 0] = np.arange(n)
    labels = (np.arange(n) % 2 == 0).astype(np.int8)
    has_transient = (np.arange(n) % 5 == 1).astype(np.int8)  # in background (odd) and signal traces alike
    path = tmp_path / "split.h5"
    write_traces(path, TraceSet(x, 180e6, "V", {"labels": labels, "has_transient": has_transient}))
    split = _open_split(path, "train")
    assert _sample_weights(split, {0: 1.0, 1: 1.0}, 1.0) is None
    w = _sample_weights(split, {0: 0.8, 1: 1.2}, 4.0)
    hard = (has_transient == 1) & (labels == 0)
    np.testing.assert_allclose(w[hard], 3.2)
    np.testing.assert_allclose(w[~hard & (labels == 0)], 0.8)
    np.testing.assert_allclose(w[labels == 1], 1.2)  # a pulse with a transient stays a pulse
    # transient_signal_weight: pulses beside a transient (hard positives), alone or with the above
    both = _sample_weights(split, {0: 0.8, 1: 1.2}, 4.0, 3.0)
    hard_pos = (has_transient == 1) & (labels == 1)
    np.testing.assert_allclose(both[hard_pos], 3.6)
    np.testing.assert_allclose(both[hard], 3.2)
    np.testing.assert_allclose(both[~hard_pos & ~hard], np.where(labels == 1, 1.2, 0.8)[~hard_pos & ~hard])
    only_pos = _sample_weights(split, None, 1.0, 2.0)
    np.testing.assert_allclose(only_pos, np.where(hard_pos, 2.0, 1.0))
    ds = TraceStream(path, 128, shuffle=True, seed=2, chunk_size=500, sample_weight=w)
    try:
        for i in range(len(ds)):
            xb, _, wb = ds[i]
            np.testing.assert_array_equal(wb, w[xb[:, 0, 0].astype(np.int64)])
    finally:
        ds.close()
    plain = tmp_path / "plain.h5"
    write_traces(plain, TraceSet(x, 180e6, "V", {"labels": labels}))
    with pytest.raises(MissingFieldError, match="has_transient"):
        _sample_weights(_open_split(plain, "train"), None, 2.0)
