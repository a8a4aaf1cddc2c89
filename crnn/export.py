"""Stage ``export``: write a trained model for a trigger outside Python and TensorFlow.

``crnn export --model M.keras --format onnx --output DIR`` writes ``DIR/model.onnx`` (the whole
network, its input normalisation and spectral whitening included: it takes raw traces of the
card's shape, (N, C, T) float32, and returns the score) and ``DIR/model.card.json``, the model's
card with what an exported model is known by: ``model_sha256`` is the ONNX file's SHA-256, and an
``export`` block names the format, the source model and its SHA-256, the converter, the opset and
the largest score difference between ONNX Runtime and Keras measured at export. Input shape,
sampling rate, band, normalisation and working points stay as the card had them.
``crnn predict --engine onnxruntime --model DIR`` scores with it, without TensorFlow.

``--format int8``: the same network with ONNX Runtime's static post-training quantisation (int8
weights and activations, QDQ), calibrated on background traces (label 0) of ``--calibration``;
``--test-split`` measures the float and the int8 model on a labelled split (AUC, TPR at FPR 1e-3
with each model's own threshold on that split's background) and records the change in the card.

Every export is checked before it is written: ONNX Runtime must score ``--test-split`` (or, without
one, seeded noise traces of the card's shape) within :data:`CHECK_TOLERANCE` of Keras (float), and
the folder appears whole or not at all. The converters (tf2onnx, onnx, onnxruntime) are the
optional dependency group ``export`` (``pip install 'crnn[export]'``).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np

from crnn.classifier import add_model_flags
from crnn.errors import CrnnError

log = logging.getLogger(__name__)

#: the export formats, each with what it writes
FORMATS = {
    "onnx": "float32 ONNX model for ONNX Runtime (CPU)",
    "int8": "ONNX model with int8 static quantisation, calibrated on background traces",
}
#: Python packages (import names) each format needs: the optional dependency group ``export``
PACKAGES = {"onnx": ("tf2onnx", "onnx", "onnxruntime"), "int8": ("tf2onnx", "onnx", "onnxruntime")}
ONNX_NAME = "model.onnx"
#: largest score difference between ONNX Runtime and Keras that a float export may show
CHECK_TOLERANCE = 1e-5
#: the false-positive rate at which the int8 model's efficiency is compared with the float one's
COMPARE_FPR = 1e-3


def check_format(fmt: str) -> None:
    """Refuse an unknown format, then one whose packages are not installed (one line each)."""
    if fmt not in FORMATS:
        msg = f"--format {fmt!r}: unknown export format; expected one of {list(FORMATS)}"
        raise CrnnError(msg)
    missing = []
    for name in PACKAGES[fmt]:  # found, not imported: tf2onnx imports TensorFlow (seconds)
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules (import blocked)
            found = False
        if not found:
            missing.append(name)
    if missing:
        msg = (
            f"--format {fmt}: needs the Python package(s) {', '.join(missing)}, not installed; "
            f"pip install 'crnn[export]'"
        )
        raise CrnnError(msg)


def export_model(
    model: str | Path,
    output: str | Path,
    *,
    fmt: str = "onnx",
    test_split: str | Path | None = None,
    calibration: str | Path | None = None,
    n_calibration: int = 512,
    n_check: int = 256,
    seed: int = 0,
    trust_model: bool = False,
    opset: int | None = None,
) -> Path:
    """Export ``model`` (a .keras model with its card, or its folder) to the folder ``output``."""
    from crnn.classifier import card_classifier

    check_format(fmt)
    if fmt == "int8" and calibration is None:
        msg = "--format int8: needs --calibration, a trace file whose background traces (label 0) set the int8 ranges"
        raise CrnnError(msg)
    card_only = card_classifier(model, trust_model=trust_model)  # refuses a model without its card before Keras
    check = _check_traces(card_only, test_split, n_check, seed)
    calib = _calibration_windows(card_only, calibration, n_calibration, seed) if fmt == "int8" else None

    from crnn.classifier import OnnxClassifier, load_classifier, onnx_session
    from crnn.fileutil import atomic_output
    from crnn.modelcard import file_sha256

    clf = load_classifier(model, trust_model=trust_model)
    out = Path(output)
    with atomic_output(out, directory=True) as tmp:
        onnx_path = tmp / ONNX_NAME
        info = _to_onnx(clf.model, onnx_path, opset)
        float_clf = OnnxClassifier(onnx_session(onnx_path), clf.card, onnx_path)
        keras_scores = clf.predict(check["traces"], sampling_rate_hz=check["rate"])
        onnx_scores = float_clf.predict(check["traces"], sampling_rate_hz=check["rate"])
        diff = float(np.max(np.abs(keras_scores - onnx_scores))) if len(keras_scores) else 0.0
        log.info("%s: ONNX Runtime scores %s within %.2g of Keras's", clf.path.name, check["what"], diff)
        if diff > CHECK_TOLERANCE:
            msg = (
                f"{clf.path}: the ONNX export scores {check['what']} up to {diff:.3g} away from Keras "
                f"(more than {CHECK_TOLERANCE:g}); not written"
            )
            raise CrnnError(msg)
        info["check"] = {
            "traces": check["what"],
            "n_traces": len(keras_scores),
            "max_abs_score_difference_vs_keras": diff,
            "tolerance": CHECK_TOLERANCE,
        }
        if fmt == "int8":
            info["quantisation"] = _quantise(onnx_path, calib, seed)
            int8_clf = OnnxClassifier(onnx_session(onnx_path), clf.card, onnx_path)
            int8_scores = int8_clf.predict(check["traces"], sampling_rate_hz=check["rate"])
            info["check"]["max_abs_score_difference_int8_vs_float"] = float(np.max(np.abs(int8_scores - onnx_scores)))
            if check["labels"] is not None:
                info["test_split"] = _compare(check, onnx_scores, int8_scores)
                t = info["test_split"]
                log.info(
                    "%s: AUC float %.4f, int8 %.4f; TPR at FPR %g float %s, int8 %s",
                    check["what"],
                    t["float"]["auc"],
                    t["int8"]["auc"],
                    COMPARE_FPR,
                    t["float"]["tpr"],
                    t["int8"]["tpr"],
                )
        info["format"] = fmt
        info["source_model"] = clf.path.name
        info["source_model_sha256"] = clf.card.get("model_sha256") or file_sha256(clf.path)
        card = {k: v for k, v in clf.card.items() if k != "format"}
        card["model_sha256"] = file_sha256(onnx_path)
        card["export"] = info
        from crnn.modelcard import write_card

        write_card(onnx_path, card)
    log.info("wrote %s (%s, sha256 %s) and its card", out / ONNX_NAME, FORMATS[fmt], card["model_sha256"][:12])
    return out


def exportable(model: Any) -> Any:
    """The model with every :class:`crnn.models.SpectralWhitening` computed by matrix DFTs
    (:class:`crnn.models.MatrixSpectralWhitening`), the other layers (and weights) shared."""
    import keras

    from crnn.models import MatrixSpectralWhitening, SpectralWhitening

    if not any(isinstance(layer, SpectralWhitening) for layer in model.layers):
        return model

    def swap(layer: Any) -> Any:
        if isinstance(layer, SpectralWhitening):
            return MatrixSpectralWhitening.from_config(layer.get_config())
        return layer

    return keras.models.clone_model(model, clone_function=swap)


def _to_onnx(model: Any, path: Path, opset: int | None) -> dict[str, Any]:
    """Convert with Keras 3's ONNX export (tf2onnx under TensorFlow); what the card records of it."""
    import contextlib
    import io

    import keras
    import onnx
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.WARNING)  # its progress, line by line

    net = exportable(model)
    net(np.zeros((1, *model.input_shape[1:]), dtype=np.float32))  # Keras exports only a model that has run
    with contextlib.redirect_stdout(io.StringIO()):  # tf2onnx prints its progress
        net.export(str(path), format="onnx", verbose=False, opset_version=opset)
    graph = onnx.load(str(path))
    ops = sorted({n.op_type for n in graph.graph.node})
    return {
        "converter": f"keras {keras.__version__} model.export(format='onnx'), tf2onnx {tf2onnx.__version__}",
        "opset": next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")),
        "onnx_input": graph.graph.input[0].name,
        "onnx_output": graph.graph.output[0].name,
        "operators": ops,
        "whitening": "DFTs as products with cosine and sine matrices (MatrixSpectralWhitening)",
    }


def _check_traces(card: Any, test_split: str | Path | None, n_check: int, seed: int) -> dict[str, Any]:
    """The traces both engines score at export: the labelled test split, else seeded Gaussian noise."""
    if test_split is not None:
        from crnn.tracefile import read_traces

        ts = read_traces(test_split, require_labels=True)
        card.check_input(ts.traces.shape, ts.sampling_rate_hz, str(test_split))
        return {
            "traces": ts.traces,
            "rate": ts.sampling_rate_hz,
            "labels": np.asarray(ts.labels).astype(int),
            "what": f"{Path(test_split).name} ({ts.n_traces} traces)",
        }
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_check, card.n_channels, card.n_samples)).astype(np.float32)
    return {
        "traces": x,
        "rate": card.sampling_rate_hz,
        "labels": None,
        "what": f"{n_check} Gaussian noise traces (seed {seed})",
    }


def _calibration_windows(card: Any, path: str | Path, n: int, seed: int) -> np.ndarray:
    """Up to ``n`` background traces of ``path`` (label 0, a seeded choice), fitted to the model's input."""
    from crnn.tracefile import read_traces

    ts = read_traces(path, require_labels=True)
    background = np.flatnonzero(np.asarray(ts.labels) == 0)
    if len(background) == 0:
        msg = f"{path}: dataset 'labels' holds no background trace (label 0); int8 calibration needs noise traces"
        raise CrnnError(msg)
    pick = np.sort(np.random.default_rng(seed).choice(background, min(n, len(background)), replace=False))
    x = card.adapt(ts.traces[pick], ts.sampling_rate_hz, where=str(path))
    return x[:, :, : card.n_samples]


#: layers (by name in crnn.models) that the int8 export keeps in float32 (see _quantise)
FLOAT_LAYERS = ("normalise", "whiten", "score", "logit_per_step")


def _quantise(onnx_path: Path, windows: np.ndarray, seed: int) -> dict[str, Any]:
    """Replace the float model at ``onnx_path`` by its int8 static quantisation (QDQ, per channel)."""
    import onnxruntime
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, name: str, batches: list[np.ndarray]) -> None:
            self.name, self.batches = name, iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            b = next(self.batches, None)
            return None if b is None else {self.name: b}

    import onnx

    name = onnx.load(str(onnx_path)).graph.input[0].name
    pre = onnx_path.with_name("pre.onnx")
    quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
    batches = [windows[i : i + 64] for i in range(0, len(windows), 64)]
    # the input's normalisation and whitening stay float: their medians and DFT products span the
    # whole range of a trace, which int8 cannot hold (AUC 0.05 lower when they are quantised); so does
    # the read-out (the score layer): a quantised probability has 256 levels, the background's top
    # scores and most pulses share the highest one, and the TPR at FPR 1e-3 fell to 0.0 while the AUC
    # moved by 0.002 (the demo's GRU and LSTM on their 56,040-trace test split)
    keep_float = [n.name for n in onnx.load(str(pre)).graph.node if any(k in n.name for k in FLOAT_LAYERS)]
    quantize_static(
        str(pre),
        str(onnx_path),
        Reader(name, batches),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=keep_float,
    )
    pre.unlink()
    graph = onnx.load(str(onnx_path))
    return {
        "method": f"onnxruntime {onnxruntime.__version__} quantize_static, QDQ, int8 weights (per channel) "
        "and activations, MinMax calibration",
        "n_calibration_traces": len(windows),
        "seed": seed,
        "quantised_operators": sorted(
            {
                n.op_type
                for n in graph.graph.node
                if n.op_type.startswith(
                    ("QLinear", "QuantizeLinear", "DequantizeLinear", "ConvInteger", "MatMulInteger")
                )
            }
        ),
    }


def _compare(check: dict[str, Any], float_scores: np.ndarray, int8_scores: np.ndarray) -> dict[str, Any]:
    """AUC and TPR at FPR :data:`COMPARE_FPR` of the float and the int8 model on a labelled split."""
    from sklearn.metrics import roc_auc_score

    from crnn.metrics import threshold_at_fpr

    labels = check["labels"]
    out: dict[str, Any] = {
        "split": check["what"],
        "n_signal": int(np.sum(labels == 1)),
        "n_background": int(np.sum(labels == 0)),
        "fpr": COMPARE_FPR,
    }
    for name, s in (("float", float_scores), ("int8", int8_scores)):
        thr = threshold_at_fpr(s[labels == 0], COMPARE_FPR)
        tpr = None if thr is None else float(np.mean(s[labels == 1] > thr))
        out[name] = {"auc": float(roc_auc_score(labels, s)), "threshold": thr, "tpr": tpr}
    f, q = out["float"]["tpr"], out["int8"]["tpr"]
    out["tpr_change"] = None if f is None or q is None else q - f
    if f is None:
        out["note"] = (
            f"TPR at FPR {COMPARE_FPR:g} needs at least {round(1 / COMPARE_FPR)} background traces; "
            f"the split has {out['n_background']}"
        )
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", required=True, help="a .keras model with its card, or its folder")
    p.add_argument(
        "--format", default="onnx", metavar="FORMAT", help="; ".join(f"{k}: {v}" for k, v in FORMATS.items())
    )
    p.add_argument("--output", "-o", required=True, help="folder to write model.onnx and model.card.json to")
    p.add_argument(
        "--test-split",
        metavar="H5",
        help="labelled trace file: ONNX Runtime must score it as Keras does; with int8, the AUC and the "
        f"TPR at FPR {COMPARE_FPR:g} of both models on it go into the card",
    )
    p.add_argument(
        "--calibration",
        metavar="H5",
        help="int8: labelled trace file whose background traces (label 0) calibrate the quantisation",
    )
    p.add_argument("--n-calibration", type=int, default=512, help="int8: background traces used for calibration")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration choice and of the check traces")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the converter's)")
    add_model_flags(p, resample=False)


def run(args: argparse.Namespace) -> None:
    from crnn.fileutil import check_outputs, refuse_aliases
    from crnn.modelcard import model_inputs
    from crnn.settings import check_minimum

    check_format(args.format)
    check_minimum(args.n_calibration, 1, "--n-calibration")
    refuse_aliases(
        [*model_inputs("--model", args.model), ("--test-split", args.test_split), ("--calibration", args.calibration)],
        [("--output", args.output)],
    )
    check_outputs(folders=[("--output", args.output)])
    export_model(
        args.model,
        args.output,
        fmt=args.format,
        test_split=args.test_split,
        calibration=args.calibration,
        n_calibration=args.n_calibration,
        seed=args.seed,
        trust_model=args.trust_model,
        opset=args.opset,
    )


if __name__ == "__main__":
    from crnn.cli import stage_main

    stage_main("export")
