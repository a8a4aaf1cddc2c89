"""The Keras callbacks of ``crnn train``: history, early stopping, learning-rate reduction, time
limit and per-epoch checkpoints, each with a state that a checkpoint keeps.

A module of its own because it imports Keras: :mod:`crnn.train` imports it only when training
starts, so that ``crnn train --help`` and the other stages do not load TensorFlow.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from crnn.progress import Progress, format_duration
from crnn.train import _utc_now, _write_history

if TYPE_CHECKING:
    from crnn.train import _Checkpoint

# the messages are training's own: logged under crnn.train
log = logging.getLogger("crnn.train")


class _History(keras.callbacks.Callback):
    """Collect one row per epoch and rewrite ``path`` (the checkpoint's ``history.csv``) after each."""

    def __init__(self, rows: list[dict[str, float]], path: Path | None = None) -> None:
        super().__init__()
        self.rows = rows
        self.path = path
        self._t = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
        row["epoch_time_s"] = round(time.perf_counter() - self._t, 2)
        self.rows.append(row)
        if self.path is not None:
            _write_history(self.path, self.rows)


class _EpochLog(keras.callbacks.Callback):
    """One line per epoch through the crnn logger (stderr), instead of Keras' progress bar on stdout:
    losses, validation AUC, time per epoch and the time left (to the time limit, or for the epochs
    left). On a terminal, a bar of the epoch's batches (:mod:`crnn.progress`) in between."""

    def __init__(self, epochs: int, max_time_s: float = 0.0, already_s: float = 0.0) -> None:
        super().__init__()
        self.epochs = epochs
        self.max_time_s = max_time_s
        self.already_s = already_s
        self._t0 = time.perf_counter()
        self._epoch_t0 = self._t0
        self._bar: Progress | None = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_t0 = time.perf_counter()
        if sys.stderr.isatty():
            self._bar = Progress(
                f"epoch {epoch + 1}/{self.epochs}",
                (self.params or {}).get("steps"),
                unit="batches",
                logger=log,
                tty=True,
            )

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        epoch_s = time.perf_counter() - self._epoch_t0
        log.info(
            "%s",
            epoch_line(
                epoch + 1,
                self.epochs,
                logs or {},
                epoch_s,
                self.already_s + time.perf_counter() - self._t0,
                self.max_time_s,
            ),
        )


def epoch_line(epoch: int, epochs: int, logs: dict[str, Any], epoch_s: float, used_s: float, max_time_s: float) -> str:
    """``"epoch 3/20: loss 0.4123, val loss 0.3981, val AUC 0.9512, 41.2 s/epoch; 2 min 03 s used,
    6 min 57 s left of the 540 s time limit"`` (without a limit: the time the epochs left would take)."""

    def value(key: str) -> str:
        return f"{float(logs[key]):.4f}" if key in logs else "n/a"

    text = (
        f"epoch {epoch}/{epochs}: loss {value('loss')}, val loss {value('val_loss')}, "
        f"val AUC {value('val_auc')}, {epoch_s:.1f} s/epoch; {format_duration(used_s)} used"
    )
    if max_time_s > 0:
        return f"{text}, {format_duration(max(0.0, max_time_s - used_s))} left of the {max_time_s:g} s time limit"
    return f"{text}, about {format_duration(epoch_s * (epochs - epoch))} left for {epochs - epoch} more epoch(s)"


class _EarlyStopping(keras.callbacks.Callback):
    """Keras' EarlyStopping on ``val_loss`` with restored best weights, with a state that a checkpoint keeps."""

    def __init__(self, patience: int) -> None:
        super().__init__()
        self.patience = patience
        self.wait = 0
        self.best: float | None = None
        self.best_epoch = -1
        self.stopped_epoch = -1
        self.best_weights: list[np.ndarray] | None = None

    def state(self) -> dict[str, Any]:
        return {
            "wait": self.wait,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch,
        }

    def set_state(self, state: dict[str, Any], best_weights: list[np.ndarray] | None) -> None:
        self.wait = int(state["wait"])
        self.best = state["best"]
        self.best_epoch = int(state["best_epoch"])
        self.stopped_epoch = int(state["stopped_epoch"])
        self.best_weights = best_weights

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        current = (logs or {}).get("val_loss")
        if current is None:
            return
        current = float(current)
        if self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self.best is None or current < self.best:
            self.best = current
            self.best_epoch = epoch
            self.best_weights = self.model.get_weights()
            self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            log.info("early stopping after epoch %d (best epoch %d)", epoch + 1, self.best_epoch + 1)

    def on_train_end(self, logs: dict | None = None) -> None:
        self.restore(self.model)

    def restore(self, model: Any) -> None:
        if self.best_weights is not None:
            model.set_weights(self.best_weights)


class _ReduceLR(keras.callbacks.Callback):
    """Keras' ReduceLROnPlateau on ``val_loss`` (factor 0.5, min_delta 1e-4), with a checkpointable state."""

    def __init__(self, patience: int, factor: float = 0.5, min_delta: float = 1e-4) -> None:
        super().__init__()
        self.patience = patience
        self.factor = factor
        self.min_delta = min_delta
        self.wait = 0
        self.best: float | None = None

    def state(self) -> dict[str, Any]:
        return {"wait": self.wait, "best": self.best}

    def set_state(self, state: dict[str, Any]) -> None:
        self.wait = int(state["wait"])
        self.best = state["best"]

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        logs["learning_rate"] = lr
        current = logs.get("val_loss")
        if current is None:
            return
        current = float(current)
        if self.best is None or current < self.best - self.min_delta:
            self.best = current
            self.wait = 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.model.optimizer.learning_rate = lr * self.factor
            log.info("epoch %d: learning rate reduced to %.3g", epoch + 1, lr * self.factor)
            self.wait = 0


class _TimeLimit(keras.callbacks.Callback):
    """Stop training when ``max_time_s`` of training time is used, at a batch, not an epoch.

    An epoch that would end past the limit is cut short: after the batch at which the time left
    only holds the validation, training stops; that shortened epoch is still validated, logged and
    checkpointed like any other (``cut`` records how many of its batches ran). The validation's
    time is the last one measured, before the first validation ``FIRST_VALIDATION_FRACTION`` of the
    limit. At an epoch's end, no epoch is begun that would be cut to less than ``MIN_EPOCH_FRACTION``
    of the longest so far. At least one batch always runs. The time counts across resumptions:
    ``already_s`` is the training time of the earlier runs (from the checkpoint); the time between a
    kill and the restart does not count. Before, an epoch that would overrun was not begun at all:
    on 2 threads the default models' second epoch (250-300 s each) never fitted into 540 s.
    """

    FIRST_VALIDATION_FRACTION = 0.03
    MIN_EPOCH_FRACTION = 0.1

    def __init__(self, max_time_s: float, already_s: float = 0.0) -> None:
        super().__init__()
        self.max_time_s = max_time_s
        self.already_s = already_s
        self._t0 = time.perf_counter()
        self._epoch_t0 = self._t0
        self._longest_epoch_s = 0.0
        self._validation_s: float | None = None
        self._test_t0 = 0.0
        self._batches = 0
        #: the epoch that the limit cut short: {"epoch": 1-based, "batches": run, "of": in a full epoch
        #: (-1: unknown), "after_s": training time at the cut}
        self.cut: dict[str, int] | None = None

    def elapsed_s(self) -> float:
        return self.already_s + time.perf_counter() - self._t0

    def _reserve_s(self) -> float:
        """Time kept for the validation of the current epoch."""
        if self._validation_s is None:
            return self.FIRST_VALIDATION_FRACTION * self.max_time_s
        return 1.2 * self._validation_s

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_t0 = time.perf_counter()
        self._batches = 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._batches += 1
        if self.model.stop_training or self.elapsed_s() + self._reserve_s() < self.max_time_s:
            return
        full = (self.params or {}).get("steps")
        if full is not None and self._batches >= full:
            return  # the epoch's last batch: it ends whole, and the epoch's end decides
        self.model.stop_training = True
        self.cut = {"batches": self._batches, "of": int(full) if full else -1, "after_s": round(self.elapsed_s(), 1)}
        log.info(
            "time limit of %.0f s: %.0f s used, stopping after batch %d%s of this epoch (it is validated and kept)",
            self.max_time_s,
            self.elapsed_s(),
            self._batches,
            f" of {full}" if full else "",
        )

    def on_test_begin(self, logs: dict | None = None) -> None:
        self._test_t0 = time.perf_counter()

    def on_test_end(self, logs: dict | None = None) -> None:
        self._validation_s = time.perf_counter() - self._test_t0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.cut is not None:
            self.cut["epoch"] = epoch + 1
            return
        self._longest_epoch_s = max(self._longest_epoch_s, time.perf_counter() - self._epoch_t0)
        elapsed = self.elapsed_s()
        left = self.max_time_s - elapsed - self._reserve_s()
        if left < self.MIN_EPOCH_FRACTION * self._longest_epoch_s:
            log.info(
                "time limit of %.0f s: %.0f s used after epoch %d, too little left for another (an epoch takes "
                "about %.0f s): stopping",
                self.max_time_s,
                elapsed,
                epoch + 1,
                self._longest_epoch_s,
            )
            self.model.stop_training = True


class _SaveCheckpoint(keras.callbacks.Callback):
    """Write the checkpoint at the end of every epoch (after the other callbacks have updated)."""

    def __init__(
        self,
        checkpoint: _Checkpoint,
        early: _EarlyStopping,
        reduce_lr: _ReduceLR,
        rows: list[dict[str, float]],
        already_s: float,
        resumes: list[dict[str, Any]],
    ) -> None:
        super().__init__()
        self.checkpoint = checkpoint
        self.early = early
        self.reduce_lr = reduce_lr
        self.rows = rows
        self.already_s = already_s
        self.resumes = resumes
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        t = time.perf_counter()
        state = {
            "epoch": epoch + 1,
            "stopped": bool(self.model.stop_training),
            "history": self.rows,
            "learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
            "early_stopping": self.early.state(),
            "reduce_lr": self.reduce_lr.state(),
            "train_time_s": self.already_s + time.perf_counter() - self._t0,
            "seed": self.checkpoint.run_id["settings"]["seed"],
            "rng": "keras.utils.set_random_seed(seed) at start; the streamed shuffle order is a function "
            "of (seed, epoch); the in-memory shuffle and dropout restart from the seed on resumption",
            "resumes": self.resumes,
            "saved_utc": _utc_now(),
        }
        self.checkpoint.save(self.model, state, self.early.best_weights)
        log.debug("checkpoint after epoch %d written in %.2f s", epoch + 1, time.perf_counter() - t)
