"""Background for radio traces: galactic sky, thermal noise, CW lines, transients, digitisation.

Stage contract (after NuRadioReco, without its hidden state): a model is configured once from
its settings and then applied to any number of traces with an explicit ``numpy`` generator.

Stationary noise is drawn in the frequency domain: for each rfft bin a complex Gaussian amplitude
whose variance follows the one-sided voltage spectral density S_v(f) = k_B T(f) R of a matched
load R, multiplied by the receiver's band-pass response and gain. With numpy's FFT convention,
E|X_k|^2 = S_v(f_k) f_s T / 2 gives a time-domain variance of sum_k S_v(f_k) df. The galactic
part can be modulated over the sidereal day: its power is scaled by
1 + m cos(2 pi (LST - LST_peak) / 24 h), with the local sidereal time LST drawn per trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from crnn.errors import CrnnError
from crnn.physics import bandpass_response, cane_sky_temperature_k, noise_voltage_psd_v2_per_hz

TRANSIENT_KINDS = ("ringing", "pulse_train", "burst", "chirp")


@dataclass(frozen=True)
class CWLine:
    """A narrowband transmitter: a sine at ``frequency_hz`` in a fraction of the traces."""

    frequency_hz: float
    #: peak amplitude in units of the trace's stationary noise RMS (galactic + receiver)
    amplitude_rel_noise: float = 1.0
    #: fraction of traces in which the line is present
    probability: float = 1.0
    #: the amplitude changes linearly across a trace by up to this fraction (random sign and size)
    amplitude_drift: float = 0.0
    #: the frequency changes linearly across a trace by up to this many Hz (random sign and size)
    frequency_drift_hz: float = 0.0


@dataclass(frozen=True)
class TransientForm:
    """One kind of broadband human-made transient, placed at a random time in a fraction of traces.

    ``ringing``: damped sinusoid exp(-t/tau) sin(2 pi f t + phi), f uniform in the band, tau in
    ``decay_time_s``. ``pulse_train``: ``n_pulses`` band-limited impulses of random polarity
    every ``period_s`` (sparks, relays). ``burst``: band-limited noise under a smooth envelope of
    length ``duration_s`` (motors, arcing). All pass through the receiver and are scaled to a
    peak of ``amplitude_rel_noise`` times the trace's noise RMS.
    """

    kind: str = "ringing"
    probability: float = 0.1
    amplitude_rel_noise: tuple[float, float] = (3.0, 10.0)
    decay_time_s: tuple[float, float] = (50e-9, 300e-9)
    n_pulses: tuple[int, int] = (2, 6)
    period_s: tuple[float, float] = (30e-9, 200e-9)
    duration_s: tuple[float, float] = (200e-9, 1e-6)


@dataclass(frozen=True)
class SiderealSettings:
    """Modulation of the galactic noise power over the sidereal day."""

    #: relative amplitude m of the power modulation (0 = none; tens of per cent at 30-80 MHz)
    modulation_fraction: float = 0.0
    #: local sidereal time at which the galactic power peaks (Galactic centre high), in hours
    peak_lst_hours: float = 17.75
    #: range from which each trace's LST is drawn, in hours
    lst_hours: tuple[float, float] = (0.0, 24.0)


@dataclass(frozen=True)
class ReceiverSettings:
    """What the antenna, receiver and digitiser look like; shared by noise and pulse models."""

    sampling_rate_hz: float = 180e6
    n_samples: int = 500
    n_channels: int = 2
    band_hz: tuple[float, float] = (30e6, 80e6)
    filter_order: int = 10
    gain_db: float = 0.0
    load_resistance_ohm: float = 50.0
    #: ADC resolution in bits; 0 = no digitisation (traces stay in volts)
    adc_bits: int = 0
    #: the ADC maps [-full_scale, +full_scale] V onto its 2^bits counts; beyond, it clips
    adc_full_scale_v: float = 0.9
    #: RF chain after the antenna (a response spec of crnn.responses, or a list of one per channel);
    #: None = the analog Butterworth band-pass of band_hz and filter_order
    chain_response: Any = None
    #: antenna term before the chain (a response spec or a list per channel); None = flat
    antenna_response: Any = None

    @property
    def frequencies_hz(self) -> np.ndarray:
        return np.fft.rfftfreq(self.n_samples, 1.0 / self.sampling_rate_hz)

    def _transfer(self, spec: Any, default: np.ndarray) -> np.ndarray:
        """(C, F) transfer functions of a spec (or per-channel list of specs); ``default`` for None."""
        if spec is None:
            return np.repeat(default[None, :], self.n_channels, axis=0)
        from crnn.responses import build_channel_responses, transfer_matrix

        parts = build_channel_responses(spec, self.n_channels, self.sampling_rate_hz)
        return transfer_matrix(parts, self.frequencies_hz)

    def chain_transfer(self) -> np.ndarray:
        """(C, F) complex response of the RF chain (gain included), per channel and rfft bin."""
        f = self.frequencies_hz
        default = bandpass_response(f, self.band_hz, self.filter_order)
        return self._transfer(self.chain_response, default) * 10 ** (self.gain_db / 20)

    def antenna_transfer(self) -> np.ndarray:
        """(C, F) complex antenna term, per channel and rfft bin (flat by default)."""
        return self._transfer(self.antenna_response, np.ones(len(self.frequencies_hz), dtype=np.complex128))

    @property
    def response(self) -> np.ndarray:
        """Complex response of the whole signal path (antenna x chain, gain included) of channel 0."""
        return self.antenna_transfer()[0] * self.chain_transfer()[0]

    @property
    def lsb_v(self) -> float:
        """Voltage of one ADC count."""
        return 2 * self.adc_full_scale_v / 2**self.adc_bits

    def digitise(self, volts: np.ndarray) -> np.ndarray:
        """ADC counts: floor(V / LSB), clipped to the signed range of ``adc_bits``.

        A tolerance of 1e-4 count keeps values that are whole counts already (measured
        background converted to volts and back) on their count despite float rounding.
        """
        half = 2 ** (self.adc_bits - 1)
        return np.clip(np.floor(np.asarray(volts, dtype=np.float64) / self.lsb_v + 1e-4), -half, half - 1)


def read_for_receiver(path: str, receiver: ReceiverSettings, what: str, convert: str) -> Any:
    """A canonical trace file whose rate, channels and length are the receiver's, else one error line.

    ``what`` names the traces in the message ("measured background", "pulse library"); ``convert``
    the crnn ingest flags that fix the shape."""
    from crnn.tracefile import read_traces

    data = read_traces(path)
    r = receiver
    if not np.isclose(data.sampling_rate_hz, r.sampling_rate_hz, rtol=1e-9):
        msg = (
            f"{path}: {what} sampled at {data.sampling_rate_hz:g} Hz, but the receiver samples at "
            f"{r.sampling_rate_hz:g} Hz; resample it with crnn ingest --resample-hz"
        )
        raise CrnnError(msg)
    if data.traces.shape[1:] != (r.n_channels, r.n_samples):
        msg = (
            f"{path}: {what} traces have (channels, samples) = {data.traces.shape[1:]}, the receiver "
            f"({r.n_channels}, {r.n_samples}); convert them with crnn ingest {convert}"
        )
        raise CrnnError(msg)
    return data


class StationaryNoise:
    """Galactic (Cane sky) plus receiver noise: the sky through antenna and chain, the receiver
    noise through the chain only (it enters after the antenna)."""

    def __init__(
        self,
        receiver: ReceiverSettings,
        *,
        noise_temperature_k: float,
        galactic: bool = True,
        galactic_scale: float = 1.0,
        sidereal: SiderealSettings | None = None,
    ) -> None:
        self.receiver = receiver
        self.sidereal = sidereal or SiderealSettings()
        f = receiver.frequencies_hz
        self.noise_temperature_k = float(noise_temperature_k)
        self.galactic_scale = float(galactic_scale)
        t_sky = cane_sky_temperature_k(f) if galactic else np.zeros_like(f)
        t_sky[0] = 0.0  # no DC
        self.sky_temperature_k = t_sky
        self._antenna2 = np.abs(receiver.antenna_transfer()) ** 2  # (C, F)
        self._chain2 = np.abs(receiver.chain_transfer()) ** 2
        self._kr = noise_voltage_psd_v2_per_hz(1.0, receiver.load_resistance_ohm)
        self._df = receiver.sampling_rate_hz / receiver.n_samples
        # variance of the real (and of the imaginary) part of an rfft bin per unit of S_v
        self._norm = receiver.sampling_rate_hz * receiver.n_samples / 4

    def _psd(self, antenna2, chain2, t_receiver_k, sky_factor) -> np.ndarray:
        """One-sided voltage PSD after the chain: k_B R (g T_sky |A|^2 + T_rec) |C|^2."""
        psd = self._kr * (sky_factor * self.sky_temperature_k * antenna2 + t_receiver_k) * chain2
        psd[..., 0] = 0.0
        return psd

    @property
    def temperature_k(self) -> np.ndarray:
        """System temperature per rfft bin before the chain, with a flat antenna: g T_sky + T_rec."""
        t = self.galactic_scale * self.sky_temperature_k + self.noise_temperature_k
        t[0] = 0.0
        return t

    @property
    def psd_v2_per_hz(self) -> np.ndarray:
        """Voltage PSD k_B T R of :attr:`temperature_k` across the load (before antenna term and chain)."""
        return self._kr * self.temperature_k

    @property
    def expected_rms_v(self) -> float:
        """Expected RMS voltage after the fixed receiver (channel mean, sidereal mean): sqrt(sum S_v df)."""
        s = self._psd(self._antenna2, self._chain2, self.noise_temperature_k, self.galactic_scale).mean(axis=0)
        w = np.ones_like(s)
        w[0] = 0.0
        if self.receiver.n_samples % 2 == 0:
            w[-1] = 0.5  # the Nyquist bin of a real FFT carries half the weight
        return float(np.sqrt(np.sum(w * s) * self._df))

    def galactic_power_factor(self, lst_hours: np.ndarray) -> np.ndarray:
        s = self.sidereal
        return 1.0 + s.modulation_fraction * np.cos(2 * np.pi * (lst_hours - s.peak_lst_hours) / 24.0)

    def generate(
        self, n_traces: int, rng: np.random.Generator, *, lst_hours: np.ndarray | None = None, detector: Any = None
    ) -> np.ndarray:
        """Noise of shape (n_traces, n_channels, n_samples), float32, in volts after the receiver.

        ``detector`` (a :class:`crnn.detector.DetectorDraw`) gives each trace its own antenna,
        chain, receiver temperature and galactic scale; None = the fixed receiver of the settings.
        Stationary Gaussian noise does not depend on the phase of the path, only on its gain.
        """
        r = self.receiver
        if detector is None:
            antenna2, chain2 = self._antenna2[None], self._chain2[None]
            t_rec, sky = np.float64(self.noise_temperature_k), np.full((1, 1, 1), self.galactic_scale)
        else:
            antenna2, chain2 = np.abs(detector.antenna) ** 2, np.abs(detector.chain) ** 2
            t_rec = np.asarray(detector.noise_temperature_k, dtype=float)[:, None, None]
            sky = np.asarray(detector.galactic_scale, dtype=float)[:, None, None]
        if lst_hours is not None:
            sky = sky * self.galactic_power_factor(np.asarray(lst_hours))[:, None, None]
        scale = np.sqrt(self._psd(antenna2, chain2, t_rec, sky) * self._norm).astype(np.float32)
        n_bins = len(self.sky_temperature_k)
        z = rng.standard_normal((n_traces, r.n_channels, n_bins, 2), dtype=np.float32)
        spec = z.view(np.complex64)[..., 0]
        spec *= scale
        return np.fft.irfft(spec, n=r.n_samples, axis=-1).astype(np.float32)


def _add_line(traces, idx, frequency_hz, amplitude, amp_drift, f_drift, phase, sampling_rate_hz) -> None:
    """Add one sine per trace ``idx`` (arrays of per-trace values, shape (k, 1, 1); phase (k, C, 1)).

    sin(w + phi) = sin(w) cos(phi) + cos(w) sin(phi): the sine of the (chirped) carrier is computed
    once per trace and shared by its channels, which differ in phase only."""
    t = traces.shape[-1]
    tt = (np.arange(t) / sampling_rate_hz)[None, None, :]
    duration_s = t / sampling_rate_hz
    # cycles as float64 (hundreds of cycles per trace), reduced mod 1 before the float32 sine
    cycles = np.mod(frequency_hz * tt + 0.5 * (f_drift / duration_s) * tt**2, 1.0).astype(np.float32)
    w = np.float32(2 * np.pi) * cycles
    envelope = (np.asarray(amplitude, dtype=np.float32) * (1 + amp_drift * (tt / duration_s - 0.5) * 2)).astype(
        np.float32
    )
    phi = np.asarray(phase, dtype=np.float32)
    traces[idx] += (envelope * np.sin(w)) * np.cos(phi) + (envelope * np.cos(w)) * np.sin(phi)


def add_cw_lines(
    traces: np.ndarray,
    lines: tuple[CWLine, ...],
    noise_rms: float | np.ndarray,
    sampling_rate_hz: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Add CW lines in place (independent random phase per channel); returns lines per trace.

    ``noise_rms``: the unit of the line amplitudes, one number or one per trace."""
    n, c, _ = traces.shape
    rms = np.broadcast_to(np.asarray(noise_rms, dtype=float), (n,))[:, None, None]
    count = np.zeros(n, dtype=np.int8)
    for line in lines:
        present = rng.random(n) < line.probability
        phase = rng.uniform(0, 2 * np.pi, size=(n, c, 1))
        amp_drift = rng.uniform(-1, 1, size=(n, 1, 1)) * line.amplitude_drift
        f_drift = rng.uniform(-1, 1, size=(n, 1, 1)) * line.frequency_drift_hz
        idx = np.nonzero(present)[0]
        if idx.size:
            _add_line(
                traces,
                idx,
                line.frequency_hz,
                line.amplitude_rel_noise * rms[idx],
                amp_drift[idx],
                f_drift[idx],
                phase[idx],
                sampling_rate_hz,
            )
        count += present.astype(np.int8)
    return count


def add_random_cw_lines(
    traces: np.ndarray,
    settings: Any,
    band_hz: tuple[float, float],
    noise_rms: np.ndarray,
    sampling_rate_hz: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Add per-trace random CW lines in place (``settings``: crnn.detector.RandomCWSettings).

    Returns the number of lines per trace and the frequency of the strongest (NaN without a line)."""
    n, c, _ = traces.shape
    lo, hi = band_hz
    margin = settings.band_margin_fraction * (hi - lo)
    f_lo, f_hi = max(lo - margin, 1.0), min(hi + margin, 0.49 * sampling_rate_hz)
    count = rng.integers(settings.n_lines[0], settings.n_lines[1] + 1, size=n)
    strongest = np.full(n, np.nan, dtype=np.float32)
    log_amp = np.log(settings.amplitude_rel_noise)
    rms = np.asarray(noise_rms, dtype=float)
    best = np.zeros(n)
    for k in range(int(settings.n_lines[1])):
        freq = rng.uniform(f_lo, f_hi, size=n)
        amp = np.exp(rng.uniform(*log_amp, size=n))
        phase = rng.uniform(0, 2 * np.pi, size=(n, c, 1))
        amp_drift = rng.uniform(-1, 1, size=(n, 1, 1)) * settings.amplitude_drift
        f_drift = rng.uniform(-1, 1, size=(n, 1, 1)) * settings.frequency_drift_hz
        idx = np.nonzero(k < count)[0]
        if idx.size:
            _add_line(
                traces,
                idx,
                freq[idx, None, None],
                (amp * rms)[idx, None, None],
                amp_drift[idx],
                f_drift[idx],
                phase[idx],
                sampling_rate_hz,
            )
            better = idx[amp[idx] > best[idx]]
            best[better], strongest[better] = amp[better], freq[better]
    return count.astype(np.int8), strongest


def _transient_shapes(form: TransientForm, n: int, receiver: ReceiverSettings, rng: np.random.Generator) -> np.ndarray:
    """(n, T) waveforms of one transient kind before the receiver."""
    r = receiver
    t = np.arange(r.n_samples) / r.sampling_rate_hz
    t0 = rng.uniform(0, t[-1] * 0.9, size=(n, 1))
    dt = t[None, :] - t0
    if form.kind == "ringing":
        freq = rng.uniform(*r.band_hz, size=(n, 1))
        tau = rng.uniform(*form.decay_time_s, size=(n, 1))
        phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
        return np.where(dt >= 0, np.exp(-np.clip(dt, 0, None) / tau) * np.sin(2 * np.pi * freq * dt + phase), 0.0)
    if form.kind == "pulse_train":
        n_pulses = rng.integers(form.n_pulses[0], form.n_pulses[1] + 1, size=n)
        period = rng.uniform(*form.period_s, size=n)
        wave = np.zeros((n, r.n_samples))
        for k in range(int(form.n_pulses[1])):
            idx = np.round((t0[:, 0] + k * period) * r.sampling_rate_hz).astype(int)
            sign = rng.choice((-1.0, 1.0), size=n)
            ok = (k < n_pulses) & (idx < r.n_samples)
            wave[np.nonzero(ok)[0], idx[ok]] += sign[ok]
        return wave
    if form.kind == "burst":
        duration = rng.uniform(*form.duration_s, size=(n, 1))
        envelope = np.where((dt >= 0) & (dt <= duration), np.sin(np.pi * np.clip(dt / duration, 0, 1)) ** 2, 0.0)
        return envelope * rng.standard_normal((n, r.n_samples))
    if form.kind == "chirp":
        duration = rng.uniform(*form.duration_s, size=(n, 1))
        f0, f1 = (rng.uniform(*r.band_hz, size=(n, 1)) for _ in range(2))
        phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
        x = np.clip(dt / duration, 0, 1)
        envelope = np.where((dt >= 0) & (dt <= duration), np.sin(np.pi * x) ** 2, 0.0)
        return envelope * np.sin(2 * np.pi * (f0 * dt + 0.5 * (f1 - f0) / duration * dt**2) + phase)
    msg = f"simulate: unknown transient kind {form.kind!r}; expected one of {TRANSIENT_KINDS}"
    raise CrnnError(msg)


def transient_waveforms(
    n_traces: int,
    receiver: ReceiverSettings,
    form: TransientForm,
    rng: np.random.Generator,
    path: np.ndarray | None = None,
) -> np.ndarray:
    """Unit-peak transients of one kind through the receiver, split over channels, shape (n, C, T).

    ``path``: transfer functions (n or 1, C or 1, F) of each trace's antenna and chain (default:
    the fixed receiver's)."""
    r = receiver
    wave = _transient_shapes(form, n_traces, r, rng)
    h = r.response[None, None, :] if path is None else path
    direction = _random_directions(n_traces, r.n_channels, rng)
    spec = np.fft.rfft(wave, axis=-1)[:, None, :] * direction[:, :, None] * h
    out = np.fft.irfft(spec, n=r.n_samples, axis=-1)
    peak = np.max(np.abs(out), axis=(1, 2), keepdims=True)
    return out / np.where(peak > 0, peak, 1.0)


def _random_directions(n: int, n_channels: int, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors uniform on the sphere of ``n_channels`` dimensions (polarisation)."""
    v = rng.standard_normal((n, n_channels))
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norm > 0, norm, 1.0)
