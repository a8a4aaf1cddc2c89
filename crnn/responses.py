"""Detector responses as data: analog and digital filters, antenna terms, cables and measured tables.

A response is any object with ``transfer(frequency_hz) -> complex128`` (:class:`Response`). It is
built from a plain mapping (a YAML/JSON config section) by :func:`build_response`::

    build_response({"family": "analog_butterworth", "band_hz": [30e6, 80e6], "order": 5},
                   sampling_rate_hz=180e6)

Sign convention (numpy's): a response multiplies ``numpy.fft.rfft(trace)`` and the result goes back
through ``irfft``. A delay d is ``exp(-2j pi f d)``; the group delay is -(1/2 pi) d(phase)/df and
is positive for a causal filter. ``scipy.signal.freqs`` of an analog filter (s = 2j pi f) and a
VNA's S21 are used as they are, without conjugation.

Every family is a small frozen dataclass; the names and keys are listed in docs/formats.md
("Detector responses"). Problems with a spec or a table raise :class:`~crnn.errors.CrnnError` with
one line naming the file (or spec), the column (or key), what was expected and what was found.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from scipy import signal

from crnn.errors import CrnnError, MissingFieldError
from crnn.settings import from_mapping

log = logging.getLogger(__name__)

MHZ = 1e6
_DB_PER_NEPER = 20.0 / math.log(10.0)


@runtime_checkable
class Response(Protocol):
    """Anything with a complex transfer function H(f) (numpy's FFT sign convention)."""

    def transfer(self, frequency_hz: np.ndarray) -> np.ndarray: ...


def _freq(frequency_hz: Any) -> np.ndarray:
    return np.asarray(frequency_hz, dtype=np.float64)


def _check_band(band_hz: tuple[float, float], where: str, nyquist_hz: float | None = None) -> None:
    lo, hi = band_hz
    if not 0 < lo < hi:
        msg = f"{where}: band_hz must be two increasing positive frequencies in Hz; found {list(band_hz)}"
        raise CrnnError(msg)
    if nyquist_hz is not None and not hi < nyquist_hz:
        msg = f"{where}: band_hz upper edge {hi:g} Hz must lie below the Nyquist frequency {nyquist_hz:g} Hz"
        raise CrnnError(msg)


def _check_order(order: int, where: str, key: str = "order", minimum: int = 1) -> None:
    if order < minimum:
        msg = f"{where}: {key} must be an integer >= {minimum}; found {order}"
        raise CrnnError(msg)


def _zpk_eval(z: np.ndarray, p: np.ndarray, k: float, x: np.ndarray) -> np.ndarray:
    """k prod(x - z) / prod(x - p), factor by factor (no overflow of the polynomial form)."""
    h = np.full(x.shape, complex(k), dtype=np.complex128)
    n = min(len(z), len(p))
    for i in range(n):
        h *= (x - z[i]) / (x - p[i])
    for zi in z[n:]:
        h *= x - zi
    for pi in p[n:]:
        h /= x - pi
    return h


class _AnalogZpk:
    """Mixin: an analog filter given by ``zpk`` in rad/s, evaluated at s = 2j pi f."""

    @cached_property
    def zpk(self) -> tuple[np.ndarray, np.ndarray, float]:
        raise NotImplementedError

    def transfer(self, frequency_hz: np.ndarray) -> np.ndarray:
        z, p, k = self.zpk
        return _zpk_eval(z, p, k, 2j * np.pi * _freq(frequency_hz))


# --------------------------------------------------------------------------------------- filters
_EDGE_KINDS = ("butter", "cheby1", "bessel")


@functools.lru_cache(maxsize=1024)
def _prototype_zpk(kind: str, order: int, ripple_db: float):
    """Analog low-pass prototype (cut-off 1 rad/s) of an edge, as scipy.signal.iirfilter builds it."""
    if kind == "butter":
        return signal.buttap(order)
    if kind == "cheby1":
        return signal.cheb1ap(order, ripple_db)
    return signal.besselap(order, norm="mag")  # root finding: the cache makes randomised chains cheap


def _edge_zpk(kind: str, order: int, frequency_hz: float, btype: str, ripple_db: float):
    z, p, k = _prototype_zpk(kind, int(order), float(ripple_db) if kind == "cheby1" else 0.0)
    w = 2 * np.pi * frequency_hz
    if btype == "lowpass":
        return signal.lp2lp_zpk(z, p, k, wo=w)
    return signal.lp2hp_zpk(z, p, k, wo=w)


@dataclass(frozen=True)
class AnalogButterworth(_AnalogZpk):
    """``scipy.signal.butter(order, band, 'bandpass', analog=True)``: total order 2 x ``order``."""

    band_hz: tuple[float, float]
    order: int = 5

    def __post_init__(self) -> None:
        _check_band(self.band_hz, "response 'analog_butterworth'")
        _check_order(self.order, "response 'analog_butterworth'")

    @cached_property
    def zpk(self):
        w = [2 * np.pi * self.band_hz[0], 2 * np.pi * self.band_hz[1]]
        return signal.butter(self.order, w, btype="bandpass", analog=True, output="zpk")


@dataclass(frozen=True)
class AnalogChebyshev(_AnalogZpk):
    """``scipy.signal.cheby1(order, ripple_db, band, 'bandpass', analog=True)``."""

    band_hz: tuple[float, float]
    order: int = 5
    ripple_db: float = 1.0

    def __post_init__(self) -> None:
        _check_band(self.band_hz, "response 'analog_chebyshev'")
        _check_order(self.order, "response 'analog_chebyshev'")
        if not self.ripple_db > 0:
            msg = f"response 'analog_chebyshev': ripple_db must be positive; found {self.ripple_db}"
            raise CrnnError(msg)

    @cached_property
    def zpk(self):
        w = [2 * np.pi * self.band_hz[0], 2 * np.pi * self.band_hz[1]]
        return signal.cheby1(self.order, self.ripple_db, w, btype="bandpass", analog=True, output="zpk")


@dataclass(frozen=True)
class AnalogBandpass(_AnalogZpk):
    """A high-pass edge at ``band_hz[0]`` times a low-pass edge at ``band_hz[1]``, each of its own kind/order.

    Kinds: butter (-3 dB at the edge), cheby1 (end of the ``ripple_db`` pass-band ripple), bessel
    (-3 dB at the edge, ``norm='mag'``). An order of 0 leaves that edge out.
    """

    band_hz: tuple[float, float]
    highpass_order: int = 5
    lowpass_order: int = 5
    highpass_kind: str = "butter"
    lowpass_kind: str = "butter"
    ripple_db: float = 1.0

    def __post_init__(self) -> None:
        where = "response 'analog_bandpass'"
        _check_band(self.band_hz, where)
        _check_order(self.highpass_order, where, "highpass_order", 0)
        _check_order(self.lowpass_order, where, "lowpass_order", 0)
        for key in ("highpass_kind", "lowpass_kind"):
            if getattr(self, key) not in _EDGE_KINDS:
                msg = f"{where}: {key} must be one of {list(_EDGE_KINDS)}; found {getattr(self, key)!r}"
                raise CrnnError(msg)
        if not self.ripple_db > 0:
            msg = f"{where}: ripple_db must be positive; found {self.ripple_db}"
            raise CrnnError(msg)

    @cached_property
    def zpk(self):
        return self.analog_zpk

    @property
    def analog_zpk(self):
        """The analog edges' zeros, poles and gain (rad/s)."""
        zs, ps, k = [], [], 1.0
        for kind, order, f, btype in (
            (self.highpass_kind, self.highpass_order, self.band_hz[0], "highpass"),
            (self.lowpass_kind, self.lowpass_order, self.band_hz[1], "lowpass"),
        ):
            if order:
                z, p, kk = _edge_zpk(kind, order, f, btype, self.ripple_db)
                zs.append(z)
                ps.append(p)
                k *= kk
        z = np.concatenate(zs) if zs else np.zeros(0)
        p = np.concatenate(ps) if ps else np.zeros(0)
        return z, p, k


@dataclass(frozen=True)
class DigitalBandpass(AnalogBandpass):
    """:class:`AnalogBandpass` designed in the digital domain: the edges pre-warped and mapped by
    the bilinear transform at ``sampling_rate_hz`` (as ``scipy.signal.iirfilter(..., fs=...)``
    does). The zeros of the low-pass edge land at the Nyquist frequency, so the response falls to
    nothing there, unlike any analog filter; the group delay differs near the edges."""

    sampling_rate_hz: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        where = "response 'digital_bandpass'"
        if not self.sampling_rate_hz > 0:
            raise CrnnError(f"{where}: sampling_rate_hz must be positive; found {self.sampling_rate_hz}")
        _check_band(self.band_hz, where, self.sampling_rate_hz / 2)

    @cached_property
    def zpk(self):
        fs = self.sampling_rate_hz
        warped = tuple(fs / np.pi * np.tan(np.pi * f / fs) for f in self.band_hz)  # pre-warp the edges
        analog = AnalogBandpass(
            band_hz=warped,
            highpass_order=self.highpass_order,
            lowpass_order=self.lowpass_order,
            highpass_kind=self.highpass_kind,
            lowpass_kind=self.lowpass_kind,
            ripple_db=self.ripple_db,
        )
        z, p, k = analog.analog_zpk
        return signal.bilinear_zpk(z, p, k, fs)

    def transfer(self, frequency_hz: np.ndarray) -> np.ndarray:
        z, p, k = self.zpk
        return _zpk_eval(z, p, k, np.exp(2j * np.pi * _freq(frequency_hz) / self.sampling_rate_hz))


@dataclass(frozen=True)
class ZeroPhase:
    """|H| of :class:`AnalogButterworth`, with zero phase (an acausal, symmetric impulse response)."""

    band_hz: tuple[float, float]
    order: int = 5

    def __post_init__(self) -> None:
        _check_band(self.band_hz, "response 'zero_phase'")
        _check_order(self.order, "response 'zero_phase'")

    def transfer(self, frequency_hz: np.ndarray) -> np.ndarray:
        return np.abs(AnalogButterworth(self.band_hz, self.order).transfer(frequency_hz)).astype(np.complex128)


@dataclass(frozen=True)
class _Digital:
    """A digital IIR band-pass (bilinear transform at ``sampling_rate_hz``), evaluated like ``freqz``."""

    band_hz: tuple[float, float]
    sampling_rate_hz: float
    order: int = 5
    ripple_db: float = 1.0

    family = "digital"

    def __post_init__(self) -> None:
        where = f"response {self.family!r}"
        if not self.sampling_rate_hz > 0:
            msg = f"{where}: sampling_rate_hz must be positive; found {self.sampling_rate_hz}"
            raise CrnnError(msg)
        _check_band(self.band_hz, where, self.sampling_rate_hz / 2)
        _check_order(self.order, where)

    def transfer(self, frequency_hz: np.ndarray) -> np.ndarray:
        z, p, k = self.zpk
        return _zpk_eval(z, p, k, np.exp(2j * np.pi * _freq(frequency_hz) / self.sampling_rate_hz))


@dataclass(frozen=True)
class DigitalButterworth(_Digital):
    family = "digital_butterworth"

    @cached_property
    def zpk(self):
        return signal.butter(self.order, list(self.band_hz), btype="bandpass", fs=self.sampling_rate_hz, output="zpk")


@dataclass(frozen=True)
class DigitalChebyshev(_Digital):
    family = "digital_chebyshev"

    @cached_property
    def zpk(self):
        return signal.cheby1(
            self.order, self.ripple_db, list(self.band_hz), btype="bandpass", fs=self.sampling_rate_hz, output="zpk"
        )


# ---------------------------------------------------------------------------------- antenna terms
@dataclass(frozen=True)
class LogPeriodic:
    """A log-periodic antenna's chirp times a smooth band-limited magnitude.

    Phase phi(f) = (pi / ln tau) ln(f / band_hz[1]) (NuRadioReco ``AntennaPatternAnalytic.parametric_phase``
    without its constant), so the group delay is 1/(2 f ln(1/tau)) > 0: low frequencies arrive last
    (57.9 ns at 30 MHz, 21.7 ns at 80 MHz for tau = 0.75). |H| is that of an analog Butterworth
    band-pass of ``order`` (default 1: a gentle roll-off) over ``band_hz``. H = 0 at f <= 0.
    """

    band_hz: tuple[float, float] = (30e6, 80e6)
    tau: float = 0.8
    order: int = 1

    def __post_init__(self) -> None:
        _check_band(self.band_hz, "response 'log_periodic'")
        _check_order(self.order, "response 'log_periodic'")
        if not 0 < self.tau < 1:
            msg = f"response 'log_periodic': tau must lie in (0, 1) (LPDAs: 0.75-0.9); found {self.tau}"
            raise CrnnError(msg)

    def transfer(self, frequency_hz: np.ndarray) -> np.ndarray:
        f = _freq(frequency_hz)
        mag = np.abs(AnalogButterworth(self.band_hz, self.order).transfer(f))
        out = np.zeros(f.shape, dtype=np.complex128)
        pos = f > 0
        phase = (np.pi / math.log(self.tau)) * np.log(f[pos] / self.band_hz[1])
        out[pos] = mag[pos] * np.exp(1j * phase)
        return out


@dataclass(frozen=True)
class Resonance:
    """Second-order resonance H = 1 / (1 + j Q (f/f0 - f0/f)): peak 1 at f0, group delay Q/(pi f0) there.

    LOFAR LBA at zenith: f0 = 59 MHz, Q ~ 11 (docs: -3 dB width 5.3 MHz). H = 0 at f <= 0.
    """

    frequency_hz: float
    q: float = 10.0

    def __post_init__(self) -> None:
        if not self.frequency_hz > 0 or not self.q > 0:
            msg = f"response 'resonance': frequency_hz and q must be positive; found {self.frequency_hz}, {self.q}"
            raise CrnnError(msg)

    def transfer(self, frequency_hz: np.ndarray) -> np.ndarray:
        f = _freq(frequency_hz)
        out = np.zeros(f.shape, dtype=np.complex128)
        pos = f > 0
        x = f[pos] / self.frequency_hz
        out[pos] = 1.0 / (1.0 + 1j * self.q * (x - 1.0 / x))
        return out


@dataclass(frozen=True)
class Echo:
    """Reflections: H = 1 + sum_k a_k exp(-2j pi f d_k) (mismatch echoes: 15-40 ns, 0.1-0.5)."""

    delays_s: tuple[float, ...]
    amplitudes: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.delays_s) != len(self.amplitudes):
            msg = (
                f"response 'echo': delays_s and amplitudes must have the same length; found "
                f"{len(self.delays_s)} and {len(self.amplitudes)}"
            )
            raise CrnnError(msg)

    def transfer(self, frequency_hz: np.ndarray) -> np.ndarray:
        f = _freq(frequency_hz)
        out = np.ones(f.shape, dtype=np.complex128)
        for d, a in zip(self.delays_s, self.amplitudes, strict=True):
            out += a * np.exp(-2j * np.pi * f * d)
        return out


@dataclass(frozen=True)
class Cable:
    """Skin-effect coax: H = exp(-a sqrt(j w)) with loss ``loss_db_per_sqrt_mhz`` x sqrt(f/MHz) dB.

    The phase equals minus the loss in nepers (the minimum-phase partner of a sqrt(f) loss), so
    the dispersive group delay is loss_Np(f) / (4 pi f): 2.9 ns at 30 MHz, 1.8 ns at 80 MHz for
    1.716 dB/sqrt(MHz) (115 m RG58). The constant transit delay is left out (use ``delay``).
    RG58: 0.7-1.7 dB/sqrt(MHz) for 50-115 m.
    """

    loss_db_per_sqrt_mhz: float

    def __post_init__(self) -> None:
        if not self.loss_db_per_sqrt_mhz >= 0:
            msg = f"response 'cable': loss_db_per_sqrt_mhz must be >= 0; found {self.loss_db_per_sqrt_mhz}"
            raise CrnnError(msg)

    def transfer(self, frequency_hz: np.ndarray) -> np.ndarray:
        f = np.abs(_freq(frequency_hz))
        nepers = self.loss_db_per_sqrt_mhz * np.sqrt(f / MHZ) / _DB_PER_NEPER
        return np.exp(-nepers * (1 + 1j))


@dataclass(frozen=True)
class Gain:
    """Flat gain in dB (amplitude: 10**(gain_db/20))."""

    gain_db: float = 0.0

    def transfer(self, frequency_hz: np.ndarray) -> np.ndarray:
        return np.full(_freq(frequency_hz).shape, 10 ** (self.gain_db / 20), dtype=np.complex128)


@dataclass(frozen=True)
class Delay:
    """Pure delay: exp(-2j pi f delay_s)."""

    delay_s: float = 0.0

    def transfer(self, frequency_hz: np.ndarray) -> np.ndarray:
        return np.exp(-2j * np.pi * _freq(frequency_hz) * self.delay_s)


def minimum_phase_rad(log_gain, f_max_hz: float, n_grid: int = 2**15) -> tuple[np.ndarray, np.ndarray]:
    """Minimum phase (rad) of exp(log_gain(f)) on a uniform grid 0..f_max_hz (real cepstrum folding).

    ``log_gain`` is a callable giving ln|H| on an array of frequencies. Returns (grid_hz, phase_rad),
    with the sign of numpy's convention (a causal response: positive group delay).
    """
    grid = np.linspace(0.0, f_max_hz, n_grid + 1)
    c = np.fft.irfft(log_gain(grid))
    m = len(c)
    fold = np.zeros(m)
    fold[0] = c[0]
    fold[1 : m // 2] = 2 * c[1 : m // 2]
    fold[m // 2] = c[m // 2]
    return grid, np.fft.rfft(fold).imag


@dataclass(frozen=True, eq=False)
class Tilt:
    """A gain slope: gain_db = slope_db_per_mhz (f - reference_frequency_hz)/MHz, with zero or minimum phase.

    With ``band_hz`` the slope holds only inside the band and the gain stays at its edge values
    outside; ``phase: minimum`` needs ``band_hz`` (the minimum phase of an unbounded slope does not exist).
    """

    slope_db_per_mhz: float
    reference_frequency_hz: float = 0.0
    band_hz: tuple[float, float] | None = None
    phase: str = "zero"

    def __post_init__(self) -> None:
        if self.phase not in ("zero", "minimum"):
            msg = f"response 'tilt': phase must be 'zero' or 'minimum'; found {self.phase!r}"
            raise CrnnError(msg)
        if self.band_hz is not None:
            _check_band(self.band_hz, "response 'tilt'")
        elif self.phase == "minimum":
            msg = "response 'tilt': phase 'minimum' needs band_hz (where the slope holds); found none"
            raise CrnnError(msg)

    def _gain_db(self, f: np.ndarray) -> np.ndarray:
        if self.band_hz is not None:
            f = np.clip(np.abs(f), *self.band_hz)
        return self.slope_db_per_mhz * (f - self.reference_frequency_hz) / MHZ

    @cached_property
    def _min_phase(self) -> tuple[np.ndarray, np.ndarray]:
        return minimum_phase_rad(lambda g: self._gain_db(g) / _DB_PER_NEPER, 8 * self.band_hz[1])

    def transfer(self, frequency_hz: np.ndarray) -> np.ndarray:
        f = _freq(frequency_hz)
        mag = 10 ** (self._gain_db(f) / 20)
        if self.phase == "zero":
            return mag.astype(np.complex128)
        grid, ph = self._min_phase
        return mag * np.exp(1j * np.interp(f, grid, ph, right=ph[-1]))


@dataclass(frozen=True, eq=False)
class Chain:
    """The product of its parts' transfer functions."""

    parts: tuple[Response, ...]

    def transfer(self, frequency_hz: np.ndarray) -> np.ndarray:
        f = _freq(frequency_hz)
        h = np.ones(f.shape, dtype=np.complex128)
        for part in self.parts:
            h = h * part.transfer(f)
        return h


def chain(*responses: Response) -> Response:
    """The product of ``responses``' transfer functions."""
    return Chain(tuple(responses))


# -------------------------------------------------------------------------------------- tables
_FREQ_UNITS = {"hz": 1.0, "khz": 1e3, "mhz": 1e6, "ghz": 1e9}
_GAIN_UNITS = ("linear", "db", "db_loss")
_PHASE_UNITS = ("rad", "deg")
# canonical column name -> (role, unit)
_CANONICAL = {
    "frequency_hz": ("frequency", "hz"),
    "gain": ("gain", "linear"),
    "gain_db": ("gain", "db"),
    "loss_db": ("gain", "db_loss"),
    "phase_rad": ("phase", "rad"),
    "phase_deg": ("phase", "deg"),
    "group_delay_s": ("group_delay", "s"),
}


@dataclass(frozen=True)
class TableSpec:
    """The keys of a ``table`` spec (see docs/formats.md)."""

    file: str
    format: str = "auto"  # auto (from the suffix) | csv | hdf5 | touchstone
    columns: tuple[str, ...] | None = None
    skiprows: int = 0
    delimiter: str | None = None
    frequency_column: int | str | None = None
    frequency_unit: str | None = None
    frequency_start_hz: float | None = None
    frequency_step_hz: float | None = None
    gain_column: int | str | None = None
    gain_unit: str | None = None
    phase_column: int | str | None = None
    phase_unit: str | None = None
    group_delay_column: int | str | None = None
    phase_file: str | None = None
    phase: str = "table"  # table | minimum | zero
    wrapped: bool | None = None
    parameter: str | None = None  # touchstone: s21 (2-ports), s11 (1-ports), ...
    negative_gain: str = "error"  # error | clip
    taper_hz: float = 0.0
    band_hz: tuple[float, float] | None = None


@dataclass(frozen=True, eq=False)
class Table:
    """A tabulated response: linear interpolation of gain and unwrapped phase; H = 0 outside the table.

    With ``taper_hz`` > 0 a raised-cosine ramp over the first and last ``taper_hz`` of the table
    brings H smoothly to 0 at the table's ends.
    """

    frequency_hz: np.ndarray
    gain: np.ndarray
    phase_rad: np.ndarray
    taper_hz: float = 0.0
    source: str = ""

    def transfer(self, frequency_hz: np.ndarray) -> np.ndarray:
        f = _freq(frequency_hz)
        tf = self.frequency_hz
        g = np.interp(f, tf, self.gain, left=0.0, right=0.0)
        ph = np.interp(f, tf, self.phase_rad)
        if self.taper_hz > 0:
            w = np.clip(np.minimum(f - tf[0], tf[-1] - f) / self.taper_hz, 0.0, 1.0)
            g = g * 0.5 * (1 - np.cos(np.pi * w))
        out = g * np.exp(1j * ph)
        out[(f < tf[0]) | (f > tf[-1])] = 0.0
        return out


def _cell(path: Path, text: str, row: int, col: int, name: str) -> float:
    try:
        return float(text.strip().strip('"'))
    except ValueError:
        msg = f"{path}: column {name!r} must hold numbers; found {text.strip()!r} at row {row}"
        raise CrnnError(msg) from None


def _split(line: str, delimiter: str | None) -> list[str]:
    if delimiter is None:
        delimiter = "," if "," in line else ";" if ";" in line else None
    return [t.strip().strip('"').strip() for t in line.split(delimiter)]


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _read_csv(path: Path, spec: TableSpec) -> dict[str, np.ndarray]:
    """Columns of a delimited text table, by name (header row or ``columns``) or position."""
    lines = path.read_text(errors="replace").splitlines()[spec.skiprows :]
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    for i, line in enumerate(lines, start=spec.skiprows + 1):
        s = line.strip()
        if not s or s.startswith(("#", "!")):
            continue
        tokens = _split(s, spec.delimiter)
        if not rows and header is None and not all(_is_number(t) for t in tokens if t):
            header = tokens
            continue
        rows.append((i, tokens))
    if spec.columns is not None:
        header = list(spec.columns)
    n_cols = max((len(t) for _, t in rows), default=0)
    names = header if header is not None else [str(j) for j in range(n_cols)]
    seen: dict[str, int] = {}
    for j, name in enumerate(names):  # repeated header names become 'name.1', 'name.2' (as pandas does)
        seen[name] = seen.get(name, -1) + 1
        names[j] = f"{name}.{seen[name]}" if seen[name] else name
    out: dict[str, np.ndarray] = {}
    for j, name in enumerate(names):
        values = []
        for row, tokens in rows:
            if j >= len(tokens):
                msg = f"{path}: column {name!r} is missing at row {row}; expected {len(names)} columns"
                raise CrnnError(msg)
            values.append(_cell(path, tokens[j], row, j, name))
        out[name] = np.asarray(values, dtype=np.float64)
    out["__rows__"] = np.asarray([r for r, _ in rows])
    return out


def _read_hdf5(path: Path) -> dict[str, np.ndarray]:
    import h5py

    out: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as f:
            f.visititems(
                lambda name, obj: (
                    out.__setitem__(name, np.asarray(obj[()], dtype=np.float64).ravel())
                    if isinstance(obj, h5py.Dataset)
                    else None
                )
            )
    except OSError as exc:
        msg = f"{path}: not a readable HDF5 file ({exc})"
        raise CrnnError(msg) from exc
    return out


def _read_touchstone(path: Path, parameter: str | None) -> tuple[np.ndarray, np.ndarray]:
    import skrf

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = skrf.Network(str(path))
    except Exception as exc:  # scikit-rf raises many kinds
        msg = f"{path}: not a readable Touchstone file ({type(exc).__name__}: {exc})"
        raise CrnnError(msg) from exc
    n = net.nports
    names = [f"s{i + 1}{j + 1}" for i in range(n) for j in range(n)]
    param = (parameter or ("s21" if n >= 2 else "s11")).lower()
    if param not in names:
        raise MissingFieldError(str(path), param, names, kind="parameter", expected=f"a {n}-port network")
    i, j = int(param[1]) - 1, int(param[2]) - 1
    return np.asarray(net.f, dtype=np.float64), np.asarray(net.s[:, i, j], dtype=np.complex128)


def _column(path: Path, cols: dict[str, np.ndarray], key: int | str, what: str) -> np.ndarray:
    names = [c for c in cols if c != "__rows__"]
    if isinstance(key, int):
        if not 0 <= key < len(names):
            msg = f"{path}: no column {key} ({what}); the table has columns 0..{len(names) - 1}: {names}"
            raise CrnnError(msg)
        return cols[names[key]]
    if key not in cols:
        raise MissingFieldError(str(path), key, names, kind="column", expected=what)
    return cols[key]


def _name(cols: dict[str, np.ndarray], key: int | str) -> str:
    return [c for c in cols if c != "__rows__"][key] if isinstance(key, int) else key


def _find(cols: dict[str, np.ndarray], role: str) -> tuple[str, str] | None:
    for name, (r, unit) in _CANONICAL.items():
        if r == role and name in cols:
            return name, unit
    return None


def _unit(value: str | None, allowed, key: str, where: Path, default: str) -> str:
    u = (value or default).lower()
    if u not in allowed:
        msg = f"{where}: {key} must be one of {list(allowed)}; found {value!r}"
        raise CrnnError(msg)
    return u


def _validate(path: Path, name: str, values: np.ndarray, rows: np.ndarray | None) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.argmax(bad))
        row = f" at row {rows[i]}" if rows is not None and len(rows) == len(values) else f" at index {i}"
        msg = f"{path}: column {name!r} holds {values[i]}{row}; expected finite numbers"
        raise CrnnError(msg)


def _rows_of(cols: dict[str, np.ndarray]) -> np.ndarray | None:
    return cols.get("__rows__")


def _resolve(file: str, base_dir: str | Path | None) -> Path:
    p = Path(file).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    if not p.exists():
        msg = f"{p}: response table not found (key 'file')"
        raise CrnnError(msg)
    return p


def _format_of(path: Path, fmt: str) -> str:
    if fmt != "auto":
        if fmt not in ("csv", "hdf5", "touchstone"):
            msg = f"{path}: format must be one of ['auto', 'csv', 'hdf5', 'touchstone']; found {fmt!r}"
            raise CrnnError(msg)
        return fmt
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5", ".hdf"):
        return "hdf5"
    if len(suffix) >= 4 and suffix[1] == "s" and suffix[-1] == "p" and suffix[2:-1].isdigit():
        return "touchstone"
    return "csv"


def load_table(
    spec: TableSpec, *, base_dir: str | Path | None = None, band_hz: tuple[float, float] | None = None
) -> Table:
    """Read and validate a tabulated response (CSV, HDF5 or Touchstone)."""
    path = _resolve(spec.file, base_dir)
    fmt = _format_of(path, spec.format)
    if spec.phase not in ("table", "minimum", "zero"):
        msg = f"{path}: key 'phase' must be one of ['table', 'minimum', 'zero']; found {spec.phase!r}"
        raise CrnnError(msg)
    if spec.negative_gain not in ("error", "clip"):
        msg = f"{path}: key 'negative_gain' must be 'error' or 'clip'; found {spec.negative_gain!r}"
        raise CrnnError(msg)
    phase: np.ndarray | None = None
    rows = None
    if fmt == "touchstone":
        freq, s = _read_touchstone(path, spec.parameter)
        fname, gname, gain = "frequency", spec.parameter or "S21", np.abs(s)
        phase = np.unwrap(np.angle(s))
    else:
        cols = _read_csv(path, spec) if fmt == "csv" else _read_hdf5(path)
        rows = _rows_of(cols)
        gain, gname = _gain(path, cols, spec)
        freq, fname = _frequency(path, cols, spec, len(gain))
        phase = _phase(path, cols, spec, freq) if spec.phase == "table" else None
        if spec.phase_file is not None and spec.phase == "table":
            pspec = dataclasses.replace(spec, file=spec.phase_file, phase_file=None)
            ppath = _resolve(spec.phase_file, base_dir if not Path(spec.phase_file).is_absolute() else None)
            pcols = _read_csv(ppath, pspec) if _format_of(ppath, spec.format) == "csv" else _read_hdf5(ppath)
            pfreq, _ = _frequency(ppath, pcols, pspec, len(next(iter(pcols.values()))))
            if len(pfreq) != len(freq) or not np.allclose(pfreq, freq, rtol=1e-9, atol=0):
                msg = (
                    f"{ppath}: the phase file's frequencies must equal those of {path} "
                    f"({len(freq)} rows from {freq[0]:g} Hz); found {len(pfreq)} rows from {pfreq[0]:g} Hz"
                )
                raise CrnnError(msg)
            key = spec.phase_column if spec.phase_column is not None else spec.gain_column
            phase = _phase(ppath, pcols, dataclasses.replace(pspec, phase_column=key), pfreq)
        if spec.phase == "table" and phase is None:
            msg = (
                f"{path}: no phase column (expected 'phase_rad', 'phase_deg' or 'group_delay_s', or "
                f"phase_column / group_delay_column / phase_file); give phase: minimum or phase: zero for a "
                f"magnitude-only table"
            )
            raise CrnnError(msg)
    _validate(path, fname, freq, rows)
    _validate(path, gname, gain, rows)
    if len(freq) < 4:
        msg = f"{path}: column {fname!r} has {len(freq)} rows; a response table needs at least 4"
        raise CrnnError(msg)
    steps = np.diff(freq)
    if (steps <= 0).any():
        i = int(np.argmax(steps <= 0)) + 1
        row = rows[i] if rows is not None and len(rows) == len(freq) else i
        what = "a duplicate" if steps[i - 1] == 0 else "unsorted"
        msg = (
            f"{path}: column {fname!r} must be strictly increasing; found {freq[i]:g} after "
            f"{freq[i - 1]:g} at row {row} ({what})"
        )
        raise CrnnError(msg)
    if (gain < 0).any():
        i = int(np.argmax(gain < 0))
        if spec.negative_gain == "error":
            row = rows[i] if rows is not None and len(rows) == len(gain) else i
            msg = (
                f"{path}: column {gname!r} is a linear gain and must be >= 0; found {gain[i]:g} at row {row} "
                f"({int((gain < 0).sum())} negative values; negative_gain: clip sets them to 0)"
            )
            raise CrnnError(msg)
        gain = np.clip(gain, 0.0, None)
    if phase is not None:
        _validate(path, "phase", phase, rows)
    if spec.phase == "zero":
        phase = np.zeros_like(freq)
    elif spec.phase == "minimum":
        phase = _table_minimum_phase(freq, gain)
    band = spec.band_hz or band_hz
    if band is not None and (band[0] < freq[0] or band[1] > freq[-1]):
        log.warning(
            "%s: the table covers %.4g-%.4g Hz but the band is %.4g-%.4g Hz; H = 0 outside the table",
            path,
            freq[0],
            freq[-1],
            band[0],
            band[1],
        )
    if spec.taper_hz < 0:
        msg = f"{path}: taper_hz must be >= 0; found {spec.taper_hz}"
        raise CrnnError(msg)
    return Table(freq, gain, np.asarray(phase, dtype=np.float64), spec.taper_hz, str(path))


def _gain(path: Path, cols: dict[str, np.ndarray], spec: TableSpec) -> tuple[np.ndarray, str]:
    if spec.gain_column is not None:
        values = _column(path, cols, spec.gain_column, "the gain")
        name = _name(cols, spec.gain_column)
        default = _CANONICAL.get(name, ("", "linear"))[1]
    else:
        found = _find(cols, "gain")
        if found is None:
            names = [c for c in cols if c != "__rows__"]
            raise MissingFieldError(
                str(path),
                "gain",
                names,
                kind="column",
                expected="or 'gain_db' / 'loss_db', or name one with gain_column",
            )
        name, default = found
        values = cols[name]
    unit = _unit(spec.gain_unit, _GAIN_UNITS, "gain_unit", path, default)
    _validate(path, name, values, _rows_of(cols))
    if unit == "db":
        values = 10 ** (values / 20)
    elif unit == "db_loss":
        values = 10 ** (-values / 20)
    return values, name


def _frequency(path: Path, cols: dict[str, np.ndarray], spec: TableSpec, n: int) -> tuple[np.ndarray, str]:
    if spec.frequency_start_hz is not None or spec.frequency_step_hz is not None:
        if spec.frequency_start_hz is None or not (spec.frequency_step_hz or 0) > 0:
            msg = (
                f"{path}: an implicit frequency needs frequency_start_hz and a positive frequency_step_hz; "
                f"found {spec.frequency_start_hz}, {spec.frequency_step_hz}"
            )
            raise CrnnError(msg)
        return spec.frequency_start_hz + spec.frequency_step_hz * np.arange(n), "frequency_start_hz"
    if spec.frequency_column is not None:
        values = _column(path, cols, spec.frequency_column, "the frequency")
        name = _name(cols, spec.frequency_column)
        default = "hz"
    elif "frequency_hz" in cols:
        values, name, default = cols["frequency_hz"], "frequency_hz", "hz"
    else:
        names = [c for c in cols if c != "__rows__"]
        raise MissingFieldError(
            str(path),
            "frequency_hz",
            names,
            kind="column",
            expected="or name one with frequency_column, or give frequency_start_hz/_step_hz",
        )
    unit = _unit(spec.frequency_unit, _FREQ_UNITS, "frequency_unit", path, default)
    _validate(path, name, values, _rows_of(cols))
    return values * _FREQ_UNITS[unit], name


def _phase(path: Path, cols: dict[str, np.ndarray], spec: TableSpec, freq: np.ndarray) -> np.ndarray | None:
    rows = _rows_of(cols)
    if spec.group_delay_column is not None or (
        spec.phase_column is None and "group_delay_s" in cols and _find(cols, "phase") is None
    ):
        key = spec.group_delay_column if spec.group_delay_column is not None else "group_delay_s"
        tau = _column(path, cols, key, "the group delay in s")
        _validate(path, _name(cols, key), tau, rows)
        # phi(f0) = -2 pi f0 tau(f0) (constant delay below the table), then integrate -2 pi tau df
        steps = np.concatenate([[0.0], np.cumsum(0.5 * (tau[1:] + tau[:-1]) * np.diff(freq))])
        return -2 * np.pi * (freq[0] * tau[0] + steps)
    if spec.phase_column is not None:
        values = _column(path, cols, spec.phase_column, "the phase")
        name = _name(cols, spec.phase_column)
        default = _CANONICAL.get(name, ("", "rad"))[1]
    else:
        found = _find(cols, "phase")
        if found is None:
            return None
        name, default = found
        values = cols[name]
    unit = _unit(spec.phase_unit, _PHASE_UNITS, "phase_unit", path, default if default in _PHASE_UNITS else "rad")
    _validate(path, name, values, rows)
    if unit == "deg":
        values = np.deg2rad(values)
    wrapped = spec.wrapped if spec.wrapped is not None else unit == "deg"
    return np.unwrap(values) if wrapped else values


def _table_minimum_phase(freq: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """Minimum phase of the table's |H| (held at its edge values outside, floored at -200 dB)."""
    floor = max(float(gain.max()), 1e-300) * 1e-10
    log_g = np.log(np.maximum(gain, floor))
    grid, ph = minimum_phase_rad(lambda g: np.interp(g, freq, log_g), 2 * freq[-1], n_grid=2**16)
    return np.interp(freq, grid, ph)


# ------------------------------------------------------------------------------------- builder
_SIMPLE = {
    "analog_butterworth": AnalogButterworth,
    "analog_chebyshev": AnalogChebyshev,
    "analog_bandpass": AnalogBandpass,
    "digital_butterworth": DigitalButterworth,
    "digital_bandpass": DigitalBandpass,
    "digital_chebyshev": DigitalChebyshev,
    "zero_phase": ZeroPhase,
    "log_periodic": LogPeriodic,
    "resonance": Resonance,
    "echo": Echo,
    "cable": Cable,
    "tilt": Tilt,
    "gain": Gain,
    "delay": Delay,
}
RESPONSE_FAMILIES: tuple[str, ...] = (*_SIMPLE, "table", "chain")


def build_response(
    spec: Mapping[str, Any],
    *,
    sampling_rate_hz: float,
    base_dir: str | Path | None = None,
    band_hz: tuple[float, float] | None = None,
    where: str = "response",
) -> Response:
    """A :class:`Response` from a plain mapping with key ``family`` (see :data:`RESPONSE_FAMILIES`).

    ``base_dir`` resolves relative table paths; ``band_hz`` (the caller's band) is only used to
    warn when a table does not cover it. A list of specs is a chain.
    """
    if isinstance(spec, Response):
        return spec
    if isinstance(spec, (list, tuple)):
        return chain(
            *(
                build_response(
                    s, sampling_rate_hz=sampling_rate_hz, base_dir=base_dir, band_hz=band_hz, where=f"{where}[{i}]"
                )
                for i, s in enumerate(spec)
            )
        )
    if not isinstance(spec, Mapping):
        msg = f"{where}: expected a mapping with key 'family'; found {spec!r}"
        raise CrnnError(msg)
    params = dict(spec)
    family = params.pop("family", None)
    if family not in RESPONSE_FAMILIES:
        close = difflib.get_close_matches(str(family), RESPONSE_FAMILIES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        msg = f"{where}: unknown family {family!r}{hint} (valid families: {', '.join(RESPONSE_FAMILIES)})"
        raise CrnnError(msg)
    where = f"{where} {family!r}"
    if family == "chain":
        parts = params.pop("parts", None)
        if params or not isinstance(parts, (list, tuple)):
            msg = f"{where}: expected only key 'parts' (a list of specs); found keys {sorted(spec)}"
            raise CrnnError(msg)
        return chain(
            *(
                build_response(
                    s,
                    sampling_rate_hz=sampling_rate_hz,
                    base_dir=base_dir,
                    band_hz=band_hz,
                    where=f"{where}.parts[{i}]",
                )
                for i, s in enumerate(parts)
            )
        )
    if family == "table":
        return load_table(from_mapping(TableSpec, params, where), base_dir=base_dir, band_hz=band_hz)
    if family == "analog_butterworth" and ({"highpass_order", "lowpass_order"} & set(params)):
        bad = {"order", "highpass_kind", "lowpass_kind", "ripple_db"} & set(params)
        if bad:
            msg = f"{where}: with highpass_order/lowpass_order, key(s) {sorted(bad)} do not apply (use analog_bandpass)"
            raise CrnnError(msg)
        return from_mapping(AnalogBandpass, params, where)
    cls = _SIMPLE[family]
    if issubclass(cls, (_Digital, DigitalBandpass)):
        params.setdefault("sampling_rate_hz", sampling_rate_hz)
    return from_mapping(cls, params, where)


def build_channel_responses(
    spec_or_list: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    n_channels: int,
    sampling_rate_hz: float,
    base_dir: str | Path | None = None,
) -> list[Response]:
    """One response per channel: one spec for all channels, or a list with one spec per channel."""
    if isinstance(spec_or_list, Mapping) or isinstance(spec_or_list, Response):
        r = build_response(spec_or_list, sampling_rate_hz=sampling_rate_hz, base_dir=base_dir)
        return [r] * n_channels
    specs = list(spec_or_list)
    if len(specs) != n_channels:
        msg = f"response: a per-channel list needs one spec per channel ({n_channels}); found {len(specs)}"
        raise CrnnError(msg)
    return [
        build_response(s, sampling_rate_hz=sampling_rate_hz, base_dir=base_dir, where=f"response[{i}]")
        for i, s in enumerate(specs)
    ]


def transfer_matrix(responses: Sequence[Response], frequency_hz: np.ndarray) -> np.ndarray:
    """(C, F) complex transfer functions of ``responses`` at ``frequency_hz``."""
    f = _freq(frequency_hz)
    return (
        np.stack([np.asarray(r.transfer(f), dtype=np.complex128) for r in responses])
        if responses
        else np.zeros((0, f.size), dtype=np.complex128)
    )


def group_delay_s(response: Response, frequency_hz: np.ndarray, *, aperture_hz: float | None = None) -> np.ndarray:
    """-(1/2 pi) d(unwrapped phase)/df at ``frequency_hz``, by a central difference.

    The difference spans ``aperture_hz`` (default: a tiny step, i.e. the local derivative; give
    e.g. 1 MHz to smooth a measured table). NaN where H = 0.
    """
    f = _freq(frequency_hz)
    d = aperture_hz / 2 if aperture_hz else max(1.0, 1e-7 * float(np.max(np.abs(f), initial=1.0)))
    hp, hm = response.transfer(f + d), response.transfer(f - d)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = hp * np.conj(hm)
        tau = -np.angle(ratio) / (2 * np.pi * 2 * d)
    tau[ratio == 0] = np.nan
    return tau


def apply_response(traces: np.ndarray, response_or_h: Response | np.ndarray, sampling_rate_hz: float) -> np.ndarray:
    """Traces (..., T) through a response (or an H per rfft bin, broadcastable): (..., T) float32.

    The product is taken on the rfft of each trace (a circular convolution: a long response's tail
    wraps to the start of the trace; pad the traces first if that matters).
    """
    x = np.asarray(traces)
    n = x.shape[-1]
    f = np.fft.rfftfreq(n, 1.0 / sampling_rate_hz)
    h = response_or_h.transfer(f) if isinstance(response_or_h, Response) else np.asarray(response_or_h)
    if h.shape[-1] != f.size:
        msg = f"apply_response: H has {h.shape[-1]} frequency bins; traces of {n} samples need {f.size}"
        raise CrnnError(msg)
    return np.fft.irfft(np.fft.rfft(x, axis=-1) * h, n=n, axis=-1).astype(np.float32)


# ------------------------------------------------------------------------------------- presets
# AERA-like 30-80 MHz chain. Published: NuRadioReco's parametric LPDA phase with tau 0.75 (the AERA
# LPDA's own tau is not in the repositories: 0.8 here is inferred, inside the 0.75-0.9 LPDA range);
# the 30-80 MHz band; RG58-like sqrt(f) cable loss (LOFAR tables: 0.7-1.7 dB/sqrt(MHz)).
# Inferred: the filter's edge orders (high-pass 5, low-pass 7, Butterworth) and the 0.9 dB/sqrt(MHz) cable.
AERA_LIKE: dict[str, Any] = {
    "family": "chain",
    "parts": [
        {"family": "log_periodic", "tau": 0.8, "band_hz": [20e6, 100e6], "order": 1},
        {"family": "analog_bandpass", "band_hz": [30e6, 80e6], "highpass_order": 5, "lowpass_order": 7},
        {"family": "cable", "loss_db_per_sqrt_mhz": 0.9},
    ],
}

# GRAND-like 50-200 MHz chain (X/Y arms). Published ([PLOT] GRANDlib figures, about +-20 %): the VGA+filter
# group delay is about 25 ns near 40 MHz, 9-11 ns over 70-180 MHz and about 19 ns near 215 MHz.
# Inferred (fitted here to those three numbers): a Butterworth high-pass (order 5, 40 MHz) x Chebyshev low-pass
# (order 7, 0.5 dB ripple, 210 MHz) and a 2 ns flat delay; it gives 26, 9-12 and 17 ns. Its magnitude is NOT the
# published one (|S21| 0.45 at 200 MHz): add a ``tilt`` or ``table`` for that.
GRAND_LIKE: dict[str, Any] = {
    "family": "chain",
    "parts": [
        {
            "family": "analog_bandpass",
            "band_hz": [40e6, 210e6],
            "highpass_order": 5,
            "lowpass_order": 7,
            "highpass_kind": "butter",
            "lowpass_kind": "cheby1",
            "ripple_db": 0.5,
        },
        {"family": "delay", "delay_s": 2e-9},
    ],
}
# GRAND-like Z (vertical) channel: the same chain and one echo 30 ns late with amplitude 0.3. Published:
# the Z port's 30-35 MHz ripple (peak-to-dip about 3); inferred: that it comes from a single reflection.
GRAND_LIKE_Z: dict[str, Any] = {
    "family": "chain",
    "parts": [*GRAND_LIKE["parts"], {"family": "echo", "delays_s": [30e-9], "amplitudes": [0.3]}],
}
GRAND_LIKE_CHANNELS: list[dict[str, Any]] = [GRAND_LIKE, GRAND_LIKE, GRAND_LIKE_Z]
