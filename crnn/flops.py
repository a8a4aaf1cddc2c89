"""Analytic floating-point operation counts of crnn's classifiers.

Conventions (stated in every output and in docs/textbook.md):

* one multiply-add is 2 FLOPs; each bias addition is 1 FLOP;
* Conv1D: ``2 * kernel_size * in_channels * filters`` per output step, plus ``filters`` bias adds;
* Dense: ``2 * in * out + out`` per vector it is applied to (per time step for a sequence);
* GRU: 3 gates, ``2 * 3 * units * (in + units)`` per time step for the input and recurrent kernels,
  plus ``3 * units`` bias adds, or ``2 * 3 * units`` with ``reset_after`` (Keras' default, which
  keeps a separate recurrent bias);
* LSTM: 4 gates, ``2 * 4 * units * (in + units) + 4 * units`` per time step;
* Bidirectional: twice the wrapped layer;
* SpectralWhitening: a real FFT and its inverse per channel, ``2.5 * n * log2(n)`` each (half the
  ``5 n log2 n`` of a complex radix-2 FFT), plus ``6 n`` per channel for the power, the smoothing and
  the division;
* the element-wise work (activations, gate products, pooling, normalisation, dropout, flatten) is
  O(units) per step against O(units^2) for the products and is left out;
* training: ``3 x forward`` per trace and epoch (the backward pass costs about twice the forward
  pass), times the training traces and the epochs run. Validation passes are not counted.

``python -m crnn.flops --model results/models/gru/model.keras`` prints the per-trace forward and
training FLOPs and, with the model's card beside it (or ``--traces``/``--epochs``), the training
total; ``--settings '{...}' --input-shape 1 500`` counts a model that is not trained yet.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from crnn.errors import CrnnError

#: training FLOPs per trace and epoch in units of the forward FLOPs (forward + backward ~ 2 x forward)
TRAINING_FACTOR = 3


@dataclass(frozen=True)
class LayerFlops:
    name: str
    kind: str
    flops: int


def conv1d_flops(steps_out: int, in_channels: int, filters: int, kernel_size: int, use_bias: bool = True) -> int:
    return steps_out * (2 * kernel_size * in_channels * filters + (filters if use_bias else 0))


def dense_flops(n_vectors: int, n_in: int, n_out: int, use_bias: bool = True) -> int:
    return n_vectors * (2 * n_in * n_out + (n_out if use_bias else 0))


def gru_flops(steps: int, n_in: int, units: int, reset_after: bool = True) -> int:
    return steps * (2 * 3 * units * (n_in + units) + 3 * units * (2 if reset_after else 1))


def lstm_flops(steps: int, n_in: int, units: int) -> int:
    return steps * (2 * 4 * units * (n_in + units) + 4 * units)


def whitening_flops(channels: int, samples: int) -> int:
    import math

    return int(channels * (2 * 2.5 * samples * math.log2(max(samples, 2)) + 6 * samples))


def _rnn_flops(layer: Any, steps: int, n_in: int) -> int:
    import keras

    if isinstance(layer, keras.layers.GRU):
        return gru_flops(steps, n_in, layer.units, bool(layer.reset_after))
    if isinstance(layer, keras.layers.LSTM):
        return lstm_flops(steps, n_in, layer.units)
    msg = f"flops: no count for recurrent layer {layer.name!r} of type {type(layer).__name__}"
    raise CrnnError(msg)


def layer_flops(model: Any) -> list[LayerFlops]:
    """FLOPs of one trace through each layer of a functional ``keras.Model`` (0 for cheap layers)."""
    import keras

    out = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            shape_in: tuple = ()
        elif isinstance(layer.input, (list, tuple)):  # Concatenate and other layers of several inputs
            shape_in = tuple(layer.input[0].shape)
        else:
            shape_in = tuple(layer.input.shape)
        shape_out = tuple(layer.output.shape)
        kind = type(layer).__name__
        if isinstance(layer, keras.layers.Conv1D):
            flops = conv1d_flops(shape_out[1], shape_in[-1], layer.filters, layer.kernel_size[0], layer.use_bias)
        elif isinstance(layer, keras.layers.Dense):
            n_vectors = 1
            for d in shape_in[1:-1]:
                n_vectors *= d
            flops = dense_flops(n_vectors, shape_in[-1], layer.units, layer.use_bias)
        elif isinstance(layer, keras.layers.Bidirectional):
            flops = _rnn_flops(layer.forward_layer, shape_in[1], shape_in[-1])
            flops += _rnn_flops(layer.backward_layer, shape_in[1], shape_in[-1])
            kind = f"Bidirectional({type(layer.forward_layer).__name__})"
        elif isinstance(layer, (keras.layers.GRU, keras.layers.LSTM)):
            flops = _rnn_flops(layer, shape_in[1], shape_in[-1])
        elif kind == "SpectralWhitening":
            flops = whitening_flops(shape_in[1], shape_in[2])
        elif isinstance(layer, keras.layers.RNN) or (layer.weights and not isinstance(layer, keras.layers.InputLayer)):
            msg = f"flops: no count for layer {layer.name!r} of type {kind} (it has weights)"
            raise CrnnError(msg)
        else:
            flops = 0
        out.append(LayerFlops(layer.name, kind, int(flops)))
    return out


def forward_flops(model: Any) -> int:
    """Forward FLOPs of one trace through ``model``."""
    return sum(layer.flops for layer in layer_flops(model))


def training_flops(forward_per_trace: int, n_traces: int, epochs: int) -> int:
    """``TRAINING_FACTOR x forward x traces x epochs``: the cost of fitting (validation not counted)."""
    return TRAINING_FACTOR * int(forward_per_trace) * int(n_traces) * int(epochs)


def _card_defaults(model_path: str) -> tuple[int | None, int | None]:
    from crnn.modelcard import card_path

    path = card_path(model_path)
    if not path.exists():
        return None, None
    card = json.loads(path.read_text())
    training = card.get("training", {})
    n = card.get("data", {}).get("train", {}).get("n_traces")
    return n, training.get("epochs_run")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m crnn.flops",
        description="Analytic forward and training FLOPs of a crnn classifier (1 multiply-add = 2 FLOPs; "
        f"training = {TRAINING_FACTOR} x forward x traces x epochs).",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="a saved model.keras (its card, if present, gives traces and epochs)")
    src.add_argument("--settings", help="model settings (JSON/YAML string or file), with --input-shape")
    p.add_argument(
        "--input-shape", type=int, nargs=2, metavar=("CHANNELS", "SAMPLES"), help="trace shape for --settings"
    )
    p.add_argument("--traces", type=int, help="training traces per epoch (default: from the model card)")
    p.add_argument("--epochs", type=int, help="epochs (default: epochs run, from the model card)")
    p.add_argument("--layers", action="store_true", help="print the FLOPs of each layer")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        n_traces, epochs = None, None
        if args.model:
            import keras

            import crnn.models  # noqa: F401  (registers TraceNormalization)

            if not os.path.exists(args.model):
                raise CrnnError(f"{args.model}: model file not found")
            try:
                model = keras.saving.load_model(args.model, compile=False, safe_mode=True)
            except (ValueError, OSError) as exc:
                raise CrnnError(f"{args.model}: cannot load the model (Keras safe mode): {exc}") from exc
            n_traces, epochs = _card_defaults(args.model)
        else:
            from crnn.models import ModelSettings, build_classifier
            from crnn.settings import from_mapping, load_mapping

            if not args.input_shape:
                raise CrnnError("--settings needs --input-shape CHANNELS SAMPLES")
            settings = from_mapping(ModelSettings, load_mapping(args.settings), "model settings")
            model = build_classifier(tuple(args.input_shape), settings)
        n_traces = args.traces if args.traces is not None else n_traces
        epochs = args.epochs if args.epochs is not None else epochs
        per_layer = layer_flops(model)
        fwd = sum(x.flops for x in per_layer)
        result: dict[str, Any] = {
            "model": model.name,
            "parameters": int(model.count_params()),
            "forward_flops_per_trace": fwd,
            "training_flops_per_trace_epoch": TRAINING_FACTOR * fwd,
            "training_traces": n_traces,
            "epochs": epochs,
            "training_flops": training_flops(fwd, n_traces, epochs) if n_traces and epochs else None,
            "convention": f"1 multiply-add = 2 FLOPs; training = {TRAINING_FACTOR} x forward x traces x epochs",
        }
    except CrnnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        if args.layers:
            result["layers"] = [x.__dict__ for x in per_layer]
        print(json.dumps(result, indent=1))
        return 0
    if args.layers:
        for x in per_layer:
            if x.flops:
                print(f"  {x.name:<20} {x.kind:<22} {x.flops:>14,d}")
    print(f"model {result['model']}: {result['parameters']:,d} parameters")
    print(f"forward FLOPs per trace:           {fwd:.4g}")
    print(f"training FLOPs per trace and epoch: {TRAINING_FACTOR * fwd:.4g}  ({result['convention']})")
    if result["training_flops"] is not None:
        print(f"training FLOPs: {result['training_flops']:.4g}  ({n_traces:,d} traces x {epochs} epochs)")
    else:
        print("training FLOPs: give --traces and --epochs (or a model with its card)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
