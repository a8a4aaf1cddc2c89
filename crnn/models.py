"""Model builders: small functions that return functional ``keras.Model`` classifiers.

Every model takes canonical traces of shape (C, T), normalises each trace by its own RMS (so
the score does not depend on the gain or the unit of the input: V, uV or ADC counts), moves to
time-major (T, C), optionally shortens the sequence with a strided convolutional front end,
runs one or more recurrent layers and reads out a single sigmoid score: the probability that an
air-shower pulse is present.

The read-out matters: a pulse of a few samples in 500 is a needle, and a network read out from
its last recurrent state learns it slowly; pooling the recurrent outputs over time (``max``, the
default) learns it in an epoch. ``flatten`` feeds the whole output sequence to the dense layer, as
the textbook exercise's BiLSTM does (Erdmann et al., Exercise 9.2; see docs/textbook.md):
``ModelSettings(cell="lstm", units=(32, 64, 10), bidirectional=True, conv_filters=0,
dropout=0.3, readout="flatten")`` is that model, 95,873 parameters for (1, 500) traces.

RNN layers keep the settings that allow the fused cuDNN kernels (tanh/sigmoid activations, no
recurrent dropout, ``unroll=False``, ``use_bias=True``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import keras
from keras import layers, ops

from crnn.errors import CrnnError
from crnn.settings import validate


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

    #: the node of the config schema that holds the rules on these settings
    SCHEMA: ClassVar[str] = "models.*"

    cell: str = "gru"
    #: units of every recurrent layer, or a list with the units of each layer (then the list sets
    #: the number of layers)
    units: int | tuple[int, ...] = 64
    #: number of stacked recurrent layers (with a list of units: its length, or left at 1)
    recurrent_layers: int = 1
    bidirectional: bool = False
    #: filters of the convolutional front end; 0 disables it
    conv_filters: int = 32
    conv_kernel_size: int = 15
    conv_strides: int = 8
    dropout: float = 0.1
    readout: str = "max"

    @property
    def layer_units(self) -> tuple[int, ...]:
        """Units of each recurrent layer, first to last."""
        if isinstance(self.units, int):
            return (self.units,) * self.recurrent_layers
        return tuple(self.units)

    def check(self) -> None:
        """Raise CrnnError for settings that cannot make a model: the schema's rules on each value,
        then that a list of units and recurrent_layers agree."""
        if not isinstance(self.units, int) and not self.units:
            raise CrnnError("model units: a list of units needs at least one entry")
        validate(self, "model settings")
        if not isinstance(self.units, int) and self.recurrent_layers not in (1, len(self.units)):
            msg = (f"model units {list(self.units)} give {len(self.units)} recurrent layers, but "
                   f"recurrent_layers is {self.recurrent_layers}; leave it out or make them agree")
            raise CrnnError(msg)


def build_classifier(input_shape: tuple[int, int], settings: ModelSettings, name: str | None = None) -> keras.Model:
    """Build the classifier for traces of shape ``input_shape`` = (channels, samples)."""
    settings.check()
    inputs = keras.Input(shape=tuple(input_shape), name="traces")
    # float32 whatever the dtype policy: squares of traces in volts (1e-10) underflow in float16
    x = TraceNormalization(name="normalise", dtype="float32")(inputs)
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
    units = settings.layer_units
    for i, n_units in enumerate(units):
        last = i == len(units) - 1
        seq = not (last and settings.readout == "last")
        rnn = rnn_cls(n_units, return_sequences=seq, name=f"{settings.cell}_{i + 1}")
        if settings.bidirectional:
            rnn = layers.Bidirectional(rnn, name=f"bi_{settings.cell}_{i + 1}")
        x = rnn(x)
    if settings.readout == "max":
        x = layers.GlobalMaxPooling1D(name="max_over_time")(x)
    elif settings.readout == "mean":
        x = layers.GlobalAveragePooling1D(name="mean_over_time")(x)
    elif settings.readout == "flatten":
        x = layers.Flatten(name="flatten")(x)
    if settings.dropout > 0:
        x = layers.Dropout(settings.dropout, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", dtype="float32", name="score")(x)
    return keras.Model(inputs, outputs, name=name or f"crnn_{settings.cell}")
