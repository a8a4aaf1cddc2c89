"""Stage ``evaluate``: score the test split with a model or a classical baseline.

Writes into ``--output-dir``:

* ``metrics.json``    AUC and ROC with bootstrap bands; at each working point (target FPR on the
                      test background) the threshold, achieved FPR, TPR, confusion counts,
                      false-alarm rates on noise-only and on transient background, efficiency vs
                      SNR with 68 % Clopper-Pearson intervals and the SNR at 50 % / 90 %
                      efficiency; the same with thresholds set on the noise-only background; the
                      scores of background traces (the "SNR" a method reports on pure noise); for
                      models also the card's working point (threshold chosen on validation)
                      applied to the test split. Documented in ``docs/formats.md``;
* ``scores.h5``       per-trace ``scores``, ``labels`` and ``snr`` in test-file order (plus
                      ``has_transient`` and other metadata when the test file has them);
* ``roc.png``, ``efficiency.png``, ``gallery.png``  the plots of this method alone (the gallery
                      shows hits, misses and false alarms at the report's working point).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from crnn import __version__
from crnn.baselines import (
    BASELINES,
    SCORE_MEANING,
    BaselineSettings,
    NoiseSpectrum,
    SignalModel,
    baseline_scorer,
    check_one_method,
    noise_power_from_blocks,
)
from crnn.baselines import (
    CHUNK as BASELINE_CHUNK,
)
from crnn.classifier import add_model_flags
from crnn.errors import CrnnError, MissingFieldError
from crnn.fileutil import check_outputs, folder_outputs, output_group, refuse_aliases, write_json
from crnn.metrics import operating_point, summarise, threshold_at_fpr
from crnn.progress import Progress
from crnn.settings import add_print_settings, check_value, from_mapping, load_mapping, to_mapping, validate
from crnn.tracefile import LABELS, SNR, TraceFile, h5_output, open_h5

log = logging.getLogger(__name__)
METRICS, SCORES, ROC_PLOT, EFF_PLOT, GALLERY_PLOT = (
    "metrics.json",
    "scores.h5",
    "roc.png",
    "efficiency.png",
    "gallery.png",
)
#: per-trace metadata copied from the test file into scores.h5
CARRIED = ("has_transient", "n_cw_lines", "noise_rms", "pulse_time_s", "source_id", "source_index")


@dataclass(frozen=True)
class EvaluationSettings:
    """How every method is evaluated (config section ``evaluate``)."""

    #: the node of the config schema that holds the rules on these settings
    SCHEMA: ClassVar[str] = "evaluate"

    #: working points: target false-positive rates on the test background
    fprs: tuple[float, ...] = (1e-2, 1e-3, 1e-4)
    #: SNR bin edges of the efficiency curves
    snr_edges: tuple[float, ...] = tuple(2.0 + 0.5 * i for i in range(17))
    #: false-positive rate of the confusion matrix, the example gallery and the headline columns
    working_point_fpr: float = 1e-3
    #: bootstrap replicates for the intervals on AUC, ROC, TPR and SNR at 50 % / 90 % efficiency
    n_bootstrap: int = 200
    #: classical triggers scored on the same test traces (used by the workflow)
    baselines: tuple[str, ...] = BASELINES
    #: settings of the classical triggers
    baseline: BaselineSettings = field(default_factory=BaselineSettings)

    def check(self) -> None:
        """The schema's rules on each value, then the rule that ties the SNR edges together."""
        validate(self, "evaluate")
        edges = np.asarray(self.snr_edges, dtype=float)
        if edges.size < 2 or np.any(np.diff(edges) <= 0):
            msg = f"evaluate: snr_edges must be at least two increasing numbers, got {list(self.snr_edges)}"
            raise CrnnError(msg)


def _noise_spectrum(
    noise_path: str | Path | None, test: TraceFile, labels: np.ndarray, test_path: str | Path
) -> tuple[NoiseSpectrum, str]:
    """The noise spectrum of noise-only traces (label 0) for the matched filter, and where they came
    from; read block by block (the test split's background, or ``noise_path``)."""
    if noise_path is None:
        log.warning(
            "matched filter: no --noise file given; estimating the noise spectrum from the test split's "
            "background traces (give e.g. the validation split to keep them apart)"
        )
        keep = np.nonzero(labels == 0)[0]
        power = noise_power_from_blocks(_blocks(test, keep))
        return (power, len(keep), test.n_samples), f"{test_path} (background of the test split)"
    with TraceFile(noise_path) as tf:
        if (
            tf.n_samples != test.n_samples
            or tf.n_channels != test.n_channels
            or not math.isclose(tf.sampling_rate_hz, test.sampling_rate_hz, rel_tol=1e-9)
        ):
            msg = (
                f"{noise_path}: noise traces have {tf.n_channels} channel(s) x {tf.n_samples} samples at "
                f"{tf.sampling_rate_hz:g} Hz, the test split {test.n_channels} x {test.n_samples} at "
                f"{test.sampling_rate_hz:g} Hz; they must match"
            )
            raise CrnnError(msg)
        noise_labels = tf.read_meta(LABELS) if tf.has_labels else None
        if noise_labels is None:
            log.info("%s has no labels: every trace is taken as noise-only", noise_path)
            keep = np.arange(tf.n_traces)
        else:
            keep = np.nonzero(noise_labels == 0)[0]
        power = noise_power_from_blocks(_blocks(tf, keep))
    return (power, len(keep), test.n_samples), f"{noise_path} ({len(keep)} noise-only traces)"


def _blocks(tf: TraceFile, keep: np.ndarray, size: int = BASELINE_CHUNK) -> Iterator[np.ndarray]:
    """The traces ``keep`` (sorted rows) of ``tf`` in blocks of ``size`` (the last one shorter),
    each read in pieces of consecutive rows."""
    for i in range(0, len(keep), size):
        rows = keep[i : i + size]
        x = tf.read_traces(int(rows[0]), int(rows[-1]) + 1)
        yield x[rows - rows[0]]


class _TestSplit:
    """The test split as the gallery needs it: its metadata in memory, a trace read when asked for."""

    def __init__(self, tf: TraceFile, meta: dict[str, np.ndarray]) -> None:
        self.meta, self.sampling_rate_hz, self.n_samples = meta, tf.sampling_rate_hz, tf.n_samples
        self.labels = meta[LABELS]
        self.traces = _LazyTraces(tf)


class _LazyTraces:
    def __init__(self, tf: TraceFile) -> None:
        self._tf = tf

    def __getitem__(self, i: int) -> np.ndarray:
        return self._tf.read_traces(int(i), int(i) + 1)[0]


#: traces read and scored at a time (a model's scores do not depend on it, nor a baseline's)
SCORE_CHUNK = 8192
#: traces a model scores in one batch (pieces of a multiple of it give the scores of the whole file)
MODEL_BATCH = 4096


def _score_file(
    tf: TraceFile,
    score: Callable[[np.ndarray], np.ndarray],
    block: int,
    what: str,
    chunk_traces: int,
    rows: tuple[int, int] | None = None,
) -> np.ndarray:
    """``score`` of the traces ``rows`` (start, stop; default all) of ``tf``, read in pieces of a
    multiple of ``block`` traces counted from the first trace (the scores equal those of the whole
    file at once), about ``chunk_traces`` at a time."""
    step = _piece(block, chunk_traces)
    first, last = rows or (0, tf.n_traces)
    scores = np.empty(last - first, dtype=np.float32)
    with Progress(what, last - first, logger=log) as progress:
        for i in range(first, last, step):
            stop = min(i + step, last)
            scores[i - first : stop - first] = score(tf.read_traces(i, stop))
            progress.update(stop - i)
    return scores


def _piece(block: int, chunk_traces: int) -> int:
    return block * max(1, chunk_traces // block)


def _chunk_rows(n: int, block: int, chunk_traces: int, chunk: tuple[int, int] | None) -> tuple[int, int]:
    """The rows (start, stop) of the test split that chunk I of N scores: whole pieces of the
    unchunked run (so its scores are those of the unchunked run), as evenly as they go; a chunk
    beyond the number of pieces has none."""
    if chunk is None:
        return 0, n
    i, n_chunks = chunk
    step = _piece(block, chunk_traces)
    pieces = -(-n // step)
    return min(n, i * pieces // n_chunks * step), min(n, (i + 1) * pieces // n_chunks * step)


#: attributes of the scores of one chunk (``--chunk I --n-chunks N``) that the join checks
CHUNK_ATTRS = ("chunk", "n_chunks", "first_row", "n_test_traces", "method", "kind", "test_file")


def _write_chunk_scores(
    output_dir: str | Path,
    scores: np.ndarray,
    rows: tuple[int, int],
    chunk: tuple[int, int],
    tf: TraceFile,
    test_path: str | Path,
    method: str,
    kind: str,
    extra: dict[str, Any],
    score_time: float,
) -> dict[str, Any]:
    info = {
        "chunk": chunk[0],
        "n_chunks": chunk[1],
        "first_row": rows[0],
        "n_test_traces": tf.n_traces,
        "method": method,
        "kind": kind,
        "test_file": str(test_path),
    }
    out = Path(output_dir)
    with output_group() as group, h5_output(group.add(out / SCORES)) as f:
        f.create_dataset("scores", data=scores)
        for key, value in info.items():
            f.attrs[key] = value
        f.attrs["extra_json"] = json.dumps(extra)
        f.attrs["scoring_time_s"] = score_time
    log.info(
        "%s: chunk %d of %d, traces %d..%d scored in %.1f s", method, chunk[0], chunk[1], rows[0], rows[1], score_time
    )
    return {**info, "rows": list(rows), "scoring_time_s": score_time}


def _join_scores(
    paths: list[str | Path], tf: TraceFile, test_path: str | Path, method: str, kind: str
) -> tuple[np.ndarray, float, dict[str, Any]]:
    """The scores of the whole test split from the files of its N chunks (each once, any order)."""
    parts: dict[int, tuple[int, np.ndarray]] = {}
    n_chunks, extra, seconds = None, {}, 0.0
    expected = {"n_test_traces": tf.n_traces, "method": method, "kind": kind, "test_file": str(test_path)}
    for p in paths:
        with open_h5(Path(p)) as f:
            missing = [k for k in CHUNK_ATTRS if k not in f.attrs]
            if missing or "scores" not in f:
                msg = (
                    f"{p}: not the scores of a chunk of `crnn evaluate --chunk I --n-chunks N` (attributes "
                    f"{missing} missing)"
                )
                raise CrnnError(msg)
            attrs = {k: f.attrs[k].decode() if isinstance(f.attrs[k], bytes) else f.attrs[k] for k in CHUNK_ATTRS}
            for key, value in expected.items():
                if attrs[key] != value:
                    msg = f"{p}: {key} is {attrs[key]!r}; this evaluation's is {value!r}"
                    raise CrnnError(msg)
            if n_chunks is None:
                n_chunks = int(attrs["n_chunks"])
            if int(attrs["n_chunks"]) != n_chunks:
                msg = f"{p}: chunk {attrs['chunk']} of {attrs['n_chunks']} chunks, but {paths[0]} is one of {n_chunks}"
                raise CrnnError(msg)
            if int(attrs["chunk"]) in parts:
                msg = f"{p}: chunk {attrs['chunk']} is given twice"
                raise CrnnError(msg)
            parts[int(attrs["chunk"])] = (int(attrs["first_row"]), f["scores"][()])
            extra = json.loads(f.attrs["extra_json"])
            seconds += float(f.attrs["scoring_time_s"])
    assert n_chunks is not None
    missing = sorted(set(range(n_chunks)) - set(parts))
    if missing:
        msg = (
            f"evaluate: the scores of chunk(s) {missing} of {n_chunks} are missing "
            f"(chunks are numbered 0..{n_chunks - 1})"
        )
        raise CrnnError(msg)
    row = 0
    for i in range(n_chunks):
        first, values = parts[i]
        if first != row:
            msg = f"evaluate: chunk {i} starts at trace {first}, but the chunks before it end at trace {row}"
            raise CrnnError(msg)
        row += len(values)
    if row != tf.n_traces:
        msg = f"evaluate: the {n_chunks} chunks hold {row} scores; the test split has {tf.n_traces} traces"
        raise CrnnError(msg)
    return np.concatenate([parts[i][1] for i in range(n_chunks)]), seconds, extra


def evaluate(
    test_path: str | Path,
    output_dir: str | Path,
    *,
    model: str | Path | None = None,
    baseline: str | None = None,
    name: str | None = None,
    settings: EvaluationSettings | None = None,
    noise_path: str | Path | None = None,
    signal_model: SignalModel | None = None,
    seed: int = 0,
    trust_model: bool = False,
    force_resample: bool = False,
    chunk_traces: int = SCORE_CHUNK,
    chunk: tuple[int, int] | None = None,
    scores_from: list[str | Path] | None = None,
) -> dict[str, Any]:
    """Score the test split with one method and write its metrics, scores and plots.

    The test split is read ``chunk_traces`` at a time (the scores do not depend on it): memory holds
    the per-trace scores and metadata, not the traces. With ``chunk`` (I, N) only the scores of
    chunk I of N of the test split are written (``scores.h5``); ``scores_from``, the score files of
    all N chunks, gives the scores without scoring anything: the outputs then equal those of an
    unchunked run (but for ``scoring_time_s``, the chunks' sum)."""
    s = settings or EvaluationSettings()
    s.check()
    check_one_method("evaluate", model, baseline)
    with TraceFile(test_path) as tf:
        return _evaluate(
            tf,
            test_path,
            output_dir,
            model,
            baseline,
            name,
            s,
            noise_path,
            signal_model,
            seed,
            trust_model,
            force_resample,
            chunk_traces,
            chunk,
            scores_from,
        )


def _evaluate(
    tf: TraceFile,
    test_path: str | Path,
    output_dir: str | Path,
    model: str | Path | None,
    baseline: str | None,
    name: str | None,
    s: EvaluationSettings,
    noise_path: str | Path | None,
    signal_model: SignalModel | None,
    seed: int,
    trust_model: bool,
    force_resample: bool,
    chunk_traces: int,
    chunk: tuple[int, int] | None,
    scores_from: list[str | Path] | None,
) -> dict[str, Any]:
    if not tf.has_labels:
        raise MissingFieldError(str(test_path), "labels", tf.meta_names, expected="labels are needed to evaluate")
    # per-trace metadata in memory (a few bytes a trace, as the scores); the traces are read in chunks
    meta = {k: tf.read_meta(k) for k in (LABELS, SNR, *CARRIED) if k in tf.meta_names}
    data = _TestSplit(tf, meta)
    labels = meta[LABELS].astype(int)
    snr = meta[SNR].astype(np.float64) if SNR in meta else np.full(tf.n_traces, np.nan)
    has_transient = meta["has_transient"].astype(int) if "has_transient" in meta else None
    if len(np.unique(labels)) < 2:
        msg = f"{test_path}: the test split needs both signal (1) and background (0) traces; found only {np.unique(labels).tolist()}"
        raise CrnnError(msg)
    t0 = time.perf_counter()
    extra: dict[str, Any] = {}
    if model is not None:
        from crnn.classifier import load_classifier

        clf = load_classifier(model, trust_model=trust_model)
        clf.check_input(tf.shape, tf.sampling_rate_hz, where=str(test_path), force_resample=force_resample)

        def predict(x: np.ndarray) -> np.ndarray:
            return clf.predict(
                x, sampling_rate_hz=tf.sampling_rate_hz, force_resample=force_resample, batch_size=MODEL_BATCH
            )

        score, block = predict, MODEL_BATCH
        method = name or clf.card.get("name", Path(model).stem)
        kind = "model"
        extra["score_meaning"] = "probability that a pulse is present"
    else:
        assert baseline is not None
        noise = None
        if baseline == "matched_filter" and scores_from is None:
            noise, source = _noise_spectrum(noise_path, tf, labels, test_path)
            sm = signal_model or SignalModel()
            extra["matched_filter"] = {
                "noise_spectrum_from": source,
                "templates": s.baseline.matched_filter_templates,
                "spectral_slope_log10_per_hz": list(sm.pulse.spectral_slope_log10_per_hz),
                "band_hz": list(sm.receiver.band_hz),
                "filter_order": sm.receiver.filter_order,
            }
        if scores_from is None:
            score, block = baseline_scorer(
                baseline, tf.sampling_rate_hz, s.baseline, noise_spectrum=noise, signal_model=signal_model
            )
        method = name or baseline
        kind = "baseline"
        extra["score_meaning"] = SCORE_MEANING[baseline]
        extra["baseline_settings"] = to_mapping(s.baseline)
    what = f"evaluate {method} on {Path(test_path).name}"
    if scores_from is not None:
        scores, score_time, joined = _join_scores(scores_from, tf, test_path, method, kind)
        extra = {**joined, **extra}  # what only scoring knows (the matched filter's noise), in its order
    else:
        rows = _chunk_rows(tf.n_traces, block, chunk_traces, chunk)
        scores = _score_file(tf, score, block, what, chunk_traces, rows)
        score_time = time.perf_counter() - t0
        if chunk is not None:
            return _write_chunk_scores(output_dir, scores, rows, chunk, tf, test_path, method, kind, extra, score_time)
    edges = np.asarray(s.snr_edges, dtype=float)
    metrics = summarise(
        scores,
        labels,
        snr,
        fprs=s.fprs,
        snr_edges=edges,
        has_transient=has_transient,
        n_bootstrap=s.n_bootstrap,
        seed=seed,
    )
    metrics = {
        "format": "crnn-metrics/1",
        "method": method,
        "kind": kind,
        "test_file": str(test_path),
        "crnn_version": __version__,
        **extra,
        "scoring_time_s": round(score_time, 3),
        "bootstrap_seed": seed,
        **metrics,
    }
    metrics["report_working_point"] = _report_working_point(
        scores, labels, snr, edges, has_transient, s.working_point_fpr, s.fprs
    )
    if model is not None:
        wp = clf.card["working_point"]
        card_wp = operating_point(
            scores,
            labels,
            snr,
            float(wp["threshold"]),
            edges,
            target_fpr=wp.get("target_fpr"),
            has_transient=has_transient,
        )
        card_wp["chosen_on"] = wp.get("chosen_on", "validation background")
        metrics["card_working_point"] = card_wp
    for wp in metrics["working_points"]:
        if wp.get("available"):
            log.info("%s: AUC %.4f, TPR %.3f at FPR %.1e", method, metrics["auc"], wp["tpr"], wp["fpr"])
    log.info("%s: scored %d traces in %.1f s", method, len(scores), score_time)

    from crnn.plots import plot_efficiency, plot_gallery, plot_roc

    out = Path(output_dir)
    created = not out.exists()
    try:
        # scores, plots and metrics appear together (renamed at the end) or not at all
        with output_group() as group:
            with h5_output(group.add(out / SCORES)) as f:
                f.create_dataset("scores", data=scores.astype(np.float32))
                f.create_dataset("labels", data=labels.astype(np.int8))
                f.create_dataset("snr", data=snr.astype(np.float32))
                for key in CARRIED:
                    if key in meta:
                        f.create_dataset(key, data=meta[key])
                f.attrs["method"] = method
                f.attrs["kind"] = kind
                f.attrs["test_file"] = str(test_path)
                f.attrs["score_meaning"] = metrics["score_meaning"]
            plot_roc([metrics], group.add(out / ROC_PLOT))
            plot_efficiency([metrics], group.add(out / EFF_PLOT))
            plot_gallery(data, scores, metrics, group.add(out / GALLERY_PLOT))
            write_json(group.add(out / METRICS), metrics)
    except BaseException:
        if created:  # a folder made for these outputs goes with them
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    return metrics


def _report_working_point(
    scores: np.ndarray,
    labels: np.ndarray,
    snr: np.ndarray,
    edges: np.ndarray,
    has_transient: np.ndarray | None,
    requested: float,
    fprs: tuple[float, ...],
) -> dict[str, Any]:
    """The working point of the confusion matrix, the gallery and the report's headline columns:
    ``requested`` FPR; when the test background is too small for it, the smallest configured FPR it
    allows, else the smallest FPR it allows at all (one background trace above the threshold)."""
    background = scores[labels == 0]
    used = next((f for f in [requested, *sorted(fprs)] if threshold_at_fpr(background, f) is not None), None)
    note = "threshold set on the test background"
    if used is None:
        used = 1.0 / len(background)
    if used != requested:
        note = f"{len(background)} background traces allow no FPR of {requested:g}; using {used:.2g} instead"
    thr = threshold_at_fpr(background, used)
    if thr is None:  # a single background trace
        thr = float(background.max())
    wp = operating_point(scores, labels, snr, thr, edges, target_fpr=used, has_transient=has_transient)
    wp["requested_fpr"] = requested
    wp["note"] = note
    return wp


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--test", required=True, help="test split (canonical file with labels and snr)")
    p.add_argument("--output-dir", "-o", required=True, help="folder for metrics.json, scores.h5 and plots")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--model", help="a .keras model (with its card) or its folder")
    g.add_argument("--baseline", choices=BASELINES, help="a classical trigger statistic")
    p.add_argument("--name", help="name of the method in tables and plots")
    p.add_argument("--settings", help="JSON/YAML string or file: the config's evaluate section (see docs/formats.md)")
    add_print_settings(p, "--print-settings", {"--settings": EvaluationSettings})
    p.add_argument("--fpr", type=float, nargs="+", help="working points (default 1e-2 1e-3 1e-4)")
    p.add_argument(
        "--snr-edges", type=float, nargs="+", help="SNR bin edges for efficiency curves (default 2, 2.5, ..., 10)"
    )
    p.add_argument("--n-bootstrap", type=int, help="bootstrap replicates for the intervals (default 200; 0 = none)")
    p.add_argument(
        "--noise",
        help="matched filter: file whose label-0 traces give the noise spectrum (default: the test split's background)",
    )
    p.add_argument(
        "--signal-model",
        help="matched filter: JSON/YAML string or file with 'receiver' and 'pulse' "
        "settings of the templates (default: the simulation defaults)",
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument(
        "--chunk",
        type=int,
        metavar="I",
        help="score only chunk I (0 .. N-1) of the test split, into OUTPUT_DIR/scores.h5, for one job "
        "of many; join them with --scores",
    )
    p.add_argument("--n-chunks", type=int, default=1, metavar="N", help="number of chunks (default 1)")
    p.add_argument(
        "--scores",
        nargs="+",
        metavar="FILE",
        help="the scores.h5 of all chunks (any order): evaluate them without scoring; the outputs "
        "equal those of one unchunked run",
    )
    add_model_flags(p, scope="--model: ")


def run(args: argparse.Namespace) -> None:
    from crnn.modelcard import model_inputs

    refuse_aliases(
        [
            ("--test", args.test),
            ("--noise", args.noise),
            *model_inputs("--model", args.model),
            *(("--scores", p) for p in args.scores or ()),
        ],
        folder_outputs("--output-dir", args.output_dir, (METRICS, SCORES, ROC_PLOT, EFF_PLOT, GALLERY_PLOT)),
    )
    check_outputs(
        [(f"--output-dir file {n}", Path(args.output_dir) / n) for n in (METRICS, SCORES)],
        folders=[("--output-dir", args.output_dir)],
    )
    check_value(args.seed, "seed", "--seed")
    check_value(args.n_chunks, "scale_out.evaluate_chunks", "--n-chunks")
    if args.chunk is not None and not 0 <= args.chunk < args.n_chunks:
        msg = f"--chunk: must be in 0..{args.n_chunks - 1} (--n-chunks {args.n_chunks}), got {args.chunk}"
        raise CrnnError(msg)
    if args.chunk is not None and args.scores:
        msg = "--scores: joins the chunks' scores; give it without --chunk"
        raise CrnnError(msg)
    mapping = load_mapping(args.settings)
    if args.fpr:
        mapping["fprs"] = args.fpr
    if args.snr_edges:
        mapping["snr_edges"] = args.snr_edges
    if args.n_bootstrap is not None:
        mapping["n_bootstrap"] = args.n_bootstrap
    settings = from_mapping(EvaluationSettings, mapping, "evaluate settings")
    signal_model = (
        from_mapping(SignalModel, load_mapping(args.signal_model), "signal model") if args.signal_model else None
    )
    evaluate(
        args.test,
        args.output_dir,
        model=args.model,
        baseline=args.baseline,
        name=args.name,
        settings=settings,
        noise_path=args.noise,
        signal_model=signal_model,
        seed=args.seed,
        trust_model=args.trust_model,
        force_resample=args.force_resample,
        chunk=None if args.chunk is None else (args.chunk, args.n_chunks),
        scores_from=args.scores,
    )


if __name__ == "__main__":
    from crnn.cli import stage_main

    stage_main("evaluate")
