"""crnn: recurrent neural networks that find cosmic-ray air-shower pulses in radio traces."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load_classifier"]


def __getattr__(name: str):  # lazy: importing crnn must not import keras
    if name == "load_classifier":
        from crnn.classifier import load_classifier

        return load_classifier
    raise AttributeError(name)
