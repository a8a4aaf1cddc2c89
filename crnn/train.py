"""Stage ``train``: fit a GRU or LSTM classifier, choose its working point, save it with a card.

Reads the train and validation splits (canonical files with ``labels``), builds the model from
:class:`crnn.models.ModelSettings`, trains with Adam and binary cross-entropy (balanced class
weights, learning-rate reduction on plateau, early stopping on the validation loss with the
best weights restored, and an optional wall-time limit), then picks the score threshold at the
target false-positive rate on the validation background and writes:

* ``model.keras``      the model (Keras 3 format, loadable in safe mode);
* ``model.card.json``  the model card (see :mod:`crnn.modelcard`);
* ``history.csv``      loss and AUC per epoch, training and validation.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crnn import __version__
from crnn.errors import CrnnError
from crnn.fileutil import atomic_output
from crnn.metrics import threshold_at_fpr
from crnn.modelcard import file_sha256, write_card
from crnn.settings import from_mapping, load_mapping, to_mapping
from crnn.tracefile import read_traces

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingSettings:
    epochs: int = 15
    batch_size: int = 256
    learning_rate: float = 2e-3
    early_stopping_patience: int = 4
    reduce_lr_patience: int = 2
    #: stop after the epoch during which this much wall time (s) has passed; 0 = no limit
    max_time_s: float = 0.0
    #: false-positive rate on the validation background that sets the working point
    target_fpr: float = 1e-3
    class_weight: bool = True


@dataclass(frozen=True)
class TrainSettings:
    """Everything ``crnn train`` needs besides file names: the model and how to train it."""

    model: Any = None  # crnn.models.ModelSettings, filled in by from_settings()
    training: TrainingSettings = field(default_factory=TrainingSettings)


def configure_threads(threads: int) -> None:
    """Limit the backend's CPU threads (TensorFlow only; other backends use their defaults)."""
    import keras

    if threads > 0 and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # already initialised in this process
            log.debug("TensorFlow threads already configured")


def report_devices() -> list[str]:
    """Log the devices training runs on; warn when the job was given GPUs the backend cannot use.

    A scheduler (SLURM's ``--gres=gpu:N``) lists the job's GPUs in ``CUDA_VISIBLE_DEVICES``. If
    the installed TensorFlow has no GPU support (the ``tensorflow-cpu`` build that crnn installs
    by default on Linux), training silently falls back to the CPUs: say so, and how to fix it.
    """
    import keras

    gpus: list[str] = []
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    given = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if gpus:
        log.info("training on GPU(s) %s (CUDA_VISIBLE_DEVICES=%s)", ", ".join(gpus), given or "unset")
    elif given and given != "-1":
        log.warning(
            "this job was given GPU(s) CUDA_VISIBLE_DEVICES=%s, but %s sees none, so training runs on the "
            "CPUs; install a GPU build (pip install 'tensorflow[and-cuda]' in place of tensorflow-cpu, see "
            "docs/hpc.md) or request no GPU",
            given, keras.backend.backend(),
        )
    else:
        log.info("training on the CPU")
    return gpus or ["CPU"]


def train(
    train_path: str | Path,
    val_path: str | Path,
    output_dir: str | Path,
    *,
    model_settings: Any,
    training: TrainingSettings,
    seed: int = 1,
    name: str = "model",
    threads: int = 0,
) -> Path:
    """Train and save ``output_dir/model.keras`` with its card and ``history.csv``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from crnn.models import build_classifier

    configure_threads(threads)
    devices = report_devices()
    train_data = read_traces(train_path, require_labels=True)
    val_data = read_traces(val_path, require_labels=True)
    for what, data in (("training", train_data), ("validation", val_data)):
        if len(np.unique(data.labels)) < 2:
            msg = f"{train_path if what == 'training' else val_path}: the {what} split needs both labels 0 and 1"
            raise CrnnError(msg)
    if val_data.traces.shape[1:] != train_data.traces.shape[1:]:
        msg = f"{val_path}: traces of shape {val_data.traces.shape[1:]} differ from {train_path} ({train_data.traces.shape[1:]})"
        raise CrnnError(msg)
    if not np.isclose(val_data.sampling_rate_hz, train_data.sampling_rate_hz):
        msg = f"{val_path}: sampling rate {val_data.sampling_rate_hz:g} Hz differs from {train_path} ({train_data.sampling_rate_hz:g} Hz)"
        raise CrnnError(msg)

    keras.utils.set_random_seed(seed)
    input_shape = train_data.traces.shape[1:]
    model = build_classifier(input_shape, model_settings, name=name)
    model.compile(
        optimizer=keras.optimizers.Adam(training.learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")],
    )
    n_params = model.count_params()
    log.info("model %s: %d parameters, input shape %s", name, n_params, input_shape)

    y = train_data.labels.astype(np.float32)
    class_weight = None
    if training.class_weight:
        pos = float(y.mean())
        class_weight = {0: 0.5 / (1 - pos), 1: 0.5 / pos}
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    history_rows: list[dict[str, float]] = []
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=training.early_stopping_patience, restore_best_weights=True
        ),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=training.reduce_lr_patience),
        _History(history_rows),
    ]
    if training.max_time_s > 0:
        callbacks.append(_TimeLimit(training.max_time_s))
    t0 = time.perf_counter()
    model.fit(
        train_data.traces, y,
        validation_data=(val_data.traces, val_data.labels.astype(np.float32)),
        batch_size=training.batch_size, epochs=training.epochs, class_weight=class_weight,
        callbacks=callbacks, verbose=2, shuffle=True,
    )
    train_time_s = time.perf_counter() - t0

    val_scores = model.predict(val_data.traces, batch_size=2048, verbose=0).reshape(-1)
    background = val_scores[val_data.labels == 0]
    threshold = threshold_at_fpr(background, training.target_fpr)
    if threshold is None:
        threshold = float(background.max())
        log.warning(
            "validation split has only %d background traces: cannot resolve FPR %g; "
            "working point set at the largest background score", background.size, training.target_fpr,
        )
    signal = val_scores[val_data.labels == 1]
    from sklearn.metrics import roc_auc_score

    val_auc = float(roc_auc_score(val_data.labels, val_scores))
    model_path = out / "model.keras"
    with atomic_output(model_path) as tmp:
        model.save(tmp, overwrite=True)
    history_path = out / "history.csv"
    with atomic_output(history_path) as tmp, open(tmp, "w", newline="") as f:
        keys = list(history_rows[0]) if history_rows else ["epoch"]
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history_rows)
    card = {
        "name": name,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "crnn_version": __version__,
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "input_shape": list(input_shape),
        "input_layout": "(N, C, T): traces, channels, samples",
        "n_channels": int(input_shape[0]),
        "n_samples": int(input_shape[1]),
        "sampling_rate_hz": train_data.sampling_rate_hz,
        "band_hz": train_data.attrs.get("band_hz"),
        "unit_trained": train_data.unit,
        "normalisation": "each trace divided by its RMS over channels and samples (TraceNormalization layer): "
        "scores do not depend on gain or unit",
        "output": "probability that an air-shower pulse is present (sigmoid)",
        "model": to_mapping(model_settings),
        "n_parameters": int(n_params),
        "training": {**to_mapping(training), "seed": seed, "epochs_run": len(history_rows),
                     "train_time_s": round(train_time_s, 1), "threads": threads,
                     "devices": devices},
        "data": {
            "train": {"path": str(train_path), "sha256": file_sha256(train_path), "n_traces": train_data.n_traces,
                      "n_signal": int(train_data.labels.sum())},
            "val": {"path": str(val_path), "sha256": file_sha256(val_path), "n_traces": val_data.n_traces,
                    "n_signal": int(val_data.labels.sum())},
        },
        "metrics": {"val_auc": val_auc, "val_loss_best": min((r["val_loss"] for r in history_rows), default=None)},
        "working_point": {
            "target_fpr": training.target_fpr,
            "threshold": float(threshold),
            "chosen_on": "validation background",
            "val_fpr": float(np.mean(background > threshold)),
            "val_tpr": float(np.mean(signal > threshold)),
            "n_val_background": int(background.size),
        },
        "working_points": _working_points(background, signal, (1e-2, 1e-3, 1e-4, training.target_fpr)),
        "model_sha256": file_sha256(model_path),
    }
    write_card(model_path, card)
    log.info("saved %s (val AUC %.4f, threshold %.4g at FPR %g)", model_path, val_auc, threshold, training.target_fpr)
    return model_path


def _working_points(background: np.ndarray, signal: np.ndarray, fprs: tuple[float, ...]) -> list[dict[str, Any]]:
    """Thresholds at each FPR that the validation background can resolve (for --working-point)."""
    points = []
    for fpr in sorted(set(fprs), reverse=True):
        thr = threshold_at_fpr(background, fpr)
        if thr is None:
            continue
        points.append({"target_fpr": fpr, "threshold": thr, "val_fpr": float(np.mean(background > thr)),
                       "val_tpr": float(np.mean(signal > thr))})
    return points


def _keras_callback_base() -> type:
    import keras

    return keras.callbacks.Callback


class _History(_keras_callback_base()):  # type: ignore[misc]
    def __init__(self, rows: list[dict[str, float]]) -> None:
        super().__init__()
        self.rows = rows
        self._t = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
        row["epoch_time_s"] = round(time.perf_counter() - self._t, 2)
        self.rows.append(row)


class _TimeLimit(_keras_callback_base()):  # type: ignore[misc]
    def __init__(self, max_time_s: float) -> None:
        super().__init__()
        self.max_time_s = max_time_s
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if time.perf_counter() - self._t0 > self.max_time_s:
            log.info("time limit of %.0f s reached after epoch %d: stopping", self.max_time_s, epoch + 1)
            self.model.stop_training = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train", required=True, help="training split (canonical file with labels)")
    p.add_argument("--val", required=True, help="validation split (canonical file with labels)")
    p.add_argument("--output-dir", "-o", required=True, help="folder for model.keras, model.card.json, history.csv")
    p.add_argument("--name", default="model", help="model name (default 'model')")
    p.add_argument("--model", help="model settings: JSON/YAML string or file (cell, units, ...)")
    p.add_argument("--training", help="training settings: JSON/YAML string or file (epochs, batch_size, ...)")
    p.add_argument("--cell", choices=("gru", "lstm"), help="recurrent cell (overrides --model)")
    p.add_argument("--epochs", type=int, help="maximum epochs (overrides --training)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for the backend (0 = all)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")


def run(args: argparse.Namespace) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from crnn.models import ModelSettings

    model_map = load_mapping(args.model)
    if args.cell:
        model_map["cell"] = args.cell
    training_map = load_mapping(args.training)
    if args.epochs is not None:
        training_map["epochs"] = args.epochs
    model_settings = from_mapping(ModelSettings, model_map, "model settings")
    training = from_mapping(TrainingSettings, training_map, "training settings")
    train(
        args.train, args.val, args.output_dir, model_settings=model_settings, training=training,
        seed=args.seed, name=args.name, threads=args.threads,
    )


if __name__ == "__main__":
    from crnn.cli import stage_main

    stage_main("train")
