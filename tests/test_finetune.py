"""Fine-tuning (training.init_from / crnn train --init-from) and the split of measured backgrounds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_crnn

from crnn.dataset import build_dataset
from crnn.errors import CrnnError
from crnn.simulate import BackgroundSettings, SimulationSettings, simulate
from crnn.tracefile import TraceFile, TraceSet, read_traces, write_traces

SMALL = {"units": 8, "conv_filters": 8}
SPLITS = ("train", "val", "test")


def _measured_file(path: Path, n: int, shape: tuple[int, int] = (2, 500), rate: float = 180e6) -> Path:
    rng = np.random.default_rng(5)
    traces = (rng.normal(size=(n, *shape)) * 2e-6).astype(np.float32)
    return write_traces(path, TraceSet(traces, rate, "V", {"labels": np.zeros(n, np.int8)}))


def _measured_sets(outs: dict[str, Path]) -> dict[str, set[int]]:
    out = {}
    for split, p in outs.items():
        mi = read_traces(p).meta["measured_index"]
        out[split] = set(mi[mi >= 0].tolist())
    return out


# -- measured backgrounds are split by measurement ------------------------------------------------


def test_measured_backgrounds_go_whole_into_one_split(tmp_path):
    bg = _measured_file(tmp_path / "bg.h5", 36)
    # 70 % of the traces reuse one of 36 measured traces (about 78 traces each), 30 % are simulated noise
    settings = SimulationSettings(
        n_traces=4000, background=BackgroundSettings(measured_file=str(bg), measured_fraction=0.7)
    )
    simulate(settings, tmp_path / "sim.h5", seed=3)
    outs = {s: tmp_path / f"{s}.h5" for s in SPLITS}
    fractions = (0.6, 0.15, 0.25)
    build_dataset([tmp_path / "sim.h5"], outs, fractions=fractions, seed=1)

    sets = _measured_sets(outs)
    assert not sets["train"] & sets["val"] and not sets["train"] & sets["test"] and not sets["val"] & sets["test"]
    assert set().union(*sets.values()) == set(range(36))
    mi = read_traces(tmp_path / "sim.h5").meta["measured_index"]
    group = np.bincount(mi[mi >= 0]).max()  # the granularity: the largest measured group
    n_measured = int((mi >= 0).sum())
    for (split, p), f in zip(outs.items(), fractions, strict=True):
        data = read_traces(p)
        with TraceFile(p) as tf:
            assert tf.attrs["n_distinct_measured"] == len(sets[split])
            assert tf.attrs["n_measured"] == int((data.meta["measured_index"] >= 0).sum())
        assert abs(tf.attrs["n_measured"] - f * n_measured) <= group, split
        assert abs(data.n_traces - f * 4000) <= group + 1, split
    total = sum(read_traces(p).n_traces for p in outs.values())
    assert total == 4000


def test_a_split_without_any_measured_trace_is_refused(tmp_path):
    bg = _measured_file(tmp_path / "bg.h5", 2)
    simulate(
        SimulationSettings(n_traces=500, background=BackgroundSettings(measured_file=str(bg))),
        tmp_path / "sim.h5",
        seed=1,
    )
    outs = {s: tmp_path / f"{s}.h5" for s in SPLITS}
    with pytest.raises(CrnnError, match=r"the test split would get none of the 2 distinct measured background"):
        build_dataset([tmp_path / "sim.h5"], outs, fractions=(0.6, 0.15, 0.25), seed=1)
    assert not any(p.exists() for p in outs.values())


def test_simulated_only_splits_record_no_measured_trace(splits):
    for p in splits.values():
        with TraceFile(p) as tf:
            assert tf.attrs["n_distinct_measured"] == 0 and tf.attrs["n_measured"] == 0


def test_real_gp13_noise_is_split_by_measurement(tmp_path, realdata):
    from crnn.ingest import ingest
    from crnn.noise import ReceiverSettings
    from crnn.report import _measured_line, measured_backgrounds

    src = realdata / "grand" / "noise_traces_gp13_2024_01_night_datafiles_185-190_merged.root"
    measured = ingest(src, tmp_path / "gp13.h5", label=0)
    rx = ReceiverSettings(
        sampling_rate_hz=500e6,
        n_samples=2048,
        n_channels=3,
        band_hz=(50e6, 200e6),
        gain_db=42.0,
        adc_bits=14,
        adc_full_scale_v=0.9,
    )
    simulate(
        SimulationSettings(n_traces=2000, receiver=rx, background=BackgroundSettings(measured_file=str(measured))),
        tmp_path / "sim.h5",
        seed=2,
    )
    outs = {s: tmp_path / f"{s}.h5" for s in SPLITS}
    build_dataset([tmp_path / "sim.h5"], outs, fractions=(0.6, 0.15, 0.25), seed=1)
    sets = _measured_sets(outs)
    assert sum(len(s) for s in sets.values()) == len(set().union(*sets.values())) == 36  # disjoint, all used
    counts = measured_backgrounds(list(outs.values()))
    assert {k: v["n_distinct_measured"] for k, v in counts.items()} == {k: len(v) for k, v in sets.items()}
    assert f"test {len(sets['test'])} distinct measured traces" in _measured_line(counts)


# -- fine-tuning ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def init_model(tmp_path_factory, splits) -> Path:
    """The model fine-tuning starts from: tiny, one epoch."""
    from crnn.models import ModelSettings
    from crnn.train import TrainingSettings, train

    return train(
        splits["train"],
        splits["val"],
        tmp_path_factory.mktemp("init") / "m",
        model_settings=ModelSettings(**SMALL),
        training=TrainingSettings(epochs=1, batch_size=128),
        seed=4,
        name="before",
    )


def _weights(path: Path) -> list[np.ndarray]:
    from crnn.classifier import load_classifier

    return [np.asarray(w) for w in load_classifier(path).model.get_weights()]


def test_fine_tuning_starts_from_the_given_weights_and_records_them(tmp_path, splits, init_model):
    from crnn.modelcard import file_sha256, read_card
    from crnn.train import TrainingSettings, train

    # a learning rate of ~0: the fine-tuned model is the initial model, weight for weight
    still = train(
        splits["train"],
        splits["val"],
        tmp_path / "still",
        seed=9,
        name="after",
        training=TrainingSettings(epochs=1, batch_size=128, init_from=str(init_model), fine_tune_learning_rate=1e-12),
    )
    before, after = _weights(init_model), _weights(still)
    assert len(before) == len(after)
    for a, b in zip(before, after, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-7)
    card, init_card = read_card(still), read_card(init_model)
    assert card["model"] == init_card["model"]  # architecture from the initial model
    assert card["init_from"] == {
        "path": str(init_model),
        "sha256": file_sha256(init_model),
        "name": "before",
        "train_sha256": init_card["data"]["train"]["sha256"],
        "val_sha256": init_card["data"]["val"]["sha256"],
        "crnn_version": init_card["crnn_version"],
    }
    assert card["training"]["init_from"] == str(init_model)
    assert card["metrics"]["val_auc"] == pytest.approx(init_card["metrics"]["val_auc"], abs=1e-6)
    # with the fine-tuning learning rate it trains on from there: its first epoch is no worse than where it began
    moved = train(
        splits["train"],
        splits["val"],
        tmp_path / "moved",
        seed=9,
        name="after",
        training=TrainingSettings(epochs=1, batch_size=128, init_from=str(init_model)),
    )
    assert not all(np.allclose(a, b) for a, b in zip(before, _weights(moved), strict=True))
    assert read_card(moved)["metrics"]["val_loss_best"] < init_card["metrics"]["val_loss_best"] + 0.02


def test_fine_tuning_refuses_other_shapes_and_conflicting_model_settings(tmp_path, splits, init_model):
    from crnn.models import ModelSettings
    from crnn.train import TrainingSettings, train

    rng = np.random.default_rng(1)
    labels = np.tile(np.array([0, 1], np.int8), 20)
    for name, shape, rate, pattern in (
        (
            "three_channels",
            (3, 500),
            180e6,
            r"takes 2 channels x 500 samples at 1\.8e\+08 Hz, but the splits .* hold "
            r"3 x 500 at 1\.8e\+08 Hz",
        ),
        ("other_rate", (2, 500), 500e6, r"hold 2 x 500 at 5e\+08 Hz"),
    ):
        f = write_traces(
            tmp_path / f"{name}.h5",
            TraceSet(rng.normal(size=(40, *shape)).astype(np.float32), rate, "V", {"labels": labels}),
        )
        with pytest.raises(CrnnError, match=pattern):
            train(f, f, tmp_path / name, training=TrainingSettings(epochs=1, init_from=str(init_model)))
    with pytest.raises(CrnnError, match=r"the model settings ask for units 16 \(model has 8\)"):
        train(
            splits["train"],
            splits["val"],
            tmp_path / "conflict",
            model_settings=ModelSettings(units=16, conv_filters=8),
            training=TrainingSettings(epochs=1, init_from=str(init_model)),
        )
    # the CLI: one line, exit code 2; keys that agree with the model are accepted
    proc = run_crnn(
        "train",
        "--train",
        splits["train"],
        "--val",
        splits["val"],
        "-o",
        tmp_path / "cli",
        "--init-from",
        init_model,
        "--model",
        '{"cell": "lstm", "units": 8}',
        "--epochs",
        "1",
        check=False,
    )
    assert proc.returncode == 2
    assert "the model settings ask for cell 'lstm' (model has 'gru')" in proc.stderr
    assert "units" not in proc.stderr.split("ask for")[1]


def test_fine_tuning_resumes_from_its_checkpoint_and_refuses_changed_settings(tmp_path, splits, init_model):
    from test_training_control import _kill_after_first_checkpoint

    from crnn.modelcard import read_card
    from crnn.train import TrainingSettings, train

    out = tmp_path / "ft"
    training = {"epochs": 3, "batch_size": 128, "early_stopping_patience": 10, "init_from": str(init_model)}
    proc = subprocess.Popen(
        [
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
            "--training",
            json.dumps(training),
            "--threads",
            "1",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    saved = _kill_after_first_checkpoint(proc, out)
    assert 1 <= saved < 3
    # another fine-tuning learning rate, or another initial model: not the run of this checkpoint
    with pytest.raises(CrnnError, match=r"changed: settings\.training\.fine_tune_learning_rate"):
        train(
            splits["train"],
            splits["val"],
            out,
            name="ft",
            training=TrainingSettings(**{**training, "fine_tune_learning_rate": 1e-3}),
        )
    other = tmp_path / "other" / "model.keras"
    other.parent.mkdir()
    other.write_bytes(init_model.read_bytes())
    (other.parent / "model.card.json").write_text(init_model.with_name("model.card.json").read_text())
    with pytest.raises(CrnnError, match=r"changed: settings\.training\.init_from"):
        train(
            splits["train"],
            splits["val"],
            out,
            name="ft",
            training=TrainingSettings(**{**training, "init_from": str(other)}),
        )
    # the same settings: resumes and finishes the three epochs
    path = train(splits["train"], splits["val"], out, name="ft", training=TrainingSettings(**training))
    card = read_card(path)
    assert card["training"]["epochs_run"] == 3 and card["training"]["resumed"][0]["epoch"] == saved
    assert card["init_from"]["name"] == "before"
