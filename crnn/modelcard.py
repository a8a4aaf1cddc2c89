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
import os
from pathlib import Path
from typing import Any

from crnn.errors import CrnnError
from crnn.fileutil import write_json

CARD_FORMAT = "crnn-model-card/1"
REQUIRED = ("format", "input_shape", "n_channels", "n_samples", "sampling_rate_hz", "working_point")


def card_path(model_path: str | os.PathLike[str]) -> Path:
    p = Path(model_path)
    return p.with_name(p.name.removesuffix(".keras") + ".card.json")


def resolve_model_path(path: str | os.PathLike[str]) -> Path:
    """Accept a ``.keras`` file or a folder that holds exactly one (e.g. a run's model folder)."""
    p = Path(path)
    if p.is_dir():
        found = sorted(p.glob("*.keras"))
        if len(found) != 1:
            msg = f"{p}: expected one .keras model in this folder, found {[f.name for f in found] or 'none'}"
            raise CrnnError(msg)
        return found[0]
    if not p.exists():
        msg = f"{p}: no such model file; expected a .keras model with its .card.json beside it"
        raise CrnnError(msg)
    if p.suffix != ".keras":
        msg = f"{p}: expected a Keras 3 model file ending in .keras, got {p.suffix or 'no suffix'!r}"
        raise CrnnError(msg)
    return p


def model_inputs(label: str, path: str | os.PathLike[str] | None) -> list[tuple[str, Path]]:
    """The files a stage reads for the model ``path`` (the .keras file and its card), for
    :func:`crnn.fileutil.refuse_aliases`; none where the path does not name one model."""
    if path is None:
        return []
    try:
        model = resolve_model_path(path)
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
    missing = [k for k in REQUIRED if k not in card]
    if missing:
        msg = f"{cp}: model card lacks {missing}; found keys {sorted(card)}"
        raise CrnnError(msg)
    if card["format"] != CARD_FORMAT:
        msg = f"{cp}: unknown model card format {card['format']!r}; expected {CARD_FORMAT!r}"
        raise CrnnError(msg)
    return card


def write_card(model_path: str | os.PathLike[str], card: dict[str, Any]) -> Path:
    return write_json(card_path(model_path), {"format": CARD_FORMAT, **card})


def file_sha256(path: str | os.PathLike[str], block: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()
