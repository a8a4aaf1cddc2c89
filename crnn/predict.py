"""Stage ``predict``: apply a trained model to canonical trace files.

Output ``.h5``: datasets ``scores`` (float32, probability that a pulse is present) and
``decision`` (int8, score above the working-point threshold) in input order, plus the input's
per-trace metadata; attributes record the model, its threshold and the input file. Output
``.csv``: columns ``index,score,decision``. Inputs are read and scored in chunks.
"""

from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path

import h5py
import numpy as np

from crnn import __version__
from crnn.classifier import load_classifier
from crnn.errors import CrnnError
from crnn.fileutil import atomic_output
from crnn.tracefile import TraceFile

log = logging.getLogger(__name__)


def predict_file(
    model: str | Path, input_path: str | Path, output: str | Path, *, threshold: float | None = None,
    chunk_size: int = 8192, trust_model: bool = False,
) -> Path:
    clf = load_classifier(model, safe_mode=not trust_model)
    out = Path(output)
    if out.suffix not in (".h5", ".hdf5", ".csv"):
        msg = f"{out}: output must end in .h5, .hdf5 or .csv; got {out.suffix or 'no suffix'!r}"
        raise CrnnError(msg)
    thr = clf.threshold if threshold is None else float(threshold)
    with TraceFile(input_path) as tf:
        clf.check_input(tf.shape, tf.sampling_rate_hz, where=str(input_path))
        scores = np.empty(tf.n_traces, dtype=np.float32)
        meta: dict[str, list[np.ndarray]] = {name: [] for name in tf.meta_names}
        for start, chunk in tf.iter_chunks(chunk_size):
            scores[start : start + chunk.n_traces] = clf.predict(chunk.traces, sampling_rate_hz=chunk.sampling_rate_hz)
            for name in meta:
                meta[name].append(chunk.meta[name])
            log.info("scored %d / %d traces", start + chunk.n_traces, tf.n_traces)
    decision = clf.decide(scores, thr)
    with atomic_output(out) as tmp:
        if out.suffix == ".csv":
            with open(tmp, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["index", "score", "decision"])
                for i, (s, d) in enumerate(zip(scores, decision, strict=True)):
                    w.writerow([i, f"{s:.6g}", int(d)])
        else:
            with h5py.File(tmp, "w") as f:
                f.create_dataset("scores", data=scores)
                f.create_dataset("decision", data=decision)
                for name, parts in meta.items():
                    if name in ("scores", "decision"):
                        continue
                    f.create_dataset(name, data=np.concatenate(parts))
                f.attrs["model"] = str(clf.path)
                f.attrs["threshold"] = thr
                f.attrs["input"] = str(input_path)
                f.attrs["crnn_version"] = __version__
    log.info("%s: %d traces, %d above threshold %.4g", out, len(scores), int(decision.sum()), thr)
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", required=True, help="a .keras model with its card, or its folder")
    p.add_argument("--input", "-i", required=True, help="canonical trace file")
    p.add_argument("--output", "-o", required=True, help="scores file: .h5 or .csv")
    p.add_argument("--threshold", type=float, help="decision threshold (default: the card's working point)")
    p.add_argument("--chunk-size", type=int, default=8192, help="traces scored per chunk")
    p.add_argument(
        "--trust-model", action="store_true",
        help="allow models that carry arbitrary code (Lambda layers); only for files you trust",
    )


def run(args: argparse.Namespace) -> None:
    predict_file(args.model, args.input, args.output, threshold=args.threshold, chunk_size=args.chunk_size,
                 trust_model=args.trust_model)


if __name__ == "__main__":
    from crnn.cli import stage_main

    stage_main("predict")
