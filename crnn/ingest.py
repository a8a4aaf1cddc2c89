"""Stage ``ingest``: convert traces from HDF5 or ROOT files into the canonical trace file.

Formats (``--format``, or detected from the file's content):

=========== ================================================================== ==================
format      layout                                                              module
=========== ================================================================== ==================
canonical   crnn's own HDF5 layout (also written by any program with h5py)      :mod:`crnn.tracefile`
coreas      CoREAS HDF5: ``/CoREAS/observers/<name>`` (n, 4) [t, Ex, Ey, Ez]    :mod:`crnn.coreas`
grandroot   GRANDroot event trees ``tadc``, ``trawvoltage``, ``tvoltage``,       :mod:`crnn.grandroot`
            ``tefield`` (one trace per detector unit)
root        any TTree or RNTuple, through a mapping (tree, branch, unit, rate)  :mod:`crnn.rootmap`
=========== ================================================================== ==================

After reading, every chunk goes through the same steps: channel selection (``--channels``, or
``--polarisations`` for CoREAS), FFT resampling to ``--resample-hz`` with the band-pass
``--band-hz`` applied before decimation (:mod:`crnn.resample`), zero-padding or cropping at the end
to ``--n-samples``, and a check for NaN and Inf. Files are read and written in chunks, so their
size is not bounded by memory. Any problem (a missing group, dataset, tree or branch, a wrong
shape, NaN or Inf, an inconsistent sampling rate, an empty, truncated or foreign file) stops the
stage with one message and leaves no output file.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crnn import __version__
from crnn.errors import CrnnError
from crnn.fileutil import check_outputs, refuse_aliases
from crnn.progress import Progress
from crnn.resample import fit_length, resample
from crnn.rootmap import RootMapping, add_root_arguments, iter_root, mapping_from_args, open_root, tree_names
from crnn.settings import check_minimum, check_value
from crnn.tracefile import LABELS, TraceFile, TraceSet, TraceWriter

log = logging.getLogger(__name__)
FORMATS = ("auto", "canonical", "coreas", "grandroot", "root")
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


@dataclass(frozen=True)
class Conversion:
    """What happens to every trace after reading (all optional)."""

    resample_hz: float | None = None
    band_hz: tuple[float, float] | None = None
    filter_order: int = 10
    n_samples: int | None = None
    channels: tuple[int, ...] | None = None
    polarisations: tuple[str, ...] = ("north_south", "east_west")
    label: int | None = None
    #: let ``label`` replace labels that the input already holds (refused otherwise)
    relabel: bool = False
    # a detector response (crnn.responses spec, or a list of one per channel) folded in at the input rate,
    # before resampling; a field in V/m becomes a voltage in V (the effective length is in the gain)
    response: Any = None
    response_base_dir: str | None = None


def detect_format(path: Path) -> str:
    """canonical or coreas (HDF5), grandroot or root (ROOT), from the file's content."""
    if not path.exists():
        msg = f"{path}: no such file"
        raise CrnnError(msg)
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        msg = f"{path}: file is empty (0 bytes); expected HDF5 or ROOT"
        raise CrnnError(msg)
    if head.startswith(HDF5_MAGIC):
        import h5py

        from crnn.coreas import is_coreas

        try:
            with h5py.File(path, "r") as f:
                return "coreas" if is_coreas(f) else "canonical"
        except OSError as exc:
            msg = f"{path}: not a readable HDF5 file ({exc}); is it truncated?"
            raise CrnnError(msg) from exc
    if head.startswith(b"root"):
        from crnn.grandroot import grand_tree

        with open_root(path) as f:
            return "grandroot" if grand_tree(tree_names(f)) else "root"
    msg = f"{path}: neither HDF5 nor ROOT (first bytes {head!r}); expected a canonical, CoREAS or ROOT file"
    raise CrnnError(msg)


def _iter_canonical(path: Path, chunk_size: int) -> tuple[dict, Iterator[TraceSet]]:
    tf = TraceFile(path)

    def chunks() -> Iterator[TraceSet]:
        try:
            for _, chunk in tf.iter_chunks(chunk_size):
                yield chunk
        finally:
            tf.close()

    info = {"sampling_rate_hz": tf.sampling_rate_hz, "unit": tf.unit, "attrs": {}, "n_traces": tf.n_traces}
    if "band_hz" in tf.attrs:
        info["attrs"]["band_hz"] = tf.attrs["band_hz"]
    return info, chunks()


def open_input(
    path: Path, kind: str, root: RootMapping | None, conv: Conversion, chunk_size: int, run_file: str | Path | None
) -> tuple[dict, Iterator[TraceSet]]:
    if kind == "canonical":
        return _iter_canonical(path, chunk_size)
    if kind == "coreas":
        from crnn.coreas import read_coreas

        rate, chunks, n_observers = read_coreas(path, conv.polarisations)
        return {
            "sampling_rate_hz": rate,
            "unit": "V/m",
            "attrs": {"polarisations": list(conv.polarisations)},
            "n_traces": n_observers,
        }, chunks
    if kind == "grandroot":
        from crnn.grandroot import iter_grandroot

        r = root or RootMapping()
        return iter_grandroot(
            path,
            tree=r.tree if root and r.tree != "events" else None,
            sampling_rate_hz=r.sampling_rate_hz,
            run_file=run_file,
            chunk_size=chunk_size,
        )
    return iter_root(path, root or RootMapping(), chunk_size)


def select_channels(x: np.ndarray, channels: tuple[int, ...] | None, where: str) -> np.ndarray:
    if channels is None:
        return x
    bad = [c for c in channels if not 0 <= c < x.shape[1]]
    if bad:
        msg = f"{where}: channel(s) {bad} requested, but the traces have channels 0..{x.shape[1] - 1}"
        raise CrnnError(msg)
    return x[:, list(channels), :]


def ingest(
    input_path: str | Path,
    output: str | Path,
    *,
    fmt: str = "auto",
    root: RootMapping | None = None,
    conversion: Conversion | None = None,
    chunk_size: int = 4096,
    run_file: str | Path | None = None,
    channels: tuple[int, ...] | None = None,
    label: int | None = None,
    relabel: bool = False,
) -> Path:
    """Convert ``input_path`` into the canonical file ``output`` (atomically)."""
    path = Path(input_path)
    conv = conversion or Conversion()
    if channels is not None or label is not None:  # shortcuts for the two most common options
        conv = Conversion(
            **{
                **conv.__dict__,
                **({"channels": channels} if channels is not None else {}),
                **({"label": label, "relabel": relabel} if label is not None else {}),
            }
        )
    if fmt not in FORMATS:
        msg = f"ingest: unknown format {fmt!r}; expected one of {FORMATS}"
        raise CrnnError(msg)
    kind = detect_format(path) if fmt == "auto" else fmt
    if kind == "root" and fmt == "auto" and root is None:
        msg = (
            f"{path}: a ROOT file that is not GRANDroot needs a mapping (--tree, --branch, --unit, --sampling-rate-hz)"
        )
        raise CrnnError(msg)
    info, chunks = open_input(path, kind, root, conv, chunk_size, run_file)
    rate_in = float(info["sampling_rate_hz"])
    rate_out = conv.resample_hz or rate_in
    band = conv.band_hz
    if band is not None and not 0 < band[0] < band[1] < min(rate_in, rate_out) / 2:
        msg = (
            f"ingest: band_hz {list(band)} must lie inside (0, {min(rate_in, rate_out) / 2:g} Hz), the Nyquist "
            f"frequency of the input ({rate_in:g} Hz) and output ({rate_out:g} Hz) rates"
        )
        raise CrnnError(msg)
    responses = None
    if conv.response is not None:
        import json

        from crnn.responses import apply_response, build_channel_responses, transfer_matrix

        unit_in = info["unit"]
        info = {
            **info,
            "unit": "V" if unit_in == "V/m" else unit_in,
            "attrs": {
                **info.get("attrs", {}),
                "response_json": json.dumps(conv.response),
                "unit_before_response": unit_in,
            },
        }
    writer: TraceWriter | None = None
    n = 0
    n_samples = conv.n_samples
    progress = Progress(f"ingest {path.name}", info.get("n_traces"), logger=log)
    try:
        for chunk in chunks:
            where = f"{path}:{(root or RootMapping()).tree}" if kind == "root" else str(path)
            x = select_channels(np.asarray(chunk.traces), conv.channels, str(path))
            bad = ~np.isfinite(x)
            if bad.any():
                i = int(np.argwhere(bad)[0][0])
                field = "traces" if kind in ("canonical", "coreas") else f"branch {info.get('branch', 'trace')!r}"
                msg = f"{where}: {field} holds NaN or Inf at trace {n + i}; expected finite numbers"
                raise CrnnError(msg)
            if conv.response is not None:
                if responses is None:
                    responses = build_channel_responses(
                        conv.response, x.shape[1], rate_in, base_dir=conv.response_base_dir
                    )
                h = transfer_matrix(responses, np.fft.rfftfreq(x.shape[-1], 1.0 / rate_in))
                x = apply_response(x.astype(np.float64), h, rate_in).astype(np.float64)
            if rate_out != rate_in or band is not None:
                x = resample(x, rate_in, rate_out, band_hz=band, filter_order=conv.filter_order)
            if n_samples is None:
                n_samples = x.shape[-1]
            elif conv.n_samples is None and x.shape[-1] != n_samples:
                msg = (
                    f"{where}: trace {n} has {x.shape[-1]} samples after conversion, earlier traces "
                    f"{n_samples}; give --n-samples to pad or crop them to one length"
                )
                raise CrnnError(msg)
            x = fit_length(x, n_samples)
            meta = dict(chunk.meta)
            if conv.label is not None:
                if LABELS in meta and not conv.relabel:
                    found = np.unique(np.asarray(meta[LABELS])).tolist()
                    msg = (
                        f"{where}: already holds labels {found[:5]}; --label {conv.label} would replace them "
                        "(give --relabel to do so)"
                    )
                    raise CrnnError(msg)
                meta[LABELS] = np.full(len(x), conv.label, dtype=np.int8)
            if LABELS in meta:
                lab = np.asarray(meta[LABELS])
                if not np.isin(lab, (0, 1)).all():
                    msg = f"{where}: labels must be 0 or 1; found {np.unique(lab)[:5].tolist()}"
                    raise CrnnError(msg)
                meta[LABELS] = lab.astype(np.int8)
            if writer is None:
                attrs = {
                    "crnn_version": __version__,
                    "crnn_stage": "ingest",
                    "source_file": str(path),
                    "source_format": kind,
                    "source_sampling_rate_hz": rate_in,
                    **info.get("attrs", {}),
                }
                if band is not None:
                    attrs["band_hz"] = list(band)
                writer = TraceWriter(
                    output,
                    n_channels=x.shape[1],
                    n_samples=x.shape[2],
                    sampling_rate_hz=rate_out,
                    unit=info["unit"],
                    attrs=attrs,
                )
            writer.append(TraceSet(x.astype(np.float32), rate_out, info["unit"], meta))
            n += len(x)
            progress.update(len(x))
        progress.close()
        if writer is None:
            msg = f"{path}: no traces found"
            raise CrnnError(msg)
        writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    note = f", resampled {rate_in:g} -> {rate_out:g} Hz" if rate_out != rate_in else ""
    log.info("%s: %d traces from %s (%s%s)", output, n, path, kind, note)
    return Path(output)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", "-i", required=True, help="HDF5 (canonical, CoREAS) or ROOT (GRANDroot, any tree) file")
    p.add_argument("--output", "-o", required=True, help="canonical trace file to write")
    p.add_argument("--format", choices=FORMATS, default="auto", help="input format (default: detect)")
    add_root_arguments(p)
    c = p.add_argument_group("conversion")
    c.add_argument("--resample-hz", type=float, help="resample to this rate (FFT, band-limited)")
    c.add_argument("--band-hz", type=float, nargs=2, metavar=("LOW", "HIGH"), help="band-pass before decimation")
    c.add_argument("--filter-order", type=int, default=10, help="order of the Butterworth band-pass (default 10)")
    c.add_argument("--n-samples", type=int, help="zero-pad or crop every trace at its end to this length")
    c.add_argument("--channels", type=int, nargs="+", help="keep these channels, in this order")
    c.add_argument(
        "--polarisations",
        nargs="+",
        default=["north_south", "east_west"],
        help="CoREAS: electric-field components to keep (north_south, east_west, vertical)",
    )
    c.add_argument(
        "--label",
        type=int,
        choices=(0, 1),
        help="give every trace this label (refused for inputs that hold labels, unless --relabel)",
    )
    c.add_argument("--relabel", action="store_true", help="let --label replace the labels an input holds")
    c.add_argument(
        "--response",
        help="detector response folded in before resampling: a JSON/YAML spec "
        "(crnn.responses; a list = one per channel) or a .json/.yaml file; V/m becomes V",
    )
    p.add_argument("--chunk-size", type=int, default=4096, help="traces per chunk (default 4096)")


def _response_args(text_or_path: str | None) -> dict[str, Any]:
    """``--response``: an inline JSON/YAML spec or a .json/.yaml file (whose folder resolves table paths)."""
    if not text_or_path:
        return {}
    import yaml

    p = Path(text_or_path)
    base = None
    if len(text_or_path) < 4096 and p.suffix in (".json", ".yaml", ".yml"):
        if not p.exists():
            msg = f"{p}: response file not found (--response)"
            raise CrnnError(msg)
        text_or_path, base = p.read_text(), str(p.resolve().parent)
    try:
        spec = yaml.safe_load(text_or_path)  # JSON is YAML
    except yaml.YAMLError as exc:
        msg = f"--response: neither JSON nor YAML: {exc}"
        raise CrnnError(msg) from exc
    if not isinstance(spec, (dict, list)):
        msg = f"--response: expected a mapping with key 'family' (or a list of them), got {spec!r}"
        raise CrnnError(msg)
    return {"response": spec, "response_base_dir": base}


def run(args: argparse.Namespace) -> None:
    refuse_aliases([("--input", args.input), ("--run-file", args.run_file)], [("--output", args.output)])
    check_outputs([("--output", args.output)])
    check_minimum(args.chunk_size, 1, "--chunk-size")
    root = mapping_from_args(args)
    for key in ("resample_hz", "band_hz", "filter_order", "n_samples", "channels", "polarisations", "label"):
        if getattr(args, key) is not None:  # the rules of the config's ingest entries
            check_value(getattr(args, key), f"ingest.*.{key}", f"--{key.replace('_', '-')}")
    conv = Conversion(
        resample_hz=args.resample_hz,
        band_hz=tuple(args.band_hz) if args.band_hz else None,
        filter_order=args.filter_order,
        n_samples=args.n_samples,
        channels=tuple(args.channels) if args.channels else None,
        polarisations=tuple(args.polarisations),
        label=args.label,
        relabel=args.relabel,
        **_response_args(args.response),
    )
    ingest(
        args.input,
        args.output,
        fmt=args.format,
        root=root,
        conversion=conv,
        chunk_size=args.chunk_size,
        run_file=args.run_file,
    )


if __name__ == "__main__":
    from crnn.cli import stage_main

    stage_main("ingest")
