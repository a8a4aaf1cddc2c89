"""Classical trigger statistics computed on the same traces as the networks.

Each baseline turns a trace (C channels x T samples) into one number; a larger number means
"more pulse-like". Thresholds are set later, on the background of the test split, exactly as for
the networks. The four statistics (NuRadioReco's trigger modules and the textbook matched filter,
see ``docs/physics.md``):

``amplitude``
    max |x| over channels and samples / noise RMS (``simpleThreshold``). Pure band-limited noise
    of 500 samples gives about 3.2.
``envelope``
    max Hilbert envelope over channels and samples / noise RMS (``envelopeTrigger``; the usual
    "band-pass, Hilbert envelope, cut on max envelope / sigma" SNR). Pure noise gives 3.54.
``power``
    power integration: the sum of x^2 over channels and a sliding window of ``power_window_s``,
    maximised over time and divided by its noise expectation (window length x channels x noise
    RMS^2), i.e. a power SNR (``powerIntegration``).
``matched_filter``
    whitened matched-filter bank. Templates come from the signal model (:mod:`crnn.pulse`
    through the receiver of :mod:`crnn.noise`) at ``matched_filter_templates`` spectral slopes
    spread over the model's range; the noise power spectrum is estimated per channel from
    noise-only traces (label 0 of another file, e.g. the validation split). For every template the
    whitened complex (analytic) correlation with each channel is formed with FFTs; the unknown
    phase and polarisation are maximised analytically (largest singular value of the 2 x C
    matrix of in-phase and quadrature correlations), then the maximum over time lags and
    templates is taken. The statistic is in units of the noise: for pure Gaussian noise each
    quadrature of one channel, one lag and one template is N(0, 1), and a template of optimal SNR
    rho = sqrt(4 sum |s(f)|^2 / S_n(f) df) placed at a known lag and phase gives a mean rho.
    This is the near-ideal detector for a known pulse shape in stationary Gaussian noise.

The noise RMS of ``amplitude``, ``envelope`` and ``power`` is estimated per trace from the samples
outside a window of ``signal_window_s`` (120 ns, as NuRadioReco's SNR) centred on the maximum, over
all channels, so a strong pulse does not inflate its own noise estimate. Correlations are
circular (the simulated noise and pulses are periodic in the trace length).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from scipy.signal import hilbert

from crnn.errors import CrnnError
from crnn.noise import ReceiverSettings
from crnn.pulse import PulseSettings

log = logging.getLogger(__name__)

BASELINES = ("amplitude", "envelope", "power", "matched_filter")
#: what each baseline's score means (axis labels, captions, the summary page)
SCORE_MEANING = {
    "amplitude": "max |x| / noise RMS",
    "envelope": "max Hilbert envelope / noise RMS",
    "power": "max windowed power / noise power",
    "matched_filter": "matched-filter SNR (noise sigma)",
}
CHUNK = 2048
MIN_NOISE_TRACES = 20


@dataclass(frozen=True)
class BaselineSettings:
    """Settings of the classical triggers (config section ``evaluate.baseline``)."""

    #: the node of the config schema that holds the rules on these settings
    SCHEMA: ClassVar[str] = "evaluate.baseline"

    #: window around the maximum left out of the per-trace noise RMS estimate, in s
    signal_window_s: float = 120e-9
    #: length of the power-integration window in s (30 ns: about the pulse's envelope width)
    power_window_s: float = 30e-9
    #: number of matched-filter templates (spectral slopes spread over the pulse model's range)
    matched_filter_templates: int = 5


@dataclass(frozen=True)
class SignalModel:
    """Receiver and pulse model that make the matched filter's templates (``simulate`` settings)."""

    receiver: ReceiverSettings = field(default_factory=ReceiverSettings)
    pulse: PulseSettings = field(default_factory=PulseSettings)


def _as_ncT(traces: np.ndarray) -> np.ndarray:
    x = np.asarray(traces, dtype=np.float64)
    return x[:, None, :] if x.ndim == 2 else x


def _rms_outside(x: np.ndarray, peak_idx: np.ndarray, half: int) -> np.ndarray:
    """RMS over channels and samples outside ``peak_idx +- half`` (the whole trace if that is empty)."""
    _, c, t = x.shape
    samples = np.arange(t)[None, :]
    outside = np.abs(samples - peak_idx[:, None]) > half  # (n, T)
    empty = ~outside.any(axis=1)
    outside[empty] = True  # trace shorter than the window: use the whole trace
    power = (x**2).sum(axis=1)  # (n, T), summed over channels
    rms = np.sqrt((power * outside).sum(axis=1) / (outside.sum(axis=1) * c))
    return np.where(rms > 0, rms, np.inf)


def _half_window(signal_window_s: float, sampling_rate_hz: float) -> int:
    return max(1, round(signal_window_s * sampling_rate_hz / 2))


def amplitude_snr(traces: np.ndarray, sampling_rate_hz: float, signal_window_s: float = 120e-9) -> np.ndarray:
    """Max |x| over channels and samples / noise RMS, one value per trace."""
    x = _as_ncT(traces)
    a = np.abs(x).max(axis=1)  # (n, T)
    idx = np.argmax(a, axis=1)
    peak = a[np.arange(len(a)), idx]
    return (peak / _rms_outside(x, idx, _half_window(signal_window_s, sampling_rate_hz))).astype(np.float32)


def envelope_snr(traces: np.ndarray, sampling_rate_hz: float, signal_window_s: float = 120e-9) -> np.ndarray:
    """Max Hilbert envelope over channels and samples / noise RMS, one value per trace."""
    x = _as_ncT(traces)
    env_max_t = np.abs(hilbert(x, axis=-1)).max(axis=1)  # (n, T)
    idx = np.argmax(env_max_t, axis=1)
    peak = env_max_t[np.arange(len(x)), idx]
    return (peak / _rms_outside(x, idx, _half_window(signal_window_s, sampling_rate_hz))).astype(np.float32)


def power_snr(
    traces: np.ndarray, sampling_rate_hz: float, window_s: float = 30e-9, signal_window_s: float = 120e-9
) -> np.ndarray:
    """Max over time of sum(x^2) in a sliding window (all channels) / its noise expectation."""
    x = _as_ncT(traces)
    n, c, t = x.shape
    w = min(t, max(1, round(window_s * sampling_rate_hz)))
    p = (x**2).sum(axis=1)  # (n, T)
    cs = np.concatenate([np.zeros((n, 1)), np.cumsum(p, axis=1)], axis=1)
    integral = cs[:, w:] - cs[:, :-w]  # (n, T - w + 1): window starting at sample i
    start = np.argmax(integral, axis=1)
    peak = integral[np.arange(n), start]
    rms = _rms_outside(x, start + w // 2, _half_window(signal_window_s, sampling_rate_hz) + w // 2)
    return (peak / (w * c * rms**2)).astype(np.float32)


def noise_power_spectrum(noise_traces: np.ndarray) -> np.ndarray:
    """Mean periodogram E|X_k|^2 per channel and rfft bin, shape (C, T // 2 + 1), from noise-only traces."""
    x = _as_ncT(noise_traces)
    return noise_power_from_blocks(x[i : i + CHUNK] for i in range(0, x.shape[0], CHUNK))


def noise_power_from_blocks(blocks: Iterable[np.ndarray]) -> np.ndarray:
    """:func:`noise_power_spectrum` of the noise-only traces that ``blocks`` yield one block after
    another (of ``CHUNK`` traces but the last, for the same sums), so they need not fit in memory."""
    acc, n = None, 0
    for block in blocks:
        x = _as_ncT(block)
        power = (np.abs(np.fft.rfft(x, axis=-1)) ** 2).sum(axis=0)
        acc = power if acc is None else acc + power
        n += x.shape[0]
    if n < MIN_NOISE_TRACES:
        msg = (
            f"matched filter: need at least {MIN_NOISE_TRACES} noise-only traces to estimate the noise "
            f"spectrum, got {n}"
        )
        raise CrnnError(msg)
    return acc / n


def template_spectra(
    signal_model: SignalModel, n_samples: int, sampling_rate_hz: float, n_templates: int
) -> np.ndarray:
    """rfft spectra (K, T // 2 + 1) of the pulse model through the receiver, one per spectral slope.

    Phase 0 and arrival time 0: the correlation scans the time lags and the analytic (complex)
    correlation covers every constant phase. The receiver's band, filter order and gain come from
    ``signal_model``; the frequency grid from the traces (``n_samples``, ``sampling_rate_hz``).
    """
    r = signal_model.receiver
    receiver = ReceiverSettings(
        sampling_rate_hz=sampling_rate_hz,
        n_samples=n_samples,
        n_channels=r.n_channels,
        band_hz=r.band_hz,
        filter_order=r.filter_order,
        gain_db=r.gain_db,
        load_resistance_ohm=r.load_resistance_ohm,
    )
    if not 0 < r.band_hz[0] < r.band_hz[1] < sampling_rate_hz / 2:
        msg = (
            f"matched filter: the signal model's band {list(r.band_hz)} Hz does not fit below the traces' "
            f"Nyquist frequency {sampling_rate_hz / 2:g} Hz"
        )
        raise CrnnError(msg)
    if n_templates < 1:
        msg = f"matched filter: matched_filter_templates must be >= 1, got {n_templates}"
        raise CrnnError(msg)
    lo, hi = signal_model.pulse.spectral_slope_log10_per_hz
    slopes = np.linspace(lo, hi, n_templates) if n_templates > 1 else np.array([(lo + hi) / 2])
    f = receiver.frequencies_hz
    h = receiver.response
    spec = 10 ** (slopes[:, None] * f[None, :]) * h[None, :]
    # leave out the bins the receiver blocks (below -60 dB): there the template is numerical noise
    spec[:, np.abs(h) < 1e-3 * np.abs(h).max()] = 0.0
    return spec


class MatchedFilterBank:
    """Whitened matched filters: one template spectrum per row, one noise spectrum per channel.

    ``templates``: (K, F) rfft spectra; ``noise_power``: (C, F) or (F,) mean periodogram of
    noise-only traces (:func:`noise_power_spectrum`); F = T // 2 + 1.
    """

    def __init__(self, templates: np.ndarray, noise_power: np.ndarray, n_samples: int | None = None) -> None:
        s = np.atleast_2d(np.asarray(templates, dtype=np.complex128))
        p = np.atleast_2d(np.asarray(noise_power, dtype=np.float64))
        if s.shape[1] != p.shape[1]:
            msg = f"matched filter: templates have {s.shape[1]} frequency bins, the noise spectrum {p.shape[1]}"
            raise CrnnError(msg)
        self.n_bins = s.shape[1]
        # whiten only where the detector is sensitive: bins whose noise power lies within 30 dB of
        # the channel's 90th percentile (robust to CW lines). Where a detector other than the
        # templates' is deaf (a steeper edge, a table that ends), 1/P would otherwise weight bins
        # that hold no signal by orders of magnitude and blind the filter.
        reference = np.percentile(p, 90, axis=-1, keepdims=True)
        ok = p > 1e-3 * reference
        inv_p = np.where(ok, 1.0 / np.where(ok, p, 1.0), 0.0)  # (C, F)
        inv_p[:, 0] = 0.0  # no DC
        s = s.copy()
        s[:, 0] = 0.0
        # filter per template and channel: conj(S) / P, scaled so that each quadrature of the
        # correlation of pure noise has unit variance: Var Re z = 1/2 sum |S|^2 / P / norm^2
        weight = np.abs(s[:, None, :]) ** 2 * inv_p[None, :, :]  # (K, C, F)
        norm = np.sqrt(0.5 * weight.sum(axis=-1))  # (K, C)
        if np.any(norm <= 0):
            msg = "matched filter: a template has no power where the noise spectrum is known"
            raise CrnnError(msg)
        self.filters = np.conj(s)[:, None, :] * inv_p[None, :, :] / norm[:, :, None]  # (K, C, F)
        #: optimal SNR of each template at unit amplitude (per channel), sqrt(2 sum |S|^2 / P)
        self.unit_rho = np.sqrt(2.0 * weight.sum(axis=-1))
        n_samples = n_samples or 2 * (self.n_bins - 1)
        # sample of each template's envelope maximum at lag 0 (the filter's delay): where to centre
        # the window that is left out of the per-trace noise estimate
        analytic = np.zeros((len(s), n_samples), dtype=np.complex128)
        analytic[:, : self.n_bins] = s
        self.peak_offset = np.argmax(np.abs(np.fft.ifft(analytic, axis=1)), axis=1)
        #: noise RMS over channels implied by the noise spectrum (Parseval)
        w = np.full(self.n_bins, 2.0)
        w[0] = 1.0
        if n_samples % 2 == 0:
            w[-1] = 1.0
        self.noise_rms = float(np.sqrt((p * w).sum(axis=-1).mean() / n_samples**2))

    @property
    def block(self) -> int:
        """Traces correlated at a time (fewer with more templates, for the memory)."""
        return max(1, CHUNK // max(1, self.filters.shape[0]))

    def correlate(self, traces: np.ndarray) -> np.ndarray:
        """Normalised complex correlation z, shape (N, K, C, T): Re and Im are N(0, 1) for pure noise.

        ``Re z[n, k, c, tau]`` is the correlation of channel c with template k delayed by tau
        samples (phase 0); ``Im z`` the one with its 90-degree-shifted version (sign aside).
        """
        x = _as_ncT(traces)
        n, c, t = x.shape
        if t // 2 + 1 != self.n_bins:
            msg = f"matched filter: traces have {t} samples, the filters were made for {2 * (self.n_bins - 1)}"
            raise CrnnError(msg)
        if self.filters.shape[1] not in (1, c):
            msg = f"matched filter: traces have {c} channels, the noise spectrum {self.filters.shape[1]}"
            raise CrnnError(msg)
        spec = np.fft.rfft(x, axis=-1)  # (N, C, F)
        full = np.zeros((n, self.filters.shape[0], c, t), dtype=np.complex128)
        full[..., : self.n_bins] = spec[:, None, :, :] * self.filters[None, :, :, :]
        if t % 2 == 0:
            full[..., self.n_bins - 1] = 0.0  # Nyquist bin has no quadrature partner
        # z(tau) = sum over positive frequencies of X_k conj(S_k) / P_k e^{2 pi i k tau / T}
        return np.fft.ifft(full, axis=-1) * t

    def statistic(
        self, traces: np.ndarray, *, sampling_rate_hz: float | None = None, signal_window_s: float = 120e-9
    ) -> np.ndarray:
        """Max over templates, lags, phase and polarisation of the whitened correlation, per trace.

        With ``sampling_rate_hz`` the statistic is also normalised per trace: multiplied by the noise
        RMS of the noise spectrum and divided by the trace's own RMS outside ``signal_window_s``
        around the best match (as for the other baselines). In stationary Gaussian noise the factor
        is 1 within a few per cent; traces with extra noise (CW lines, the tail of a transient) get
        a lower statistic, as with a constant-false-alarm-rate trigger.
        """
        n, t = len(traces), np.shape(traces)[-1]
        out = np.empty(n, dtype=np.float64)
        centre = np.empty(n, dtype=np.int64)
        step = self.block
        for i in range(0, n, step):
            z = self.correlate(traces[i : i + step])  # (m, K, C, T)
            re, im = z.real, z.imag
            a = (re**2).sum(axis=2)
            c = (im**2).sum(axis=2)
            b = (re * im).sum(axis=2)
            # largest eigenvalue of [[a, b], [b, c]]: the best common phase and polarisation
            lam = (0.5 * (a + c) + np.sqrt(0.25 * (a - c) ** 2 + b**2)).reshape(len(z), -1)  # (m, K * T)
            best = np.argmax(lam, axis=1)
            out[i : i + step] = np.sqrt(lam[np.arange(len(z)), best])
            k_best, lag = np.divmod(best, t)
            centre[i : i + step] = (lag + self.peak_offset[k_best]) % t
        if sampling_rate_hz is not None:
            half = _half_window(signal_window_s, sampling_rate_hz)
            for i in range(0, n, CHUNK):
                rms = _rms_outside(_as_ncT(traces[i : i + CHUNK]), centre[i : i + CHUNK], half)
                out[i : i + CHUNK] *= self.noise_rms / rms
        return out

    @classmethod
    def from_signal_model(
        cls,
        signal_model: SignalModel,
        noise_traces: np.ndarray,
        sampling_rate_hz: float,
        n_templates: int,
    ) -> MatchedFilterBank:
        x = _as_ncT(noise_traces)
        templates = template_spectra(signal_model, x.shape[-1], sampling_rate_hz, n_templates)
        return cls(templates, noise_power_spectrum(x), n_samples=x.shape[-1])


def check_one_method(stage: str, model: object | None, baseline: str | None) -> None:
    """Refuse a call of ``stage`` that does not name exactly one model or one known baseline."""
    if (model is None) == (baseline is None):
        msg = f"{stage}: give exactly one of --model or --baseline"
        raise CrnnError(msg)
    if baseline is not None and baseline not in BASELINES:
        msg = f"{stage}: unknown baseline {baseline!r}; available: {', '.join(BASELINES)}"
        raise CrnnError(msg)


def baseline_scores(
    name: str,
    traces: np.ndarray,
    sampling_rate_hz: float,
    settings: BaselineSettings | None = None,
    *,
    noise_traces: np.ndarray | None = None,
    signal_model: SignalModel | None = None,
) -> np.ndarray:
    """Score of baseline ``name`` for every trace (float32)."""
    score, _ = baseline_scorer(name, sampling_rate_hz, settings, noise_traces=noise_traces, signal_model=signal_model)
    return score(traces)


#: the noise that the matched filter is whitened for: (mean periodogram (C, F), traces it is from, samples)
NoiseSpectrum = tuple[np.ndarray, int, int]


def baseline_scorer(
    name: str,
    sampling_rate_hz: float,
    settings: BaselineSettings | None = None,
    *,
    noise_traces: np.ndarray | None = None,
    noise_spectrum: NoiseSpectrum | None = None,
    signal_model: SignalModel | None = None,
) -> tuple[Callable[[np.ndarray], np.ndarray], int]:
    """The scoring function of baseline ``name`` (traces -> float32 scores, one per trace, each
    independent of the others) and the block of traces it works on at a time: scoring a file in
    pieces of a multiple of the block gives the scores of scoring it whole, bit for bit.

    The matched filter needs the noise: ``noise_traces``, or their ``noise_spectrum`` (e.g. from
    :func:`noise_power_from_blocks`) when they do not fit in memory."""
    s = settings or BaselineSettings()
    simple = {
        "amplitude": lambda x: amplitude_snr(x, sampling_rate_hz, s.signal_window_s),
        "envelope": lambda x: envelope_snr(x, sampling_rate_hz, s.signal_window_s),
        "power": lambda x: power_snr(x, sampling_rate_hz, s.power_window_s, s.signal_window_s),
    }
    if name in simple:  # in chunks, to keep the memory small

        def score(traces: np.ndarray) -> np.ndarray:
            return np.concatenate([simple[name](traces[i : i + CHUNK]) for i in range(0, len(traces), CHUNK)])

        return score, CHUNK
    if name == "matched_filter":
        if noise_spectrum is None and noise_traces is not None:
            x = _as_ncT(noise_traces)
            noise_spectrum = (noise_power_spectrum(x), x.shape[0], x.shape[-1])
        if noise_spectrum is None:
            msg = "matched filter: needs noise-only traces to estimate the noise spectrum"
            raise CrnnError(msg)
        power, n_noise, n_samples = noise_spectrum
        templates = template_spectra(
            signal_model or SignalModel(), n_samples, sampling_rate_hz, s.matched_filter_templates
        )
        bank = MatchedFilterBank(templates, power, n_samples=n_samples)
        log.info(
            "matched filter: %d templates, noise spectrum from %d noise-only traces (noise RMS %.3g)",
            bank.filters.shape[0],
            n_noise,
            bank.noise_rms,
        )

        def statistic(traces: np.ndarray) -> np.ndarray:
            return bank.statistic(traces, sampling_rate_hz=sampling_rate_hz, signal_window_s=s.signal_window_s).astype(
                np.float32
            )

        return statistic, bank.block
    msg = f"unknown baseline {name!r}; available: {', '.join(BASELINES)}"
    raise CrnnError(msg)


def expected_detection_probability(p_fa: float, rho: float) -> float:
    """Known signal in Gaussian noise: P_D = Q(Q^-1(P_FA) - rho) (physics.md, section 5.2)."""
    from scipy.stats import norm

    return float(norm.sf(norm.isf(p_fa) - rho))


def optimal_snr(template: np.ndarray, noise_psd_one_sided: np.ndarray, sampling_rate_hz: float) -> float:
    """rho = sqrt(4 sum |s(f)|^2 / S_n(f) df) with the continuous Fourier transform s(f) = dt rfft(s)."""
    s = np.asarray(template, dtype=np.float64)
    dt = 1.0 / sampling_rate_hz
    sf = dt * np.fft.rfft(s)
    df = sampling_rate_hz / len(s)
    psd = np.broadcast_to(np.asarray(noise_psd_one_sided, dtype=np.float64), sf.shape)
    terms = np.where(psd > 0, np.abs(sf) ** 2 / np.where(psd > 0, psd, 1.0), 0.0)
    terms[0] = 0.0
    return math.sqrt(4.0 * float(terms.sum()) * df)
