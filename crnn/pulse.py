"""Parametric air-shower radio pulse, after NuRadioReco's analytic pulse model.

In the frequency domain the pulse is |E(f)| = 10^(b f) with a random spectral slope b, a
constant phase phi0 (pulse shape from symmetric to antisymmetric) and a linear phase that sets
the arrival time; the receiver's band-pass (magnitude and phase) then shapes it. The pulse is
split over the channels along a random polarisation direction and scaled to the requested SNR.

Two SNR definitions set the pulse amplitude (:data:`SNR_DEFINITIONS`):

* ``noise_rms`` (crnn's default): peak |signal| / RMS of the background alone;
* ``trace_rms`` (the textbook exercise, Erdmann et al., "Deep Learning for Physics Research",
  Exercise 9.2): peak |signal| / RMS of the measured trace, signal plus background. The pulse
  itself raises the RMS, so the amplitude solves a quadratic (:func:`amplitude_for_snr`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crnn.noise import ReceiverSettings, _random_directions

#: SNR definitions: peak |signal| over the RMS of the background, or of the whole trace
SNR_DEFINITIONS = ("noise_rms", "trace_rms")


@dataclass(frozen=True)
class PulseSettings:
    #: range of the spectral slope b in |E(f)| ~ 10^(b f), per Hz (-1e-8/Hz = -10 per GHz)
    spectral_slope_log10_per_hz: tuple[float, float] = (-1e-8, 0.0)
    #: range of the arrival time, as a fraction of the trace length
    arrival_fraction_range: tuple[float, float] = (0.1, 0.8)
    #: pulse library: a canonical trace file of air-shower field pulses (e.g. CoREAS converted with
    #: crnn ingest) at the receiver's sampling rate, channels and length; None = analytic pulses only
    library_file: str | None = None
    #: fraction of the pulses taken from the library (the rest are analytic)
    library_fraction: float = 1.0


@dataclass
class Pulses:
    waveforms: np.ndarray  # (n, C, T), peak of max |x| over channels = 1
    time_s: np.ndarray  # time of the peak |x|
    polarisation_angle_rad: np.ndarray  # atan2(ch1, ch0); NaN with one channel
    spectral_slope_log10_per_hz: np.ndarray
    phase_rad: np.ndarray
    library_index: np.ndarray  # index of the library pulse; -1 = analytic


class PulseModel:
    """Configure once, then draw any number of unit-peak pulses with an explicit generator."""

    def __init__(self, receiver: ReceiverSettings, settings: PulseSettings) -> None:
        self.receiver = receiver
        self.settings = settings
        self._f = receiver.frequencies_hz
        self._h = receiver.response
        self.library = self._load_library()

    def _load_library(self) -> np.ndarray | None:
        """rfft spectra (L, C, F) of the library pulses, each shifted to its peak at t = 0."""
        from crnn.errors import CrnnError
        from crnn.noise import read_for_receiver

        s, r = self.settings, self.receiver
        if s.library_file is None:
            return None
        if not 0 <= s.library_fraction <= 1:
            raise CrnnError(f"simulate: pulse.library_fraction must be in [0, 1], got {s.library_fraction}")
        data = read_for_receiver(s.library_file, r, "pulse library", "--polarisations/--n-samples")
        where = s.library_file
        x = data.traces.astype(np.float64)
        peak = np.max(np.abs(x), axis=(1, 2))
        if np.any(~np.isfinite(x)) or np.any(peak <= 0):
            raise CrnnError(f"{where}: traces: pulse library traces must be finite and not all zero")
        t_peak = np.argmax(np.max(np.abs(x), axis=1), axis=-1) / r.sampling_rate_hz
        spec = np.fft.rfft(x / peak[:, None, None], axis=-1)
        return spec * np.exp(2j * np.pi * self._f[None, None, :] * t_peak[:, None, None])

    def generate(self, n_traces: int, rng: np.random.Generator, path: np.ndarray | None = None) -> Pulses:
        """``n_traces`` unit-peak pulses; ``path`` (n or 1, C or 1, F): each trace's antenna x chain
        (default: the fixed receiver's)."""
        r, s = self.receiver, self.settings
        duration_s = r.n_samples / r.sampling_rate_hz
        slope = rng.uniform(*s.spectral_slope_log10_per_hz, size=(n_traces, 1))
        phase = rng.uniform(0, 2 * np.pi, size=(n_traces, 1))
        t0 = rng.uniform(*s.arrival_fraction_range, size=(n_traces, 1)) * duration_s
        direction = _random_directions(n_traces, r.n_channels, rng)
        h = self._h[None, None, :] if path is None else path
        shift = np.exp(-2j * np.pi * self._f * t0)  # (n, F)
        spec = (10 ** (slope * self._f) * np.exp(1j * phase) * shift)[:, None, :] * direction[:, :, None]
        library_index = np.full(n_traces, -1, dtype=np.int32)
        if self.library is not None:
            use = rng.random(n_traces) < s.library_fraction
            pick = rng.integers(0, len(self.library), size=n_traces)
            sign = rng.choice((-1.0, 1.0), size=n_traces)
            idx = np.nonzero(use)[0]
            spec[idx] = self.library[pick[idx]] * (sign[idx, None] * shift[idx])[:, None, :]
            library_index[idx] = pick[idx]
            slope[idx] = np.nan
            phase[idx] = np.nan
        spec = spec * h
        spec[..., 0] = 0.0
        out = np.fft.irfft(spec, n=r.n_samples, axis=-1)
        peak = np.max(np.abs(out), axis=(1, 2))
        out /= np.where(peak > 0, peak, 1.0)[:, None, None]
        t_peak = np.argmax(np.max(np.abs(out), axis=1), axis=-1) / r.sampling_rate_hz
        if r.n_channels >= 2:
            at = np.argmax(np.max(np.abs(out), axis=1), axis=-1)
            amp = out[np.arange(n_traces), :, at]
            pol = np.where(
                library_index < 0, np.arctan2(direction[:, 1], direction[:, 0]), np.arctan2(amp[:, 1], amp[:, 0])
            )
        else:
            pol = np.full(n_traces, np.nan)
        return Pulses(out, t_peak, pol, slope[:, 0], phase[:, 0], library_index)


def amplitude_for_snr(
    background: np.ndarray, waveforms: np.ndarray, snr: np.ndarray, definition: str = "noise_rms"
) -> np.ndarray:
    """Amplitudes ``a`` (one per trace) that give ``background + a * waveforms`` the SNR ``snr``.

    ``waveforms`` (n, C, T) have a peak |x| of 1, so peak |signal| = ``a``. With ``noise_rms``,
    a = snr * RMS(background). With ``trace_rms``, a = snr * RMS(background + a * waveforms): with
    B = <b^2>, X = <b p>, P = <p^2> (means over channels and samples) that is
    a^2 (1 - snr^2 P) - 2 snr^2 X a - snr^2 B = 0, whose one positive root is taken. It exists
    while snr^2 P < 1, i.e. while snr < 1 / RMS(p): a pulse cannot be "stronger" than a trace made
    of nothing but itself.
    """
    if definition not in SNR_DEFINITIONS:
        msg = f"snr_definition must be one of {SNR_DEFINITIONS}, got {definition!r}"
        raise ValueError(msg)
    b = background.astype(np.float64)
    p = waveforms.astype(np.float64)
    s = np.asarray(snr, dtype=np.float64)
    big_b = np.mean(b**2, axis=(1, 2))
    if definition == "noise_rms":
        return s * np.sqrt(big_b)
    cross = np.mean(b * p, axis=(1, 2))
    power = np.mean(p**2, axis=(1, 2))
    lead = 1.0 - s**2 * power
    if np.any(lead <= 0):
        worst = float(np.max(s * np.sqrt(power)))
        msg = (
            f"snr_definition trace_rms: SNR {float(np.max(s)):g} is out of reach for these pulses "
            f"(needs SNR < 1 / RMS of the unit-peak pulse; SNR x RMS reaches {worst:.3g} >= 1)"
        )
        raise ValueError(msg)
    s2 = s**2
    return (s2 * cross + np.sqrt(s2**2 * cross**2 + lead * s2 * big_b)) / lead
