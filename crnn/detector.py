"""The detector a simulated trace passes through: antenna, RF chain and noise, fixed or randomised.

A trace's signal path is ``antenna x chain`` (complex transfer functions per channel, one per rfft
bin, see :mod:`crnn.responses`). Pulses, sky (galactic) noise and human-made interference are
picked up by the antenna and pass the whole path; receiver (amplifier) noise enters after the
antenna and passes only the chain. The noise colour therefore differs from the pulse spectrum in a
way that depends on the antenna, as in a real station.

Two modes, set by :class:`RandomiseSettings` ``enabled``:

* fixed: every trace sees the receiver's configured ``response`` (default: the analog Butterworth
  band-pass of ``band_hz`` and ``filter_order``) and ``antenna`` (default: flat), one receiver
  temperature and one galactic scale: one detector;
* randomised (the default training world): every block draws ``chains_per_block`` detectors
  (band edges, edge filter kinds and orders, an antenna term, echoes, cable loss, tilt) and every
  trace takes one of them with its own per-channel gain and delay jitter, sign flips, receiver
  temperature and galactic scale. Every drawn parameter is returned per trace, so misses can be
  analysed by it.

Configure once (:class:`Detector`), then :meth:`Detector.draw` for any number of traces with an
explicit generator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crnn.errors import CrnnError
from crnn.responses import AnalogBandpass, Cable, DigitalBandpass, Echo, LogPeriodic, Resonance, Tilt

#: edge filter kinds of the randomised chains, in the order of their per-trace codes
EDGE_KINDS = ("butter", "cheby1", "bessel")
#: antenna terms of the randomised chains, in the order of their per-trace codes
ANTENNA_KINDS = ("flat", "resonance", "log_periodic")


@dataclass(frozen=True)
class RandomCWSettings:
    """CW lines drawn per trace on top of the configured ones (frequencies anywhere in the band)."""

    #: range of the number of lines per trace (inclusive)
    n_lines: tuple[int, int] = (0, 3)
    #: range of the peak amplitude in units of the expected noise RMS (drawn log-uniformly)
    amplitude_rel_noise: tuple[float, float] = (0.1, 3.0)
    #: the band widened by this fraction of its width on both sides: where line frequencies are drawn
    band_margin_fraction: float = 0.1
    #: the largest relative amplitude change across a trace
    amplitude_drift: float = 0.3
    #: the largest frequency change across a trace in Hz
    frequency_drift_hz: float = 200e3


@dataclass(frozen=True)
class RandomiseSettings:
    """Ranges from which a randomised detector is drawn (``simulate.randomise``)."""

    enabled: bool = True
    #: distinct detectors drawn per 1,000-trace block (each trace takes one of them)
    chains_per_block: int = 64
    #: each band edge moves by up to this fraction of the band width (uniform)
    edge_shift_fraction: tuple[float, float] = (-0.15, 0.15)
    #: filter kinds of the high- and low-pass edges (drawn with equal probability)
    edge_kinds: tuple[str, ...] = EDGE_KINDS
    #: order range of each edge filter (inclusive)
    edge_order: tuple[int, int] = (2, 10)
    #: pass-band ripple range of Chebyshev edges in dB
    ripple_db: tuple[float, float] = (0.1, 1.0)
    #: probability that a chain's edges are digital (bilinear transform at the sampling rate: a
    #: response that falls to nothing at the Nyquist frequency, as a digital filter in the FPGA)
    digital_probability: float = 0.25
    #: probability of each antenna term, in the order of :data:`ANTENNA_KINDS`
    antenna_probabilities: tuple[float, float, float] = (0.3, 0.35, 0.35)
    #: resonance: position in the band as a fraction of its width (0 = low edge) and quality factor
    resonance_position: tuple[float, float] = (-0.1, 1.1)
    resonance_q: tuple[float, float] = (2.0, 15.0)
    #: log-periodic antenna: scale factor tau (group delay 1 / (2 f ln(1/tau)))
    log_periodic_tau: tuple[float, float] = (0.7, 0.92)
    #: probability of a reflection (one or two echoes), their delay and amplitude ranges
    echo_probability: float = 0.5
    echo_delay_s: tuple[float, float] = (10e-9, 50e-9)
    echo_amplitude: tuple[float, float] = (0.05, 0.5)
    #: cable skin-effect loss in dB per sqrt(MHz) (0 = none; 50-115 m of RG58 is 0.7-1.7)
    cable_loss_db_per_sqrt_mhz: tuple[float, float] = (0.0, 1.7)
    #: linear gain tilt across the band in dB (low edge to high edge)
    tilt_db: tuple[float, float] = (-10.0, 10.0)
    #: per-channel relative gain jitter (uniform +-), delay jitter (uniform +-) and sign flips
    channel_gain_jitter: float = 0.1
    channel_delay_jitter_s: float = 5e-9
    channel_sign_flip_probability: float = 0.25
    #: probability that the last channel has a detector of its own (e.g. GRAND's vertical arm)
    independent_channel_probability: float = 0.2
    #: receiver noise temperature in K (drawn log-uniformly) and factor on the sky temperature
    noise_temperature_k: tuple[float, float] = (20.0, 400.0)
    galactic_scale: tuple[float, float] = (0.5, 2.0)
    cw: RandomCWSettings = field(default_factory=RandomCWSettings)

    def check(self) -> None:
        def rng_ok(name: str, lo: float, hi: float, low: float = -np.inf) -> None:
            if not low <= lo <= hi:
                msg = f"simulate.randomise.{name} must satisfy {low:g} <= min <= max, got [{lo}, {hi}]"
                raise CrnnError(msg)

        if self.chains_per_block < 1:
            raise CrnnError(f"simulate.randomise.chains_per_block must be >= 1, got {self.chains_per_block}")
        unknown = [k for k in self.edge_kinds if k not in EDGE_KINDS]
        if not self.edge_kinds or unknown:
            raise CrnnError(f"simulate.randomise.edge_kinds: unknown {unknown}; expected some of {list(EDGE_KINDS)}")
        p = np.asarray(self.antenna_probabilities, dtype=float)
        if np.any(p < 0) or not np.isclose(p.sum(), 1.0):
            msg = f"simulate.randomise.antenna_probabilities ({', '.join(ANTENNA_KINDS)}) must be >= 0 and sum to 1, got {p.tolist()}"
            raise CrnnError(msg)
        rng_ok("edge_shift_fraction", *self.edge_shift_fraction, low=-0.5)
        rng_ok("edge_order", *self.edge_order, low=1)
        rng_ok("ripple_db", *self.ripple_db, low=0)
        rng_ok("resonance_q", *self.resonance_q, low=0.5)
        rng_ok("log_periodic_tau", *self.log_periodic_tau, low=0.05)
        if self.log_periodic_tau[1] >= 1:
            raise CrnnError(f"simulate.randomise.log_periodic_tau must be < 1, got {list(self.log_periodic_tau)}")
        rng_ok("echo_delay_s", *self.echo_delay_s, low=0)
        rng_ok("echo_amplitude", *self.echo_amplitude, low=0)
        rng_ok("cable_loss_db_per_sqrt_mhz", *self.cable_loss_db_per_sqrt_mhz, low=0)
        rng_ok("tilt_db", *self.tilt_db)
        rng_ok("noise_temperature_k", *self.noise_temperature_k, low=1e-6)
        rng_ok("galactic_scale", *self.galactic_scale, low=0)
        rng_ok("cw.n_lines", *self.cw.n_lines, low=0)
        rng_ok("cw.amplitude_rel_noise", *self.cw.amplitude_rel_noise, low=1e-9)
        for name in (
            "echo_probability",
            "digital_probability",
            "channel_sign_flip_probability",
            "independent_channel_probability",
        ):
            if not 0 <= getattr(self, name) <= 1:
                raise CrnnError(f"simulate.randomise.{name} must be in [0, 1], got {getattr(self, name)}")


#: per-trace parameters of the drawn detector, stored in simulated files (name: dtype)
PARAMETER_NAMES: dict[str, Any] = {
    "detector_randomised": np.int8,
    "response_highpass_hz": np.float32,
    "response_lowpass_hz": np.float32,
    "response_highpass_order": np.int8,
    "response_lowpass_order": np.int8,
    "response_highpass_kind": np.int8,
    "response_lowpass_kind": np.int8,
    "response_digital": np.int8,
    "antenna_kind": np.int8,
    "antenna_frequency_hz": np.float32,
    "antenna_q": np.float32,
    "antenna_tau": np.float32,
    "echo_delay_s": np.float32,
    "echo_amplitude": np.float32,
    "cable_loss_db_per_sqrt_mhz": np.float32,
    "tilt_db": np.float32,
    "group_delay_spread_s": np.float32,
    "noise_temperature_k": np.float32,
    "galactic_scale": np.float32,
}


@dataclass
class DetectorDraw:
    """The detectors of ``n`` traces: transfer functions (n or 1, C or 1, F) and parameters."""

    antenna: np.ndarray
    chain: np.ndarray
    noise_temperature_k: np.ndarray  # (n,)
    galactic_scale: np.ndarray  # (n,)
    params: dict[str, np.ndarray]

    @property
    def path(self) -> np.ndarray:
        """Transfer function of what the antenna picks up: antenna x chain."""
        return self.antenna * self.chain


def _band_mask(f: np.ndarray, band_hz: tuple[float, float]) -> np.ndarray:
    return (f >= band_hz[0]) & (f <= band_hz[1])


def group_delay_spread(h: np.ndarray, f: np.ndarray, band_hz: tuple[float, float]) -> np.ndarray:
    """max - min of the group delay over the band, for transfer functions (..., F), in s."""
    inside = _band_mask(f, band_hz)
    phase = np.unwrap(np.angle(h[..., inside]), axis=-1)
    tau = -np.diff(phase, axis=-1) / np.diff(f[inside]) / (2 * np.pi)
    return tau.max(axis=-1) - tau.min(axis=-1)


class Detector:
    """Configure once from the receiver, the fixed receiver temperature and sky scale, and the
    randomisation ranges (the sky spectrum itself belongs to :class:`crnn.noise.StationaryNoise`)."""

    def __init__(
        self,
        receiver: Any,
        randomise: RandomiseSettings,
        *,
        noise_temperature_k: float,
        galactic_scale: float,
    ) -> None:
        randomise.check()
        self.receiver = receiver
        self.randomise = randomise
        self.noise_temperature_k = float(noise_temperature_k)
        self.galactic_scale = float(galactic_scale)
        self.f = receiver.frequencies_hz
        n_ch = receiver.n_channels
        self.fixed_antenna = receiver.antenna_transfer()  # (C, F)
        self.fixed_chain = receiver.chain_transfer()  # (C, F), gain included
        assert self.fixed_antenna.shape == self.fixed_chain.shape == (n_ch, len(self.f))

    # ----------------------------------------------------------------- fixed detector
    def _fixed(self, n: int) -> DetectorDraw:
        r = self.receiver
        params = {k: np.full(n, np.nan if np.dtype(d).kind == "f" else -1, dtype=d) for k, d in PARAMETER_NAMES.items()}
        params["detector_randomised"][:] = 0
        spread = group_delay_spread(self.fixed_antenna[0] * self.fixed_chain[0], self.f, r.band_hz)
        params["group_delay_spread_s"][:] = spread
        params["noise_temperature_k"][:] = self.noise_temperature_k
        params["galactic_scale"][:] = self.galactic_scale
        return DetectorDraw(
            self.fixed_antenna[None],
            self.fixed_chain[None],
            np.full(n, self.noise_temperature_k),
            np.full(n, self.galactic_scale),
            params,
        )

    # ------------------------------------------------------------ randomised detectors
    def _draw_pool(self, m: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """``m`` detectors: antenna (m, F), chain (m, F) (peak 1 in the band) and their parameters."""
        s, r, f = self.randomise, self.receiver, self.f
        lo, hi = r.band_hz
        width = hi - lo
        nyq = r.sampling_rate_hz / 2
        hp = lo + rng.uniform(*s.edge_shift_fraction, size=m) * width
        lp = hi + rng.uniform(*s.edge_shift_fraction, size=m) * width
        hp = np.clip(hp, 0.02 * nyq, 0.9 * nyq)
        lp = np.clip(lp, hp * 1.2, 0.98 * nyq)
        kinds = [EDGE_KINDS.index(k) for k in s.edge_kinds]
        hp_kind = rng.choice(kinds, size=m)
        lp_kind = rng.choice(kinds, size=m)
        hp_order = rng.integers(s.edge_order[0], s.edge_order[1] + 1, size=m)
        lp_order = rng.integers(s.edge_order[0], s.edge_order[1] + 1, size=m)
        ripple = rng.uniform(*s.ripple_db, size=m)
        ant_kind = rng.choice(
            len(ANTENNA_KINDS), size=m, p=np.asarray(s.antenna_probabilities) / sum(s.antenna_probabilities)
        )
        ant_f = lo + rng.uniform(*s.resonance_position, size=m) * width
        ant_q = rng.uniform(*s.resonance_q, size=m)
        ant_tau = rng.uniform(*s.log_periodic_tau, size=m)
        has_echo = rng.random(m) < s.echo_probability
        n_echo = rng.integers(1, 3, size=m)
        echo_delay = rng.uniform(*s.echo_delay_s, size=(m, 2))
        echo_amp = rng.uniform(*s.echo_amplitude, size=(m, 2)) * rng.choice((-1.0, 1.0), size=(m, 2))
        cable = rng.uniform(*s.cable_loss_db_per_sqrt_mhz, size=m)
        tilt = rng.uniform(*s.tilt_db, size=m)
        # drawn only when enabled: runs without digital chains keep the numbers they had before
        digital = rng.random(m) < s.digital_probability if s.digital_probability > 0 else np.zeros(m, dtype=bool)

        antenna = np.empty((m, len(f)), dtype=np.complex128)
        chain = np.empty((m, len(f)), dtype=np.complex128)
        inside = _band_mask(f, (hp.min(), lp.max()))
        ref_hz = lo + width / 2
        for i in range(m):
            # the response families of crnn.responses, built directly (no spec parsing: 64 per block)
            edges = dict(
                band_hz=(float(hp[i]), float(lp[i])),
                highpass_order=int(hp_order[i]),
                lowpass_order=int(lp_order[i]),
                highpass_kind=EDGE_KINDS[hp_kind[i]],
                lowpass_kind=EDGE_KINDS[lp_kind[i]],
                ripple_db=float(ripple[i]),
            )
            if digital[i]:
                h = DigitalBandpass(**edges, sampling_rate_hz=r.sampling_rate_hz).transfer(f)
            else:
                h = AnalogBandpass(**edges).transfer(f)
            h = h * Cable(loss_db_per_sqrt_mhz=float(cable[i])).transfer(f)
            h = h * Tilt(slope_db_per_mhz=float(tilt[i] / (width / 1e6)), reference_frequency_hz=ref_hz).transfer(f)
            if has_echo[i]:
                k = int(n_echo[i])
                h = h * Echo(delays_s=tuple(echo_delay[i, :k]), amplitudes=tuple(echo_amp[i, :k])).transfer(f)
            chain[i] = h / max(np.max(np.abs(h[inside])), 1e-30)
            kind = ANTENNA_KINDS[ant_kind[i]]
            if kind == "flat":
                a = np.ones(len(f), dtype=np.complex128)
            elif kind == "resonance":
                a = Resonance(frequency_hz=float(ant_f[i]), q=float(ant_q[i])).transfer(f)
            else:
                a = LogPeriodic(tau=float(ant_tau[i]), band_hz=(float(hp[i]), float(lp[i]))).transfer(f)
            antenna[i] = a / max(np.max(np.abs(a[inside])), 1e-30)
        nan = np.float32(np.nan)
        params = {
            "response_highpass_hz": hp,
            "response_lowpass_hz": lp,
            "response_highpass_order": hp_order,
            "response_lowpass_order": lp_order,
            "response_highpass_kind": hp_kind,
            "response_lowpass_kind": lp_kind,
            "response_digital": digital.astype(np.int8),
            "antenna_kind": ant_kind,
            "antenna_frequency_hz": np.where(ant_kind == 1, ant_f, nan),
            "antenna_q": np.where(ant_kind == 1, ant_q, nan),
            "antenna_tau": np.where(ant_kind == 2, ant_tau, nan),
            "echo_delay_s": np.where(has_echo, echo_delay[:, 0], nan),
            "echo_amplitude": np.where(has_echo, echo_amp[:, 0], nan),
            "cable_loss_db_per_sqrt_mhz": cable,
            "tilt_db": tilt,
            "group_delay_spread_s": group_delay_spread(antenna * chain, f, r.band_hz),
        }
        return antenna, chain, params

    def draw(self, n: int, rng: np.random.Generator) -> DetectorDraw:
        """The detectors of ``n`` traces (broadcastable arrays in fixed mode)."""
        s = self.randomise
        if not s.enabled:
            return self._fixed(n)
        r, f = self.receiver, self.f
        m = s.chains_per_block
        antenna_pool, chain_pool, pool_params = self._draw_pool(m, rng)
        pick = rng.integers(0, m, size=n)
        n_ch = r.n_channels
        pick_ch = np.repeat(pick[:, None], n_ch, axis=1)
        if n_ch > 1:
            own = rng.random(n) < s.independent_channel_probability
            pick_ch[own, -1] = rng.integers(0, m, size=int(own.sum()))
        gain = 1 + rng.uniform(-1, 1, size=(n, n_ch, 1)) * s.channel_gain_jitter
        delay = rng.uniform(-1, 1, size=(n, n_ch, 1)) * s.channel_delay_jitter_s
        sign = np.where(rng.random((n, n_ch, 1)) < s.channel_sign_flip_probability, -1.0, 1.0)
        gain = (gain * sign * 10 ** (r.gain_db / 20)).astype(np.float32)  # pool chains peak at 1 in the band
        phase = (-2 * np.pi * f[None, None, :] * delay).astype(np.float32)
        jitter = gain * (np.cos(phase) + 1j * np.sin(phase)).astype(np.complex64)
        chain = chain_pool.astype(np.complex64)[pick_ch] * jitter
        antenna = antenna_pool.astype(np.complex64)[pick_ch]
        t_rec = np.exp(rng.uniform(*np.log(s.noise_temperature_k), size=n))
        g_scale = rng.uniform(*s.galactic_scale, size=n)
        params = {k: np.asarray(v)[pick].astype(PARAMETER_NAMES[k]) for k, v in pool_params.items()}
        params["detector_randomised"] = np.ones(n, dtype=np.int8)
        params["noise_temperature_k"] = t_rec.astype(np.float32)
        params["galactic_scale"] = g_scale.astype(np.float32)
        params = {k: params[k] for k in PARAMETER_NAMES}
        return DetectorDraw(antenna, chain, t_rec, g_scale, params)
