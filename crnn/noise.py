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

import numpy as np

from crnn.errors import CrnnError
from crnn.physics import bandpass_response, cane_sky_temperature_k, noise_voltage_psd_v2_per_hz

TRANSIENT_KINDS = ("ringing", "pulse_train", "burst")


@dataclass(frozen=True)
class CWLine:
    """A narrowband transmitter: a sine at ``frequency_hz`` in a fraction of the traces."""

    frequency_hz: float
    #: peak amplitude in units of the expected stationary noise RMS
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

    @property
    def frequencies_hz(self) -> np.ndarray:
        return np.fft.rfftfreq(self.n_samples, 1.0 / self.sampling_rate_hz)

    @property
    def response(self) -> np.ndarray:
        """Complex band-pass response times the amplitude gain, per rfft bin."""
        h = bandpass_response(self.frequencies_hz, self.band_hz, self.filter_order)
        return h * 10 ** (self.gain_db / 20)

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


class StationaryNoise:
    """Galactic (Cane sky) plus thermal noise, band-limited by the receiver."""

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
        t_gal = galactic_scale * cane_sky_temperature_k(f) if galactic else np.zeros_like(f)
        t_sys = np.full_like(f, float(noise_temperature_k))
        t_gal[0] = t_sys[0] = 0.0  # no DC
        self.temperature_k = t_gal + t_sys
        self.psd_v2_per_hz = noise_voltage_psd_v2_per_hz(self.temperature_k, receiver.load_resistance_ohm)
        gain2 = np.abs(receiver.response) ** 2
        norm = receiver.sampling_rate_hz * receiver.n_samples / 4
        # variance of the real (and of the imaginary) part per bin, galactic and thermal apart
        self._var_gal = noise_voltage_psd_v2_per_hz(t_gal, receiver.load_resistance_ohm) * gain2 * norm
        self._var_sys = noise_voltage_psd_v2_per_hz(t_sys, receiver.load_resistance_ohm) * gain2 * norm
        self._phase = np.exp(1j * np.angle(receiver.response)).astype(np.complex64)
        self._gain2 = gain2
        self._df = receiver.sampling_rate_hz / receiver.n_samples

    @property
    def expected_rms_v(self) -> float:
        """Expected RMS voltage after the receiver, sidereal mean: sqrt(sum S_v |H|^2 df)."""
        s = self.psd_v2_per_hz * self._gain2
        w = np.ones_like(s)
        w[0] = 0.0
        if self.receiver.n_samples % 2 == 0:
            w[-1] = 0.5  # the Nyquist bin of a real FFT carries half the weight
        return float(np.sqrt(np.sum(w * s) * self._df))

    def galactic_power_factor(self, lst_hours: np.ndarray) -> np.ndarray:
        s = self.sidereal
        return 1.0 + s.modulation_fraction * np.cos(2 * np.pi * (lst_hours - s.peak_lst_hours) / 24.0)

    def generate(
        self, n_traces: int, rng: np.random.Generator, *, lst_hours: np.ndarray | None = None
    ) -> np.ndarray:
        """Noise of shape (n_traces, n_channels, n_samples), float32, in volts after the receiver."""
        r = self.receiver
        n_bins = len(self._var_gal)
        if lst_hours is None:
            scale = np.sqrt(self._var_gal + self._var_sys)[None, None, :]
        else:
            factor = self.galactic_power_factor(np.asarray(lst_hours))[:, None, None]
            scale = np.sqrt(factor * self._var_gal + self._var_sys)
        z = rng.standard_normal((n_traces, r.n_channels, n_bins, 2), dtype=np.float32)
        spec = z.view(np.complex64)[..., 0]
        spec *= (scale * self._phase).astype(np.complex64)  # keep the filter's phase, as for pulses
        spec[..., 0] = 0.0
        return np.fft.irfft(spec, n=r.n_samples, axis=-1)


def add_cw_lines(
    traces: np.ndarray,
    lines: tuple[CWLine, ...],
    noise_rms: float,
    sampling_rate_hz: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Add CW lines in place (independent random phase per channel); returns lines per trace."""
    n, c, t = traces.shape
    time_s = (np.arange(t) / sampling_rate_hz).astype(np.float32)
    duration_s = t / sampling_rate_hz
    count = np.zeros(n, dtype=np.int8)
    for line in lines:
        present = rng.random(n) < line.probability
        phase = rng.uniform(0, 2 * np.pi, size=(n, c, 1))
        amp_drift = rng.uniform(-1, 1, size=(n, 1, 1)) * line.amplitude_drift
        f_drift = rng.uniform(-1, 1, size=(n, 1, 1)) * line.frequency_drift_hz
        idx = np.nonzero(present)[0]
        if idx.size:
            tt = time_s[None, None, :]
            chirp = line.frequency_hz * tt + 0.5 * (f_drift[idx] / duration_s) * tt**2
            envelope = 1 + amp_drift[idx] * (tt / duration_s - 0.5) * 2
            traces[idx] += (line.amplitude_rel_noise * noise_rms * envelope
                            * np.sin(2 * np.pi * chirp + phase[idx])).astype(traces.dtype)
        count += present.astype(np.int8)
    return count


def _transient_shapes(
    form: TransientForm, n: int, receiver: ReceiverSettings, rng: np.random.Generator
) -> np.ndarray:
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
    msg = f"simulate: unknown transient kind {form.kind!r}; expected one of {TRANSIENT_KINDS}"
    raise CrnnError(msg)


def transient_waveforms(
    n_traces: int, receiver: ReceiverSettings, form: TransientForm, rng: np.random.Generator
) -> np.ndarray:
    """Unit-peak transients of one kind through the receiver, split over channels, shape (n, C, T)."""
    r = receiver
    wave = _transient_shapes(form, n_traces, r, rng)
    spec = np.fft.rfft(wave, axis=-1) * r.response / np.max(np.abs(r.response))
    wave = np.fft.irfft(spec, n=r.n_samples, axis=-1)
    direction = _random_directions(n_traces, r.n_channels, rng)
    out = direction[:, :, None] * wave[:, None, :]
    peak = np.max(np.abs(out), axis=(1, 2), keepdims=True)
    return out / np.where(peak > 0, peak, 1.0)


def _random_directions(n: int, n_channels: int, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors uniform on the sphere of ``n_channels`` dimensions (polarisation)."""
    v = rng.standard_normal((n, n_channels))
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norm > 0, norm, 1.0)
