"""The software that crnn runs on: crnn's version, its git commit when run from a checkout, Python,
Keras, the Keras backend, numpy and h5py.

``crnn --version`` prints it and every model card records it (field ``software``), so that
``crnn inspect MODEL`` can warn when a model was trained under other major versions than the ones
installed now. Nothing here imports Keras or a framework: versions come from the installed
packages' metadata, and the backend is the one Keras would choose (``KERAS_BACKEND``, else the
``backend`` of ``~/.keras/keras.json``, else TensorFlow), unless the caller names the one it ran.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from crnn import __version__

#: the distributions that provide each Keras backend, first installed one wins
BACKEND_DISTRIBUTIONS = {
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
    "jax": ("jax",),
    "torch": ("torch",),
    "numpy": ("numpy",),
    "openvino": ("openvino",),
}
#: the entries of ``software`` whose major versions ``crnn inspect`` compares
COMPARED = ("crnn", "keras", "backend_version", "numpy", "h5py")
CHECKOUT = Path(__file__).resolve().parent.parent


def distribution_version(*names: str) -> str | None:
    """The installed version of the first of these distributions that is installed, else None."""
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def keras_backend() -> str:
    """The backend Keras would load, without importing Keras."""
    name = os.environ.get("KERAS_BACKEND")
    if name:
        return name
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    try:
        return str(json.loads((home / "keras.json").read_text()).get("backend") or "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def git_commit(root: Path = CHECKOUT) -> str | None:
    """The commit of the checkout crnn runs from (``+dirty`` where tracked files differ from it), or
    None for an installed (non-editable) crnn or where git is missing."""
    if not (root / ".git").exists() or not (root / "crnn" / "__init__.py").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "") if head else None


def software(backend: str | None = None) -> dict[str, Any]:
    """crnn, its commit, Python, Keras, the backend (``backend``: the one that ran, else the one Keras
    would choose) with its version, numpy and h5py (JSON-ready; a missing package is None)."""
    backend = backend or keras_backend()
    return {
        "crnn": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "keras": distribution_version("keras"),
        "backend": backend,
        "backend_version": distribution_version(*BACKEND_DISTRIBUTIONS.get(backend, (backend,))),
        "numpy": distribution_version("numpy"),
        "h5py": distribution_version("h5py"),
    }


def version_text() -> str:
    """What ``crnn --version`` prints: one line per package."""
    s = software()
    return "\n".join(
        [
            f"crnn {s['crnn']}" + (f" (git {s['git_commit']})" if s["git_commit"] else ""),
            f"python {s['python']}",
            f"keras {s['keras'] or 'not installed'}",
            f"backend {s['backend']} {s['backend_version'] or 'not installed'}",
            f"numpy {s['numpy'] or 'not installed'}",
            f"h5py {s['h5py'] or 'not installed'}",
        ]
    )


def major(version: str | None) -> str | None:
    return version.split(".")[0] if version else None


def card_software(card: dict[str, Any]) -> dict[str, Any]:
    """The ``software`` of a model card; for cards written before that field (crnn 0.1), what their
    ``crnn_version``, ``keras_version`` and ``backend`` say, the rest None."""
    if isinstance(card.get("software"), dict):
        return card["software"]
    return {"crnn": card.get("crnn_version"), "keras": card.get("keras_version"), "backend": card.get("backend")}


def version_differences(card: dict[str, Any], now: dict[str, Any] | None = None) -> tuple[list[str], list[str]]:
    """(warnings, not recorded): one line for each package whose major version differs between the
    card's training and the installed one (the backend's only where both name the same backend), and
    the names of the compared packages the card does not record."""
    trained, now = card_software(card), now or software()
    warnings, missing = [], []
    for key in COMPARED:
        if key == "backend_version" and trained.get("backend") and trained["backend"] != now["backend"]:
            warnings.append(f"trained with the {trained['backend']} backend, Keras here uses {now['backend']}")
            continue
        name = now["backend"] if key == "backend_version" else key
        if trained.get(key) is None:
            missing.append(name)
        elif major(trained[key]) != major(now[key]):
            warnings.append(
                f"trained under {name} {trained[key]}, installed is {name} {now[key] or 'none'} (other major version)"
            )
    return warnings, missing
