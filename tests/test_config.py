"""Config, schema and package agree: the schema's defaults are the package's defaults."""

from __future__ import annotations

import dataclasses
import re

import jsonschema
import pytest
import yaml
from conftest import REPO

from crnn.baselines import BaselineSettings
from crnn.evaluate import EvaluationSettings
from crnn.models import ModelSettings
from crnn.noise import CWLine, ReceiverSettings, SiderealSettings, TransientForm
from crnn.pulse import PulseSettings
from crnn.report import ReportSettings
from crnn.robustness import RobustnessSettings
from crnn.settings import from_mapping, to_mapping
from crnn.simulate import BackgroundSettings, SimulationSettings
from crnn.train import TrainingSettings

SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())


def _defaults(node):
    return {k: v["default"] for k, v in node["properties"].items() if "default" in v and v.get("type") != "object"}


@pytest.mark.parametrize(
    ("path", "cls"),
    [
        (["simulate"], SimulationSettings),
        (["simulate", "receiver"], ReceiverSettings),
        (["simulate", "transients", "[]"], TransientForm),
        (["simulate", "cw_lines", "[]"], CWLine),
        (["simulate", "sidereal"], SiderealSettings),
        (["simulate", "background"], BackgroundSettings),
        (["simulate", "pulse"], PulseSettings),
        (["training"], TrainingSettings),
        (["models", "*"], ModelSettings),
        (["evaluate"], EvaluationSettings),
        (["evaluate", "baseline"], BaselineSettings),
        (["robustness"], RobustnessSettings),
        (["report"], ReportSettings),
    ],
)
def test_schema_defaults_equal_package_defaults(path, cls):
    node = SCHEMA
    for key in path:
        node = {"*": lambda n: n["additionalProperties"], "[]": lambda n: n["items"]}.get(
            key, lambda n, k=key: n["properties"][k]
        )(node)
    package = to_mapping(cls(frequency_hz=50e6) if cls is CWLine else cls())
    for key, value in _defaults(node).items():
        assert package[key] == value, f"{'.'.join(path)}.{key}: schema {value!r} != package {package[key]!r}"
    fields = {f.name for f in dataclasses.fields(cls)}
    assert set(node["properties"]) == fields


@pytest.mark.parametrize("name", ["config.yaml", "test.yaml", "test_faults.yaml"])
def test_configs_validate_and_build_settings(name):
    config = yaml.safe_load((REPO / "config" / name).read_text())
    jsonschema.validate(config, SCHEMA)
    if "simulate" in config:
        from_mapping(SimulationSettings, config["simulate"])
    for m in config.get("models", {}).values():
        from_mapping(ModelSettings, m)
    if "evaluate" in config:
        from_mapping(EvaluationSettings, config["evaluate"]).check()
    if "robustness" in config:
        from_mapping(RobustnessSettings, config["robustness"])
    if "report" in config:
        from_mapping(ReportSettings, config["report"])


def test_every_key_of_the_default_config_has_a_comment():
    lines = (REPO / "config" / "config.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)(- )?([a-z_]+):", line)
        if not m:
            continue
        indent = len(m.group(1))
        j = i - 1
        # a key is covered by a comment directly above it, or by the comment above the group of
        # sibling keys it belongs to (e.g. "tree:" and "branch:" under one comment)
        while j >= 0 and re.match(rf"^\s{{{indent}}}[a-z_]+:", lines[j]) and not lines[j].strip().endswith(":"):
            j -= 1
        assert j >= 0 and lines[j].strip().startswith("#"), f"config.yaml line {i + 1}: {line.strip()!r} has no comment"


def test_every_schema_key_has_a_description():
    def walk(node, where):
        for key, sub in node.get("properties", {}).items():
            assert "description" in sub, f"{where}.{key} lacks a description"
            walk(sub, f"{where}.{key}")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{where}.*")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{where}[]")

    walk(SCHEMA, "config")


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


@pytest.mark.parametrize(("preset", "shape", "unit"), [("aera", (2, 500), "ADC"), ("grand", (3, 2048), "ADC")])
def test_site_presets_merge_validate_and_simulate(preset, shape, unit):
    import numpy as np

    from crnn.simulate import Simulator

    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    merged = _merge(default, yaml.safe_load((REPO / "config" / "presets" / f"{preset}.yaml").read_text()))
    jsonschema.validate(merged, SCHEMA)
    settings = from_mapping(SimulationSettings, merged["simulate"])
    block = Simulator(settings, seed=1).block(0, 200)
    assert block.traces.shape[1:] == shape and block.unit == unit
    assert np.all(block.traces == np.round(block.traces))
    assert 3 < np.median(block.meta["noise_rms"]) < 40  # a few to tens of ADC counts, not clipped noise
    for name, model in merged["models"].items():
        assert from_mapping(ModelSettings, model).cell == name
