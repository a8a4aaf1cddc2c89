"""Make the versioning fixture: a tiny model saved by crnn 0.1.0, committed in tests/data/model_v0_1.

Run from the repository root: python tests/data/make_fixture_model.py. It trains a very small
GRU for one epoch on 1,000 simulated traces and stores, beside the model and its card, the scores
it gives on the first 50 traces of data/example_traces.h5. tests/test_predict.py checks that
today's crnn still loads this model and reproduces those scores: a model saved by an older crnn
must keep working.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import h5py

from crnn.classifier import load_classifier
from crnn.dataset import build_dataset
from crnn.models import ModelSettings
from crnn.simulate import SimulationSettings, simulate
from crnn.train import TrainingSettings, train

HERE = Path(__file__).parent
REPO = HERE.parents[1]


def main() -> None:
    out = HERE / "model_v0_1"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        simulate(SimulationSettings(n_traces=1000), tmp / "sim.h5", seed=99)
        parts = {s: tmp / f"{s}.h5" for s in ("train", "val", "test")}
        build_dataset([tmp / "sim.h5"], parts, seed=1)
        train(
            parts["train"],
            parts["val"],
            out,
            model_settings=ModelSettings(units=8, conv_filters=8),
            training=TrainingSettings(epochs=1, batch_size=128),
            seed=1,
            name="fixture_gru",
        )
    card_file = out / "model.card.json"
    card = json.loads(card_file.read_text())
    for split in card["data"].values():  # temporary paths mean nothing to a reader
        split["path"] = Path(split["path"]).name
    card_file.write_text(json.dumps(card, indent=2) + "\n")
    with h5py.File(REPO / "data" / "example_traces.h5") as f:
        x = f["traces"][:50]
    scores = load_classifier(out).predict(x, sampling_rate_hz=180e6)
    (out / "expected_scores.json").write_text(
        json.dumps({"input": "data/example_traces.h5[:50]", "scores": [float(s) for s in scores]}, indent=1) + "\n"
    )


if __name__ == "__main__":
    main()
