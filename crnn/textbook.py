"""Compare a trained model with the textbook reference: test accuracy at 0.5 and training FLOPs.

The reference is the BiLSTM of the RNN exercise of "Deep Learning for Physics Research" (Erdmann,
Glombitza, Kasieczka, Klemradt; Exercise 9.2; docs/physics.md section 1.2): 99.2 % test accuracy
after at most 100 epochs on 36,000 training traces. :data:`TEXTBOOK_MODEL` rebuilds it with
:func:`crnn.models.build_classifier`.

``python -m crnn.textbook --model results/models/gru/model.keras --test results/dataset/test.h5``
prints the model's test accuracy at a score threshold of 0.5 (the exercise's ``model.evaluate``
accuracy; the crnn working point, set at a false-positive rate, is a different threshold), its
training FLOPs (epochs run x training traces x per-trace training FLOPs, from its card) and the
textbook budget (100 epochs x 36,000 traces x the BiLSTM's per-trace training FLOPs).

``python -m crnn.textbook --baseline matched_filter --val val.h5 --test test.h5 --noise train.h5
--settings config/presets/textbook.yaml`` scores a classical trigger instead (the matched filter
built from the simulation's pulse model: close to the best any method can do in this Gaussian
noise); a trigger has no natural threshold, so its threshold is the one with the best accuracy on
the validation split.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import numpy as np

from crnn.errors import CrnnError

#: the exercise's model, as crnn model settings (95,873 parameters for (1, 500) traces)
TEXTBOOK_MODEL = {
    "cell": "lstm",
    "units": [32, 64, 10],
    "bidirectional": True,
    "conv_filters": 0,
    "dropout": 0.3,
    "readout": "flatten",
    "whiten": False,
}
#: the exercise's training: 40,000 traces less 10 % validation, at most 100 epochs
TEXTBOOK_TRAINING_TRACES = 36_000
TEXTBOOK_EPOCHS = 100
TEXTBOOK_TEST_ACCURACY = 0.992


def textbook_training_flops(input_shape: tuple[int, int] = (1, 500)) -> tuple[int, int]:
    """(forward FLOPs per trace, training FLOPs of 100 epochs x 36,000 traces) of the textbook BiLSTM."""
    from crnn.flops import forward_flops, training_flops
    from crnn.models import ModelSettings, build_classifier
    from crnn.settings import from_mapping

    model = build_classifier(input_shape, from_mapping(ModelSettings, TEXTBOOK_MODEL), name="textbook")
    fwd = forward_flops(model)
    return fwd, training_flops(fwd, TEXTBOOK_TRAINING_TRACES, TEXTBOOK_EPOCHS)


def accuracy_at(scores: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> float:
    """Fraction of traces whose decision ``score > threshold`` equals the label."""
    return float(np.mean((np.asarray(scores) > threshold) == (np.asarray(labels) == 1)))


def compare(model_path: str, test_path: str, threshold: float = 0.5) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    from crnn.classifier import load_classifier
    from crnn.flops import TRAINING_FACTOR, forward_flops, training_flops
    from crnn.tracefile import read_traces

    clf = load_classifier(model_path)
    test = read_traces(test_path, require_labels=True)
    scores = clf.predict(test.traces, sampling_rate_hz=test.sampling_rate_hz, unit=test.unit)
    card = clf.card
    n_train = int(card["data"]["train"]["n_traces"])
    epochs = int(card["training"]["epochs_run"])
    fwd = forward_flops(clf.model)
    total = training_flops(fwd, n_train, epochs)
    tb_fwd, tb_total = textbook_training_flops(tuple(card["input_shape"]))
    return {
        "model": str(model_path),
        "test": str(test_path),
        "n_test": int(test.n_traces),
        "n_test_signal": int(test.labels.sum()),
        "threshold": threshold,
        "test_accuracy": accuracy_at(scores, test.labels, threshold),
        "test_auc": float(roc_auc_score(test.labels, scores)),
        "parameters": int(clf.model.count_params()),
        "forward_flops_per_trace": fwd,
        "training_traces": n_train,
        "epochs_run": epochs,
        "train_time_s": card["training"].get("train_time_s"),
        "training_flops": total,
        "textbook_forward_flops_per_trace": tb_fwd,
        "textbook_training_flops": tb_total,
        "fraction_of_textbook_flops": total / tb_total,
        "textbook_test_accuracy": TEXTBOOK_TEST_ACCURACY,
        "convention": f"1 multiply-add = 2 FLOPs; training = {TRAINING_FACTOR} x forward x traces x epochs; "
        f"textbook = {TEXTBOOK_EPOCHS} epochs x {TEXTBOOK_TRAINING_TRACES:,d} traces",
    }


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold with the highest accuracy of ``score > threshold`` (among the scores themselves)."""
    order = np.argsort(scores)
    s, y = np.asarray(scores)[order], (np.asarray(labels)[order] == 1)
    # threshold at s[i]: traces 0..i are called background, i+1.. signal
    correct = np.cumsum(~y) + (y.sum() - np.cumsum(y))
    return float(s[int(np.argmax(correct))])


def baseline_accuracy(
    name: str, val_path: str, test_path: str, noise_path: str, settings_path: str, max_noise_traces: int = 4000
) -> dict[str, Any]:
    """Accuracy on the test split of classical trigger ``name``, its threshold set on the validation split."""
    from sklearn.metrics import roc_auc_score

    from crnn.baselines import BaselineSettings, SignalModel, baseline_scores
    from crnn.settings import from_mapping, load_mapping
    from crnn.simulate import SimulationSettings
    from crnn.tracefile import read_traces

    mapping = load_mapping(settings_path)
    sim = from_mapping(SimulationSettings, mapping.get("simulate", mapping), "simulate settings")
    noise = read_traces(noise_path, require_labels=True)
    noise_traces = noise.traces[noise.labels == 0][:max_noise_traces]
    val = read_traces(val_path, require_labels=True)
    test = read_traces(test_path, require_labels=True)
    kw = {"noise_traces": noise_traces, "signal_model": SignalModel(sim.receiver, sim.pulse)}
    s_val = baseline_scores(name, val.traces, val.sampling_rate_hz, BaselineSettings(), **kw)
    s_test = baseline_scores(name, test.traces, test.sampling_rate_hz, BaselineSettings(), **kw)
    threshold = best_threshold(s_val, val.labels)
    return {
        "baseline": name,
        "test": str(test_path),
        "n_test": int(test.n_traces),
        "threshold": threshold,
        "threshold_from": "best accuracy on the validation split",
        "val_accuracy": accuracy_at(s_val, val.labels, threshold),
        "test_accuracy": accuracy_at(s_test, test.labels, threshold),
        "test_auc": float(roc_auc_score(test.labels, s_test)),
    }


def main(argv: list[str] | None = None) -> int:
    from crnn.baselines import BASELINES

    p = argparse.ArgumentParser(prog="python -m crnn.textbook", description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--model", help="a trained model.keras (with its card) or its folder")
    g.add_argument("--baseline", choices=BASELINES, help="a classical trigger (needs --val, --noise, --settings)")
    p.add_argument("--test", required=True, help="test split (canonical file with labels)")
    p.add_argument("--threshold", type=float, default=0.5, help="model: score threshold of the accuracy (default 0.5)")
    p.add_argument("--val", help="baseline: validation split that sets the threshold")
    p.add_argument("--noise", help="baseline: file whose label-0 traces give the noise spectrum (the train split)")
    p.add_argument("--settings", help="baseline: simulate settings, or a config/preset with a simulate section")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if args.model:
            result = compare(args.model, args.test, args.threshold)
        else:
            missing = [f"--{k}" for k in ("val", "noise", "settings") if not getattr(args, k)]
            if missing:
                raise CrnnError(f"--baseline needs {', '.join(missing)}")
            result = baseline_accuracy(args.baseline, args.val, args.test, args.noise, args.settings)
    except CrnnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
