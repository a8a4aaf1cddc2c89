"""Stage ``inspect``: print what a trace file (HDF5 or ROOT) or a model holds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from crnn.classifier import add_model_flags
from crnn.errors import CrnnError
from crnn.tracefile import LABELS, SNR, TraceFile


def describe_trace_file(path: str | Path) -> str:
    lines = []
    with TraceFile(path) as tf:
        dur_s = tf.n_samples / tf.sampling_rate_hz
        lines.append(f"{tf.path}: canonical trace file")
        lines.append(f"  traces: {tf.n_traces} x {tf.n_channels} channel(s) x {tf.n_samples} samples ({tf.unit})")
        lines.append(f"  sampling rate: {tf.sampling_rate_hz / 1e6:g} MHz ({dur_s * 1e9:.0f} ns per trace)")
        for key in ("band_hz", "crnn_stage", "split", "seed"):
            if key in tf.attrs:
                lines.append(f"  {key}: {tf.attrs[key]}")
        n = min(tf.n_traces, 4096)
        x = tf.read_traces(0, n)
        rms = np.sqrt(np.mean(x**2))
        lines.append(f"  RMS of the first {n} traces: {rms:.4g} {tf.unit}")
        lines.append("  per-trace datasets:")
        for name in tf.meta_names:
            v = tf.read_meta(name)
            if name == LABELS:
                detail = f"{int(v.sum())} signal, {int((v == 0).sum())} background"
            elif name == SNR or np.issubdtype(v.dtype, np.floating):
                fin = v[np.isfinite(v)]
                detail = f"min {fin.min():.4g}, max {fin.max():.4g}" if fin.size else "all NaN"
            else:
                detail = f"dtype {v.dtype}"
            lines.append(f"    {name}: {detail}")
    return "\n".join(lines)


def describe_model(path: str | Path, *, trust_model: bool = False) -> str:
    from crnn.classifier import load_classifier

    clf = load_classifier(path, trust_model=trust_model)
    summary: list[str] = []
    clf.model.summary(print_fn=lambda s, **_: summary.append(s))
    return "\n".join([f"{clf.path}: crnn model", json.dumps(clf.card, indent=2), *summary])


def describe_root_file(path: str | Path) -> str:
    from crnn.rootmap import open_root

    try:
        return _describe_root(open_root(Path(path)), path)
    except (OSError, ValueError, KeyError) as exc:  # uproot's ways of meeting a truncated or broken file
        msg = f"{path}: not a readable ROOT file ({type(exc).__name__}: {' '.join(str(exc).split())}); is it truncated?"
        raise CrnnError(msg) from exc


def _describe_root(f, path: str | Path) -> str:
    lines = [f"{path}: ROOT file"]
    with f:
        for key, cls in f.classnames().items():
            lines.append(f"  {key.split(';')[0]}: {cls}")
            if cls in ("TTree", "ROOT::RNTuple"):
                obj = f[key]
                lines.append(f"    entries: {obj.num_entries}")
                for b in obj.keys():
                    t = getattr(obj[b], "typename", "")
                    lines.append(f"    {b}: {t}")
    return "\n".join(lines)


def inspect_path(path: str | Path, *, trust_model: bool = False) -> str:
    p = Path(path)
    if not p.exists():
        msg = f"{p}: no such file"
        raise CrnnError(msg)
    if p.suffix == ".keras" or p.is_dir():
        return describe_model(p, trust_model=trust_model)
    with open(p, "rb") as f:
        magic = f.read(8)
    if magic.startswith(b"root"):
        return describe_root_file(p)
    return describe_trace_file(p)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="a trace file (.h5, .root) or a model (.keras)")
    add_model_flags(p, resample=False)


def run(args: argparse.Namespace) -> None:
    print(inspect_path(args.path, trust_model=args.trust_model))


if __name__ == "__main__":
    from crnn.cli import stage_main

    stage_main("inspect")
