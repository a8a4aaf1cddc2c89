"""Model builders: small functions that return functional ``keras.Model`` classifiers.

Every model takes canonical traces of shape (C, T), normalises each trace by its own RMS (so
the score does not depend on the gain or the unit of the input: V, uV or ADC counts), moves to
time-major (T, C), optionally shortens the sequence with a strided convolutional front end,
runs one or more recurrent layers and reads out a single sigmoid score: the probability that an
air-shower pulse is present.

The read-out matters: a pulse of a few samples in 500 is a needle, and a network read out from
its last recurrent state learns it slowly; pooling the recurrent outputs over time (``max``, the
default) learns it in an epoch. RNN layers keep the settings that allow the fused cuDNN kernels
(tanh/sigmoid activations, no recurrent dropout, ``unroll=False``, ``use_bias=True``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
from keras import layers, ops

READOUTS = ("max", "mean", "last")
CELLS = ("gru", "lstm")


@keras.saving.register_keras_serializable(package="crnn")
class TraceNormalization(layers.Layer):
    """Divide each trace by its RMS over channels and samples (scale invariance)."""

    def __init__(self, epsilon: float = 1e-30, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        rms = ops.sqrt(ops.mean(ops.square(x), axis=(1, 2), keepdims=True))
        return x / ops.maximum(rms, self.epsilon)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "epsilon": self.epsilon}


@dataclass(frozen=True)
class ModelSettings:
    """Architecture of a sequence-to-one classifier (one entry of the config's ``models``)."""

    cell: str = "gru"
    units: int = 64
    recurrent_layers: int = 1
    bidirectional: bool = False
    #: filters of the convolutional front end; 0 disables it
    conv_filters: int = 32
    conv_kernel_size: int = 15
    conv_strides: int = 8
    dropout: float = 0.1
    readout: str = "max"


def build_classifier(input_shape: tuple[int, int], settings: ModelSettings, name: str | None = None) -> keras.Model:
    """Build the classifier for traces of shape ``input_shape`` = (channels, samples)."""
    if settings.cell not in CELLS:
        msg = f"model cell must be one of {CELLS}, got {settings.cell!r}"
        raise ValueError(msg)
    if settings.readout not in READOUTS:
        msg = f"model readout must be one of {READOUTS}, got {settings.readout!r}"
        raise ValueError(msg)
    inputs = keras.Input(shape=tuple(input_shape), name="traces")
    x = TraceNormalization(name="normalise")(inputs)
    x = layers.Permute((2, 1), name="time_major")(x)
    if settings.conv_filters > 0:
        x = layers.Conv1D(
            settings.conv_filters, settings.conv_kernel_size, padding="same",
            activation="relu", name="conv_1",
        )(x)
        x = layers.Conv1D(
            settings.conv_filters, settings.conv_kernel_size, strides=settings.conv_strides,
            padding="same", activation="relu", name="conv_2",
        )(x)
    rnn_cls = layers.GRU if settings.cell == "gru" else layers.LSTM
    for i in range(settings.recurrent_layers):
        last = i == settings.recurrent_layers - 1
        seq = not (last and settings.readout == "last")
        rnn = rnn_cls(settings.units, return_sequences=seq, name=f"{settings.cell}_{i + 1}")
        if settings.bidirectional:
            rnn = layers.Bidirectional(rnn, name=f"bi_{settings.cell}_{i + 1}")
        x = rnn(x)
    if settings.readout == "max":
        x = layers.GlobalMaxPooling1D(name="max_over_time")(x)
    elif settings.readout == "mean":
        x = layers.GlobalAveragePooling1D(name="mean_over_time")(x)
    if settings.dropout > 0:
        x = layers.Dropout(settings.dropout, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", dtype="float32", name="score")(x)
    return keras.Model(inputs, outputs, name=name or f"crnn_{settings.cell}")
