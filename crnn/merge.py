"""Stage ``merge``: join the chunk files of one simulation into the file of a single run.

``crnn simulate --chunk I --n-chunks N`` writes chunk I of a run; the chunks hold whole blocks of
traces, and block k is drawn from ``default_rng([seed, k])`` whatever job makes it. ``crnn merge``
checks that its inputs are all N chunks of the same run (same settings, seed and crnn version,
each chunk once, every trace present) and writes them in order, with the attributes of an
unchunked run: the output equals the file of ``crnn simulate`` without ``--chunk``, bit for bit.
The inputs may be given in any order.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from crnn.errors import CrnnError
from crnn.fileutil import check_outputs, refuse_aliases
from crnn.settings import from_mapping, load_mapping
from crnn.simulate import BLOCK_SIZE, CHUNK_ATTRS, META_NAMES, RUN_ATTRS, SimulationSettings, chunk_blocks
from crnn.tracefile import TraceFile, TraceSet, TraceWriter

log = logging.getLogger(__name__)


def _chunk_info(tf: TraceFile) -> tuple[int, int]:
    missing = [k for k in (*RUN_ATTRS, *CHUNK_ATTRS) if k not in tf.attrs]
    if tf.attrs.get("crnn_stage") != "simulate" or missing:
        msg = (
            f"{tf.path}: not a chunk of `crnn simulate --chunk I --n-chunks N` (attributes {missing} "
            "missing); `crnn merge` joins simulation chunks only (to mix other files use `crnn dataset`)"
        )
        raise CrnnError(msg)
    return int(tf.attrs["chunk"]), int(tf.attrs["n_chunks"])


def merge_chunks(inputs: list[str | Path], output: str | Path) -> Path:
    """Join all chunk files of one simulation run into ``output`` (atomically)."""
    if not inputs:
        msg = "merge: no input files; give every chunk with --input"
        raise CrnnError(msg)
    files = [TraceFile(p) for p in inputs]
    try:
        by_chunk: dict[int, TraceFile] = {}
        ref = files[0]
        _, n_chunks = _chunk_info(ref)
        for tf in files:
            i, n = _chunk_info(tf)
            if n != n_chunks:
                msg = f"merge: {tf.path} is chunk {i} of {n} chunks, but {ref.path} is one of {n_chunks}"
                raise CrnnError(msg)
            for key in RUN_ATTRS:
                if tf.attrs[key] != ref.attrs[key]:
                    msg = (
                        f"merge: {tf.path} and {ref.path} are chunks of different runs: attribute {key!r} "
                        f"is {tf.attrs[key]!r} in one and {ref.attrs[key]!r} in the other"
                    )
                    raise CrnnError(msg)
            if i in by_chunk:
                msg = f"merge: chunk {i} is given twice: {by_chunk[i].path} and {tf.path}"
                raise CrnnError(msg)
            by_chunk[i] = tf
        missing = sorted(set(range(n_chunks)) - set(by_chunk))
        if missing:
            msg = f"merge: chunk(s) {missing} of {n_chunks} missing (chunks are numbered 0..{n_chunks - 1})"
            raise CrnnError(msg)
        for tf in files:
            if sorted(tf.meta_names) != sorted(META_NAMES):
                msg = f"merge: {tf.path} has per-trace datasets {sorted(tf.meta_names)}; expected {sorted(META_NAMES)}"
                raise CrnnError(msg)
        settings = from_mapping(SimulationSettings, load_mapping(ref.attrs["settings_json"]), f"{ref.path} settings")
        for i, blocks in enumerate(chunk_blocks(settings.n_traces, n_chunks)):
            tf = by_chunk[i]
            expected = min(blocks.stop * BLOCK_SIZE, settings.n_traces) - blocks.start * BLOCK_SIZE
            if tf.n_traces != expected or int(tf.attrs["first_trace"]) != blocks.start * BLOCK_SIZE:
                msg = (
                    f"merge: {tf.path} (chunk {i}) holds {tf.n_traces} traces from trace "
                    f"{tf.attrs['first_trace']}; chunk {i} of {n_chunks} of a {settings.n_traces}-trace run "
                    f"has {expected} from trace {blocks.start * BLOCK_SIZE}"
                )
                raise CrnnError(msg)
        attrs = {key: ref.attrs[key] for key in RUN_ATTRS}
        with TraceWriter(
            output,
            n_channels=ref.n_channels,
            n_samples=ref.n_samples,
            sampling_rate_hz=ref.sampling_rate_hz,
            unit=ref.unit,
            attrs=attrs,
        ) as writer:
            for i in range(n_chunks):
                # block by block, as `crnn simulate` appends them: the same layout, little memory
                for _, part in by_chunk[i].iter_chunks(BLOCK_SIZE):
                    meta = {name: part.meta[name] for name in META_NAMES}  # in the order simulate made them
                    writer.append(TraceSet(part.traces, part.sampling_rate_hz, part.unit, meta))
        log.info("merged %d chunks, %d traces, into %s", n_chunks, settings.n_traces, output)
    finally:
        for tf in files:
            tf.close()
    return Path(output)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", "-i", action="append", required=True, help="chunk file (repeatable; any order)")
    p.add_argument("--output", "-o", required=True, help="canonical HDF5 trace file to write")


def run(args: argparse.Namespace) -> None:
    refuse_aliases([("--input", p) for p in args.input], [("--output", args.output)])
    check_outputs([("--output", args.output)])
    merge_chunks(args.input, args.output)


if __name__ == "__main__":
    from crnn.cli import stage_main

    stage_main("merge")
