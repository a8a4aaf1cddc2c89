"""A trained crnn model with its card: load safely, adapt inputs, score traces.

>>> from crnn import load_classifier
>>> clf = load_classifier("results/models/gru/model.keras")
>>> scores = clf.predict(traces, sampling_rate_hz=180e6)   # traces: (N, C, T) or (N, T)
>>> clf.card["working_point"]      # clf.threshold: its threshold (calibrated after crnn calibrate)
>>> clf.calibration                # the card's calibration block, or None

What :meth:`Classifier.predict` does with traces that differ from the training data:

* another sampling rate: FFT resampling to the model's rate, with the card's band-pass applied
  before decimation (:mod:`crnn.resample`), and a note in the log (``resample=False`` refuses);
  refused unless ``force_resample`` when the rates differ by more than a factor
  :data:`MAX_RESAMPLE_FACTOR` or the input's Nyquist frequency lies below the card's upper band
  edge (the model's band is then not in the data);
* longer traces: sliding windows of the model's length with ``overlap`` (default 0.5, the last
  window aligned with the end of the trace); the score is the maximum over windows and
  :meth:`Classifier.score` also returns the start time of that window;
* another gain or unit among the known ones (V, mV, uV, nV, V/m, mV/m, uV/m, ADC): nothing to do,
  the model divides each window by its RMS, so scores do not depend on it;
* shorter traces, another channel count or an unknown unit: a :class:`crnn.errors.CrnnError`
  that says what the model expects and what was given (``pad=True`` zero-pads short traces at
  their end instead, e.g. for CoREAS pulses of a few hundred ns).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crnn.errors import CrnnError
from crnn.modelcard import card_path, file_sha256, read_card, resolve_model_path
from crnn.tracefile import KNOWN_UNITS

log = logging.getLogger(__name__)
VOLTAGE_UNITS = ("V", "mV", "uV", "nV", "ADC")
#: largest factor between an input's sampling rate and the model's that is resampled unasked
MAX_RESAMPLE_FACTOR = 8.0


def add_model_flags(p: Any, *, resample: bool = True, scope: str = "") -> None:
    """Add ``--force-resample`` (with ``resample``) and ``--trust-model`` to a command that loads a
    model; ``scope`` (e.g. ``"--model: "``) says which option they apply to."""
    if resample:
        p.add_argument(
            "--force-resample",
            action="store_true",
            help=f"{scope}resample inputs whose rate differs from the model's by more than a factor "
            f"{MAX_RESAMPLE_FACTOR:g}, or whose Nyquist frequency lies below the model's upper band edge",
        )
    p.add_argument(
        "--trust-model",
        action="store_true",
        help=f"{scope}load a model that is not checked: a card without model_sha256, or a model that "
        "carries arbitrary code (Lambda layers); only for files you trust",
    )


FIELD_UNITS = ("V/m", "mV/m", "uV/m")
#: the engines that score a model, each with the suffix of the model file it runs
ENGINES = {"keras": ".keras", "onnxruntime": ".onnx"}


class Classifier:
    """A loaded model plus its card. Use :func:`load_classifier` to make one."""

    def __init__(self, model: Any, card: dict[str, Any], path: Path) -> None:
        #: how the traces of the last score() call were fitted to the model
        self.last_plan: WindowPlan | None = None
        self.model = model
        self.card = card
        self.path = path
        self._fn = None
        #: batches scored side by side (see :func:`configure_parallel_inference`)
        self.streams = 1

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
        """Threshold of the card's working point: the calibrated one after ``crnn calibrate``."""
        return float(self.card["working_point"]["threshold"])

    @property
    def calibration(self) -> dict[str, Any] | None:
        """The card's ``calibration`` block (written by ``crnn calibrate``), or None."""
        return self.card.get("calibration")

    @property
    def training_threshold(self) -> float:
        """Threshold chosen on the training run's validation background (also after calibration)."""
        return float(self.card.get("training_working_point", self.card["working_point"])["threshold"])

    def working_point_text(self) -> str:
        wp = self.card["working_point"]
        return (
            f"threshold {float(wp['threshold']):.4g} (FPR {fpr_text(float(wp['target_fpr']))} working point "
            f"of the card, chosen on {wp.get('chosen_on', 'validation background')})"
        )

    def calibration_status(
        self,
        path: str | os.PathLike[str] | None,
        shape: tuple[int, ...],
        sampling_rate_hz: float,
        unit: str | None,
        band_hz: Any = None,
    ) -> str:
        """Whether the working point was calibrated for data like this input, in words.

        "calibrated on this file" when ``path`` is one of the calibration files (same SHA-256);
        "calibrated on <file> (N traces)" when the input has the calibration's rate, channels,
        length and unit (and band, when both the input and the calibration record one); otherwise
        "not calibrated for this data: ...".
        """
        cal = self.calibration
        if not cal:
            return (
                "not calibrated for this data: the working point comes from the training validation split; "
                "run crnn calibrate on noise of this detector"
            )
        if path is not None and Path(path).is_file():
            size = Path(path).stat().st_size
            sha = None
            for f in cal.get("files", []):
                if f.get("size_bytes", size) == size:
                    sha = sha or file_sha256(path)
                    if sha == f.get("sha256"):
                        return "calibrated on this file"
        c, t = (1, shape[-1]) if len(shape) == 2 else (shape[1], shape[2])
        names = ", ".join(Path(f["path"]).name for f in cal.get("files", []))
        band = [float(b) for b in np.ravel(band_hz)] if band_hz is not None else None
        cal_band = cal.get("band_hz")
        same_band = (
            band is None or cal_band is None or (len(band) == 2 and np.allclose(band, cal_band, rtol=1e-6, atol=0))
        )
        if (
            np.isclose(sampling_rate_hz, cal["sampling_rate_hz"], rtol=1e-6, atol=0)
            and c == cal["n_channels"]
            and t == cal["n_samples"]
            and (unit is None or unit == cal.get("unit"))
            and same_band
        ):
            return f"calibrated on {names} ({cal['n_traces']} traces)"
        bands = f", band {cal_band}" if cal_band is not None and band is not None else ""
        this_band = f", band {band}" if bands else ""
        return (
            f"not calibrated for this data: the working point comes from {names} "
            f"({cal['sampling_rate_hz']:g} Hz, {cal['n_channels']} x {cal['n_samples']}, "
            f"{cal.get('unit')}{bands}), "
            f"this input is {sampling_rate_hz:g} Hz, {c} x {t}, {unit}{this_band}; "
            f"run crnn calibrate on noise of this detector"
        )

    def input_mismatches(self, sampling_rate_hz: float, unit: str | None, band_hz: Any = None) -> list[str]:
        """One sentence for each of band, sampling rate and unit in which the input differs from the card."""
        notes = []
        card_band = self.card.get("band_hz")
        if band_hz is not None and card_band is not None:
            band = [float(b) for b in np.ravel(band_hz)]
            if len(band) != 2 or not np.allclose(band, card_band, rtol=1e-6, atol=0):
                notes.append(f"band_hz {band} differs from the model's {list(card_band)} (training data)")
        if not np.isclose(sampling_rate_hz, self.sampling_rate_hz, rtol=1e-6, atol=0):
            notes.append(
                f"sampling rate {sampling_rate_hz:g} Hz differs from the model's "
                f"{self.sampling_rate_hz:g} Hz: resampled to {self.sampling_rate_hz:g} Hz (band {card_band})"
            )
        trained = self.card.get("unit_trained", "V")
        if unit is not None and unit != trained:
            extra = (
                ": the antenna response is not applied"
                if (unit in FIELD_UNITS) != (trained in FIELD_UNITS)
                else " (scores do not depend on the scale)"
            )
            notes.append(f"unit {unit} differs from the model's training unit {trained}{extra}")
        return notes

    def threshold_at(self, target_fpr: float) -> float:
        """Threshold of the working point with this target FPR (chosen on validation, in the card)."""
        points = self.card.get("working_points") or [self.card["working_point"]]
        for wp in points:
            if np.isclose(wp["target_fpr"], target_fpr, rtol=1e-6):
                return float(wp["threshold"])
        known = [wp["target_fpr"] for wp in points]
        msg = (
            f"model {self.path.name}: no working point at FPR {target_fpr:g} in its card; available: {known} "
            f"(or give a threshold)"
        )
        raise CrnnError(msg)

    def _expects(self) -> str:
        return (
            f"(N, {self.n_channels}, >= {self.n_samples}) traces at {self.sampling_rate_hz:g} Hz "
            f"or any rate that resamples to >= {self.n_samples} samples"
        )

    def check_unit(self, unit: str | None, where: str = "input", *, warn: bool = True) -> None:
        if unit is None:
            return
        if unit not in KNOWN_UNITS:
            msg = (
                f"{where}: unknown unit {unit!r}; model {self.path.name} was trained on "
                f"{self.card.get('unit_trained', 'V')!r} traces and accepts any of {list(KNOWN_UNITS)} "
                f"(scores do not depend on the scale)"
            )
            raise CrnnError(msg)
        trained = self.card.get("unit_trained", "V")
        if warn and (unit in FIELD_UNITS) != (trained in FIELD_UNITS):
            log.warning(
                "%s: unit %s while model %s was trained on %s: the antenna response is not applied",
                where,
                unit,
                self.path.name,
                trained,
            )

    def check_input(
        self,
        shape: tuple[int, ...],
        sampling_rate_hz: float,
        where: str = "input",
        *,
        resample: bool = True,
        pad: bool = False,
        force_resample: bool = False,
    ) -> None:
        """Refuse traces that cannot be adapted to the model, saying what it expects."""
        c, t = (1, shape[-1]) if len(shape) == 2 else shape[1:3]
        same_rate = np.isclose(sampling_rate_hz, self.sampling_rate_hz, rtol=1e-6, atol=0)
        if not same_rate and not resample:
            msg = (
                f"{where}: sampling_rate_hz = {sampling_rate_hz:g} Hz, but model {self.path.name} was trained "
                f"on {self.sampling_rate_hz:g} Hz traces; resample the input (crnn ingest --resample-hz) "
                f"or allow resampling"
            )
            raise CrnnError(msg)
        if not same_rate and not force_resample:
            self._check_resample_bounds(sampling_rate_hz, where)
        if c != self.n_channels:
            msg = (
                f"{where}: traces have {c} channel(s), but model {self.path.name} expects {self.n_channels} "
                f"(input shape (N, {self.n_channels}, {self.n_samples})); select channels (crnn predict --channels, "
                f"crnn ingest --channels)"
            )
            raise CrnnError(msg)
        t_model = t if same_rate else (t * self.sampling_rate_hz) // sampling_rate_hz
        if t_model < self.n_samples and not pad:
            rate = "" if same_rate else f" ({int(t_model)} after resampling to {self.sampling_rate_hz:g} Hz)"
            msg = (
                f"{where}: traces have {t} samples{rate}, but model {self.path.name} expects at least "
                f"{self.n_samples} (input shape (N, {self.n_channels}, {self.n_samples})); "
                f"zero-pad them if they hold a whole pulse (crnn predict --pad, crnn ingest --n-samples)"
            )
            raise CrnnError(msg)

    def _check_resample_bounds(self, sampling_rate_hz: float, where: str) -> None:
        """Refuse a rate whose resampling would make up the model's band or most of its samples."""
        band = self.card.get("band_hz")
        nyquist = sampling_rate_hz / 2
        hint = (
            f"resample it with crnn ingest --resample-hz {self.sampling_rate_hz:g} if that is right, "
            f"or pass --force-resample"
        )
        if band is not None and nyquist < band[1]:
            msg = (
                f"{where}: sampling_rate_hz = {sampling_rate_hz:g} Hz: its Nyquist frequency {nyquist:g} Hz lies "
                f"below the upper band edge {band[1]:g} Hz of model {self.path.name}, so part of the band the "
                f"model was trained on is not in the data; {hint}"
            )
            raise CrnnError(msg)
        factor = max(sampling_rate_hz / self.sampling_rate_hz, self.sampling_rate_hz / sampling_rate_hz)
        if factor > MAX_RESAMPLE_FACTOR:
            msg = (
                f"{where}: sampling_rate_hz = {sampling_rate_hz:g} Hz differs from the {self.sampling_rate_hz:g} Hz "
                f"of model {self.path.name} by a factor {factor:.3g}, more than {MAX_RESAMPLE_FACTOR:g}; is the "
                f"rate right? {hint[0].upper()}{hint[1:]}"
            )
            raise CrnnError(msg)

    def adapt(
        self,
        traces: np.ndarray,
        sampling_rate_hz: float,
        *,
        resample: bool = True,
        pad: bool = False,
        where: str = "input",
        force_resample: bool = False,
    ) -> np.ndarray:
        """Resample to the model's rate (band-limited, the card's band) if needed."""
        x = np.asarray(traces)
        if x.ndim == 2:
            x = x[:, None, :]
        if x.ndim != 3:
            msg = f"{where}: traces must have shape (N, C, T) or (N, T); got {x.shape}"
            raise CrnnError(msg)
        self.check_input(x.shape, sampling_rate_hz, where, resample=resample, pad=pad, force_resample=force_resample)
        if not np.isfinite(x).all():
            msg = f"{where}: traces hold NaN or Inf values; expected finite numbers"
            raise CrnnError(msg)
        if not np.isclose(sampling_rate_hz, self.sampling_rate_hz, rtol=1e-6, atol=0):
            from crnn.resample import resample as fft_resample

            band = self.card.get("band_hz")
            band = tuple(band) if band and band[1] < min(sampling_rate_hz, self.sampling_rate_hz) / 2 else None
            x = fft_resample(x, sampling_rate_hz, self.sampling_rate_hz, band_hz=band)
        if pad and x.shape[-1] < self.n_samples:
            from crnn.resample import fit_length

            x = fit_length(x, self.n_samples)
        return x.astype(np.float32, copy=False)

    def _score_windows(self, windows: np.ndarray, batch_size: int) -> np.ndarray:
        if len(windows) == 0:
            return np.zeros(0, dtype=np.float32)
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            if self._fn is None:
                spec = tf.TensorSpec((None, self.n_channels, self.n_samples), tf.float32)
                self._fn = tf.function(lambda x: self.model(x, training=False), input_signature=[spec])
            fn = self._fn
            if self.streams > 1:  # smaller batches, several at once (one thread each)
                batch_size = min(batch_size, PARALLEL_BATCH)
            batches = [windows[i : i + batch_size] for i in range(0, len(windows), batch_size)]
            if self.streams > 1 and len(batches) > 1:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(self.streams) as pool:
                    out = list(pool.map(lambda b: fn(tf.constant(b)).numpy(), batches))
            else:
                out = [fn(tf.constant(b)).numpy() for b in batches]
            return np.concatenate(out).reshape(-1).astype(np.float32)
        return np.asarray(self.model.predict(windows, batch_size=batch_size, verbose=0), dtype=np.float32).reshape(-1)

    def score(
        self,
        traces: np.ndarray,
        *,
        sampling_rate_hz: float,
        unit: str | None = None,
        overlap: float = 0.5,
        resample: bool = True,
        pad: bool = False,
        batch_size: int = 4096,
        where: str = "input",
        force_resample: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores (max over windows) and the start time in s of the best window, per trace."""
        if not 0 <= overlap < 1:
            msg = f"overlap must be in [0, 1), got {overlap}"
            raise CrnnError(msg)
        self.check_unit(unit, where)
        x = self.adapt(traces, sampling_rate_hz, resample=resample, pad=pad, where=where, force_resample=force_resample)
        t_in = t_resampled = int(np.shape(traces)[-1])
        if not np.isclose(sampling_rate_hz, self.sampling_rate_hz, rtol=1e-6, atol=0):
            from crnn.resample import rate_ratio

            ratio = rate_ratio(sampling_rate_hz, self.sampling_rate_hz)  # as in adapt: n * q // p samples
            t_resampled = (t_in * ratio.numerator) // ratio.denominator
        n, c, t = x.shape
        w = self.n_samples
        if t == w:
            self.last_plan = WindowPlan(t_in, t_resampled, t, 1, w)
            return self._score_windows(x, batch_size), np.zeros(n, dtype=np.float32)
        hop = max(1, round(w * (1 - overlap)))
        starts = list(range(0, t - w + 1, hop))
        if starts[-1] != t - w:
            starts.append(t - w)  # the last window ends with the trace
        self.last_plan = WindowPlan(t_in, t_resampled, t, len(starts), w)
        windows = np.stack([x[:, :, s : s + w] for s in starts], axis=1).reshape(n * len(starts), c, w)
        s = self._score_windows(windows, batch_size).reshape(n, len(starts))
        best = np.argmax(s, axis=1)
        return s[np.arange(n), best], (np.asarray(starts)[best] / self.sampling_rate_hz).astype(np.float32)

    def predict(
        self,
        traces: np.ndarray,
        *,
        sampling_rate_hz: float,
        unit: str | None = None,
        overlap: float = 0.5,
        resample: bool = True,
        pad: bool = False,
        batch_size: int = 4096,
        force_resample: bool = False,
    ) -> np.ndarray:
        """Probability that an air-shower pulse is present, one float32 per trace."""
        return self.score(
            traces,
            sampling_rate_hz=sampling_rate_hz,
            unit=unit,
            overlap=overlap,
            resample=resample,
            pad=pad,
            batch_size=batch_size,
            force_resample=force_resample,
        )[0]

    def decide(self, scores: np.ndarray, threshold: float | None = None) -> np.ndarray:
        thr = self.threshold if threshold is None else threshold
        return (np.asarray(scores) > thr).astype(np.int8)


def fpr_text(fpr: float) -> str:
    """A false-positive rate as people write it: ``1e-3``, ``5e-4``, ``0.01`` (``1e-2``), ``0.5``."""
    if fpr <= 0 or fpr >= 0.1:
        return f"{fpr:g}"
    mantissa, exponent = f"{fpr:.3g}".split("e") if "e" in f"{fpr:.3g}" else f"{fpr:.2e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


#: batch size of each stream when batches are scored side by side
PARALLEL_BATCH = 1024


@dataclass(frozen=True)
class WindowPlan:
    """How the traces of one :meth:`Classifier.score` call were fitted to the model, in samples."""

    #: samples per trace in the input
    n_samples_in: int
    #: after resampling to the model's rate (= ``n_samples_in`` at the model's rate)
    n_samples_resampled: int
    #: after zero-padding (= ``n_samples_resampled`` without padding)
    n_samples_scored: int
    #: windows scored per trace (the score is their maximum)
    n_windows: int
    #: samples per window (the model's input length)
    window_samples: int

    def text(self, sampling_rate_hz: float, model_rate_hz: float) -> str:
        """In words: resampling, padding and windows, e.g. ``"resampled 4082 -> 73 samples (1e+10 -> 1.8e+08 Hz),
        zero-padded to 500 samples, 1 window of 500 samples per trace"``."""
        parts = []
        if self.n_samples_resampled != self.n_samples_in or not np.isclose(sampling_rate_hz, model_rate_hz, rtol=1e-6):
            parts.append(
                f"resampled {self.n_samples_in} -> {self.n_samples_resampled} samples "
                f"({sampling_rate_hz:g} -> {model_rate_hz:g} Hz)"
            )
        if self.n_samples_scored != self.n_samples_resampled:
            parts.append(f"zero-padded from {self.n_samples_resampled} to {self.n_samples_scored} samples")
        else:
            parts.append("no padding")
        s = "" if self.n_windows == 1 else "s"
        parts.append(f"{self.n_windows} window{s} of {self.window_samples} samples per trace")
        return ", ".join(parts)


def configure_parallel_inference(streams: int = 0) -> int:
    """Score several batches side by side on the CPU, each on its share of the cores.

    On a CPU the recurrent layer steps through small matrix products that one core keeps busy:
    two batches of 1,024 traces side by side, one thread each, score the default GRU about 1.35x
    faster than one batch on two threads (docs/benchmarks.md, "Inference"). TensorFlow fixes its
    thread pools when it runs its first operation, so this must be called before anything else in
    the process uses TensorFlow (``crnn predict`` does); it changes the process's TensorFlow thread
    settings. ``streams`` = 0 picks one per core, at most 8. Returns the number of streams in effect:
    1 when TensorFlow had started already, for other backends, or on one core. Pass it on with
    ``load_classifier(path, streams=...)``.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    if keras.backend.backend() != "tensorflow":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    streams = streams if streams > 0 else min(cores, 8)
    if streams <= 1:
        return 1
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(max(1, cores // streams))
        tf.config.threading.set_inter_op_parallelism_threads(streams)
    except RuntimeError:  # TensorFlow is running already: keep its thread pools
        log.debug("TensorFlow has started already: scoring one batch at a time")
        return 1
    return streams


def _verified_card(
    path: str | os.PathLike[str], trust_model: bool, suffix: str = ".keras"
) -> tuple[Path, dict[str, Any]]:
    """The model's path and its card, checked to be whole and to match the model file (no Keras)."""
    model_path = resolve_model_path(path, suffix)
    card = read_card(model_path)
    expected = card.get("model_sha256")
    if expected is None and not trust_model:
        msg = (
            f"{card_path(model_path)}: the card lacks model_sha256, so nothing shows that {model_path.name} is "
            f"the model it describes; pass --trust-model only for files you trust"
        )
        raise CrnnError(msg)
    if expected is not None and file_sha256(model_path) != expected:
        msg = (
            f"{model_path}: the model file does not match its card (SHA-256 differs from model_sha256 in "
            f"{card_path(model_path).name}); refusing a model whose weights were replaced"
        )
        raise CrnnError(msg)
    return model_path, card


def card_classifier(path: str | os.PathLike[str], *, trust_model: bool = False, engine: str = "keras") -> Classifier:
    """A :class:`Classifier` of the card alone, without its network (Keras is not imported).

    It checks inputs (:meth:`Classifier.check_input`, :meth:`Classifier.check_unit`) and working
    points as the loaded one does, so commands refuse bad inputs before they import TensorFlow;
    it cannot score.
    """
    model_path, card = _verified_card(path, trust_model, ENGINES[engine])
    return Classifier(None, card, model_path)


def load_classifier(
    path: str | os.PathLike[str], *, safe_mode: bool = True, streams: int = 1, trust_model: bool = False
) -> Classifier:
    """Load a ``.keras`` model (or the one in a folder) with its card, in Keras' safe mode.

    The card must be beside the model, whole (:func:`crnn.modelcard.check_card`), and record the
    model file's SHA-256 (``model_sha256``), which must match: a model whose weights were replaced
    is refused. ``trust_model`` (the commands' ``--trust-model``) loads a file that is trusted
    without these guarantees: a card without ``model_sha256``, a model that carries arbitrary code
    (Keras safe mode off; ``safe_mode=False`` alone trusts it too). ``streams`` > 1 scores that
    many batches side by side (TensorFlow backend; see :func:`configure_parallel_inference`).
    """
    trust_model = trust_model or not safe_mode
    safe_mode = not trust_model
    model_path, card = _verified_card(path, trust_model)
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
    shape = list(model.input_shape[1:])
    if shape != list(card["input_shape"]):
        msg = f"{model_path}: the model takes input {shape}, but its card says {card['input_shape']}"
        raise CrnnError(msg)
    clf = Classifier(model, card, model_path)
    clf.streams = max(1, int(streams))
    return clf


class OnnxClassifier(Classifier):
    """A model exported by ``crnn export`` (``model.onnx`` with its card), scored by ONNX Runtime.

    It adapts and windows traces as :class:`Classifier` does; only the network runs elsewhere.
    Neither Keras nor TensorFlow is imported.
    """

    def _score_windows(self, windows: np.ndarray, batch_size: int) -> np.ndarray:
        if len(windows) == 0:
            return np.zeros(0, dtype=np.float32)
        name = self.model.get_inputs()[0].name
        out = [self.model.run(None, {name: windows[i : i + batch_size]})[0] for i in range(0, len(windows), batch_size)]
        return np.concatenate(out).reshape(-1).astype(np.float32)


def onnx_session(path: str | os.PathLike[str], threads: int = 0) -> Any:
    """An ONNX Runtime CPU session of ``path``; ``threads`` 0 uses every core this process may run on."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        msg = f"{path}: scoring an exported model needs the Python package onnxruntime ({exc}); pip install 'crnn[export]'"
        raise CrnnError(msg) from exc
    options = ort.SessionOptions()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    options.intra_op_num_threads = threads or cores
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for a file it cannot read
        msg = f"{path}: not a readable ONNX model ({str(exc).splitlines()[0][:300]})"
        raise CrnnError(msg) from exc


def load_onnx_classifier(
    path: str | os.PathLike[str], *, trust_model: bool = False, threads: int = 0
) -> OnnxClassifier:
    """Load an exported model (``model.onnx``, or the export's folder) with its card, for ONNX Runtime.

    The card (written by ``crnn export``) must be beside it and record the ONNX file's SHA-256
    (``model_sha256``), as for :func:`load_classifier`; the session's input must take the card's shape.
    """
    model_path, card = _verified_card(path, trust_model, ENGINES["onnxruntime"])
    session = onnx_session(model_path, threads)
    shape = list(session.get_inputs()[0].shape[1:])
    if shape != list(card["input_shape"]):
        msg = f"{model_path}: the ONNX model takes input {shape}, but its card says {card['input_shape']}"
        raise CrnnError(msg)
    return OnnxClassifier(session, card, model_path)
