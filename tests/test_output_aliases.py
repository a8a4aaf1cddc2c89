"""No stage overwrites its own input, and no two outputs of one stage share a file (issue 15, item 1).

Each case runs the real CLI (``crnn.cli.main``) on real files; the refusal is one line naming the
path and both roles, exit code 2, and the input is left as it was.
"""

from __future__ import annotations

import os
import shutil

import pytest
from conftest import REPO

from crnn.cli import main
from crnn.modelcard import file_sha256

FIXTURE = REPO / "tests" / "data" / "model_v0_1"
EXAMPLE = REPO / "data" / "example_traces.h5"


@pytest.fixture()
def files(tmp_path):
    """A trace file (copied, so a failure would show as changed bytes), a model folder and a hard link."""
    traces = tmp_path / "in.h5"
    shutil.copyfile(EXAMPLE, traces)
    os.link(traces, tmp_path / "hardlink.h5")
    shutil.copytree(FIXTURE, tmp_path / "model")
    (tmp_path / "sub").mkdir()
    return tmp_path


CASES = {
    "predict onto its input": ["predict", "-m", "{d}/model", "-i", "{d}/in.h5", "-o", "{d}/in.h5"],
    "predict onto its input by another name": [
        "predict",
        "-m",
        "{d}/model",
        "-i",
        "{d}/in.h5",
        "-o",
        "{d}/sub/../in.h5",
    ],
    "predict onto a hard link of its input": ["predict", "-m", "{d}/model", "-i", "{d}/in.h5", "-o", "{d}/hardlink.h5"],
    "predict onto the model": ["predict", "-m", "{d}/model", "-i", "{d}/in.h5", "-o", "{d}/model/model.keras"],
    "dataset train onto its input": [
        "dataset",
        "-i",
        "{d}/in.h5",
        "--train",
        "{d}/in.h5",
        "--val",
        "{d}/v.h5",
        "--test",
        "{d}/t.h5",
    ],
    "dataset train and val one file": [
        "dataset",
        "-i",
        "{d}/in.h5",
        "--train",
        "{d}/x.h5",
        "--val",
        "{d}/x.h5",
        "--test",
        "{d}/t.h5",
    ],
    "merge onto a chunk": ["merge", "-i", "{d}/in.h5", "-o", "{d}/in.h5"],
    "ingest onto its input": ["ingest", "-i", "{d}/in.h5", "-o", "{d}/hardlink.h5"],
    "simulate onto its measured background": [
        "simulate",
        "-o",
        "{d}/in.h5",
        "--n-traces",
        "10",
        "--settings",
        '{{"background": {{"measured_file": "{d}/in.h5"}}}}',
    ],
    "evaluate onto its test split": [
        "evaluate",
        "--test",
        "{d}/sub/scores.h5",
        "-o",
        "{d}/sub",
        "--baseline",
        "amplitude",
    ],
    "evaluate into a folder that is its test file": [
        "evaluate",
        "--test",
        "{d}/in.h5",
        "-o",
        "{d}/in.h5",
        "--baseline",
        "amplitude",
    ],
    "train onto its validation split": [
        "train",
        "--train",
        "{d}/in.h5",
        "--val",
        "{d}/sub/history.csv",
        "-o",
        "{d}/sub",
    ],
    "train into the folder of its initial model": [
        "train",
        "--train",
        "{d}/in.h5",
        "--val",
        "{d}/hardlink.h5",
        "-o",
        "{d}/model",
        "--init-from",
        "{d}/model",
    ],
    "calibrate into the folder of its model": ["calibrate", "-m", "{d}/model", "-b", "{d}/in.h5", "-o", "{d}/model"],
    "calibrate into the folder of its background": [
        "calibrate",
        "-m",
        "{d}/model",
        "-b",
        "{d}/sub/in.h5",
        "-o",
        "{d}/sub",
    ],
    "robustness onto a shift": ["robustness", "--shift", "a={d}/in.h5", "-o", "{d}/in.h5", "--baseline", "power"],
    "report onto its metrics": ["report", "--metrics", "{d}/sub/summary.json", "-o", "{d}/sub"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_output_that_is_an_input_or_another_output_is_refused(files, case, capsys):
    (files / "sub" / "scores.h5").write_bytes(EXAMPLE.read_bytes())
    (files / "sub" / "history.csv").write_text("epoch\n")
    (files / "sub" / "summary.json").write_text("{}")
    (files / "sub" / "in.h5").write_bytes(EXAMPLE.read_bytes())
    before = {p: file_sha256(p) for p in files.rglob("*") if p.is_file()}
    argv = [a.format(d=files) for a in CASES[case]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"crnn {argv[0]}: error: ")
    assert "is also the input" in err[0] or "are the same file" in err[0] or "holds the input" in err[0], err[0]
    after = {p: file_sha256(p) for p in files.rglob("*") if p.is_file()}
    assert after == before  # nothing written, nothing replaced


def test_distinct_outputs_still_work(files, capsys):
    argv = [
        "dataset",
        "-i",
        str(files / "in.h5"),
        "--train",
        str(files / "a.h5"),
        "--val",
        str(files / "b.h5"),
        "--test",
        str(files / "c.h5"),
    ]
    assert main(argv) == 0
    assert all((files / n).exists() for n in ("a.h5", "b.h5", "c.h5"))
