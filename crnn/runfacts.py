"""Facts of a run that the summary page states besides the metrics: the acquisition of the test
split, how each model's training went, and the per-trace metadata of the test split that the
report breaks the results down by (kind of transient, arrival time and polarisation of the pulse).

Everything is read from files the earlier stages wrote (the test split, the model cards and their
``history.csv``); nothing here imports a framework.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from crnn.tracefile import TraceFile

log = logging.getLogger(__name__)
#: per-trace datasets of the test split that the report reads
TEST_META = ("transient_kind", "source_id", "pulse_time_s", "polarisation_angle_rad")
#: what the report says for each reason a training ended
STOP_TEXT = {
    "max_epochs": "the epoch limit",
    "early_stopping": "early stopping",
    "time_limit": "the time limit",
    "unknown": "unknown",
}


def acquisition(test_path: str | Path) -> dict[str, Any]:
    """Band, sampling rate, trace length, channels and unit of the test split (JSON-ready)."""
    with TraceFile(test_path) as tf:
        rate, n, c, unit = tf.sampling_rate_hz, tf.n_samples, tf.n_channels, tf.unit
        band = tf.attrs.get("band_hz")
        n_traces = tf.n_traces
    out: dict[str, Any] = {
        "sampling_rate_hz": float(rate),
        "n_samples": int(n),
        "duration_s": n / float(rate),
        "n_channels": int(c),
        "unit": unit,
        "n_traces": int(n_traces),
        "band_hz": [float(b) for b in band] if band is not None and len(band) == 2 else None,
    }
    return out


def acquisition_text(acq: dict[str, Any]) -> dict[str, str]:
    """The acquisition in words and physicists' units, one line per item."""
    band = acq.get("band_hz")
    return {
        "band": f"{band[0] / 1e6:g}-{band[1] / 1e6:g} MHz" if band else "not recorded in the test split",
        "sampling rate": f"{acq['sampling_rate_hz'] / 1e6:g} MHz ({1e9 / acq['sampling_rate_hz']:.3g} ns per sample)",
        "trace length": f"{acq['n_samples']} samples = {acq['duration_s'] * 1e9:.0f} ns",
        "channels": str(acq["n_channels"]),
        "unit": acq["unit"],
    }


def default_trial_rate_hz(acq: dict[str, Any]) -> float:
    """Traces per second of continuous data cut into back-to-back traces: sampling rate / length."""
    return acq["sampling_rate_hz"] / acq["n_samples"]


def stop_reason(training: dict[str, Any], history: dict[str, list[float]]) -> str:
    """Why a training ended: one of :data:`STOP_TEXT`'s keys. A card that records it (``stopped_by``)
    says; otherwise it follows from the card's settings and the history: all epochs run; else the
    early-stopping rule met at the last epoch (no lower validation loss for ``early_stopping_patience``
    epochs); else, with a time limit set, the time limit."""
    if training.get("stopped_by") in STOP_TEXT:
        return str(training["stopped_by"])
    if training.get("time_limit_cut"):  # the limit cut the last epoch short, whatever its number
        return "time_limit"
    run, epochs = int(training.get("epochs_run") or 0), training.get("epochs")
    if epochs is not None and run >= int(epochs):
        return "max_epochs"
    loss = history.get("val_loss") or []
    patience = training.get("early_stopping_patience")
    if len(loss) >= 2 and patience is not None:
        best = int(np.argmin(loss))  # the first of equal minima, as the early-stopping rule keeps it
        if len(loss) - 1 - best >= int(patience):
            return "early_stopping"
    if (training.get("max_time_s") or 0) > 0 and run > 0:
        return "time_limit"
    return "unknown"


def training_facts(card: dict[str, Any], history: dict[str, list[float]]) -> dict[str, Any]:
    """What the page says about one model's training (JSON-ready): training-set size, epochs, why
    it stopped, time used against the limit, best validation AUC and whether it still rose."""
    tr = card.get("training", {})
    data = card.get("data", {})
    auc = history.get("val_auc") or []
    best = int(np.nanargmax(auc)) if auc and np.any(np.isfinite(auc)) else None
    out: dict[str, Any] = {
        "n_train": data.get("train", {}).get("n_traces"),
        "n_train_signal": data.get("train", {}).get("n_signal"),
        "n_val": data.get("val", {}).get("n_traces"),
        "epochs_run": tr.get("epochs_run"),
        "epochs": tr.get("epochs"),
        "stopped_by": stop_reason(tr, history),
        "train_time_s": tr.get("train_time_s"),
        "max_time_s": tr.get("max_time_s"),
        "best_val_auc": float(auc[best]) if best is not None else None,
        "best_val_auc_epoch": best + 1 if best is not None else None,
        # the last epoch has the best validation AUC so far: more epochs would likely have helped
        "val_auc_rising_at_end": bool(best is not None and len(auc) > 1 and best == len(auc) - 1),
        "val_auc_kept_model": card.get("metrics", {}).get("val_auc"),
    }
    limit, used = out["max_time_s"], out["train_time_s"]
    out["over_time_limit_s"] = round(used - limit, 1) if limit and used is not None and used > limit else None
    return out


def training_text(f: dict[str, Any]) -> str:
    """One model's training facts in a sentence fragment (for logs)."""
    parts = [
        f"{f['n_train']} training traces" if f["n_train"] is not None else "training set size unknown",
        f"{f['epochs_run']} of {f['epochs']} epochs, stopped by {STOP_TEXT[f['stopped_by']]}",
    ]
    if f["train_time_s"] is not None:
        parts.append(f"{f['train_time_s']:.0f} s" + (f" (limit {f['max_time_s']:.0f} s)" if f["max_time_s"] else ""))
    if f["best_val_auc"] is not None:
        parts.append(
            f"best val AUC {f['best_val_auc']:.4f} at epoch {f['best_val_auc_epoch']}"
            + (", still rising" if f["val_auc_rising_at_end"] else "")
        )
    return ", ".join(parts)


def test_metadata(test_path: str | Path, labels: np.ndarray) -> dict[str, np.ndarray]:
    """The datasets of :data:`TEST_META` that the test split holds, in its order; empty (with a
    warning) when the file cannot be read or its labels are not those of the scores."""
    try:
        with h5py.File(test_path, "r") as f:
            ok = "labels" in f and np.array_equal(np.asarray(f["labels"]).astype(int), np.asarray(labels).astype(int))
            out = {k: np.asarray(f[k]) for k in TEST_META if k in f} if ok else {}
    except OSError as exc:
        log.warning(
            "%s: cannot read the test split (%s); no breakdown by transient kind, arrival time or polarisation",
            test_path,
            exc,
        )
        return {}
    if not ok:
        log.warning(
            "%s: its labels are not those of the scores files; no breakdown by transient kind, arrival "
            "time or polarisation",
            test_path,
        )
    return out


def transient_kind_names(test_path: str | Path, source_id: np.ndarray | None) -> dict[tuple[int, int], str]:
    """(source file index, ``transient_kind`` code) -> name of the transient kind, from the
    ``transient_kinds`` attribute of the test split or else of each source file it names
    (``source_files``); code 0 is "none". A source that cannot be read is left out (with a warning)."""
    with h5py.File(test_path, "r") as f:
        attrs = dict(f.attrs)
    own = attrs.get("transient_kinds")
    sources: list[Any] = [own] if own is not None else []
    if own is None:
        files = attrs.get("source_files")
        files = json.loads(files) if isinstance(files, str) else list(files or [])
        for p in files:
            try:
                with h5py.File(p, "r") as g:
                    sources.append(g.attrs.get("transient_kinds"))
            except OSError:
                log.warning(
                    "%s: source %s of the test split cannot be read: its transient kinds are left out", test_path, p
                )
                sources.append(None)
    names: dict[tuple[int, int], str] = {}
    ids = [0] if source_id is None else sorted(int(i) for i in np.unique(source_id))
    for i in ids:
        kinds = sources[0] if own is not None else (sources[i] if 0 <= i < len(sources) else None)
        if kinds is None:
            continue
        kinds = (
            json.loads(kinds)
            if isinstance(kinds, str)
            else [str(k.decode() if isinstance(k, bytes) else k) for k in kinds]
        )
        for code, name in enumerate(kinds):
            if code > 0:
                names[(i, code)] = str(name)
    return names


def kind_codes(meta: dict[str, np.ndarray], names: dict[tuple[int, int], str]) -> tuple[np.ndarray, dict[int, str]]:
    """One code per trace that is unique across source files, and the name of each code (for
    :func:`crnn.metrics.false_alarms_by_kind`); traces of no named kind get code -1."""
    kind = meta["transient_kind"].astype(np.int64)
    src = meta.get("source_id")
    src = np.zeros(len(kind), dtype=np.int64) if src is None else src.astype(np.int64)
    codes = np.full(len(kind), -1, dtype=np.int64)
    out: dict[int, str] = {}
    for j, ((i, code), name) in enumerate(sorted(names.items())):
        codes[(src == i) & (kind == code)] = j
        out[j] = name
    return codes, out


def polarisation_deg(angle_rad: np.ndarray) -> np.ndarray:
    """Polarisation angles folded into [0, 180) degrees (a pulse and its negative are one direction)."""
    with np.errstate(invalid="ignore"):
        return np.mod(np.degrees(np.asarray(angle_rad, dtype=np.float64)), 180.0)
