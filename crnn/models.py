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

from typing import Any

import keras
import numpy as np
from keras import layers, ops

from crnn.errors import CrnnError

# the settings live in a module without Keras (crnn train checks them before importing it)
from crnn.model_settings import CARD_LEGACY_SETTINGS, ModelSettings, settings_from_card  # noqa: F401

#: segments per channel of the robust scale estimate (``normalise: robust``)
ROBUST_SEGMENTS = 8


@keras.saving.register_keras_serializable(package="crnn")
class TraceNormalization(layers.Layer):
    """Divide each trace by its scale (scale invariance: V, uV or ADC counts give the same score).

    ``method="rms"``: the RMS over channels and samples. ``method="robust"``: the square root of the
    median, over channels and ``ROBUST_SEGMENTS`` segments per channel, of each segment's mean
    square: a pulse or a transient that fills fewer than half the segments leaves it at the noise
    level, so a strong transient elsewhere in the trace does not shrink the pulse.
    """

    def __init__(self, epsilon: float = 1e-30, method: str = "rms", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if method not in ("rms", "robust"):
            raise CrnnError(f"trace normalisation: method must be rms or robust, got {method!r}")
        self.epsilon = epsilon
        self.method = method

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        if self.method == "rms":
            scale = ops.sqrt(ops.mean(ops.square(x), axis=(1, 2), keepdims=True))
        else:
            n_samples = x.shape[-1]
            n_seg = min(ROBUST_SEGMENTS, n_samples)
            length = n_samples // n_seg
            seg = ops.reshape(x[..., : n_seg * length], (-1, x.shape[1] * n_seg, length))
            mean_square = ops.mean(ops.square(seg), axis=-1)
            scale = ops.sqrt(ops.median(mean_square, axis=-1))[:, None, None]
        return x / ops.maximum(scale, self.epsilon)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "epsilon": self.epsilon, "method": self.method}


@keras.saving.register_keras_serializable(package="crnn")
class SpectralWhitening(layers.Layer):
    """Whiten each channel of each trace by its own smoothed power spectrum.

    The trace's spectrum is divided by the square root of its power spectrum averaged over
    ``smooth_bins`` neighbouring frequency bins, so that the background's colour (band edges,
    antenna resonances, the sky against receiver noise, CW lines) is flattened, whatever the
    detector: the step of a whitened matched filter, without knowing the detector in advance. A
    short pulse carries a small part of a trace's power in any bin and keeps its phase. Bins more
    than ``floor_db`` below the channel's mean smoothed power (outside the pass band) are not
    raised above that floor, so out-of-band residue is not amplified to in-band level.
    """

    def __init__(
        self,
        smooth_bins: int = 9,
        floor_db: float = 20.0,
        band: tuple[float, float] | None = None,
        edge_width: float = 0.02,
        estimate: str = "periodogram",
        segment_samples: int = 64,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if smooth_bins < 1 or smooth_bins % 2 == 0:
            raise CrnnError(f"spectral whitening: smooth_bins must be an odd number >= 1, got {smooth_bins}")
        if band is not None and not 0.0 <= band[0] < band[1] <= 0.5:
            raise CrnnError(f"spectral whitening: band must lie in [0, 0.5] of the sampling rate, got {band}")
        self.smooth_bins = smooth_bins
        self.floor_db = floor_db
        self.band = None if band is None else (float(band[0]), float(band[1]))
        self.edge_width = edge_width
        if estimate not in ("periodogram", "median"):
            raise CrnnError(f"spectral whitening: estimate must be periodogram or median, got {estimate!r}")
        self.estimate = estimate
        self.segment_samples = int(segment_samples)

    def _median_power(self, x, n_samples: int):
        """Median over half-overlapping Hann segments of their power spectra, interpolated to the
        bins of the whole trace's rfft (shape of ``x`` with the last axis n_samples // 2 + 1)."""
        length = min(self.segment_samples, n_samples)
        step = max(length // 2, 1)
        starts = np.arange(0, n_samples - length + 1, step)
        index = (starts[:, None] + np.arange(length)[None, :]).astype("int32")
        window = np.hanning(length + 2)[1:-1].astype("float32")  # no zero end points
        frames = ops.take(x, ops.convert_to_tensor(index), axis=-1) * ops.convert_to_tensor(window)
        re, im = self._rfft(frames)
        power = ops.median(re * re + im * im, axis=-2)
        seg_freq = np.fft.rfftfreq(length)
        trace_freq = np.fft.rfftfreq(n_samples)
        # linear interpolation from the segments' bins to the trace's, as one matrix
        interp = np.stack([np.interp(trace_freq, seg_freq, np.eye(len(seg_freq))[k]) for k in range(len(seg_freq))])
        return ops.matmul(power, ops.convert_to_tensor(interp.astype("float32")))

    def _band_mask(self, n_samples: int):
        """Weights of the rfft bins: 1 in the band, raised-cosine edges ``edge_width`` wide."""
        if self.band is None:
            return None
        freq = np.fft.rfftfreq(n_samples)  # in units of the sampling rate
        lo, hi = self.band
        half = self.edge_width / 2
        rise = np.clip((freq - (lo - half)) / self.edge_width, 0.0, 1.0)
        fall = np.clip(((hi + half) - freq) / self.edge_width, 0.0, 1.0)
        return (np.sin(0.5 * np.pi * rise) * np.sin(0.5 * np.pi * fall)).astype("float32") ** 2

    def _rfft(self, x):
        """Real and imaginary parts of the real-input DFT along the last axis."""
        return ops.rfft(x)

    def _irfft(self, real, imag, n_samples: int):
        """The inverse of :meth:`_rfft`: ``n_samples`` real samples."""
        return ops.irfft((real, imag), fft_length=n_samples)

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        n_samples = x.shape[-1]
        real, imag = self._rfft(x)
        if self.estimate == "median":
            smooth = self._median_power(x, n_samples)
        else:
            power = real * real + imag * imag
            half = self.smooth_bins // 2
            padded = ops.pad(power, [[0, 0], [0, 0], [half, half]], mode="reflect") if half else power
            cumulative = ops.cumsum(padded, axis=-1)
            cumulative = ops.concatenate([ops.zeros_like(cumulative[..., :1]), cumulative], axis=-1)
            smooth = (cumulative[..., self.smooth_bins :] - cumulative[..., : -self.smooth_bins]) / self.smooth_bins
        floor = ops.mean(smooth, axis=-1, keepdims=True) * (10.0 ** (-self.floor_db / 10.0))
        weight = 1.0 / ops.sqrt(ops.maximum(smooth, ops.maximum(floor, 1e-30)))
        mask = self._band_mask(n_samples)
        if mask is not None:
            weight = weight * ops.convert_to_tensor(mask)
        return self._irfft(real * weight, imag * weight, n_samples)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "smooth_bins": self.smooth_bins,
            "floor_db": self.floor_db,
            "band": None if self.band is None else list(self.band),
            "edge_width": self.edge_width,
            "estimate": self.estimate,
            "segment_samples": self.segment_samples,
        }


class MatrixSpectralWhitening(SpectralWhitening):
    """:class:`SpectralWhitening` with its DFTs as products with constant cosine and sine matrices.

    The same function (float32 rounding apart), built from operations every exchange format has:
    ONNX converters take ``MatMul`` but not TensorFlow's ``RFFT``/``IRFFT`` with a complex result
    (tf2onnx 1.17: "only allows ComplexAbs as consumer"). ``crnn export`` swaps it in for
    :class:`SpectralWhitening` (no weights: the trained model is unchanged); a trace of T samples
    costs 4 T (T/2 + 1) multiply-adds more per channel than the FFT.
    """

    @staticmethod
    def dft_matrices(n_samples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Forward (T, T/2+1) cosine and sine matrices, and inverse (T/2+1, T) ones, float32."""
        t = np.arange(n_samples)
        k = np.arange(n_samples // 2 + 1)
        phase = 2.0 * np.pi * np.outer(t, k) / n_samples
        # the inverse counts each bin between DC and Nyquist twice (its mirror image)
        weight = np.full(len(k), 2.0)
        weight[0] = 1.0
        if n_samples % 2 == 0:
            weight[-1] = 1.0
        inv = weight[:, None] / n_samples
        return tuple(
            a.astype("float32") for a in (np.cos(phase), -np.sin(phase), inv * np.cos(phase).T, -inv * np.sin(phase).T)
        )

    def _rfft(self, x):
        cos, sin, _, _ = self.dft_matrices(x.shape[-1])
        return ops.matmul(x, ops.convert_to_tensor(cos)), ops.matmul(x, ops.convert_to_tensor(sin))

    def _irfft(self, real, imag, n_samples: int):
        _, _, icos, isin = self.dft_matrices(n_samples)
        return ops.matmul(real, ops.convert_to_tensor(icos)) + ops.matmul(imag, ops.convert_to_tensor(isin))


def build_classifier(
    input_shape: tuple[int, int],
    settings: ModelSettings,
    name: str | None = None,
    band_hz: tuple[float, float] | None = None,
    sampling_rate_hz: float | None = None,
) -> keras.Model:
    """Build the classifier for traces of shape ``input_shape`` = (channels, samples).

    ``band_hz`` and ``sampling_rate_hz`` (the training data's) limit the whitened copy to the pass
    band, so that what lies outside it, where detectors differ most, is not part of that input.
    """
    settings.check()
    inputs = keras.Input(shape=tuple(input_shape), name="traces")
    # float32 whatever the dtype policy: squares of traces in volts (1e-10) underflow in float16
    x = TraceNormalization(method=settings.normalise, name="normalise", dtype="float32")(inputs)
    if settings.whiten:
        band = None
        if settings.whiten_band:
            if band_hz is None or not sampling_rate_hz:
                raise CrnnError("model setting whiten_band needs the training data's band_hz and sampling_rate_hz")
            band = (band_hz[0] / sampling_rate_hz, min(band_hz[1] / sampling_rate_hz, 0.5))
        white = SpectralWhitening(
            floor_db=settings.whiten_floor_db,
            band=band,
            estimate=settings.whiten_estimate,
            segment_samples=settings.whiten_segment_samples,
            name="whiten",
            dtype="float32",
        )(x)
        white = TraceNormalization(method=settings.normalise, name="normalise_white", dtype="float32")(white)
        x = layers.Concatenate(axis=1, name="trace_and_white")([x, white])
    x = layers.Permute((2, 1), name="time_major")(x)
    if settings.conv_filters > 0:
        x = layers.Conv1D(
            settings.conv_filters,
            settings.conv_kernel_size,
            padding="same",
            activation="relu",
            name="conv_1",
        )(x)
        x = layers.Conv1D(
            settings.conv_filters,
            settings.conv_kernel_size,
            strides=settings.conv_strides,
            padding="same",
            activation="relu",
            name="conv_2",
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
    if settings.readout == "max_logit":
        # a score per time step, the trace's score its largest: a pulse anywhere decides, whatever
        # else (a transient, a CW line) the trace holds elsewhere
        if settings.dropout > 0:
            x = layers.Dropout(settings.dropout, name="dropout")(x)
        x = layers.Dense(1, dtype="float32", name="logit_per_step")(x)
        x = layers.GlobalMaxPooling1D(name="max_over_time", dtype="float32")(x)
        outputs = layers.Activation("sigmoid", dtype="float32", name="score")(x)
        return keras.Model(inputs, outputs, name=name or f"crnn_{settings.cell}")
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
