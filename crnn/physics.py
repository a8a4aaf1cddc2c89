"""Physical constants, the galactic sky spectrum and the receiver's band-pass response.

All quantities are SI: frequencies in Hz, temperatures in K, resistances in ohm, voltages in V.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

K_BOLTZMANN_J_PER_K = 1.380649e-23
SPEED_OF_LIGHT_M_PER_S = 299_792_458.0
LOAD_RESISTANCE_OHM = 50.0


def cane_sky_temperature_k(frequency_hz: np.ndarray) -> np.ndarray:
    """Brightness temperature of the radio sky after Cane (1979), as fitted by Dulk et al. (2001).

    The fit describes the sky near the Galactic poles (close to the minimum of the sidereal
    day): T_b = 17,781 K at 30 MHz and 1,453 K at 80 MHz. Returns 0 at frequencies <= 0.
    """
    f = np.asarray(frequency_hz, dtype=float)
    out = np.zeros_like(f)
    pos = f > 0
    nu_mhz = f[pos] / 1e6
    tau = 5.0 * nu_mhz**-2.1
    i_gal = 2.48e-20 * nu_mhz**-0.52 * (-np.expm1(-tau)) / tau
    i_xgal = 1.06e-20 * nu_mhz**-0.80 * np.exp(-tau)
    intensity = i_gal + i_xgal  # W m^-2 Hz^-1 sr^-1
    out[pos] = intensity * SPEED_OF_LIGHT_M_PER_S**2 / (2 * K_BOLTZMANN_J_PER_K * f[pos] ** 2)
    return out


def noise_voltage_psd_v2_per_hz(
    temperature_k: np.ndarray, load_resistance_ohm: float = LOAD_RESISTANCE_OHM
) -> np.ndarray:
    """One-sided voltage power spectral density across a matched load: S_v = k_B T R."""
    return K_BOLTZMANN_J_PER_K * np.asarray(temperature_k, dtype=float) * load_resistance_ohm


def bandpass_response(frequency_hz: np.ndarray, band_hz: tuple[float, float], order: int) -> np.ndarray:
    """Complex response of an analog Butterworth band-pass filter (magnitude and phase).

    ``order`` is the order of the low-pass prototype, as in ``scipy.signal.butter``; the
    response is 1/sqrt(2) in amplitude at the band edges.
    """
    f_lo, f_hi = band_hz
    b, a = signal.butter(order, [2 * np.pi * f_lo, 2 * np.pi * f_hi], btype="bandpass", analog=True)
    _, h = signal.freqs(b, a, worN=2 * np.pi * np.asarray(frequency_hz, dtype=float))
    return np.asarray(h, dtype=np.complex128)
