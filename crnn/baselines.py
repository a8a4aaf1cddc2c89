"""Classical trigger statistics computed on the same traces as the networks.

``envelope``: the maximum over channels and time of the Hilbert envelope, divided by the
trace's noise RMS. The noise RMS is estimated from the samples outside a window of
``signal_window_s`` (default 120 ns, as NuRadioReco's SNR) centred on the envelope maximum, over
all channels, so a strong pulse does not inflate its own noise estimate. This is the usual
"band-pass, Hilbert envelope, cut on max envelope / sigma" trigger.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import hilbert

BASELINES = ("envelope",)


def envelope_snr(traces: np.ndarray, sampling_rate_hz: float, signal_window_s: float = 120e-9) -> np.ndarray:
    """Max Hilbert envelope over channels and samples / noise RMS, one value per trace."""
    x = np.asarray(traces, dtype=np.float64)
    if x.ndim == 2:
        x = x[:, None, :]
    n, _, t = x.shape
    env = np.abs(hilbert(x, axis=-1))
    env_max_t = env.max(axis=1)  # (n, T)
    peak_idx = np.argmax(env_max_t, axis=1)
    peak = env_max_t[np.arange(n), peak_idx]
    half = max(1, int(round(signal_window_s * sampling_rate_hz / 2)))
    samples = np.arange(t)[None, :]
    outside = np.abs(samples - peak_idx[:, None]) > half  # (n, T)
    if not outside.any(axis=1).all():
        outside[:] = True  # trace shorter than the window: use the whole trace
    power = (x**2).sum(axis=1)  # (n, T), summed over channels
    count = outside.sum(axis=1) * x.shape[1]
    rms = np.sqrt((power * outside).sum(axis=1) / count)
    return (peak / np.where(rms > 0, rms, np.inf)).astype(np.float32)


def baseline_scores(name: str, traces: np.ndarray, sampling_rate_hz: float) -> np.ndarray:
    if name == "envelope":
        return envelope_snr(traces, sampling_rate_hz)
    msg = f"unknown baseline {name!r}; available: {', '.join(BASELINES)}"
    raise ValueError(msg)
