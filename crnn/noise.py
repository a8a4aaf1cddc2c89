"""Background for radio traces: galactic sky, thermal noise, CW lines and transients.

Stage contract (after NuRadioReco, without its hidden state): a model is configured once from
its settings and then applied to any number of traces with an explicit ``numpy`` generator.

Noise is drawn in the frequency domain: for each rfft bin a complex Gaussian amplitude whose
variance follows the one-sided voltage spectral density S_v(f) = k_B (T_sky(f) + T_sys) R of a
matched load R, multiplied by the receiver's band-pass response and gain. With numpy's FFT
convention, E|X_k|^2 = S_v(f_k) f_s T / 2 gives a time-domain variance of sum_k S_v(f_k) df.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crnn.physics import bandpass_response, cane_sky_temperature_k, noise_voltage_psd_v2_per_hz


@dataclass(frozen=True)
class CWLine:
    """A narrowband transmitter: a sine at ``frequency_hz`` in a fraction of the traces."""

    frequency_hz: float
    #: peak amplitude in units of the stationary noise RMS
    amplitude_rel_noise: float = 1.0
    #: fraction of traces in which the line is present
    probability: float = 1.0


@dataclass(frozen=True)
class ReceiverSettings:
    """What the antenna and receiver chain look like; shared by noise and pulse models."""

    sampling_rate_hz: float = 180e6
    n_samples: int = 500
    n_channels: int = 2
    band_hz: tuple[float, float] = (30e6, 80e6)
    filter_order: int = 10
    gain_db: float = 0.0
    load_resistance_ohm: float = 50.0

    @property
    def frequencies_hz(self) -> np.ndarray:
        return np.fft.rfftfreq(self.n_samples, 1.0 / self.sampling_rate_hz)

    @property
    def response(self) -> np.ndarray:
        """Complex band-pass response times the amplitude gain, per rfft bin."""
        h = bandpass_response(self.frequencies_hz, self.band_hz, self.filter_order)
        return h * 10 ** (self.gain_db / 20)


class StationaryNoise:
    """Galactic (Cane sky) plus thermal noise, band-limited by the receiver."""

    def __init__(
        self,
        receiver: ReceiverSettings,
        *,
        noise_temperature_k: float,
        galactic: bool = True,
        galactic_scale: float = 1.0,
    ) -> None:
        self.receiver = receiver
        f = receiver.frequencies_hz
        t_k = np.full_like(f, float(noise_temperature_k))
        if galactic:
            t_k = t_k + galactic_scale * cane_sky_temperature_k(f)
        t_k[0] = 0.0  # no DC
        self.temperature_k = t_k
        self.psd_v2_per_hz = noise_voltage_psd_v2_per_hz(t_k, receiver.load_resistance_ohm)
        self._gain2 = np.abs(receiver.response) ** 2
        df = receiver.sampling_rate_hz / receiver.n_samples
        # amplitude scale of the complex Gaussian per bin (real and imaginary parts each)
        self._scale = np.sqrt(
            self.psd_v2_per_hz * self._gain2 * receiver.sampling_rate_hz * receiver.n_samples / 4
        )
        self._response = receiver.response
        self._df = df

    @property
    def expected_rms_v(self) -> float:
        """Expected RMS voltage after the receiver: sqrt(sum S_v |H|^2 df)."""
        s = self.psd_v2_per_hz * self._gain2
        # DC and Nyquist bins carry half the weight of a one-sided bin in a real FFT
        w = np.ones_like(s)
        w[0] = 0.0
        if self.receiver.n_samples % 2 == 0:
            w[-1] = 0.5
        return float(np.sqrt(np.sum(w * s) * self._df))

    def generate(self, n_traces: int, rng: np.random.Generator) -> np.ndarray:
        """Noise of shape (n_traces, n_channels, n_samples), float64, in the receiver's unit (V)."""
        r = self.receiver
        shape = (n_traces, r.n_channels, len(self._scale))
        spec = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
        spec *= self._scale
        # keep the filter's phase so that noise and pulses see the same receiver
        spec *= np.exp(1j * np.angle(self._response))
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
    time_s = np.arange(t) / sampling_rate_hz
    count = np.zeros(n, dtype=np.int8)
    for line in lines:
        present = rng.random(n) < line.probability
        phase = rng.uniform(0, 2 * np.pi, size=(n, c, 1))
        wave = line.amplitude_rel_noise * noise_rms * np.sin(2 * np.pi * line.frequency_hz * time_s + phase)
        traces += wave * present[:, None, None]
        count += present.astype(np.int8)
    return count


@dataclass(frozen=True)
class TransientSettings:
    """Broadband human-made transients: band-limited damped ringing at a random time."""

    #: fraction of traces (background and signal alike) that carry one transient
    probability: float = 0.1
    #: peak amplitude range in units of the stationary noise RMS
    amplitude_rel_noise: tuple[float, float] = (3.0, 10.0)
    #: e-folding time of the ringing
    decay_time_s: tuple[float, float] = (50e-9, 300e-9)


def transient_waveforms(
    n_traces: int,
    receiver: ReceiverSettings,
    settings: TransientSettings,
    rng: np.random.Generator,
) -> np.ndarray:
    """Unit-peak damped ringing through the receiver, shape (n, C, T)."""
    r = receiver
    t = np.arange(r.n_samples) / r.sampling_rate_hz
    t0 = rng.uniform(0, t[-1] * 0.9, size=(n_traces, 1))
    freq = rng.uniform(*r.band_hz, size=(n_traces, 1))
    tau = rng.uniform(*settings.decay_time_s, size=(n_traces, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n_traces, 1))
    dt = t[None, :] - t0
    wave = np.where(dt >= 0, np.exp(-np.clip(dt, 0, None) / tau) * np.sin(2 * np.pi * freq * dt + phase), 0.0)
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
