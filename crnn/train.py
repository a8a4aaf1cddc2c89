"""Stage ``train``: fit a GRU or LSTM classifier, choose its working point, save it with a card.

Reads the train and validation splits (canonical files with ``labels``), builds the model from
:class:`crnn.models.ModelSettings`, trains with Adam and binary cross-entropy (balanced class
weights, learning-rate reduction on plateau, early stopping on the validation loss with the
best weights restored, and an optional wall-time limit), then picks the score threshold at the
target false-positive rate on the validation background and writes:

* ``model.keras``      the model (Keras 3 format, loadable in safe mode);
* ``model.card.json``  the model card (see :mod:`crnn.modelcard`);
* ``history.csv``      loss and AUC per epoch, training and validation (published at the end with
  the model; during training the per-epoch copy lives in ``checkpoint/history.csv``).

The splits are held in memory, or streamed chunk by chunk from disk when they exceed the memory
budget (:class:`crnn.stream.TraceStream`; setting ``streaming``). After every epoch a checkpoint
goes to ``output_dir/checkpoint/`` (:class:`_Checkpoint`); started again with the same settings
and data, training resumes from it, and with other settings it refuses unless ``restart``. The
checkpoint is removed once the outputs are written.

Fine-tuning (setting ``init_from``, CLI ``--init-from M.keras``): the model is built with the
architecture of the card of ``M.keras`` and starts from its weights, trained with
``fine_tune_learning_rate``. The splits must have the model's channels, samples and sampling
rate (from its card); model settings that are given and differ from the card's are refused. The
new card records ``init_from`` (path, SHA-256, name and training data of the initial model).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from crnn import __version__
from crnn.classifier import add_model_flags
from crnn.errors import CrnnError, MissingFieldError
from crnn.fileutil import atomic_output, check_outputs, folder_lock, folder_outputs, refuse_aliases, write_json
from crnn.metrics import threshold_at_fpr
from crnn.modelcard import file_sha256, write_card
from crnn.settings import add_print_settings, check_value, from_mapping, load_mapping, to_mapping
from crnn.tracefile import DEFAULT_CHUNK as DEFAULT_CHUNK_TRACES
from crnn.tracefile import LABELS, TraceFile, check_same_dataset_run, read_traces
from crnn.versions import software

if TYPE_CHECKING:  # crnn.stream imports keras: at run time only where a run streams
    from crnn.stream import TraceStream

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingSettings:
    #: the node of the config schema that holds the rules on these settings
    SCHEMA: ClassVar[str] = "training"
    epochs: int = 15
    batch_size: int = 256
    learning_rate: float = 2e-3
    early_stopping_patience: int = 4
    reduce_lr_patience: int = 2
    #: wall-time limit (s): training stops at the batch where it is reached; that shortened last
    #: epoch is validated and kept (0 = no limit)
    max_time_s: float = 540.0
    #: false-positive rate on the validation background that sets the working point
    target_fpr: float = 1e-3
    class_weight: bool = True
    #: loss weight of background traces that carry a human-made transient (hard negatives),
    #: relative to other background traces (1 = none); needs the splits' ``has_transient``
    transient_weight: float = 1.0
    #: loss weight of pulse traces that also carry a human-made transient (a pulse beside
    #: interference, which a network may learn to call background), relative to other pulse traces
    transient_signal_weight: float = 1.0
    #: "always": read the splits chunk by chunk from disk (memory does not grow with their size);
    #: "never": hold them in memory; "auto": stream when they exceed ``memory_budget_mb``
    streaming: str = "auto"
    #: memory (MB) that the traces of the train + validation splits may take in memory (float32)
    memory_budget_mb: float = 2048.0
    #: deterministic kernels (TensorFlow op determinism): same seed, same weights
    deterministic: bool = True
    #: write a checkpoint every epoch into ``output_dir/checkpoint`` and resume from it
    checkpoint: bool = True
    #: float16 compute with float32 weights (Keras' "mixed_float16" policy): for GPUs with tensor
    #: cores; slower on CPUs. The RMS normalisation and the output layer stay float32.
    mixed_precision: bool = False
    #: fine-tuning: a trained crnn model (``.keras`` with its card) whose architecture and weights
    #: training starts from instead of a fresh model; None = train from scratch
    init_from: str | None = None
    #: Adam learning rate used instead of ``learning_rate`` when ``init_from`` is set
    fine_tune_learning_rate: float = 2e-4


@dataclass(frozen=True)
class TrainSettings:
    """Everything ``crnn train`` needs besides file names: the model and how to train it."""

    model: Any = None  # crnn.models.ModelSettings, filled in by from_settings()
    training: TrainingSettings = field(default_factory=TrainingSettings)


STREAMING = ("auto", "always", "never")
CHECKPOINT_DIR = "checkpoint"
#: training settings that may change between a checkpoint and its resumption
RESUMABLE_CHANGES = ("max_time_s",)


def configure_threads(threads: int) -> None:
    """Limit the backend's CPU threads (TensorFlow and PyTorch; JAX reads XLA_FLAGS at start-up)."""
    import keras

    if threads <= 0:
        return
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # already initialised in this process
            log.debug("TensorFlow threads already configured")
    elif backend == "torch":
        import torch

        torch.set_num_threads(threads)
    else:
        log.debug("backend %s: threads are not set by crnn (use XLA_FLAGS for JAX)", backend)


def configure_determinism(deterministic: bool) -> None:
    """Ask the backend for deterministic kernels (TensorFlow: op determinism; PyTorch: deterministic algorithms).

    JAX on the CPU is deterministic already. Seeds are set separately (keras.utils.set_random_seed).
    """
    if not deterministic:
        return
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif backend == "torch":
        import torch

        torch.use_deterministic_algorithms(True, warn_only=True)


def report_devices() -> list[str]:
    """Log the devices training runs on; warn when the job was given GPUs the backend cannot use.

    A scheduler (SLURM's ``--gres=gpu:N``) lists the job's GPUs in ``CUDA_VISIBLE_DEVICES``. If
    the installed TensorFlow has no GPU support (the ``tensorflow-cpu`` build that crnn installs
    by default on Linux), training silently falls back to the CPUs: say so, and how to fix it.
    """
    import keras

    gpus: list[str] = []
    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
        elif backend == "jax":
            import jax

            gpus = [str(d) for d in jax.devices() if d.platform != "cpu"]
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                gpus = [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    except RuntimeError as exc:  # a backend that cannot list its devices: train where it runs
        log.debug("could not list %s devices: %s", backend, exc)
    given = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if gpus:
        log.info("training on GPU(s) %s (CUDA_VISIBLE_DEVICES=%s)", ", ".join(gpus), given or "unset")
    elif given and given != "-1":
        log.warning(
            "this job was given GPU(s) CUDA_VISIBLE_DEVICES=%s, but %s sees none, so training runs on the "
            "CPUs; install a GPU build (pip install 'tensorflow[and-cuda]' in place of tensorflow-cpu, see "
            "docs/hpc.md) or request no GPU",
            given,
            backend,
        )
    else:
        log.info("training on the CPU")
    return gpus or ["CPU"]


@dataclass
class _Split:
    """What training needs to know about a split before reading its traces."""

    path: Path
    n_traces: int
    shape: tuple[int, int]
    sampling_rate_hz: float
    unit: str
    attrs: dict[str, Any]
    labels: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.n_traces * self.shape[0] * self.shape[1] * 4


def _sample_weights(
    split: _Split, class_weight: dict[int, float] | None, transient_weight: float, transient_signal_weight: float = 1.0
) -> np.ndarray | None:
    """Per-trace loss weights: the class weight, times ``transient_weight`` on background and
    ``transient_signal_weight`` on pulse traces that carry a human-made transient; None when both
    are 1 (the class weights alone do)."""
    if transient_weight == 1 and transient_signal_weight == 1:
        return None
    labels = split.labels
    w = np.ones(len(labels), dtype=np.float32)
    if class_weight is not None:
        w = np.where(labels == 1, class_weight[1], class_weight[0]).astype(np.float32)
    with TraceFile(split.path) as tf:
        if "has_transient" not in tf.meta_names:
            raise MissingFieldError(
                str(split.path),
                "has_transient",
                tf.meta_names,
                expected="int8 per trace (1 = a human-made transient) for training.transient_weight",
            )
        has = tf.read_meta("has_transient") == 1
    for label, factor, what in (
        (0, transient_weight, "transient_weight"),
        (1, transient_signal_weight, "transient_signal_weight"),
    ):
        if factor == 1:
            continue
        hard = has & (labels == label)
        w[hard] *= np.float32(factor)
        log.info(
            "%s %g on %d %s traces with a transient (%.1f %% of them)",
            what,
            factor,
            int(hard.sum()),
            "background" if label == 0 else "pulse",
            100 * hard.sum() / max(1, int((labels == label).sum())),
        )
    return w


def _open_split(path: str | Path, what: str) -> _Split:
    """Check a split's layout and labels (the traces are not read)."""
    with TraceFile(path) as tf:
        if not tf.has_labels:
            raise MissingFieldError(
                str(path), LABELS, tf.meta_names, expected="int8 per-trace labels, 1 = air-shower pulse present"
            )
        labels = tf.read_meta(LABELS)
        if len(np.unique(labels)) < 2:
            msg = f"{path}: the {what} split needs both labels 0 and 1"
            raise CrnnError(msg)
        return _Split(
            Path(path), tf.n_traces, (tf.n_channels, tf.n_samples), tf.sampling_rate_hz, tf.unit, dict(tf.attrs), labels
        )


def open_splits(train_path: str | Path, val_path: str | Path) -> tuple[_Split, _Split]:
    """The training and validation splits, checked to be of one dataset run, shape and rate (no Keras)."""
    train_split = _open_split(train_path, "training")
    val_split = _open_split(val_path, "validation")
    check_same_dataset_run(train_path, val_path)
    if val_split.shape != train_split.shape:
        msg = f"{val_path}: traces of shape {val_split.shape} differ from {train_path} ({train_split.shape})"
        raise CrnnError(msg)
    if not np.isclose(val_split.sampling_rate_hz, train_split.sampling_rate_hz):
        msg = (
            f"{val_path}: sampling rate {val_split.sampling_rate_hz:g} Hz differs from {train_path} "
            f"({train_split.sampling_rate_hz:g} Hz)"
        )
        raise CrnnError(msg)
    return train_split, val_split


def _scan_traces(path: Path) -> None:
    """Read every trace chunk by chunk: a streamed run finds NaN/Inf now, not in the middle of an epoch."""
    with TraceFile(path) as tf:
        for start in range(0, tf.n_traces, DEFAULT_CHUNK_TRACES):
            tf.read_traces(start, min(start + DEFAULT_CHUNK_TRACES, tf.n_traces))


def _choose_streaming(training: TrainingSettings, nbytes: int) -> bool:
    if training.streaming not in STREAMING:
        msg = f"training settings: streaming must be one of {', '.join(STREAMING)}; found {training.streaming!r}"
        raise CrnnError(msg)
    if training.streaming != "auto":
        return training.streaming == "always"
    stream = nbytes > training.memory_budget_mb * 1e6
    log.info(
        "splits hold %.0f MB of traces, memory budget %.0f MB: %s",
        nbytes / 1e6,
        training.memory_budget_mb,
        "streaming them from disk" if stream else "reading them into memory",
    )
    return stream


#: held by a running training in its output folder (the holder's PID inside), see :func:`folder_lock`
LOCK_FILE = ".train.lock"


def train(
    train_path: str | Path,
    val_path: str | Path,
    output_dir: str | Path,
    *,
    model_settings: Any = None,
    training: TrainingSettings,
    seed: int = 1,
    name: str = "model",
    threads: int = 0,
    restart: bool = False,
    trust_model: bool = False,
) -> Path:
    """Train and save ``output_dir/model.keras`` with its card and ``history.csv``.

    With ``training.checkpoint``, the state after every epoch goes to ``output_dir/checkpoint``;
    a later call with the same settings and data resumes from it (``restart=True`` discards it).
    ``model_settings`` None: the defaults, or with ``training.init_from`` the initial model's.
    While it runs, it holds the lock ``output_dir/.train.lock``: a second training into the same
    folder is refused (:class:`CrnnError` naming the folder and the holder's PID). The lock is
    released and its file removed when this returns or raises.
    """
    with contextlib.ExitStack() as held:
        return _train(
            train_path,
            val_path,
            output_dir,
            held,
            model_settings=model_settings,
            training=training,
            seed=seed,
            name=name,
            threads=threads,
            restart=restart,
            trust_model=trust_model,
        )


def _train(
    train_path: str | Path,
    val_path: str | Path,
    output_dir: str | Path,
    held: contextlib.ExitStack,
    *,
    model_settings: Any,
    training: TrainingSettings,
    seed: int,
    name: str,
    threads: int,
    restart: bool,
    trust_model: bool,
) -> Path:
    """:func:`train`; the output folder's lock enters ``held`` once the folder exists."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from crnn.models import build_classifier

    configure_threads(threads)
    configure_determinism(training.deterministic)
    devices = report_devices()
    train_split, val_split = open_splits(train_path, val_path)
    init = _InitModel.load(training.init_from, train_split, trust_model) if training.init_from else None
    if init is not None:
        model_settings = init.model_settings(model_settings)
    elif model_settings is None:
        from crnn.models import ModelSettings

        model_settings = ModelSettings()
    stream = _choose_streaming(training, train_split.nbytes + val_split.nbytes)
    if stream:
        for split in (train_split, val_split):
            _scan_traces(split.path)
    train_sha = file_sha256(train_path)
    val_sha = file_sha256(val_path)

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    held.enter_context(folder_lock(out, LOCK_FILE, "crnn train"))  # before the checkpoint is read or written
    run_id = {
        "settings": {"model": to_mapping(model_settings), "training": to_mapping(training), "seed": seed, "name": name},
        "data": {"train_sha256": train_sha, "val_sha256": val_sha},
    }
    if init is not None:  # another initial model (same path, new file) is another run
        run_id["data"]["init_sha256"] = init.sha256
    checkpoint = _Checkpoint(out / CHECKPOINT_DIR, run_id) if training.checkpoint else None
    if restart and (out / CHECKPOINT_DIR).exists():
        log.info("--restart: discarding the checkpoint in %s", out / CHECKPOINT_DIR)
        shutil.rmtree(out / CHECKPOINT_DIR)
    state = checkpoint.load() if checkpoint else None

    keras.utils.set_random_seed(seed)
    input_shape = train_split.shape
    from crnn.train_callbacks import _EarlyStopping, _EpochLog, _History, _ReduceLR, _SaveCheckpoint, _TimeLimit

    early = _EarlyStopping(training.early_stopping_patience)
    reduce_lr = _ReduceLR(training.reduce_lr_patience)
    history_rows: list[dict[str, float]] = []
    initial_epoch = 0
    time_before_s = 0.0
    resumes: list[dict[str, Any]] = []
    if state is None:
        previous_policy = keras.config.dtype_policy()
        keras.config.set_dtype_policy("mixed_float16" if training.mixed_precision else "float32")
        try:  # the layers keep the policy they were built with; the global one is put back
            band = train_split.attrs.get("band_hz")
            model = build_classifier(
                input_shape,
                model_settings,
                name=name,
                band_hz=None if band is None else tuple(float(b) for b in band),
                sampling_rate_hz=train_split.sampling_rate_hz,
            )
        finally:
            keras.config.set_dtype_policy(previous_policy)
        if init is not None:
            init.copy_weights_to(model)
        model.compile(
            optimizer=keras.optimizers.Adam(training.fine_tune_learning_rate if init else training.learning_rate),
            loss="binary_crossentropy",
            metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")],
        )
    else:
        assert checkpoint is not None  # a state comes from a checkpoint
        model = checkpoint.load_model(state)
        model.optimizer.learning_rate = state["learning_rate"]
        initial_epoch = int(state["epoch"])
        history_rows = list(state["history"])
        time_before_s = float(state["train_time_s"])
        early.set_state(state["early_stopping"], state["best_weights"])
        reduce_lr.set_state(state["reduce_lr"])
        resumes = [*state.get("resumes", []), {"epoch": initial_epoch, "utc": _utc_now()}]
        checkpoint.record_resumes(resumes)  # kept even if this run is killed before its next checkpoint
        log.info(
            "resuming %s from its checkpoint after epoch %d of %d (%s)",
            name,
            initial_epoch,
            training.epochs,
            out / CHECKPOINT_DIR,
        )
    n_params = model.count_params()
    log.info("model %s: %d parameters, input shape %s", name, n_params, input_shape)

    class_weight = None
    if training.class_weight:
        pos = float(train_split.labels.mean())
        class_weight = {0: 0.5 / (1 - pos), 1: 0.5 / pos}
    sample_weight = _sample_weights(
        train_split, class_weight, training.transient_weight, training.transient_signal_weight
    )
    if sample_weight is not None:
        class_weight = None  # folded into the per-trace weights
    callbacks: list[Any] = [
        _EpochLog(training.epochs, training.max_time_s, time_before_s),
        early,
        reduce_lr,
        _History(history_rows, checkpoint.folder / "history.csv" if checkpoint else None),
    ]
    limit = _TimeLimit(training.max_time_s, time_before_s) if training.max_time_s > 0 else None
    if limit is not None:
        callbacks.append(limit)
    if checkpoint is not None:
        callbacks.append(_SaveCheckpoint(checkpoint, early, reduce_lr, history_rows, time_before_s, resumes))
    stopped = bool(state and state.get("stopped"))
    t0 = time.perf_counter()
    val_data = None
    streams: list[TraceStream] = []
    if initial_epoch < training.epochs and not stopped:
        if stream:
            from crnn.stream import TraceStream  # imports keras: only when a run streams

            train_stream = TraceStream(
                train_path,
                training.batch_size,
                shuffle=True,
                seed=seed,
                start_epoch=initial_epoch,
                class_weight=class_weight,
                sample_weight=sample_weight,
            )
            val_stream = TraceStream(val_path, training.batch_size, shuffle=False)
            streams = [train_stream, val_stream]
            fit_args: dict[str, Any] = {"x": train_stream, "validation_data": val_stream, "shuffle": False}
        else:
            train_data = read_traces(train_path, require_labels=True)
            val_data = read_traces(val_path, require_labels=True)
            fit_args = {
                "x": train_data.traces,
                "y": train_data.labels.astype(np.float32),
                "validation_data": (val_data.traces, val_data.labels.astype(np.float32)),
                "batch_size": training.batch_size,
                "class_weight": class_weight,
                "shuffle": True,
            }
            if sample_weight is not None:
                fit_args["sample_weight"] = sample_weight
            del train_data
        try:
            model.fit(
                **fit_args, epochs=training.epochs, initial_epoch=initial_epoch, callbacks=callbacks, verbose=0
            )  # the epoch lines are _EpochLog's, on stderr
        finally:
            for s in streams:
                s.close()
            del fit_args
    else:
        log.info("the checkpoint is of a finished training (%d epochs): writing the outputs", initial_epoch)
        early.restore(model)
    train_time_s = time_before_s + (time.perf_counter() - t0)

    if val_data is not None:
        val_scores = model.predict(val_data.traces, batch_size=2048, verbose=0).reshape(-1)
    else:
        val_scores = _predict_file(model, val_path)
    val_labels = val_split.labels
    background = val_scores[val_labels == 0]
    threshold = threshold_at_fpr(background, training.target_fpr)
    if threshold is None:
        threshold = float(background.max())
        log.warning(
            "validation split has only %d background traces: cannot resolve FPR %g; "
            "working point set at the largest background score",
            background.size,
            training.target_fpr,
        )
    signal = val_scores[val_labels == 1]
    from sklearn.metrics import roc_auc_score

    val_auc = float(roc_auc_score(val_labels, val_scores))
    model_path = out / "model.keras"
    with atomic_output(model_path) as tmp:
        model.save(tmp, overwrite=True)
    _write_history(out / "history.csv", history_rows)
    card = {
        "name": name,
        "created_utc": _utc_now(),
        "crnn_version": __version__,
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "software": software(keras.backend.backend()),
        "input_shape": list(input_shape),
        "input_layout": "(N, C, T): traces, channels, samples",
        "n_channels": int(input_shape[0]),
        "n_samples": int(input_shape[1]),
        "sampling_rate_hz": train_split.sampling_rate_hz,
        "band_hz": train_split.attrs.get("band_hz"),
        "unit_trained": train_split.unit,
        "normalisation": (
            "each trace divided by its RMS over channels and samples"
            if model_settings.normalise == "rms"
            else "each trace divided by the square root of the median, over channels and 8 segments per "
            "channel, of the segments' mean squares"
        )
        + " (TraceNormalization layer): scores do not depend on gain or unit",
        "output": "probability that an air-shower pulse is present (sigmoid)",
        "model": to_mapping(model_settings),
        "n_parameters": int(n_params),
        "training": {
            **to_mapping(training),
            "seed": seed,
            "epochs_run": len(history_rows),
            "train_time_s": round(train_time_s, 1),
            "threads": threads,
            "devices": devices,
            "streamed": stream,
            "resumed": resumes,
            # the epoch that the time limit cut short, in the run that cut it (else None)
            "time_limit_cut": limit.cut if limit is not None else None,
            "dtype_policy": "mixed_float16" if training.mixed_precision else "float32",
            "learning_rate_used": training.fine_tune_learning_rate if init else training.learning_rate,
        },
        "data": {
            "train": {
                "path": str(train_path),
                "sha256": train_sha,
                "n_traces": train_split.n_traces,
                "n_signal": int(train_split.labels.sum()),
            },
            "val": {
                "path": str(val_path),
                "sha256": val_sha,
                "n_traces": val_split.n_traces,
                "n_signal": int(val_labels.sum()),
            },
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
    if init is not None:
        card["init_from"] = init.card_entry()
    write_card(model_path, card)
    if checkpoint is not None:
        checkpoint.remove()
    log.info("saved %s (val AUC %.4f, threshold %.4g at FPR %g)", model_path, val_auc, threshold, training.target_fpr)
    return model_path


class _InitModel:
    """The trained model that a fine-tuning run starts from: its card, weights and provenance."""

    def __init__(self, path: Path, card: dict[str, Any], weights: list[np.ndarray], sha256: str) -> None:
        self.path = path
        self.card = card
        self.weights = weights
        self.sha256 = sha256

    @classmethod
    def load(cls, path: str | Path, split: _Split, trust_model: bool = False) -> _InitModel:
        """Load ``path`` (refused if its file does not match its card) and check it against the splits."""
        from crnn.classifier import load_classifier

        clf = load_classifier(path, trust_model=trust_model)
        card = clf.card
        want = (int(card["n_channels"]), int(card["n_samples"]), float(card["sampling_rate_hz"]))
        have = (split.shape[0], split.shape[1], split.sampling_rate_hz)
        if want[:2] != have[:2] or not np.isclose(want[2], have[2], rtol=1e-9, atol=0):
            msg = (
                f"--init-from {clf.path}: the model takes {want[0]} channels x {want[1]} samples at {want[2]:g} Hz, "
                f"but the splits ({split.path}) hold {have[0]} x {have[1]} at {have[2]:g} Hz; fine-tune only on "
                "traces of the model's acquisition (convert them with crnn ingest --channels/--resample-hz/--n-samples)"
            )
            raise CrnnError(msg)
        band, split_band = card.get("band_hz"), split.attrs.get("band_hz")
        if (
            band is None
            or split_band is None
            or not np.allclose(np.asarray(band, float), np.asarray(split_band, float))
        ):
            log.info(
                "--init-from: the model was trained in band %s Hz, the splits are in band %s Hz",
                card.get("band_hz"),
                split.attrs.get("band_hz"),
            )
        if "model" not in card:
            msg = f"--init-from {clf.path}: its card has no 'model' settings to rebuild the architecture from"
            raise CrnnError(msg)
        weights = [np.asarray(w) for w in clf.model.get_weights()]
        log.info("fine-tuning %s (%s, %d weight arrays) on %s", clf.path, card.get("name"), len(weights), split.path)
        return cls(clf.path, card, weights, card.get("model_sha256") or file_sha256(clf.path))

    def model_settings(self, given: Any) -> Any:
        """The initial model's architecture; ``given`` settings (if any) must agree with it."""
        from crnn.models import settings_from_card

        own = settings_from_card(self.card["model"], f"{self.path} card model settings")
        if given is not None:
            theirs, mine = to_mapping(given), to_mapping(own)
            changed = [f"{k} {theirs[k]!r} (model has {mine.get(k)!r})" for k in theirs if theirs[k] != mine.get(k)]
            if changed:
                msg = (
                    f"--init-from {self.path}: the architecture comes from this model, but the model settings "
                    f"ask for {', '.join(changed)}; leave them out or make them agree"
                )
                raise CrnnError(msg)
        return own

    def copy_weights_to(self, model: Any) -> None:
        shapes = [tuple(w.shape) for w in model.get_weights()]
        if shapes != [tuple(w.shape) for w in self.weights]:
            msg = (
                f"--init-from {self.path}: its weights do not fit the model rebuilt from its card "
                "(written by another crnn version?)"
            )
            raise CrnnError(msg)
        model.set_weights(self.weights)

    def card_entry(self) -> dict[str, Any]:
        data = self.card.get("data", {})
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "name": self.card.get("name"),
            "train_sha256": data.get("train", {}).get("sha256"),
            "val_sha256": data.get("val", {}).get("sha256"),
            "crnn_version": self.card.get("crnn_version"),
        }


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _predict_file(model: Any, path: str | Path, chunk_size: int = DEFAULT_CHUNK_TRACES) -> np.ndarray:
    """Scores of every trace of a file, read and predicted chunk by chunk (memory set by the chunk)."""
    scores = []
    with TraceFile(path) as tf:
        for start in range(0, tf.n_traces, chunk_size):
            x = tf.read_traces(start, min(start + chunk_size, tf.n_traces))
            scores.append(np.asarray(model.predict(x, batch_size=2048, verbose=0)).reshape(-1))
    return np.concatenate(scores)


def _write_history(path: Path, rows: list[dict[str, float]]) -> None:
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as f:
        keys = list(dict.fromkeys(k for r in rows for k in r)) if rows else ["epoch"]
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def _working_points(background: np.ndarray, signal: np.ndarray, fprs: tuple[float, ...]) -> list[dict[str, Any]]:
    """Thresholds at each FPR that the validation background can resolve (for --working-point)."""
    points = []
    for fpr in sorted(set(fprs), reverse=True):
        thr = threshold_at_fpr(background, fpr)
        if thr is None:
            continue
        points.append(
            {
                "target_fpr": fpr,
                "threshold": thr,
                "val_fpr": float(np.mean(background > thr)),
                "val_tpr": float(np.mean(signal > thr)),
            }
        )
    return points


class _Checkpoint:
    """The files of ``output_dir/checkpoint``: the model after the last completed epoch and its state.

    * ``epoch-NNNN.keras``: model, optimizer state (Adam moments, step count) after epoch NNNN;
    * ``best-NNNN.npz``: the weights of the best epoch so far (early stopping restores them);
    * ``state.json``: epoch, history rows, early-stopping and learning-rate state, training time
      so far, seed, the settings and the SHA-256 of the data. Written last and atomically, it
      names the two files above: a run killed while writing a checkpoint resumes from the
      previous one.
    """

    VERSION = 1

    def __init__(self, folder: Path, run_id: dict[str, Any]) -> None:
        self.folder = folder
        self.run_id = run_id
        self.state_path = folder / "state.json"

    def load(self) -> dict[str, Any] | None:
        if not self.state_path.exists():
            return None
        try:
            state = json.loads(self.state_path.read_text())
            saved = state["run"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            msg = (
                f"{self.state_path}: not a readable crnn checkpoint ({exc}); run again with --restart to "
                "discard it and start over"
            )
            raise CrnnError(msg) from exc
        changed = _differences(saved, self.run_id)
        if changed:
            msg = (
                f"{self.folder}: the checkpoint here is of another training run (changed: {', '.join(changed)}); "
                "resume only with the same settings and data, or run again with --restart to discard it "
                "and start over"
            )
            raise CrnnError(msg)
        model_path = self.folder / state["model_file"]
        best_path = self.folder / state["best_weights_file"]
        for p in (model_path, best_path):
            if not p.exists():
                msg = f"{self.state_path}: names {p.name}, which is missing; run again with --restart"
                raise CrnnError(msg)
        try:
            with open(best_path, "rb") as f, np.load(f) as npz:  # np.load(path) leaks the file when it fails
                state["best_weights"] = [npz[f"w{i}"] for i in range(len(npz.files))]
        except Exception as exc:  # a truncated or damaged file fails in many ways (zip, npy, OS)
            raise self.damaged(best_path, exc) from exc
        state["model_path"] = str(model_path)
        return state

    def load_model(self, state: dict[str, Any]) -> Any:
        """The model (with its optimizer state) that ``state`` (from :meth:`load`) names."""
        import keras

        try:
            return keras.models.load_model(state["model_path"])
        except Exception as exc:  # a truncated .keras zip fails in many ways
            raise self.damaged(Path(state["model_path"]), exc) from exc

    @staticmethod
    def damaged(path: Path, exc: BaseException) -> CrnnError:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        cause = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        return CrnnError(
            f"{path}: a damaged checkpoint file, truncated or overwritten ({cause}); run again with "
            "--restart to discard the checkpoint and start over"
        )

    def record_resumes(self, resumes: list[dict[str, Any]]) -> None:
        """Rewrite ``state.json`` with the resumes so far (the rest as it was), atomically."""
        state = json.loads(self.state_path.read_text())
        write_json(self.state_path, {**state, "resumes": resumes})

    def save(self, model: Any, state: dict[str, Any], best_weights: list[np.ndarray] | None) -> None:
        epoch = int(state["epoch"])
        self.folder.mkdir(parents=True, exist_ok=True)
        model_file = f"epoch-{epoch:04d}.keras"
        best_file = f"best-{epoch:04d}.npz"
        with atomic_output(self.folder / model_file) as tmp:
            model.save(tmp, overwrite=True)
        weights = best_weights if best_weights is not None else model.get_weights()
        with atomic_output(self.folder / best_file) as tmp, open(tmp, "wb") as f:
            np.savez(f, **{f"w{i}": w for i, w in enumerate(weights)})
        state = {
            "version": self.VERSION,
            "run": self.run_id,
            "model_file": model_file,
            "best_weights_file": best_file,
            **state,
        }
        write_json(self.state_path, state)
        for old in self.folder.iterdir():
            if old.name not in ("state.json", "history.csv", model_file, best_file) and not old.name.startswith("."):
                old.unlink(missing_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _differences(saved: Any, now: Any, prefix: str = "") -> list[str]:
    """Dotted names of the settings or data that differ between two run descriptions."""
    if isinstance(saved, dict) and isinstance(now, dict):
        out = []
        for key in sorted(set(saved) | set(now)):
            name = f"{prefix}{key}"
            if name.split(".")[-1] in RESUMABLE_CHANGES:
                continue
            out += _differences(saved.get(key), now.get(key), f"{name}.")
        return out
    return [] if saved == now else [prefix.rstrip(".")]


def default_name(output_dir: str | Path) -> str:
    """A model's name when none is given: its output folder's name (``models/gru`` -> ``gru``)."""
    return Path(output_dir).resolve().name or "model"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train", required=True, help="training split (canonical file with labels)")
    p.add_argument("--val", required=True, help="validation split (canonical file with labels)")
    p.add_argument("--output-dir", "-o", required=True, help="folder for model.keras, model.card.json, history.csv")
    p.add_argument("--name", help="model name, used by evaluate and report (default: the name of --output-dir)")
    p.add_argument("--model", help="model settings: JSON/YAML string or file (cell, units, ...)")
    p.add_argument("--training", help="training settings: JSON/YAML string or file (epochs, batch_size, ...)")
    add_print_settings(
        p, "--print-settings", {"--model": "crnn.model_settings:ModelSettings", "--training": TrainingSettings}
    )
    p.add_argument("--cell", choices=("gru", "lstm"), help="recurrent cell (overrides --model)")
    defaults = TrainingSettings()
    p.add_argument("--epochs", type=int, help=f"maximum epochs (overrides --training; default {defaults.epochs})")
    p.add_argument(
        "--max-time-s",
        type=float,
        metavar="S",
        help="training wall-time limit in s: training stops at the batch where it is reached (the shortened "
        "last epoch is validated and kept); 0 = no limit "
        f"(overrides --training; default {defaults.max_time_s:g})",
    )
    p.add_argument(
        "--init-from",
        metavar="MODEL",
        help="fine-tune: start from this trained .keras model (its architecture and weights; "
        "overrides training.init_from); --model settings must agree with it",
    )
    p.add_argument("--threads", type=int, default=0, help="CPU threads for the backend (0 = all)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument(
        "--restart",
        action="store_true",
        help="discard a checkpoint in --output-dir and start over (default: resume from it)",
    )
    add_model_flags(p, resample=False, scope="--init-from: ")


def run(args: argparse.Namespace) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from crnn.modelcard import model_inputs

    refuse_aliases(
        [("--train", args.train), ("--val", args.val), *model_inputs("--init-from", args.init_from)],
        folder_outputs(
            "--output-dir", args.output_dir, ("model.keras", "model.card.json", "history.csv", CHECKPOINT_DIR)
        ),
    )
    check_outputs(folders=[("--output-dir", args.output_dir)])
    check_value(args.seed, "seed", "--seed")
    model_map = load_mapping(args.model)
    if args.cell:
        model_map["cell"] = args.cell
    training_map = load_mapping(args.training)
    if args.epochs is not None:
        training_map["epochs"] = args.epochs
    if args.max_time_s is not None:
        training_map["max_time_s"] = args.max_time_s
    if args.init_from is not None:
        training_map["init_from"] = args.init_from
    training = from_mapping(TrainingSettings, training_map, "training settings")
    from crnn.model_settings import CARD_LEGACY_SETTINGS, ModelSettings

    model_settings = None
    if training.init_from:
        if model_map:  # only the keys given are compared with the initial model's architecture
            from crnn.modelcard import read_card, resolve_model_path

            card_model = read_card(resolve_model_path(training.init_from)).get("model", {})
            model_settings = from_mapping(
                ModelSettings, {**CARD_LEGACY_SETTINGS, **card_model, **model_map}, "model settings"
            )
    else:
        model_settings = from_mapping(ModelSettings, model_map, "model settings")
    # settings and splits are checked before train() imports Keras and TensorFlow (seconds)
    open_splits(args.train, args.val)
    train(
        args.train,
        args.val,
        args.output_dir,
        model_settings=model_settings,
        training=training,
        seed=args.seed,
        name=args.name or default_name(args.output_dir),
        threads=args.threads,
        restart=args.restart,
        trust_model=args.trust_model,
    )


if __name__ == "__main__":
    from crnn.cli import stage_main

    stage_main("train")
