"""Progress of the long stages (issue 16, item 8): periodic one-line progress with count/total, rate and
time left in logs, a bar only on a terminal (crnn.progress); training's epoch lines through the crnn
logger on stderr, with loss, validation loss and AUC, time per epoch and time left, and nothing on
stdout."""

from __future__ import annotations

import io
import logging
import re

import numpy as np
import pytest

from crnn import progress as progress_mod
from crnn.progress import Progress, format_duration, progress_text

LINE = re.compile(r"(\d[\d,]*)/(\d[\d,]*) traces \((\d+) %\), ([\d,.]+) traces/s, (.+) left$")


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_text_has_count_total_rate_and_time_left():
    assert progress_text(250, 1000, 5.0, "traces") == "250/1,000 traces (25 %), 50 traces/s, 15 s left"
    assert progress_text(250, None, 5.0, "traces") == "250 traces, 50 traces/s"
    assert [format_duration(s) for s in (4.4, 65, 3725, float("nan"))] == ["4 s", "1 min 05 s", "1 h 02 min", "?"]


def test_log_lines_every_tenth_or_ten_seconds_never_closer_than_the_gap(caplog):
    clock = _Clock()
    log = logging.getLogger("crnn.test_progress")
    p = Progress("work", 1000, logger=log, stream=io.StringIO(), clock=clock)
    with caplog.at_level(logging.INFO, logger="crnn"):
        for _ in range(100):  # 10 traces per 0.5 s: 10 % every 5 s
            clock.t += 0.5
            p.update(10)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10  # at every 10 %, not at every update
    first = LINE.search(lines[0])
    assert first and first.groups() == ("100", "1,000", "10", "20", "45 s")
    # slow work: a line every 10 s though it advances by less than 10 %
    caplog.clear()
    p = Progress("slow", 10_000, logger=log, stream=io.StringIO(), clock=clock)
    with caplog.at_level(logging.INFO, logger="crnn"):
        for _ in range(60):
            clock.t += 1.0
            p.update(1)
    assert len(caplog.records) == 6
    # quick work: no progress lines at all within the minimum gap
    caplog.clear()
    p = Progress("quick", 100, logger=log, stream=io.StringIO(), clock=clock)
    with caplog.at_level(logging.INFO, logger="crnn"):
        for _ in range(100):
            clock.t += 0.01
            p.update(1)
    assert caplog.records == []


def test_a_bar_only_on_a_terminal_and_no_log_lines_there(caplog):
    clock = _Clock()
    tty = _Tty()
    with caplog.at_level(logging.INFO, logger="crnn"), Progress("work", 100, stream=tty, clock=clock) as p:
        for _ in range(10):
            clock.t += 1.0
            p.update(10)
    assert caplog.records == []
    out = tty.getvalue()
    assert out.startswith("\rwork: [") and out.endswith("\n")
    assert out.count("[" + "#" * progress_mod.BAR_WIDTH + "] 100/100 traces (100 %)") == 1
    plain = io.StringIO()  # not a terminal: nothing drawn
    with Progress("work", 100, stream=plain, clock=clock) as p:
        p.update(100)
    assert plain.getvalue() == ""


@pytest.fixture
def every_update(monkeypatch):
    """Progress lines at each 10 % however quick the work (the stages below take a second or two)."""
    monkeypatch.setattr(progress_mod, "MIN_LOG_GAP_S", 0.0)


def _progress_lines(caplog, prefix: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(prefix) and LINE.search(r.getMessage())]


def test_simulate_dataset_and_ingest_log_progress(tmp_path, caplog, every_update):
    from crnn.dataset import build_dataset
    from crnn.detector import RandomiseSettings
    from crnn.simulate import SimulationSettings, simulate

    with caplog.at_level(logging.INFO, logger="crnn"):
        simulate(
            SimulationSettings(n_traces=3000, randomise=RandomiseSettings(enabled=False)), tmp_path / "s.h5", seed=2
        )
        lines = _progress_lines(caplog, "simulate s.h5: ")
        assert [LINE.search(ln).group(1) for ln in lines] == ["1,000", "2,000", "3,000"]
        assert LINE.search(lines[-1]).group(5) == "0 s"
        caplog.clear()
        out = {s: tmp_path / f"{s}.h5" for s in ("train", "val", "test")}
        build_dataset([tmp_path / "s.h5"], out, fractions=(0.6, 0.2, 0.2), seed=3)
    assert [LINE.search(ln).group(1) for ln in _progress_lines(caplog, "dataset: reading")] == ["3,000"]
    assert [LINE.search(ln).group(1) for ln in _progress_lines(caplog, "dataset: writing")] == [
        "1,800",
        "2,400",
        "3,000",
    ]
    caplog.clear()
    from crnn.ingest import ingest

    with caplog.at_level(logging.INFO, logger="crnn"):
        ingest(tmp_path / "s.h5", tmp_path / "copy.h5", chunk_size=1000)
    assert [LINE.search(ln).group(1) for ln in _progress_lines(caplog, "ingest s.h5: ")] == ["1,000", "2,000", "3,000"]


def test_predict_and_evaluate_log_progress_per_file(tmp_path, caplog, every_update, monkeypatch):
    from conftest import REPO

    from crnn import evaluate as evaluate_mod
    from crnn.predict import predict_files
    from crnn.tracefile import TraceSet, write_traces

    model = REPO / "tests" / "data" / "model_v0_1"
    rng = np.random.default_rng(3)
    traces = rng.normal(size=(1000, 2, 500)).astype(np.float32)
    labels = (np.arange(1000) % 2).astype(np.int8)
    path = tmp_path / "x.h5"
    write_traces(path, TraceSet(traces, 180e6, "V", {"labels": labels, "snr": np.full(1000, 5.0, np.float32)}))
    with caplog.at_level(logging.INFO, logger="crnn"):
        predict_files(model, [path], tmp_path / "p.h5", chunk_size=250)
        lines = _progress_lines(caplog, "predict x.h5: ")
        assert [LINE.search(ln).group(1) for ln in lines] == ["250", "500", "750", "1,000"]
        assert all(LINE.search(ln).group(2) == "1,000" for ln in lines)
        caplog.clear()
        # pieces are whole multiples of the model's batch: batches of 250 in pieces of 500
        monkeypatch.setattr(evaluate_mod, "MODEL_BATCH", 250)
        evaluate_mod.evaluate(path, tmp_path / "ev", model=model, chunk_traces=500)
    lines = _progress_lines(caplog, "evaluate fixture_gru on x.h5: ")  # the model's name from its card
    assert [LINE.search(ln).group(1) for ln in lines] == ["500", "1,000"]


EPOCH = re.compile(
    r"^epoch (\d+)/3: loss (\d\.\d{4}), val loss (\d\.\d{4}), val AUC (\d\.\d{4}), ([\d.]+) s/epoch; "
    r"(.+) used, (.+) left of the 600 s time limit$"
)


def test_training_epoch_lines_go_through_the_crnn_logger_and_nothing_to_stdout(splits, tmp_path, caplog, capfd):
    from crnn.models import ModelSettings
    from crnn.train import TrainingSettings, train

    with caplog.at_level(logging.INFO, logger="crnn"):
        train(
            splits["train"],
            splits["val"],
            tmp_path / "m",
            model_settings=ModelSettings(cell="gru", units=8, conv_filters=4),
            training=TrainingSettings(epochs=3, batch_size=256, max_time_s=600.0),
            seed=1,
            name="epochs",
        )
    out, _ = capfd.readouterr()
    assert "Epoch" not in out and "step" not in out, out[-2000:]  # no Keras progress on stdout
    lines = [
        (r.name, r.getMessage())
        for r in caplog.records
        if r.getMessage().startswith("epoch ") and "s/epoch" in r.getMessage()
    ]
    assert [name for name, _ in lines] == ["crnn.train"] * 3
    matches = [EPOCH.match(text) for _, text in lines]
    assert all(matches), lines
    assert [int(m.group(1)) for m in matches] == [1, 2, 3]
    history = np.genfromtxt(tmp_path / "m" / "history.csv", delimiter=",", names=True)
    np.testing.assert_allclose([float(m.group(4)) for m in matches], history["val_auc"], atol=1e-4)
    np.testing.assert_allclose([float(m.group(3)) for m in matches], history["val_loss"], atol=1e-4)
