"""Suite ``predict``: inference traces/s of a default-shaped model, model alone and end to end.

* model alone: ``crnn.classifier.Classifier.predict`` on (N, 2, 500) float32 traces in memory,
  after one call that traces the function;
* end to end: ``crnn predict`` in a subprocess, from a canonical HDF5 file of simulated traces to
  an ``.h5`` output, including the start-up and the loading of the model (peak RSS measured);
* start-up: ``crnn predict`` of 100 traces, in seconds;
* each of these for Keras and, where the export extra is installed, for ONNX Runtime on the model
  exported by ``crnn export`` as float32 ONNX and as int8 (static quantisation calibrated on the
  background traces of the benchmark's input file).

The model is ``--model`` or, without one, a default-shaped model (``models.gru`` of
config/config.yaml) trained for one epoch on a few thousand traces: the speed does not depend on
the weights. Runs under any Keras backend; the end-to-end path runs in the same backend
(``KERAS_BACKEND`` is passed on).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import crnn_cmd, env_with, fmt, measurement, measurements_table, run_measured, train_small_model

NAME = "predict"
DEFAULT_REPEAT = 3


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", default=None, help="predict: model to time (default: train a default-shaped model for one epoch)"
    )
    p.add_argument("--predict-traces", type=int, default=50_000, help="predict: traces per run")
    p.add_argument("--predict-model-name", default="gru", help="predict: models.<name> of --config to build")


# times the model alone in a process of its own: one batch at a time on all threads ("serial"), or
# batches side by side as `crnn predict` scores them ("parallel": thread pools set before TensorFlow starts)
# or an exported model with ONNX Runtime ("onnxruntime": one session on all cores)
MODEL_ALONE_CHILD = """
import json, sys, time
import numpy as np
from crnn.classifier import configure_parallel_inference, load_classifier, load_onnx_classifier
if sys.argv[4] == "onnxruntime":
    streams, clf = 1, load_onnx_classifier(sys.argv[1])
else:
    streams = configure_parallel_inference() if sys.argv[4] == "parallel" else 1
    clf = load_classifier(sys.argv[1], streams=streams)
n, repeat = int(sys.argv[2]), int(sys.argv[3])
x = np.random.default_rng(0).standard_normal((n, clf.n_channels, clf.n_samples), dtype=np.float32)
clf.predict(x[: 4096 + n % 4096], sampling_rate_hz=clf.sampling_rate_hz)
rates = []
for _ in range(repeat):
    t = time.perf_counter()
    clf.predict(x, sampling_rate_hz=clf.sampling_rate_hz)
    rates.append(n / (time.perf_counter() - t))
print("RESULT " + json.dumps({"streams": streams, "rates": rates}))
"""


def _time_model_alone(model: str, n: int, repeat: int, mode: str, env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", MODEL_ALONE_CHILD, model, str(n), str(repeat), mode],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        msg = f"timing the model alone ({mode}) failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        raise RuntimeError(msg)
    return json.loads(line[7:])


def run(args: argparse.Namespace, quick: bool) -> dict[str, Any]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from benchmarks.train import model_settings
    from crnn.modelcard import read_card, resolve_model_path
    from crnn.simulate import SimulationSettings, simulate

    n = 2_000 if quick else args.predict_traces
    repeat = args.repeat or DEFAULT_REPEAT
    notes = []
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            settings = model_settings(args.config, args.predict_model_name)
            t0 = time.perf_counter()
            model = str(train_small_model(Path(tmp) / "model", settings, name=args.predict_model_name))
            notes.append(
                f"no --model given: a default-shaped {args.predict_model_name} model was trained for one "
                f"epoch on 2,000 simulated traces ({time.perf_counter() - t0:.0f} s) to be timed"
            )
        env = env_with(KERAS_BACKEND=keras.backend.backend())
        serial, parallel = (_time_model_alone(model, n, repeat, mode, env) for mode in ("serial", "parallel"))
        rates = serial["rates"]
        src = Path(tmp) / "in.h5"
        simulate(SimulationSettings(n_traces=n), src, seed=1)
        small = Path(tmp) / "small.h5"
        simulate(SimulationSettings(n_traces=100), small, seed=2)
        engines = {"Keras": (model, [])}
        exported = _exports(model, src, Path(tmp), notes)
        engines.update({name: (path, ["--engine", "onnxruntime"]) for name, path in exported.items()})
        end_to_end = {}
        for name, (path, flags) in engines.items():
            e2e, peaks, starts = [], [], []
            for i in range(repeat):
                out = Path(tmp) / f"out{i}.h5"
                dt, rss = run_measured(crnn_cmd("predict", "-m", path, "-i", str(src), "-o", str(out), *flags), env=env)
                out.unlink()
                e2e.append(n / dt)
                peaks.append(rss)
                dt, _ = run_measured(crnn_cmd("predict", "-m", path, "-i", str(small), "-o", str(out), *flags), env=env)
                out.unlink()
                starts.append(dt)
            end_to_end[name] = (e2e, peaks, starts)
        alone = {
            name: _time_model_alone(path, n, repeat, "onnxruntime", env)["rates"]
            for name, (path, _) in engines.items()
            if name != "Keras"
        }
        card = read_card(resolve_model_path(model))
    return {
        "model": args.model or "trained for the benchmark",
        "model_settings": card.get("model"),
        "n_parameters": card.get("n_parameters"),
        "n_traces": n,
        "repeat": repeat,
        "keras_backend": keras.backend.backend(),
        "notes": notes,
        "python": sys.version.split()[0],
        "measurements": [
            measurement("model alone (crnn.classifier, batch 4,096)", "traces/s", rates),
            measurement(
                f"model alone, {parallel['streams']} batches of 1,024 side by side (as crnn predict)",
                "traces/s",
                parallel["rates"],
            ),
            *(
                measurement(f"model alone, {name} (one session on all cores, batch 4,096)", "traces/s", r)
                for name, r in alone.items()
            ),
            *(
                m
                for name, (e2e, peaks, starts) in end_to_end.items()
                for m in (
                    measurement(
                        f"end to end, crnn predict HDF5 -> .h5, incl. start-up and model loading{_engine(name)}",
                        "traces/s",
                        e2e,
                    ),
                    measurement(f"end to end: peak RSS{_engine(name)}", "MiB", peaks),
                    measurement(f"start-up: crnn predict of 100 traces{_engine(name)}", "s", starts),
                )
            ),
        ],
    }


def _engine(name: str) -> str:
    """The engine named in a measurement: nothing for Keras, whose rows keep their names of before."""
    return "" if name == "Keras" else f", {name}"


def _exports(model: str, calibration: Path, tmp: Path, notes: list[str]) -> dict[str, str]:
    """The model exported by crnn export as float32 ONNX and as int8, or none without the export extra."""
    from crnn.errors import CrnnError
    from crnn.export import check_format, export_model

    try:
        check_format("int8")
    except CrnnError as exc:
        notes.append(f"ONNX Runtime not timed: {exc}")
        return {}
    return {
        "ONNX Runtime float32": str(export_model(model, tmp / "onnx")),
        "ONNX Runtime int8": str(export_model(model, tmp / "int8", fmt="int8", calibration=calibration)),
    }


def markdown(result: dict[str, Any]) -> str:
    s = result.get("model_settings") or {}
    text = (
        f"Model {result['model']} ({s.get('cell')}, {s.get('units')} units, conv {s.get('conv_filters')} filters "
        f"stride {s.get('conv_strides')}, {fmt(result.get('n_parameters'))} parameters), {result['n_traces']:,} "
        f"(N, 2, 500) float32 traces per run, Keras backend {result['keras_backend']}.\n\n" + measurements_table(result)
    )
    for note in result.get("notes", []):
        text += f"\n\nNote: {note}."
    return text
