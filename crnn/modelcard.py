"""Model cards: the JSON file beside every saved ``.keras`` model.

For ``results/models/gru/model.keras`` the card is ``results/models/gru/model.card.json``. It
records what the model expects (input shape, channels, sampling rate, band, normalisation),
how it was trained (settings, data files and their SHA-256), its validation metrics and its
working point (the score threshold at a target false-positive rate chosen on the validation
split). ``crnn predict`` checks inputs against it before scoring.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from crnn.errors import CrnnError
from crnn.fileutil import write_json

CARD_FORMAT = "crnn-model-card/1"
REQUIRED = ("format", "input_shape", "n_channels", "n_samples", "sampling_rate_hz", "working_point")

_WORKING_POINT = {
    "type": "object",
    "required": ["target_fpr", "threshold"],
    "properties": {
        "target_fpr": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "threshold": {"type": "number"},
    },
}
_POSITIVE_INT = {"type": "integer", "minimum": 1}
_BAND = {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "minItems": 2, "maxItems": 2}
#: what a card holds, with types and ranges: checked as a whole on every load (JSON Schema)
CARD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": list(REQUIRED),
    "properties": {
        "format": {"const": CARD_FORMAT},
        "name": {"type": "string"},
        "input_shape": {"type": "array", "items": _POSITIVE_INT, "minItems": 2, "maxItems": 2},
        "n_channels": _POSITIVE_INT,
        "n_samples": _POSITIVE_INT,
        "sampling_rate_hz": {"type": "number", "exclusiveMinimum": 0},
        "band_hz": {"oneOf": [_BAND, {"type": "null"}]},
        "unit_trained": {"type": "string"},
        # crnn.versions.software(): crnn, git commit, Python, Keras, backend, numpy, h5py (not in cards of crnn 0.1)
        "software": {"type": "object", "properties": {"crnn": {"type": "string"}, "keras": {"type": "string"}}},
        "model": {"type": "object"},
        "training": {"type": "object"},
        "data": {"type": "object"},
        "working_point": _WORKING_POINT,
        "working_points": {"type": "array", "items": _WORKING_POINT},
        "training_working_point": _WORKING_POINT,
        "training_working_points": {"type": "array", "items": _WORKING_POINT},
        "model_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "calibration": {
            "type": "object",
            "required": ["files", "n_traces", "sampling_rate_hz", "n_channels", "n_samples"],
            "properties": {
                "files": {"type": "array", "items": {"type": "object", "required": ["path"]}},
                "n_traces": {"type": "integer", "minimum": 0},
                "sampling_rate_hz": {"type": "number", "exclusiveMinimum": 0},
                "n_channels": _POSITIVE_INT,
                "n_samples": _POSITIVE_INT,
                "band_hz": _BAND,
            },
        },
    },
}


#: model files that carry a card beside them: a Keras model, and one exported by ``crnn export``
MODEL_SUFFIXES = {".keras": "Keras 3 model file", ".onnx": "ONNX model exported by crnn export"}


def card_path(model_path: str | os.PathLike[str]) -> Path:
    p = Path(model_path)
    stem = next((p.name.removesuffix(s) for s in MODEL_SUFFIXES if p.name.endswith(s)), p.name)
    return p.with_name(stem + ".card.json")


def resolve_model_path(path: str | os.PathLike[str], suffix: str = ".keras") -> Path:
    """Accept a model file ending in ``suffix`` (``.keras``, or ``.onnx`` for an exported model) or a
    folder that holds exactly one (e.g. a run's model folder, an export's folder)."""
    p = Path(path)
    what = MODEL_SUFFIXES[suffix]
    if p.is_dir():
        found = sorted(p.glob(f"*{suffix}"))
        if len(found) != 1:
            msg = f"{p}: expected one {suffix} model in this folder, found {[f.name for f in found] or 'none'}"
            if suffix == ".keras" and not found and len(list(p.glob("*.onnx"))) == 1:
                msg += " (it holds an exported ONNX model: crnn predict --engine onnxruntime scores it)"
            raise CrnnError(msg)
        return found[0]
    if not p.exists():
        msg = f"{p}: no such model file; expected a {suffix} model with its .card.json beside it"
        raise CrnnError(msg)
    if p.suffix != suffix:
        msg = f"{p}: expected a {what} ending in {suffix}, got {p.suffix or 'no suffix'!r}"
        raise CrnnError(msg)
    return p


def model_inputs(label: str, path: str | os.PathLike[str] | None, suffix: str = ".keras") -> list[tuple[str, Path]]:
    """The files a stage reads for the model ``path`` (the model file and its card), for
    :func:`crnn.fileutil.refuse_aliases`; none where the path does not name one model."""
    if path is None:
        return []
    try:
        model = resolve_model_path(path, suffix)
    except CrnnError:
        return [(label, Path(path))]
    return [(label, model), (f"{label} card", card_path(model))]


def read_card(model_path: str | os.PathLike[str]) -> dict[str, Any]:
    cp = card_path(model_path)
    if not cp.exists():
        msg = f"{cp}: model card not found; every crnn model needs the card written beside it by `crnn train`"
        raise CrnnError(msg)
    try:
        card = json.loads(cp.read_text())
    except json.JSONDecodeError as exc:
        msg = f"{cp}: model card is not valid JSON ({exc})"
        raise CrnnError(msg) from exc
    check_card(card, cp)
    return card


def check_card(card: Any, where: str | os.PathLike[str]) -> None:
    """Raise CrnnError (one line naming the field, the rule and the value) for a card that is not
    whole: a missing field, a wrong type, a value out of range or fields that disagree."""
    import jsonschema

    if not isinstance(card, dict):
        msg = f"{where}: a model card is a JSON object, got {type(card).__name__}"
        raise CrnnError(msg)
    missing = [k for k in REQUIRED if k not in card]
    if missing:
        msg = f"{where}: model card lacks {missing}; found keys {sorted(card)}"
        raise CrnnError(msg)
    if card["format"] != CARD_FORMAT:
        msg = f"{where}: unknown model card format {card['format']!r}; expected {CARD_FORMAT!r}"
        raise CrnnError(msg)
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(CARD_SCHEMA).iter_errors(card))
    if error is not None:
        at = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path) or " card"
        msg = f"{where}: model card field {at.lstrip('.')}: {error.message}"
        raise CrnnError(msg)
    if list(card["input_shape"]) != [card["n_channels"], card["n_samples"]]:
        msg = (
            f"{where}: model card input_shape {card['input_shape']} disagrees with n_channels "
            f"{card['n_channels']} and n_samples {card['n_samples']}"
        )
        raise CrnnError(msg)
    points = [card["working_point"], *card.get("working_points", []), *card.get("training_working_points", [])]
    if not all(math.isfinite(p["threshold"]) for p in points):
        msg = f"{where}: model card has a working point whose threshold is not a finite number"
        raise CrnnError(msg)
    band = card.get("band_hz")
    nyquist = card["sampling_rate_hz"] / 2
    if band is not None and not band[0] < band[1] <= nyquist:
        msg = (
            f"{where}: model card band_hz {band} must satisfy low < high <= Nyquist "
            f"({nyquist:g} Hz at sampling_rate_hz {card['sampling_rate_hz']:g})"
        )
        raise CrnnError(msg)


def write_card(model_path: str | os.PathLike[str], card: dict[str, Any]) -> Path:
    return write_json(card_path(model_path), {"format": CARD_FORMAT, **card})


def file_sha256(path: str | os.PathLike[str], block: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()
