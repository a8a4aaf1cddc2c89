"""Reader for GRAND's GRANDroot files (plain ROOT TTrees, read with uproot, no ROOT needed).

Event trees, one entry per event, traces of shape (n_du, channels, samples) per entry, the number
of detector units (DU) varying from event to event:

========== ============ ====== ==========================================
tree       branch       unit   content
========== ============ ====== ==========================================
tadc       trace_ch     ADC    int16 counts of the digitiser
trawvoltage trace_ch    uV     voltage at the ADC input
tvoltage   trace        uV     voltage at the antenna feed
tefield    trace        uV/m   electric field
========== ============ ====== ==========================================

Each DU of each event becomes one canonical trace, with ``run_number``, ``event_number``,
``du_id``, ``entry`` and ``unit_index`` kept. The sampling rate comes, in this order, from the
``adc_sampling_frequency`` branch (MHz, real data), from a ``trun`` tree in the same file, from
``--run-file``, or from a ``trun`` tree in a ROOT file beside the input (``run_*.root`` or
``trun_*.root``, preferring the same level tag ``_L0_``/``_L1_`` and a matching run number):
``t_bin_size`` in ns per DU. All DUs of a file must share one rate.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from crnn.errors import CrnnError, MissingFieldError
from crnn.rootmap import RootMapping, iter_root, open_root, tree_names
from crnn.tracefile import TraceSet

GRAND_TREES = {
    "tadc": ("trace_ch", "ADC"),
    "trawvoltage": ("trace_ch", "uV"),
    "tvoltage": ("trace", "uV"),
    "tefield": ("trace", "uV/m"),
}
ID_BRANCHES = ("run_number", "event_number", "du_id")


def grand_tree(trees: dict[str, str]) -> str | None:
    return next((t for t in GRAND_TREES if t in trees), None)


def _flat(values) -> np.ndarray:
    import awkward as ak

    return np.asarray(ak.to_numpy(ak.flatten(ak.Array(values), axis=None)), dtype=float)


def _rate_from_trun(trun, du_ids: np.ndarray, run_numbers: np.ndarray, where: str) -> float | None:
    import awkward as ak

    runs = np.asarray(trun["run_number"].array(library="np"))
    bins = trun["t_bin_size"].array()
    dus = trun["du_id"].array()
    rates = set()
    for i, run in enumerate(runs):
        if run_numbers.size and run not in run_numbers:
            continue
        table = dict(zip(ak.to_numpy(dus[i]).tolist(), ak.to_numpy(bins[i]).tolist(), strict=False))
        missing = [d for d in np.unique(du_ids).tolist() if d not in table]
        if missing:
            msg = f"{where}: trun has no t_bin_size for detector unit(s) {missing[:10]} of run {run}"
            raise CrnnError(msg)
        rates |= {round(1e9 / table[d], 3) for d in np.unique(du_ids).tolist()}
    if not rates:
        return None
    if len(rates) > 1:
        msg = f"{where}: inconsistent sampling rates {sorted(rates)} Hz among the detector units; expected one per file"
        raise CrnnError(msg)
    return float(rates.pop())


def _level(name: str) -> str | None:
    m = re.search(r"_L(\d+)_", name)
    return m.group(1) if m else None


def find_sampling_rate(path: Path, f, tree_name: str, run_file: str | Path | None) -> tuple[float, str]:
    tree = f[tree_name]
    du_ids = _flat(tree["du_id"].array()).astype(int) if "du_id" in tree.keys() else np.zeros(0, int)
    run_numbers = np.asarray(tree["run_number"].array(library="np")) if "run_number" in tree.keys() else np.zeros(0)
    if "adc_sampling_frequency" in tree.keys():
        mhz = _flat(tree["adc_sampling_frequency"].array())
        if mhz.size:
            if not np.allclose(mhz, mhz[0]):
                msg = (
                    f"{path}:{tree_name}: adc_sampling_frequency holds inconsistent sampling rates "
                    f"({np.unique(mhz).tolist()} MHz); expected one per file"
                )
                raise CrnnError(msg)
            return float(mhz[0]) * 1e6, f"{tree_name}.adc_sampling_frequency"
    candidates: list[Path] = []
    if "trun" in tree_names(f):
        rate = _rate_from_trun(f["trun"], du_ids, run_numbers, f"{path}:trun")
        if rate:
            return rate, f"{path.name}:trun.t_bin_size"
    if run_file is not None:
        candidates = [Path(run_file)]
    else:
        level = _level(path.name)
        nearby = sorted(p for p in path.parent.glob("*.root") if p != path and re.match(r"t?run_", p.name))
        candidates = [p for p in nearby if _level(p.name) == level] + [p for p in nearby if _level(p.name) != level]
    for cand in candidates:
        with open_root(cand) as rf:
            if "trun" not in tree_names(rf):
                if run_file is not None:
                    raise MissingFieldError(
                        str(cand), "trun", tree_names(rf), kind="tree", expected="GRAND run tree with t_bin_size"
                    )
                continue
            rate = _rate_from_trun(rf["trun"], du_ids, run_numbers, f"{cand}:trun")
            if rate:
                return rate, f"{cand.name}:trun.t_bin_size"
    looked = ", ".join(p.name for p in candidates) or "no run_*.root/trun_*.root files"
    msg = (
        f"{path}:{tree_name}: cannot find the sampling rate: no adc_sampling_frequency values and no matching "
        f"trun tree in the file or beside it (looked at: {looked}); give --sampling-rate-hz or --run-file"
    )
    raise CrnnError(msg)


def iter_grandroot(
    path: str | Path,
    *,
    tree: str | None = None,
    sampling_rate_hz: float | None = None,
    run_file: str | Path | None = None,
    chunk_size: int = 4096,
) -> tuple[dict, Iterator[TraceSet]]:
    path = Path(path)
    with open_root(path) as f:
        trees = tree_names(f)
        name = tree or grand_tree(trees)
        if name is None or name not in GRAND_TREES:
            raise MissingFieldError(
                str(path),
                name or "tadc",
                trees,
                kind="tree",
                expected=f"a GRANDroot event tree, one of {list(GRAND_TREES)}",
            )
        if name not in trees:
            raise MissingFieldError(str(path), name, trees, kind="tree", expected="GRANDroot event tree")
        if sampling_rate_hz is None:
            sampling_rate_hz, source = find_sampling_rate(path, f, name, run_file)
        else:
            source = "--sampling-rate-hz"
        ids = tuple(b for b in ID_BRANCHES if b in f[name].keys())
    branch, unit = GRAND_TREES[name]
    mapping = RootMapping(tree=name, branch=branch, unit=unit, sampling_rate_hz=sampling_rate_hz, id_branches=ids)
    info, chunks = iter_root(path, mapping, chunk_size)
    info["attrs"] = {"grand_tree": name, "sampling_rate_source": source}
    return info, chunks
