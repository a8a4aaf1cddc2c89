"""Architecture settings of the classifiers (one entry of the config's ``models``), without Keras.

:mod:`crnn.models` builds the networks from them and re-exports every name here; the settings
live apart so that ``crnn train`` checks them, and its inputs, before it imports TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from crnn.errors import CrnnError
from crnn.settings import from_mapping, validate


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
    #: feed the network each trace's spectrally whitened copy beside the trace itself
    #: (SpectralWhitening): the noise colour of any detector flattened
    whiten: bool = True
    #: limit the whitened copy to the training data's pass band (raised-cosine edges)
    whiten_band: bool = False
    #: bins more than this below the channel's mean smoothed power are not raised above it, in dB
    whiten_floor_db: float = 20.0
    #: how each trace's scale is measured before the network sees it: ``rms`` (the whole trace's
    #: RMS) or ``robust`` (the median of the RMS of 8 segments per channel, which a short pulse or a
    #: transient of human-made interference does not raise)
    normalise: str = "robust"
    #: how the whitening estimates each trace's power spectrum: ``periodogram`` (the whole trace's,
    #: smoothed over 9 bins) or ``median`` (the median over Hann-windowed segments of
    #: ``whiten_segment_samples``, half overlapping, which a transient occupying a few segments does not raise)
    whiten_estimate: str = "median"
    #: samples per segment of the ``median`` spectrum estimate (half overlapping): longer segments
    #: resolve CW lines finely, shorter ones keep a long transient out of more of them
    whiten_segment_samples: int = 128

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
            msg = (
                f"model units {list(self.units)} give {len(self.units)} recurrent layers, but "
                f"recurrent_layers is {self.recurrent_layers}; leave it out or make them agree"
            )
            raise CrnnError(msg)


#: settings that model cards written before the setting existed lack, with the behaviour those
#: models have (their architecture, not today's default)
CARD_LEGACY_SETTINGS: dict[str, Any] = {
    "whiten": False,
    "whiten_band": False,
    "whiten_floor_db": 20.0,
    "normalise": "rms",
    "whiten_estimate": "periodogram",
    "whiten_segment_samples": 64,
}


def settings_from_card(card_model: dict[str, Any], what: str) -> ModelSettings:
    """The ModelSettings recorded in a model card (``card["model"]``), older cards included."""
    return from_mapping(ModelSettings, {**CARD_LEGACY_SETTINGS, **card_model}, what)
