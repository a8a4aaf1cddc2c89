"""The CLI refuses what the config schema refuses (issue 15, item 5): one source of rules.

Every stage's settings (and the values its flags take outside them) are checked against
workflow/schemas/config.schema.yaml; each refusal is one line naming the setting, the rule and
the value, exit code 2, before any file is read or written.
"""

from __future__ import annotations

import dataclasses
import json

import jsonschema
import pytest
from conftest import REPO

from crnn.baselines import BaselineSettings
from crnn.cli import main
from crnn.evaluate import EvaluationSettings
from crnn.models import ModelSettings
from crnn.robustness import RobustnessSettings
from crnn.settings import schema_node, to_mapping
from crnn.simulate import SimulationSettings
from crnn.train import TrainingSettings

MODEL = REPO / "tests" / "data" / "model_v0_1"

CASES = [
    (["train", "--epochs", "0"], "training settings.epochs: 0 is less than the minimum of 1"),
    (["train", "--epochs", "-1"], "training settings.epochs: -1 is less than the minimum of 1"),
    (["train", "--training", '{"batch_size": 0}'], "training settings.batch_size: 0 is less than the minimum of 1"),
    (
        ["train", "--training", '{"target_fpr": 2}'],
        "training settings.target_fpr: 2.0 is greater than the maximum of 1",
    ),
    (["train", "--training", '{"streaming": "sometimes"}'], "training settings.streaming: 'sometimes' is not one of"),
    (["train", "--model", '{"units": 0}'], "model settings.units: 0"),
    (["train", "--model", '{"dropout": 1.5}'], "model settings.dropout: 1.5 is greater than the maximum of 1"),
    (["train", "--model", '{"cell": "rnn"}'], "model settings.cell: 'rnn' is not one of ['gru', 'lstm']"),
    (["train", "--seed", "-1"], "--seed: -1 is less than the minimum of 0"),
    (["simulate", "--n-traces", "-5"], "simulate settings.n_traces: -5 is less than the minimum of 0"),
    (["simulate", "--signal-fraction", "2"], "simulate settings.signal_fraction: 2.0 is greater than the maximum of 1"),
    (
        ["simulate", "--settings", '{"receiver": {"n_samples": 4}}'],
        "simulate settings.receiver.n_samples: 4 is less than the minimum of 16",
    ),
    (["simulate", "--n-chunks", "0"], "--n-chunks: 0 is less than the minimum of 1"),
    (["dataset", "--fractions", "1.5", "0.25", "0.25"], "--fractions[0]: 1.5 is greater than the maximum of 1"),
    (["evaluate", "--n-bootstrap", "-1"], "evaluate settings.n_bootstrap: -1 is less than the minimum of 0"),
    (["evaluate", "--fpr", "2"], "evaluate settings.fprs[0]: 2.0 is greater than or equal to the maximum of 1"),
    (
        ["evaluate", "--settings", '{"baseline": {"matched_filter_templates": 0}}'],
        "evaluate settings.baseline.matched_filter_templates: 0 is less than the minimum of 1",
    ),
    (
        ["robustness", "--settings", '{"fpr": 0}'],
        "robustness settings.fpr: 0.0 is less than or equal to the minimum of 0",
    ),
    (["robustness", "--settings", '{"n_traces": 0}'], "robustness settings.n_traces: 0 is less than the minimum of 1"),
    (["calibrate", "--fprs", "0"], "--fprs[0]: 0.0 is less than or equal to the minimum of 0"),
    (
        ["calibrate", "--working-point-fpr", "1"],
        "--working-point-fpr: 1.0 is greater than or equal to the maximum of 1",
    ),
    (["ingest", "--filter-order", "0"], "--filter-order: 0 is less than the minimum of 1"),
    (["ingest", "--n-samples", "0"], "--n-samples: 0 is less than the minimum of 1"),
    (["ingest", "--resample-hz", "-1"], "--resample-hz: -1.0 is less than or equal to the minimum of 0"),
    (["ingest", "--sampling-rate-hz", "0", "--tree", "t"], "--sampling-rate-hz: 0.0 is less than or equal to"),
    (["predict", "--working-point", "2"], "--working-point: 2.0 is greater than or equal to the maximum of 1"),
    (["predict", "--channels", "-1"], "--channels[0]: -1 is less than the minimum of 0"),
    (["predict", "--chunk-size", "0"], "--chunk-size: 0 is less than the minimum of 1"),
    (["calibrate", "--chunk-size", "0"], "--chunk-size: 0 is less than the minimum of 1"),
    (["ingest", "--chunk-size", "-3"], "--chunk-size: -3 is less than the minimum of 1"),
]

#: the files each stage needs on its command line (left absent: the check comes before any reading)
BASE = {
    "train": ["--train", "{d}/tr.h5", "--val", "{d}/va.h5", "-o", "{d}/out"],
    "simulate": ["-o", "{d}/out.h5"],
    "dataset": ["-i", "{d}/in.h5", "--train", "{d}/a.h5", "--val", "{d}/b.h5", "--test", "{d}/c.h5"],
    "evaluate": ["--test", "{d}/te.h5", "-o", "{d}/out", "--baseline", "amplitude"],
    "robustness": ["--shift", "a={d}/a.h5", "-o", "{d}/out.json", "--baseline", "power"],
    "calibrate": ["-m", str(MODEL), "-b", "{d}/noise.h5", "-o", "{d}/out"],
    "ingest": ["-i", "{d}/in.h5", "-o", "{d}/out.h5"],
    "predict": ["-m", str(MODEL), "-i", str(REPO / "data" / "example_traces.h5"), "-o", "{d}/out.h5"],
}


@pytest.mark.parametrize(("argv", "needle"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_the_cli_refuses_what_the_schema_refuses(tmp_path, capsys, argv, needle):
    stage = argv[0]
    full = [stage, *(a.format(d=tmp_path) for a in BASE[stage]), *argv[1:]]
    assert main(full) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"crnn {stage}: error: ") and needle in err[0], err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize(
    "cls",
    [SimulationSettings, TrainingSettings, ModelSettings, EvaluationSettings, RobustnessSettings, BaselineSettings],
)
def test_every_settings_class_names_its_schema_node_and_its_defaults_pass(cls):
    node = schema_node(cls.SCHEMA)
    jsonschema.validate(json.loads(json.dumps(to_mapping(cls()))), node)
    assert {f.name for f in dataclasses.fields(cls)} == set(node["properties"])
