"""Issue 15, minor points: suggestions that make sense, flags that exist."""

from __future__ import annotations

import h5py
import numpy as np
from conftest import REPO

from crnn.cli import main


def test_a_missing_traces_dataset_does_not_suggest_labels(tmp_path, capsys):
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("labels", data=np.zeros(4, np.int8))
        f.create_dataset("snr", data=np.zeros(4))
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "no dataset 'traces'" in err and "did you mean" not in err


def test_evaluate_suggests_only_flags_that_exist(tmp_path, capsys):
    """A 3-channel test split for a 2-channel model: the hint names the commands that have the flag."""
    path = tmp_path / "t.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("traces", data=np.random.default_rng(0).normal(size=(20, 3, 500)).astype(np.float32))
        f["traces"].attrs.update({"sampling_rate_hz": 180e6, "unit": "V"})
        f.attrs.update({"sampling_rate_hz": 180e6, "unit": "V"})
        f.create_dataset("labels", data=np.r_[np.zeros(10), np.ones(10)].astype(np.int8))
        f.create_dataset("snr", data=np.full(20, 5.0))
    model = REPO / "tests" / "data" / "model_v0_1"
    assert main(["evaluate", "--model", str(model), "--test", str(path), "-o", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err
    assert "3 channel(s)" in err and "crnn predict --channels" in err and "with --channels" not in err
    assert ("predict", "--channels") in _suggested_flags_exist(err)


def test_inspect_a_truncated_root_file_is_one_line_and_non_zero(tmp_path, capsys):
    trunc = tmp_path / "trunc.root"
    trunc.write_bytes((REPO / "data" / "example_traces.root").read_bytes()[:3000])
    assert main(["inspect", str(trunc)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a readable ROOT file" in err[0] and "truncated" in err[0], err


def _options(stage: str) -> set[str]:
    import argparse
    import importlib

    parser = argparse.ArgumentParser()
    importlib.import_module(f"crnn.{stage}").add_arguments(parser)
    return {o for action in parser._actions for o in action.option_strings}


def _suggested_flags_exist(line: str) -> list[tuple[str, str]]:
    """Every 'crnn STAGE --flag' in ``line``; asserts each stage has its flag. Returns them."""
    import re

    found = re.findall(r"crnn (\w+) (--[\w-]+)", line)
    for stage, flag in found:
        assert flag in _options(stage), f"{line}: crnn {stage} has no {flag}"
    return found


def test_evaluate_on_short_traces_suggests_padding_where_it_exists(tmp_path, capsys):
    """evaluate has no --pad: the hint names the commands that pad (crnn predict --pad, crnn ingest --n-samples)."""
    path = tmp_path / "t.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("traces", data=np.random.default_rng(0).normal(size=(20, 2, 100)).astype(np.float32))
        f.attrs.update({"sampling_rate_hz": 180e6, "unit": "V"})
        f.create_dataset("labels", data=np.r_[np.zeros(10), np.ones(10)].astype(np.int8))
        f.create_dataset("snr", data=np.full(20, 5.0))
    model = REPO / "tests" / "data" / "model_v0_1"
    assert main(["evaluate", "--model", str(model), "--test", str(path), "-o", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "100 samples" in err[0], err
    assert ("predict", "--pad") in _suggested_flags_exist(err[0])
    assert "--pad" not in _options("evaluate") and not (tmp_path / "ev").exists()
