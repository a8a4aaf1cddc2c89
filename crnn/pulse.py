"""Parametric air-shower radio pulse, after NuRadioReco's analytic pulse model.

In the frequency domain the pulse is |E(f)| = 10^(b f) with a random spectral slope b, a
constant phase phi0 (pulse shape from symmetric to antisymmetric) and a linear phase that sets
the arrival time; the receiver's band-pass (magnitude and phase) then shapes it. The pulse is
split over the channels along a random polarisation direction and scaled to the requested SNR.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crnn.noise import ReceiverSettings, _random_directions


@dataclass(frozen=True)
class PulseSettings:
    #: range of the spectral slope b in |E(f)| ~ 10^(b f), per Hz (-1e-8/Hz = -10 per GHz)
    spectral_slope_log10_per_hz: tuple[float, float] = (-1e-8, 0.0)
    #: range of the arrival time, as a fraction of the trace length
    arrival_fraction_range: tuple[float, float] = (0.1, 0.8)


@dataclass
class Pulses:
    waveforms: np.ndarray  # (n, C, T), peak of max |x| over channels = 1
    time_s: np.ndarray  # time of the peak |x|
    polarisation_angle_rad: np.ndarray  # atan2(ch1, ch0); NaN with one channel
    spectral_slope_log10_per_hz: np.ndarray
    phase_rad: np.ndarray


class PulseModel:
    """Configure once, then draw any number of unit-peak pulses with an explicit generator."""

    def __init__(self, receiver: ReceiverSettings, settings: PulseSettings) -> None:
        self.receiver = receiver
        self.settings = settings
        self._f = receiver.frequencies_hz
        self._h = receiver.response

    def generate(self, n_traces: int, rng: np.random.Generator) -> Pulses:
        r, s = self.receiver, self.settings
        duration_s = r.n_samples / r.sampling_rate_hz
        slope = rng.uniform(*s.spectral_slope_log10_per_hz, size=(n_traces, 1))
        phase = rng.uniform(0, 2 * np.pi, size=(n_traces, 1))
        t0 = rng.uniform(*s.arrival_fraction_range, size=(n_traces, 1)) * duration_s
        spec = 10 ** (slope * self._f) * np.exp(1j * (phase - 2 * np.pi * self._f * t0)) * self._h
        spec[:, 0] = 0.0
        wave = np.fft.irfft(spec, n=r.n_samples, axis=-1)
        direction = _random_directions(n_traces, r.n_channels, rng)
        out = direction[:, :, None] * wave[:, None, :]
        peak = np.max(np.abs(out), axis=(1, 2))
        out /= np.where(peak > 0, peak, 1.0)[:, None, None]
        t_peak = np.argmax(np.max(np.abs(out), axis=1), axis=-1) / r.sampling_rate_hz
        if r.n_channels >= 2:
            pol = np.arctan2(direction[:, 1], direction[:, 0])
        else:
            pol = np.full(n_traces, np.nan)
        return Pulses(out, t_peak, pol, slope[:, 0], phase[:, 0])
