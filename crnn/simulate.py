"""Stage ``simulate``: band-limited air-shower pulses in galactic, thermal and human-made noise.

Writes one canonical trace file. A fraction ``signal_fraction`` of the traces carries a pulse
(``labels`` = 1); every trace gets the same kind of background, including CW lines and
transients, so that the interference alone never gives the label away.

SNR (written per trace as ``snr``), set by ``snr_definition``: with ``noise_rms`` (the default)
the peak |signal| over all channels and samples divided by ``noise_rms``, the RMS of the trace's
background (galactic + thermal noise and CW lines, over all channels and samples; transients and
the pulse itself are not included); with ``trace_rms`` (the textbook exercise's definition) the
peak |signal| divided by the RMS of the whole trace, pulse, noise and interference included (before
any digitisation). Noise-only traces have ``snr`` = 0.

The detector (antenna, RF chain, receiver temperature, galactic scale) is fixed or, with
``randomise.enabled`` (the default), drawn per trace from configured ranges (:mod:`crnn.detector`);
every drawn parameter is written per trace (:data:`crnn.detector.PARAMETER_NAMES`).

Traces are made in blocks of :data:`BLOCK_SIZE`; each component of block ``k`` (detector, noise,
CW lines, measured background, transients, labels and SNR, pulses) draws from its own generator
``default_rng([seed, k, component])`` (:data:`COMPONENTS`), so adding a CW line changes no label,
and the output does not depend on how it is chunked or parallelised.
A run can therefore be split into chunks of whole blocks (``--chunk I --n-chunks N``), each made
by its own job, and ``crnn merge`` joins the chunk files into exactly the file of a single run.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from crnn import __version__
from crnn.detector import PARAMETER_NAMES, Detector, RandomiseSettings
from crnn.errors import CrnnError
from crnn.fileutil import check_outputs, refuse_aliases
from crnn.noise import (
    TRANSIENT_KINDS,
    CWLine,
    ReceiverSettings,
    SiderealSettings,
    StationaryNoise,
    TransientForm,
    add_cw_lines,
    add_random_cw_lines,
    read_for_receiver,
    transient_waveforms,
)
from crnn.progress import Progress, format_duration
from crnn.pulse import SNR_DEFINITIONS, PulseModel, PulseSettings, amplitude_for_snr
from crnn.settings import add_print_settings, check_value, from_mapping, load_mapping, to_mapping
from crnn.tracefile import LABELS, SNR, UNIT_TO_SI, TraceSet, TraceWriter

log = logging.getLogger(__name__)
BLOCK_SIZE = 1000
#: the random components of a block, each with its own generator default_rng([seed, block, code])
COMPONENTS = {"detector": 1, "noise": 2, "cw": 3, "measured": 4, "transients": 5, "labels": 6, "pulses": 7}


@dataclass(frozen=True)
class BackgroundSettings:
    """Measured noise traces used as background instead of (or mixed with) simulated noise."""

    #: canonical trace file of measured background (same rate, channels and length as the
    #: receiver; V, mV, uV or, with adc_bits > 0, ADC counts); None = simulated noise only
    measured_file: str | None = None
    #: fraction of traces whose background is a measured trace (drawn at random, with replacement)
    measured_fraction: float = 1.0


@dataclass(frozen=True)
class SimulationSettings:
    #: the node of the config schema that holds the rules on these settings
    SCHEMA: ClassVar[str] = "simulate"
    n_traces: int = 280_000
    signal_fraction: float = 0.5
    snr_range: tuple[float, float] = (2.0, 10.0)
    #: noise_rms: peak |signal| / RMS of the background; trace_rms: / RMS of the whole trace
    #: (signal + background, as in the textbook exercise)
    snr_definition: str = "noise_rms"
    receiver: ReceiverSettings = field(default_factory=ReceiverSettings)
    noise_temperature_k: float = 40.0
    galactic_noise: bool = True
    galactic_scale: float = 1.0
    sidereal: SiderealSettings = field(default_factory=SiderealSettings)
    cw_lines: tuple[CWLine, ...] = (
        CWLine(frequency_hz=58.5e6, amplitude_rel_noise=0.5, probability=0.5),
        CWLine(frequency_hz=67.25e6, amplitude_rel_noise=1.0, probability=0.3),
    )
    transients: tuple[TransientForm, ...] = (
        TransientForm(kind="ringing", probability=0.06, decay_time_s=(150e-9, 500e-9)),
        TransientForm(kind="pulse_train", probability=0.02),
        TransientForm(kind="burst", probability=0.02),
    )
    pulse: PulseSettings = field(default_factory=PulseSettings)
    background: BackgroundSettings = field(default_factory=BackgroundSettings)
    #: ranges of the randomised detector (enabled: every trace its own antenna, chain and noise)
    randomise: RandomiseSettings = field(default_factory=RandomiseSettings)

    @property
    def unit(self) -> str:
        return "ADC" if self.receiver.adc_bits > 0 else "V"

    def check(self) -> None:
        r = self.receiver
        if self.n_traces < 1:
            raise CrnnError(f"simulate: n_traces must be >= 1, got {self.n_traces}")
        if not 0 <= self.signal_fraction <= 1:
            raise CrnnError(f"simulate: signal_fraction must be in [0, 1], got {self.signal_fraction}")
        lo, hi = self.snr_range
        if not 0 < lo <= hi:
            raise CrnnError(f"simulate: snr_range must satisfy 0 < min <= max, got {list(self.snr_range)}")
        if self.snr_definition not in SNR_DEFINITIONS:
            msg = f"simulate: snr_definition must be one of {', '.join(SNR_DEFINITIONS)}, got {self.snr_definition!r}"
            raise CrnnError(msg)
        f_lo, f_hi = r.band_hz
        if not 0 < f_lo < f_hi < r.sampling_rate_hz / 2:
            msg = (
                f"simulate: band_hz {list(r.band_hz)} must lie inside (0, Nyquist = "
                f"{r.sampling_rate_hz / 2:g} Hz) with low < high"
            )
            raise CrnnError(msg)
        if r.n_samples < 16 or r.n_channels < 1:
            raise CrnnError(f"simulate: need n_samples >= 16 and n_channels >= 1, got {r.n_samples}, {r.n_channels}")
        if not 0 <= r.adc_bits <= 32 or r.adc_full_scale_v <= 0:
            raise CrnnError(
                f"simulate: adc_bits must be 0..32 and adc_full_scale_v > 0, got {r.adc_bits}, {r.adc_full_scale_v}"
            )
        for line in self.cw_lines:
            if not 0 < line.frequency_hz < r.sampling_rate_hz / 2:
                raise CrnnError(f"simulate: CW line at {line.frequency_hz:g} Hz is outside (0, Nyquist)")
        for form in self.transients:
            if form.kind not in TRANSIENT_KINDS:
                raise CrnnError(f"simulate: unknown transient kind {form.kind!r}; expected one of {TRANSIENT_KINDS}")
            if not 0 <= form.probability <= 1:
                raise CrnnError(f"simulate: transient probability must be in [0, 1], got {form.probability}")


class Simulator:
    """Configure once from :class:`SimulationSettings`; :meth:`block` makes traces block by block."""

    def __init__(self, settings: SimulationSettings, seed: int) -> None:
        settings.check()
        self.settings = settings
        self.seed = int(seed)
        self.noise = StationaryNoise(
            settings.receiver,
            noise_temperature_k=settings.noise_temperature_k,
            galactic=settings.galactic_noise,
            galactic_scale=settings.galactic_scale,
            sidereal=settings.sidereal,
        )
        self.detector = Detector(
            settings.receiver,
            settings.randomise,
            noise_temperature_k=settings.noise_temperature_k,
            galactic_scale=settings.galactic_scale,
        )
        self.pulses = PulseModel(settings.receiver, settings.pulse)
        self.measured = self._load_measured()

    def rng(self, index: int, component: str) -> np.random.Generator:
        """The generator of one component of block ``index``."""
        return np.random.default_rng([self.seed, index, COMPONENTS[component]])

    def _load_measured(self) -> np.ndarray | None:
        """Measured background in volts at the receiver output, shape (M, C, T)."""
        b, r = self.settings.background, self.settings.receiver
        if b.measured_file is None:
            return None
        data = read_for_receiver(b.measured_file, r, "measured background", "--channels/--n-samples")
        where = b.measured_file
        if data.unit == "ADC":
            if r.adc_bits == 0:
                msg = f"{where}: measured background in ADC counts needs the receiver's adc_bits and adc_full_scale_v"
                raise CrnnError(msg)
            return data.traces.astype(np.float32) * np.float32(r.lsb_v)
        if data.unit not in UNIT_TO_SI or "/m" in data.unit:
            msg = f"{where}: measured background must be a voltage (V, mV, uV, nV) or ADC counts, found unit {data.unit!r}"
            raise CrnnError(msg)
        return data.traces.astype(np.float32) * np.float32(UNIT_TO_SI[data.unit])

    def block(self, index: int, n_traces: int = BLOCK_SIZE) -> TraceSet:
        """Traces ``index * BLOCK_SIZE ...`` of the run: the first ``n_traces`` of block ``index``.

        A block always draws BLOCK_SIZE traces, so trace ``i`` of a run is the same whatever the
        run's length, the chunk size of the writer or the number of parallel jobs.
        """
        if not 0 < n_traces <= BLOCK_SIZE:
            msg = f"simulate: a block holds 1..{BLOCK_SIZE} traces, got {n_traces}"
            raise CrnnError(msg)
        full, _ = self.draw_with_signals(index)
        return full.subset(slice(0, n_traces)) if n_traces < BLOCK_SIZE else full

    def draw_with_signals(self, index: int) -> tuple[TraceSet, np.ndarray]:
        """All BLOCK_SIZE traces of block ``index`` and their true signal part (zeros without a pulse).

        The signal part is in volts at the receiver output, before any digitisation.
        """
        n = BLOCK_SIZE
        s, r = self.settings, self.settings.receiver
        det = self.detector.draw(n, self.rng(index, "detector"))
        rng = self.rng(index, "noise")
        lst = rng.uniform(*s.sidereal.lst_hours, size=n)
        background = self.noise.generate(
            n,
            rng,
            lst_hours=lst if s.sidereal.modulation_fraction else None,
            detector=det if s.randomise.enabled else None,
        )
        stationary_rms = np.sqrt(np.mean(background.astype(np.float64) ** 2, axis=(1, 2)))
        rng = self.rng(index, "cw")
        n_cw = add_cw_lines(background, s.cw_lines, stationary_rms, r.sampling_rate_hz, rng)
        cw_frequency = np.full(n, np.nan, dtype=np.float32)
        if s.randomise.enabled:
            extra, cw_frequency = add_random_cw_lines(
                background, s.randomise.cw, r.band_hz, stationary_rms, r.sampling_rate_hz, rng
            )
            n_cw = (n_cw + extra).astype(np.int8)
        measured_index = np.full(n, -1, dtype=np.int32)
        if self.measured is not None:
            rng = self.rng(index, "measured")
            use = rng.random(n) < s.background.measured_fraction
            pick = rng.integers(0, len(self.measured), size=n)
            background[use] = self.measured[pick[use]]
            measured_index[use] = pick[use]
            n_cw[use] = 0
        simulated = measured_index < 0
        noise_rms = np.sqrt(np.mean(background.astype(np.float64) ** 2, axis=(1, 2)))
        transient_kind = np.zeros(n, dtype=np.int8)
        path = det.path
        rng = self.rng(index, "transients")
        for code, form in enumerate(s.transients, start=1):
            present = (rng.random(n) < form.probability) & simulated
            amp = rng.uniform(*form.amplitude_rel_noise, size=n)
            idx = np.nonzero(present)[0]
            if idx.size:
                sub = path if path.shape[0] == 1 else path[idx]
                wave = transient_waveforms(idx.size, r, form, rng, path=sub)
                background[idx] += (wave * (amp[idx] * noise_rms[idx])[:, None, None]).astype(np.float32)
                transient_kind[idx] = code

        rng = self.rng(index, "labels")
        labels = (rng.random(n) < s.signal_fraction).astype(np.int8)
        snr = (rng.uniform(*s.snr_range, size=n) * labels).astype(np.float32)
        sig = np.nonzero(labels)[0]
        pulses = self.pulses.generate(
            sig.size, self.rng(index, "pulses"), path=path if path.shape[0] == 1 else path[sig]
        )
        traces = background
        if s.snr_definition == "noise_rms":  # background RMS before the transients were added
            amplitude = snr[sig] * noise_rms[sig]
        else:  # the whole trace as it is now (noise, CW lines, transients) plus the pulse itself
            try:
                amplitude = amplitude_for_snr(background[sig], pulses.waveforms, snr[sig], s.snr_definition)
            except ValueError as exc:
                raise CrnnError(f"simulate: {exc}") from exc
        signals = np.zeros_like(traces)
        signals[sig] = (pulses.waveforms * amplitude[:, None, None]).astype(np.float32)
        traces[sig] += signals[sig]
        scale = 1.0
        if r.adc_bits > 0:
            traces = r.digitise(traces).astype(np.float32)
            scale = 1.0 / r.lsb_v

        def per_signal(values: np.ndarray) -> np.ndarray:
            out = np.full(n, np.nan, dtype=np.float32)
            out[sig] = values
            return out

        def per_signal_int(values: np.ndarray) -> np.ndarray:
            out = np.full(n, -1, dtype=np.int32)
            out[sig] = values
            return out

        meta = {  # in the order of META_NAMES
            LABELS: labels,
            SNR: snr,
            "noise_rms": (noise_rms * scale).astype(np.float32),
            "pulse_time_s": per_signal(pulses.time_s),
            "polarisation_angle_rad": per_signal(pulses.polarisation_angle_rad),
            "spectral_slope_log10_per_hz": per_signal(pulses.spectral_slope_log10_per_hz),
            "has_transient": (transient_kind > 0).astype(np.int8),
            "transient_kind": transient_kind,
            "n_cw_lines": n_cw,
            "lst_hours": lst.astype(np.float32),
            "measured_index": measured_index,
            "pulse_library_index": per_signal_int(pulses.library_index),
            "cw_frequency_hz": cw_frequency,
            **det.params,
        }
        assert tuple(meta) == META_NAMES
        return TraceSet(traces.astype(np.float32, copy=False), r.sampling_rate_hz, s.unit, meta), signals


#: Per-trace datasets of a simulation, in the order they are created (``crnn merge`` keeps it).
META_NAMES = (
    LABELS,
    SNR,
    "noise_rms",
    "pulse_time_s",
    "polarisation_angle_rad",
    "spectral_slope_log10_per_hz",
    "has_transient",
    "transient_kind",
    "n_cw_lines",
    "lst_hours",
    "measured_index",
    "pulse_library_index",
    "cw_frequency_hz",
    *PARAMETER_NAMES,
)
#: File attributes of a simulation, in the order they are written (``crnn merge`` keeps it).
RUN_ATTRS = (
    "crnn_version",
    "crnn_stage",
    "seed",
    "band_hz",
    "settings_json",
    "expected_noise_rms_v",
    "transient_kinds",
    "snr_definition",
    "adc_lsb_v",
)
#: The file attribute ``snr_definition`` for each setting of ``snr_definition``.
SNR_DEFINITION_TEXT = {
    "noise_rms": "max |signal| over channels and samples / RMS of the background (no transients)",
    "trace_rms": "max |signal| over channels and samples / RMS of the whole trace (signal + background)",
}
#: Extra attributes of a chunk file: its index, the number of chunks and its first trace.
CHUNK_ATTRS = ("chunk", "n_chunks", "first_trace")


def noise_rms_text(rms_v: float, receiver: ReceiverSettings) -> str:
    """The expected noise RMS at the digitiser's input, in V, and in ADC counts where the traces are
    digitised (``"0.00134 V at the ADC input = 12.2 ADC counts"``; ``"4.1e-06 V"`` without an ADC)."""
    if receiver.adc_bits <= 0:
        return f"{rms_v:.3g} V"
    return f"{rms_v:.3g} V at the ADC input = {rms_v / receiver.lsb_v:.3g} ADC counts"


def chunk_blocks(n_traces: int, n_chunks: int) -> list[range]:
    """The blocks of each of ``n_chunks`` chunks: whole blocks, in order, as even as possible."""
    n_blocks = -(-n_traces // BLOCK_SIZE)
    if not 1 <= n_chunks <= n_blocks:
        msg = (
            f"simulate: {n_traces} traces make {n_blocks} block(s) of {BLOCK_SIZE}, so they can be split "
            f"into 1 to {n_blocks} chunk(s); got {n_chunks} chunks"
        )
        raise CrnnError(msg)
    return [range(n_blocks * i // n_chunks, n_blocks * (i + 1) // n_chunks) for i in range(n_chunks)]


def simulate(
    settings: SimulationSettings, output: str | Path, *, seed: int, chunk: int | None = None, n_chunks: int = 1
) -> Path:
    """Simulate ``settings.n_traces`` traces into the canonical file ``output`` (atomically).

    With ``chunk`` = i (0 <= i < ``n_chunks``), only the traces of chunk i are written (see
    :func:`chunk_blocks`), with the attributes of :data:`CHUNK_ATTRS`; ``crnn merge`` joins the
    chunk files into the file that one run without ``chunk`` writes, bit for bit.
    """
    sim = Simulator(settings, seed)
    r = settings.receiver
    attrs = dict(
        zip(
            RUN_ATTRS,
            (
                __version__,
                "simulate",
                int(seed),
                list(r.band_hz),
                to_mapping(settings),
                sim.noise.expected_rms_v,
                ["none", *[f.kind for f in settings.transients]],
                SNR_DEFINITION_TEXT[settings.snr_definition],
                r.lsb_v if r.adc_bits else 0.0,
            ),
            strict=True,
        )
    )
    n_blocks = -(-settings.n_traces // BLOCK_SIZE)
    blocks = range(n_blocks)
    if chunk is not None:
        if not 0 <= chunk < n_chunks:
            msg = f"simulate: chunk must be in 0..{n_chunks - 1} (n_chunks = {n_chunks}), got {chunk}"
            raise CrnnError(msg)
        blocks = chunk_blocks(settings.n_traces, n_chunks)[chunk]
        attrs.update(zip(CHUNK_ATTRS, (chunk, n_chunks, blocks.start * BLOCK_SIZE), strict=True))
    elif n_chunks != 1:
        msg = f"simulate: n_chunks = {n_chunks} needs a chunk index (--chunk 0..{n_chunks - 1})"
        raise CrnnError(msg)
    first = blocks.start * BLOCK_SIZE
    last = min(blocks.stop * BLOCK_SIZE, settings.n_traces)
    log.info(
        "simulating traces %d..%d of %d%s: %d ch x %d samples at %.4g Hz, band %s Hz, expected noise RMS %s",
        first,
        last - 1,
        settings.n_traces,
        "" if chunk is None else f" (chunk {chunk} of 0..{n_chunks - 1})",
        r.n_channels,
        r.n_samples,
        r.sampling_rate_hz,
        list(r.band_hz),
        noise_rms_text(sim.noise.expected_rms_v, r),
    )
    with (
        TraceWriter(
            output,
            n_channels=r.n_channels,
            n_samples=r.n_samples,
            sampling_rate_hz=r.sampling_rate_hz,
            unit=settings.unit,
            attrs=attrs,
        ) as writer,
        Progress(f"simulate {Path(output).name}", last - first, logger=log) as progress,
    ):
        for k in blocks:
            n = min(BLOCK_SIZE, settings.n_traces - k * BLOCK_SIZE)
            writer.append(sim.block(k, n))
            progress.update(n)
    log.info("wrote %s: %d traces in %s", output, last - first, format_duration(progress.elapsed_s()))
    return Path(output)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", "-o", required=True, help="canonical HDF5 trace file to write")
    p.add_argument("--settings", help="JSON/YAML string or file with simulation settings (see docs/formats.md)")
    add_print_settings(p, "--print-settings", {"--settings": SimulationSettings})
    sim, rx = SimulationSettings(), ReceiverSettings()
    p.add_argument("--n-traces", type=int, help=f"number of traces (overrides settings; default {sim.n_traces})")
    p.add_argument(
        "--signal-fraction",
        type=float,
        help=f"fraction of traces with a pulse (overrides settings; default {sim.signal_fraction:g})",
    )
    a = p.add_argument_group("acquisition (override the settings' receiver)")
    a.add_argument(
        "--band-hz",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help=f"receiver pass band in Hz (default {rx.band_hz[0]:g} {rx.band_hz[1]:g})",
    )
    a.add_argument("--sampling-rate-hz", type=float, help=f"sampling rate in Hz (default {rx.sampling_rate_hz:g})")
    a.add_argument("--n-samples", type=int, help=f"samples per trace (default {rx.n_samples})")
    a.add_argument("--n-channels", type=int, help=f"channels per trace (default {rx.n_channels})")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument(
        "--chunk",
        type=int,
        metavar="I",
        help="write only chunk I (0 .. N-1) of the run, for one job of many; join them with `crnn merge`",
    )
    p.add_argument("--n-chunks", type=int, default=1, metavar="N", help="number of chunks of the run (default 1)")


def run(args: argparse.Namespace) -> None:
    check_value(args.seed, "seed", "--seed")
    check_value(args.n_chunks, "scale_out.simulate_chunks", "--n-chunks")
    mapping = load_mapping(args.settings)
    if args.n_traces is not None:
        mapping["n_traces"] = args.n_traces
    if args.signal_fraction is not None:
        mapping["signal_fraction"] = args.signal_fraction
    acquisition = {
        "band_hz": args.band_hz,
        "sampling_rate_hz": args.sampling_rate_hz,
        "n_samples": args.n_samples,
        "n_channels": args.n_channels,
    }
    receiver = {k: v for k, v in acquisition.items() if v is not None}
    if receiver:
        if not isinstance(mapping.get("receiver", {}), dict):
            msg = f"simulate settings.receiver: expected a mapping, got {mapping['receiver']!r}"
            raise CrnnError(msg)
        mapping["receiver"] = {**mapping.get("receiver", {}), **receiver}
    settings = from_mapping(SimulationSettings, mapping, "simulate settings")
    refuse_aliases(
        [
            ("pulse.library_file", settings.pulse.library_file),
            ("background.measured_file", settings.background.measured_file),
        ],
        [("--output", args.output)],
    )
    check_outputs([("--output", args.output)])
    simulate(settings, args.output, seed=args.seed, chunk=args.chunk, n_chunks=args.n_chunks)


if __name__ == "__main__":
    from crnn.cli import stage_main

    stage_main("simulate")
