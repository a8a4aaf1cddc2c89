"""Stage ``robustness``: score one model or baseline on named "shifts", other detectors' data.

A shift is a simulation with other settings (another band, receiver temperature, CW lines, filter
phase response, ...) and its own seed, never used for training (config section ``robustness``; the
workflow's rule ``simulate_shift`` makes one file per shift). For each shift file given with
``--shift NAME=FILE`` this stage scores every trace (a model is loaded once; the matched filter
estimates its noise spectrum from the shift's own label-0 traces) and measures, without bootstrap:

* the threshold at ``fpr`` on the shift's own **noise-only** background (label 0, no transient) and
  on **all** its background;
* the efficiency in SNR bins of width ``snr_bin_width`` centred on each of ``snr_points``: for pulses
  in traces without transients with the noise-only threshold (``efficiency_noise``), and for all
  pulses with the all-background threshold (``efficiency_all``), with 68 % Clopper-Pearson intervals;
* the fraction of the shift's transient-only background (label 0 with a transient) that passes the
  noise-only threshold (``transient_pass``), and the AUC.

Thresholds are set on each shift's own noise, so a shift that only rescales the scores costs
nothing; what is measured is how well the method still separates pulses from that detector's
noise. Writes one JSON file (``"format": "crnn-robustness/1"``, see ``docs/formats.md``), atomically.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.metrics import roc_auc_score

from crnn import __version__
from crnn.baselines import (
    BASELINES,
    SCORE_MEANING,
    BaselineSettings,
    SignalModel,
    baseline_scores,
    check_one_method,
)
from crnn.classifier import add_model_flags
from crnn.errors import CrnnError, MissingFieldError
from crnn.fileutil import check_outputs, refuse_aliases, write_json
from crnn.metrics import CONFIDENCE, clopper_pearson, threshold_at_fpr
from crnn.settings import add_print_settings, from_mapping, load_mapping, to_mapping, validate
from crnn.tracefile import LABELS, SNR, TraceFile

log = logging.getLogger(__name__)
FORMAT = "crnn-robustness/1"
TRANSIENT = "has_transient"

#: The default shifts (the schema's default of ``robustness.shifts``): partial ``simulate``
#: settings laid over the run's own, each a detector the methods were not trained on.
DEFAULT_SHIFTS: dict[str, dict[str, Any]] = {
    "receiver_40k": {
        "description": "the fixed detector of crnn 0.x: analog Butterworth 30-80 MHz (order 10), flat "
        "antenna, 40 K receiver, two CW lines",
        "simulate": {},
    },
    "band_minus_5mhz": {
        "description": "pass band narrowed by 5 MHz at each end: 35-75 MHz",
        "simulate": {"receiver": {"band_hz": [35000000.0, 75000000.0]}},
    },
    "band_plus_5mhz": {
        "description": "pass band widened by 5 MHz at each end: 25-85 MHz",
        "simulate": {"receiver": {"band_hz": [25000000.0, 85000000.0]}},
    },
    "receiver_150k": {"description": "receiver noise temperature 150 K", "simulate": {"noise_temperature_k": 150.0}},
    "receiver_300k": {"description": "receiver noise temperature 300 K", "simulate": {"noise_temperature_k": 300.0}},
    "cw_other_lines": {
        "description": "other CW transmitters: 33.3, 44.1 and 71.9 MHz, amplitude 1 noise RMS, each in half the traces",
        "simulate": {
            "cw_lines": [
                {"frequency_hz": 33300000.0, "amplitude_rel_noise": 1.0, "probability": 0.5},
                {"frequency_hz": 44100000.0, "amplitude_rel_noise": 1.0, "probability": 0.5},
                {"frequency_hz": 71900000.0, "amplitude_rel_noise": 1.0, "probability": 0.5},
            ]
        },
    },
    "filter_order_4": {
        "description": "4th-order band-pass filter instead of 10th: another phase response (pulse shape)",
        "simulate": {"receiver": {"filter_order": 4}},
    },
    "digital_butterworth": {
        "description": "digital (bilinear) Butterworth band-pass 30-80 MHz of order 5: the "
        "digital family of the training (randomise.digital_probability) at "
        "a fixed band and order",
        "simulate": {
            "receiver": {
                "chain_response": {"family": "digital_butterworth", "band_hz": [30000000.0, 80000000.0], "order": 5}
            }
        },
    },
    "zero_phase": {
        "description": "never trained: zero-phase band-pass (the magnitude of the order-10 Butterworth, no phase)",
        "simulate": {
            "receiver": {"chain_response": {"family": "zero_phase", "band_hz": [30000000.0, 80000000.0], "order": 10}}
        },
    },
    "resonant_antenna": {
        "description": "resonant antenna (59 MHz, Q 11, like the LOFAR LBA) before the Butterworth band-pass",
        "simulate": {"receiver": {"antenna_response": {"family": "resonance", "frequency_hz": 59000000.0, "q": 11.0}}},
    },
    "chirp_interference": {
        "description": "never trained: swept-sine (chirp) interference of 0.2-1 us in 10 % of the traces",
        "simulate": {"transients": [{"kind": "chirp", "probability": 0.1}]},
    },
    "coreas_example_pulses": {
        "description": "never trained: pulses of data/example_coreas.hdf5 (CoREAS layout, 4 "
        "observers) through the default detector",
        "pulse_library": {"path": "data/example_coreas.hdf5", "format": "coreas"},
        "simulate": {},
    },
    "coreas_pulses": {
        "description": "never trained: CoREAS pulses of the NuRadioMC example shower (8 observers) "
        "through the default detector",
        "pulse_library": {"path": "../shared/realdata/coreas/example_data.hdf5", "format": "coreas"},
        "requires": ["../shared/realdata/coreas/example_data.hdf5"],
        "simulate": {},
    },
    "measured_chain_filters": {
        "description": "never trained: measured SHP-48+ high-pass (-40 C) x NTU01 LNA x "
        "ARIANNA cable x ULP-216+ low-pass (no other band-pass)",
        "requires": [
            "../shared/realdata/responses/SHP-48+_Minus40degC.S2P",
            "../shared/realdata/responses/NTU01_LNA_LOGMAG.CSV",
            "../shared/realdata/responses/NTU01_LNA_PHASE.CSV",
            "../shared/realdata/responses/CableAntennuation_James2016.csv",
            "../shared/realdata/responses/ULP-216+_Plus25DegC.s2p",
        ],
        "simulate": {
            "receiver": {
                "chain_response": {
                    "family": "chain",
                    "parts": [
                        {"family": "table", "file": "../shared/realdata/responses/SHP-48+_Minus40degC.S2P"},
                        {
                            "family": "table",
                            "file": "../shared/realdata/responses/NTU01_LNA_LOGMAG.CSV",
                            "phase_file": "../shared/realdata/responses/NTU01_LNA_PHASE.CSV",
                            "skiprows": 3,
                            "columns": ["frequency_hz", "value", "unused"],
                            "gain_column": "value",
                            "gain_unit": "db",
                            "phase_column": "value",
                            "phase_unit": "deg",
                        },
                        {
                            "family": "table",
                            "file": "../shared/realdata/responses/CableAntennuation_James2016.csv",
                            "frequency_column": "FREQ (Hz)",
                            "gain_column": "Diff (dB)",
                            "gain_unit": "db",
                            "phase_column": "Phase (deg)",
                            "phase_unit": "deg",
                        },
                        {"family": "table", "file": "../shared/realdata/responses/ULP-216+_Plus25DegC.s2p"},
                    ],
                }
            }
        },
    },
    "measured_chain_lofar": {
        "description": "never trained: measured SHP-25+ high-pass x LOFAR RCU gain (30-80 MHz "
        "table, minimum phase) x 115 m RG58 x ULP-216+",
        "requires": [
            "../shared/realdata/responses/SHP-25+__UNIT_1.s2p",
            "../shared/realdata/responses/RCU_gain.txt",
            "../shared/realdata/responses/ULP-216+_Plus25DegC.s2p",
        ],
        "simulate": {
            "receiver": {
                "chain_response": {
                    "family": "chain",
                    "parts": [
                        {"family": "table", "file": "../shared/realdata/responses/SHP-25+__UNIT_1.s2p"},
                        {
                            "family": "table",
                            "file": "../shared/realdata/responses/RCU_gain.txt",
                            "columns": ["gain_db"],
                            "frequency_start_hz": 30000000.0,
                            "frequency_step_hz": 1000000.0,
                            "phase": "minimum",
                            "taper_hz": 3000000.0,
                        },
                        {"family": "cable", "loss_db_per_sqrt_mhz": 1.716},
                        {"family": "table", "file": "../shared/realdata/responses/ULP-216+_Plus25DegC.s2p"},
                    ],
                }
            }
        },
    },
}
#: simulate keys that the robustness suite sets itself (or leaves out) in every shift
SUITE_KEYS = ("n_traces", "signal_fraction", "snr_range", "background")


@dataclass(frozen=True)
class RobustnessSettings:
    """The robustness suite (config section ``robustness``)."""

    #: the node of the config schema that holds the rules on these settings
    SCHEMA: ClassVar[str] = "robustness"

    #: run the suite in the workflow
    enabled: bool = True
    #: traces simulated per shift (half of them with a pulse)
    n_traces: int = 12000
    #: SNR range of the pulses of every shift
    snr_range: tuple[float, float] = (3.5, 10.5)
    #: SNRs at which the efficiency is reported (bins of snr_bin_width centred on them)
    snr_points: tuple[float, ...] = (4.0, 5.0, 6.0, 8.0, 10.0)
    #: width of the SNR bins around snr_points
    snr_bin_width: float = 1.0
    #: false-positive rate at which the thresholds are set (on each shift's own background)
    fpr: float = 1e-3
    #: shift k (in the order of ``shifts``) simulates with seed = seed + seed_offset + k
    seed_offset: int = 1000
    #: names of the shifts to run (None: every shift)
    only: tuple[str, ...] | None = None
    #: name -> {description, simulate (partial simulate settings), requires (paths)}
    shifts: dict[str, Any] = field(default_factory=lambda: {k: dict(v) for k, v in DEFAULT_SHIFTS.items()})

    def check(self) -> None:
        """The schema's rules on each value, then that ``only`` names configured shifts."""
        validate(self, "robustness")
        unknown = [n for n in self.only or () if n not in self.shifts]
        if unknown:
            msg = f"robustness: only names unknown shift(s) {unknown}; configured: {', '.join(self.shifts)}"
            raise CrnnError(msg)


# -- the measurements -----------------------------------------------------------------------------
def _rate(k: int, n: int) -> dict[str, Any]:
    lo, hi = clopper_pearson(np.array([k]), np.array([n]))
    return {
        "n": int(n),
        "passed": int(k),
        "rate": k / n if n else None,
        "interval": [float(lo[0]), float(hi[0])] if n else None,
    }


def _threshold(background: np.ndarray, fpr: float, what: str) -> dict[str, Any]:
    thr = threshold_at_fpr(background, fpr)
    if thr is None:
        return {
            "available": False,
            "target_fpr": fpr,
            "n": int(background.size),
            "reason": f"{background.size} {what} traces allow no FPR of {fpr:g} (need at least {math.ceil(1 / fpr)})",
        }
    k = int(np.sum(background > thr))
    return {
        "available": True,
        "target_fpr": fpr,
        "threshold": thr,
        "n": int(background.size),
        "n_false_positives": k,
        "fpr": k / background.size,
    }


def _efficiency(
    scores: np.ndarray, snr: np.ndarray, threshold: float | None, points: tuple[float, ...], width: float
) -> list[dict[str, Any]]:
    out = []
    for p in points:
        lo, hi = p - width / 2, p + width / 2
        sel = (snr >= lo) & (snr < hi)
        n = int(np.sum(sel))
        entry: dict[str, Any] = {"snr": float(p), "snr_low": float(lo), "snr_high": float(hi), "n": n}
        if threshold is None or n == 0:
            entry.update(passed=None, efficiency=None, interval=None)
        else:
            k = int(np.sum(scores[sel] > threshold))
            a, b = clopper_pearson(np.array([k]), np.array([n]))
            entry.update(passed=k, efficiency=k / n, interval=[float(a[0]), float(b[0])])
        out.append(entry)
    return out


def measure(
    scores: np.ndarray,
    labels: np.ndarray,
    snr: np.ndarray,
    has_transient: np.ndarray,
    *,
    fpr: float,
    snr_points: tuple[float, ...],
    snr_bin_width: float,
) -> dict[str, Any]:
    """The robustness figures of one method on one labelled set of traces (JSON-ready).

    ``has_transient``: 1 = the trace carries a human-made transient, 0 = none, other = unknown
    (counted only in "all background" and "all pulses").
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    snr = np.asarray(snr, dtype=np.float64)
    tr = np.asarray(has_transient).astype(int)
    bg, sig = labels == 0, labels == 1
    noise, transient, clean = bg & (tr == 0), bg & (tr == 1), sig & (tr == 0)
    thr_noise = _threshold(scores[noise], fpr, "noise-only background")
    thr_all = _threshold(scores[bg], fpr, "background")
    t_noise = thr_noise.get("threshold")
    t_all = thr_all.get("threshold")
    out: dict[str, Any] = {
        "n_traces": int(labels.size),
        "n_signal": int(np.sum(sig)),
        "n_signal_clean": int(np.sum(clean)),
        "n_background": int(np.sum(bg)),
        "n_background_noise": int(np.sum(noise)),
        "n_background_transient": int(np.sum(transient)),
        "auc": float(roc_auc_score(labels, scores)) if bg.any() and sig.any() else None,
        "auc_noise": (
            float(roc_auc_score(labels[noise | clean], scores[noise | clean])) if noise.any() and clean.any() else None
        ),
        "threshold_noise": thr_noise,
        "threshold_all": thr_all,
        "efficiency_noise": _efficiency(scores[clean], snr[clean], t_noise, snr_points, snr_bin_width),
        "efficiency_all": _efficiency(scores[sig], snr[sig], t_all, snr_points, snr_bin_width),
        "transient_pass": (
            _rate(int(np.sum(scores[transient] > t_noise)), int(np.sum(transient)))
            if t_noise is not None
            else {"n": int(np.sum(transient)), "passed": None, "rate": None, "interval": None}
        ),
    }
    return out


# -- the stage ------------------------------------------------------------------------------------
def parse_shift(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        msg = f"--shift {text!r}: expected NAME=FILE"
        raise CrnnError(msg)
    return name, Path(path)


def _check_shift(path: str | Path) -> None:
    """A shift file must be a labelled simulation with both classes."""
    with TraceFile(path) as tf:
        for needed in (LABELS, SNR, TRANSIENT):
            if needed not in tf.meta_names:
                raise MissingFieldError(
                    str(path),
                    needed,
                    tf.meta_names,
                    expected="a shift file is a simulation with labels, snr and has_transient",
                )
        labels = tf.read_meta(LABELS)
    if not (np.any(labels == 0) and np.any(labels == 1)):
        msg = (
            f"{path}: a shift needs both signal (1) and background (0) traces; found only {np.unique(labels).tolist()}"
        )
        raise CrnnError(msg)


def robustness(
    shifts: list[tuple[str, str | Path]],
    output: str | Path,
    *,
    model: str | Path | None = None,
    baseline: str | None = None,
    name: str | None = None,
    settings: RobustnessSettings | None = None,
    baseline_settings: BaselineSettings | None = None,
    signal_model: SignalModel | None = None,
    skipped: dict[str, str] | None = None,
    trust_model: bool = False,
    force_resample: bool = False,
) -> dict[str, Any]:
    """Score ``model`` or ``baseline`` on every (name, file) of ``shifts`` and write ``output``."""
    s = settings or RobustnessSettings()
    s.check()
    check_one_method("robustness", model, baseline)
    names = [n for n, _ in shifts]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        msg = f"robustness: shift(s) {dup} given more than once"
        raise CrnnError(msg)
    for _, path in shifts:  # every file is checked before any scoring: a bad one fails at once
        _check_shift(path)
    bs = baseline_settings or BaselineSettings()
    clf = None
    if model is not None:
        from crnn.classifier import load_classifier

        clf = load_classifier(model, trust_model=trust_model)
        method = name or clf.card.get("name", Path(model).stem)
        kind, meaning = "model", "probability that a pulse is present"
    else:
        assert baseline is not None
        method, kind, meaning = name or baseline, "baseline", SCORE_MEANING[baseline]
    if not shifts:
        log.warning("%s: no shift files given; writing an empty robustness file", method)
    results = []
    for shift_name, path in shifts:
        with TraceFile(path) as tf:
            data = tf.read_all()
            seed = tf.attrs.get("seed")
        labels = data.labels.astype(int)
        t0 = time.perf_counter()
        extra: dict[str, Any] = {}
        if clf is not None:
            clf.check_input(data.traces.shape, data.sampling_rate_hz, where=str(path), force_resample=force_resample)
            scores = clf.predict(data.traces, sampling_rate_hz=data.sampling_rate_hz, force_resample=force_resample)
        else:
            assert baseline is not None
            noise = None
            if baseline == "matched_filter":
                noise = data.traces[labels == 0]
                source = f"{path} ({len(noise)} label-0 traces of the shift itself)"
                log.info("%s / %s: noise spectrum from %s", method, shift_name, source)
                extra["noise_spectrum_from"] = source
            scores = baseline_scores(
                baseline, data.traces, data.sampling_rate_hz, bs, noise_traces=noise, signal_model=signal_model
            )
        elapsed = time.perf_counter() - t0
        m = measure(
            scores,
            labels,
            data.meta[SNR],
            data.meta[TRANSIENT],
            fpr=s.fpr,
            snr_points=s.snr_points,
            snr_bin_width=s.snr_bin_width,
        )
        description = str((s.shifts.get(shift_name) or {}).get("description", ""))
        entry = {
            "name": shift_name,
            "description": description,
            "file": str(path),
            "seed": int(seed) if seed is not None else None,
            **extra,
            **m,
            "scoring_time_s": round(elapsed, 3),
        }
        results.append(entry)
        eff = ", ".join(
            f"{e['snr']:g}: " + ("-" if e["efficiency"] is None else f"{e['efficiency']:.3f}")
            for e in m["efficiency_noise"]
        )
        log.info(
            "%s / %s: AUC %.4f; efficiency (noise-only threshold) at SNR %s; transients passing %s",
            method,
            shift_name,
            m["auc"],
            eff,
            m["transient_pass"]["rate"],
        )
    out = {
        "format": FORMAT,
        "method": method,
        "kind": kind,
        "score_meaning": meaning,
        "crnn_version": __version__,
        "confidence_level": CONFIDENCE,
        "fpr": s.fpr,
        "snr_points": list(s.snr_points),
        "snr_bin_width": s.snr_bin_width,
        "snr_range": list(s.snr_range),
        "shifts": results,
        "skipped": [{"name": n, "reason": r} for n, r in (skipped or {}).items()],
    }
    if baseline is not None:
        out["baseline_settings"] = to_mapping(bs)
        if baseline == "matched_filter":
            sm = signal_model or SignalModel()
            out["matched_filter"] = {
                "templates_from": "the run's own signal model (not the shift's)",
                "band_hz": list(sm.receiver.band_hz),
                "filter_order": sm.receiver.filter_order,
            }
    write_json(output, out)
    log.info("wrote %s (%d shift(s), %d skipped)", output, len(results), len(out["skipped"]))
    return out


def read_robustness(path: str | Path) -> dict[str, Any]:
    """A robustness JSON, checked; errors name the file and the field."""
    import json

    try:
        r = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        msg = f"{path}: cannot read robustness JSON ({exc})"
        raise CrnnError(msg) from exc
    if not isinstance(r, dict) or r.get("format") != FORMAT:
        got = r.get("format") if isinstance(r, dict) else type(r).__name__
        msg = f"{path}: field 'format' is {got!r}, expected {FORMAT!r} (the output of `crnn robustness`)"
        raise CrnnError(msg)
    for key in ("method", "kind", "fpr", "snr_points", "shifts", "skipped"):
        if key not in r:
            msg = f"{path}: field {key!r} missing; expected the output of `crnn robustness`"
            raise CrnnError(msg)
    return r


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--shift",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="a shift and its simulated trace file (repeat for each shift)",
    )
    p.add_argument("--output", "-o", required=True, help="robustness JSON to write")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--model", help="a .keras model (with its card) or its folder")
    g.add_argument("--baseline", choices=BASELINES, help="a classical trigger statistic")
    p.add_argument("--name", help="name of the method in tables")
    p.add_argument("--settings", help="JSON/YAML string or file: the config's robustness section")
    p.add_argument("--baseline-settings", help="JSON/YAML string or file: the config's evaluate.baseline section")
    add_print_settings(
        p, "--print-settings", {"--settings": RobustnessSettings, "--baseline-settings": BaselineSettings}
    )
    p.add_argument(
        "--signal-model",
        help="matched filter: JSON/YAML with 'receiver' and 'pulse' settings of the "
        "templates (the run's simulation; default: the simulation defaults)",
    )
    p.add_argument(
        "--skipped",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a shift not run because its required file PATH is missing (listed in the output)",
    )
    add_model_flags(p, scope="--model: ")


def run(args: argparse.Namespace) -> None:
    from crnn.modelcard import model_inputs

    shifts = [parse_shift(t) for t in args.shift]
    refuse_aliases(
        [*((f"--shift {n}", p) for n, p in shifts), *model_inputs("--model", args.model)], [("--output", args.output)]
    )
    check_outputs([("--output", args.output)])
    settings = from_mapping(RobustnessSettings, load_mapping(args.settings), "robustness settings")
    bs = from_mapping(BaselineSettings, load_mapping(args.baseline_settings), "baseline settings")
    sm = from_mapping(SignalModel, load_mapping(args.signal_model), "signal model") if args.signal_model else None
    skipped = {}
    for text in args.skipped:
        n, p = parse_shift(text)
        skipped[n] = f"not run: {p} missing"
    robustness(
        shifts,
        args.output,
        model=args.model,
        baseline=args.baseline,
        name=args.name,
        settings=settings,
        baseline_settings=bs,
        signal_model=sm,
        skipped=skipped,
        trust_model=args.trust_model,
        force_resample=args.force_resample,
    )


if __name__ == "__main__":
    from crnn.cli import stage_main

    stage_main("robustness")
