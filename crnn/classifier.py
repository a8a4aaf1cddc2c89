"""A trained crnn model with its card: load safely, check inputs, score traces.

>>> from crnn import load_classifier
>>> clf = load_classifier("results/models/gru/model.keras")
>>> scores = clf.predict(traces, sampling_rate_hz=180e6)   # traces: (N, C, T) or (N, T)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from crnn.errors import CrnnError
from crnn.modelcard import read_card, resolve_model_path


class Classifier:
    """A loaded model plus its card. Use :func:`load_classifier` to make one."""

    def __init__(self, model: Any, card: dict[str, Any], path: Path) -> None:
        self.model = model
        self.card = card
        self.path = path

    @property
    def n_channels(self) -> int:
        return int(self.card["n_channels"])

    @property
    def n_samples(self) -> int:
        return int(self.card["n_samples"])

    @property
    def sampling_rate_hz(self) -> float:
        return float(self.card["sampling_rate_hz"])

    @property
    def threshold(self) -> float:
        return float(self.card["working_point"]["threshold"])

    def check_input(self, shape: tuple[int, ...], sampling_rate_hz: float, where: str = "input") -> None:
        """Refuse traces that the model was not trained for, saying what it expects."""
        if not np.isclose(sampling_rate_hz, self.sampling_rate_hz, rtol=1e-6, atol=0):
            msg = (
                f"{where}: sampling_rate_hz = {sampling_rate_hz:g} Hz, but model {self.path.name} was trained "
                f"on {self.sampling_rate_hz:g} Hz traces; resample the input (crnn ingest) or use a matching model"
            )
            raise CrnnError(msg)
        c, t = (1, shape[-1]) if len(shape) == 2 else shape[1:]
        if c != self.n_channels:
            msg = (
                f"{where}: traces have {c} channel(s), but model {self.path.name} expects {self.n_channels} "
                f"(input shape (N, {self.n_channels}, {self.n_samples}))"
            )
            raise CrnnError(msg)
        if t != self.n_samples:
            msg = (
                f"{where}: traces have {t} samples, but model {self.path.name} expects {self.n_samples} "
                f"(input shape (N, {self.n_channels}, {self.n_samples}))"
            )
            raise CrnnError(msg)

    def predict(
        self, traces: np.ndarray, *, sampling_rate_hz: float, batch_size: int = 2048
    ) -> np.ndarray:
        """Probability that an air-shower pulse is present, one float32 per trace."""
        x = np.asarray(traces, dtype=np.float32)
        if x.ndim == 2:
            x = x[:, None, :]
        if x.ndim != 3:
            msg = f"traces must have shape (N, C, T) or (N, T); got {x.shape}"
            raise CrnnError(msg)
        self.check_input(x.shape, sampling_rate_hz)
        if not np.isfinite(x).all():
            msg = "traces hold NaN or Inf values; expected finite numbers"
            raise CrnnError(msg)
        if len(x) == 0:
            return np.zeros(0, dtype=np.float32)
        out = self.model.predict(x, batch_size=batch_size, verbose=0)
        return np.asarray(out, dtype=np.float32).reshape(-1)

    def decide(self, scores: np.ndarray, threshold: float | None = None) -> np.ndarray:
        thr = self.threshold if threshold is None else threshold
        return (np.asarray(scores) > thr).astype(np.int8)


def load_classifier(path: str | os.PathLike[str], *, safe_mode: bool = True) -> Classifier:
    """Load a ``.keras`` model (or the one in a folder) with its card, in Keras' safe mode."""
    model_path = resolve_model_path(path)
    card = read_card(model_path)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    import crnn.models  # noqa: F401  (registers crnn's layers for deserialisation)

    try:
        model = keras.saving.load_model(model_path, compile=False, safe_mode=safe_mode)
    except ValueError as exc:
        if "safe_mode" in str(exc) or "unsafe" in str(exc).lower() or "lambda" in str(exc).lower():
            msg = (
                f"{model_path}: refused to load a model that carries arbitrary code (Keras safe mode); "
                f"pass --trust-model (load_classifier(..., safe_mode=False)) only for files you trust: {exc}"
            )
            raise CrnnError(msg) from exc
        msg = f"{model_path}: cannot load the model: {exc}"
        raise CrnnError(msg) from exc
    except (OSError, KeyError) as exc:
        msg = f"{model_path}: not a readable .keras model ({exc}); is it truncated?"
        raise CrnnError(msg) from exc
    return Classifier(model, card, model_path)
