"""Generic reader for ROOT trees (TTree or RNTuple) through uproot, driven by a small mapping.

The mapping names the tree, the trace branch, the unit, the sampling rate (a number or a branch
that must be constant in the file) and optional label, SNR and id branches. The trace branch may
hold per entry a fixed-size array (``float[C][T]``, ``float[T]``), nested vectors of one shape, or
several traces per entry (``[units][C][T]``, e.g. one per detector unit, the number of units may
vary from entry to entry): each unit then becomes one canonical trace, with ``entry`` and
``unit_index`` recorded. Entries are read in chunks with ``uproot.iterate``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crnn.errors import CrnnError, MissingFieldError
from crnn.tracefile import LABELS, SNR, TraceSet

TREE_CLASSES = ("TTree", "ROOT::RNTuple")


@dataclass(frozen=True)
class RootMapping:
    """Where the traces and their metadata live in a ROOT file."""

    tree: str = "events"
    branch: str = "trace"
    unit: str | None = None
    sampling_rate_hz: float | None = None
    sampling_rate_branch: str | None = None
    label_branch: str | None = None
    snr_branch: str | None = None
    id_branches: tuple[str, ...] = field(default_factory=tuple)


def add_root_arguments(p) -> None:
    """The ROOT-mapping options shared by ``crnn ingest`` and ``crnn predict``."""
    g = p.add_argument_group("ROOT mapping (format root; --tree also selects a GRANDroot tree)")
    g.add_argument("--tree", help="tree holding the traces (root: default 'events')")
    g.add_argument("--branch", default="trace", help="branch holding the traces (default 'trace')")
    g.add_argument("--unit", help="unit of the trace values (V, mV, uV, ADC, ...)")
    g.add_argument("--sampling-rate-hz", type=float, help="sampling rate of the input traces in Hz")
    g.add_argument("--sampling-rate-branch", help="branch with the input sampling rate in Hz per entry")
    g.add_argument("--label-branch", help="branch with per-trace labels (0/1)")
    g.add_argument("--snr-branch", help="branch with per-trace SNR")
    g.add_argument("--id-branch", action="append", default=[], help="branch to keep per trace (repeatable)")
    g.add_argument("--run-file", help="GRANDroot: file with the trun tree (default: found beside the input)")


def mapping_from_args(args) -> RootMapping | None:
    """The mapping the options of :func:`add_root_arguments` describe, or None if none was given."""
    if not (args.format == "root" or args.tree or args.unit or args.sampling_rate_hz or args.sampling_rate_branch):
        return None
    if args.sampling_rate_hz is not None:
        from crnn.settings import check_value

        check_value(args.sampling_rate_hz, "ingest.*.sampling_rate_hz", "--sampling-rate-hz")
    return RootMapping(
        tree=args.tree or "events",
        branch=args.branch,
        unit=args.unit,
        sampling_rate_hz=args.sampling_rate_hz,
        sampling_rate_branch=args.sampling_rate_branch,
        label_branch=args.label_branch,
        snr_branch=args.snr_branch,
        id_branches=tuple(args.id_branch),
    )


def open_root(path: Path):
    import uproot

    try:
        return uproot.open(path)
    except Exception as exc:  # uproot raises many kinds for broken files
        msg = f"{path}: not a readable ROOT file ({type(exc).__name__}: {exc}); is it truncated?"
        raise CrnnError(msg) from exc


def iter_root(path: Path, mapping: RootMapping, chunk_size: int) -> tuple[dict, Iterator[TraceSet]]:
    f = open_root(path)
    try:
        trees = tree_names(f)
        if mapping.tree not in trees:
            raise MissingFieldError(
                str(path), mapping.tree, trees, kind="tree", expected="the tree that holds the traces"
            )
        tree = f[mapping.tree]
        branches = set(tree.keys())
        wanted = {"traces": mapping.branch}
        if mapping.label_branch:
            wanted[LABELS] = mapping.label_branch
        if mapping.snr_branch:
            wanted[SNR] = mapping.snr_branch
        if mapping.sampling_rate_branch:
            wanted["_rate"] = mapping.sampling_rate_branch
        for b in mapping.id_branches:
            wanted[b] = b
        for role, b in wanted.items():
            if b not in branches:
                raise MissingFieldError(
                    f"{path}:{mapping.tree}",
                    b,
                    branches,
                    kind="branch",
                    expected="trace array" if role == "traces" else f"per-entry {role.lstrip('_')}",
                )
        if mapping.unit is None:
            msg = f"{path}: ROOT input needs the unit of branch {mapping.branch!r} (--unit V, uV, ADC, ...)"
            raise CrnnError(msg)
        if (mapping.sampling_rate_hz is None) == (mapping.sampling_rate_branch is None):
            msg = f"{path}: give exactly one of --sampling-rate-hz or --sampling-rate-branch for ROOT input"
            raise CrnnError(msg)
        if tree.num_entries == 0:
            msg = f"{path}:{mapping.tree}: tree has no entries; expected at least one trace"
            raise CrnnError(msg)
        rate = mapping.sampling_rate_hz
        if mapping.sampling_rate_branch:
            rates = np.asarray(tree[mapping.sampling_rate_branch].array(library="np"), dtype=float)
            if rates.ndim != 1 or not np.allclose(rates, rates[0], rtol=1e-9):
                msg = (
                    f"{path}:{mapping.tree}: branch {mapping.sampling_rate_branch!r} holds inconsistent sampling rates "
                    f"(from {np.min(rates):g} to {np.max(rates):g} Hz); expected one rate per file"
                )
                raise CrnnError(msg)
            rate = float(rates[0])
        if rate is None or not np.isfinite(rate) or rate <= 0:
            msg = f"{path}: sampling rate must be a positive number, got {rate}"
            raise CrnnError(msg)
    except BaseException:
        f.close()
        raise

    def chunks() -> Iterator[TraceSet]:
        start = 0
        where = f"{path}:{mapping.tree}"
        try:
            for arrays in tree.iterate(list(wanted.values()), step_size=chunk_size, library="ak"):
                yield root_chunk(arrays, wanted, mapping, where, start, float(rate))
                start += len(arrays)
        except CrnnError:
            raise
        except Exception as exc:  # uproot reports truncation and corruption in many ways
            msg = (
                f"{path}: cannot read tree {mapping.tree!r} at entries from {start} "
                f"({type(exc).__name__}: {str(exc).splitlines()[0]}); is the file truncated?"
            )
            raise CrnnError(msg) from exc
        finally:
            f.close()

    return (
        {
            "sampling_rate_hz": float(rate),
            "unit": mapping.unit,
            "branch": mapping.branch,
            "attrs": {},
            "n_traces": int(tree.num_entries),
        },
        chunks(),
    )


def root_chunk(arrays, wanted: dict[str, str], mapping: RootMapping, where: str, start: int, rate: float) -> TraceSet:
    """One chunk of ROOT entries as canonical traces.

    A trace branch with one trace per entry gives (entries, C, T) or (entries, T). A branch with
    several traces per entry (e.g. one per detector unit: (entries, units, C, T), the number of
    units may vary from entry to entry) gives one canonical trace per unit; per-entry values are
    repeated for each unit, per-unit values are flattened alongside.
    """
    import awkward as ak

    raw = arrays[mapping.branch]
    entry = np.arange(start, start + len(raw), dtype=np.int64)
    counts = None
    if raw.ndim == 4:
        counts = np.asarray(ak.num(raw, axis=1))
        raw = ak.flatten(raw, axis=1)
    try:
        x = ak.to_numpy(raw)
    except (ValueError, TypeError) as exc:
        msg = (
            f"{where}: branch {mapping.branch!r} is jagged (traces of different lengths or channel counts) "
            f"in entries {start}..{start + len(entry) - 1}; expected the same shape for every trace"
        )
        raise CrnnError(msg) from exc
    if x.ndim == 2:
        x = x[:, None, :]
    if x.ndim != 3 or not np.issubdtype(x.dtype, np.number):
        msg = (
            f"{where}: branch {mapping.branch!r} must hold numeric traces of shape (entries, channels, samples), "
            f"(entries, samples) or (entries, units, channels, samples); found {x.shape} of {x.dtype}"
        )
        raise CrnnError(msg)
    meta: dict[str, np.ndarray] = {}
    for role, b in wanted.items():
        if role in ("traces", "_rate"):
            continue
        values = arrays[b]
        if counts is not None:
            if values.ndim >= 2 and np.array_equal(np.asarray(ak.num(values, axis=1)), counts):
                values = ak.flatten(values, axis=1)  # one value per unit
            elif values.ndim == 1:
                values = np.repeat(ak.to_numpy(values), counts)  # one value per entry
            else:
                msg = f"{where}: branch {b!r} has neither one value per entry nor one per unit of {mapping.branch!r}"
                raise CrnnError(msg)
        meta[safe_name(role)] = np.asarray(ak.to_numpy(values))
    meta["entry"] = np.repeat(entry, counts) if counts is not None else entry
    if counts is not None:
        meta["unit_index"] = (
            np.concatenate([np.arange(c) for c in counts]).astype(np.int32) if len(counts) else np.zeros(0, np.int32)
        )
    return TraceSet(x.astype(np.float32), rate, mapping.unit or "", meta)


def tree_names(f) -> dict[str, str]:
    """Trees and RNTuples of an open uproot file, without cycle numbers."""
    return {k.split(";")[0]: v for k, v in f.classnames().items() if v in TREE_CLASSES}


def safe_name(branch: str) -> str:
    """A branch name usable as an HDF5 dataset name: 'header/event_number' -> 'header_event_number'."""
    import re

    return re.sub(r"[^0-9A-Za-z_]+", "_", re.sub(r"\[.*?\]", "", branch)).strip("_") or "value"
