"""What a newcomer runs into (issue 16): the README's own commands, help texts and defaults, refusals
that name their fix."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest
import yaml
from conftest import REPO, run_crnn

EXAMPLE_ROOT = REPO / "data" / "example_traces.root"


def _readme_pieces() -> list[str]:
    """The commands of the README's "Using the pieces" block, up to and including `crnn report`."""
    text = (REPO / "README.md").read_text()
    block = text.split("## Using the pieces", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    lines = [ln for ln in block.splitlines() if ln.strip()]
    end = next(i for i, ln in enumerate(lines) if ln.startswith("crnn report"))
    return lines[: end + 1]


def _tiny(line: str) -> str:
    """A README command at test size: fewer traces, one short epoch of a small network; the
    placeholder ROOT file is the shipped example (same tree and branch)."""
    line = re.sub(r"--n-traces \d+", "--n-traces 2000", line)
    line = line.replace("mytree.root", str(EXAMPLE_ROOT))
    if line.startswith("crnn train"):
        cmd = line.partition("#")[0]
        line = cmd.rstrip() + ' --epochs 1 --model \'{"units": 8, "conv_filters": 8}\''
    return line


@pytest.mark.slow
def test_readme_pieces_give_a_report_whose_numbers_are_those_of_the_metrics_files(tmp_path):
    lines = _readme_pieces()
    assert sum(ln.startswith("crnn train") for ln in lines) == 2  # two networks, as a user compares them
    script = 'set -euo pipefail\ncrnn() { "$PYTHON" -m crnn "$@"; }\n' + "\n".join(_tiny(ln) for ln in lines)
    env = {**os.environ, "PYTHON": sys.executable, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]

    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    rows = {r["method"]: r for r in summary["rows"]}
    assert len(rows) == len(summary["rows"]) == 4 and set(rows) == {"gru", "lstm", "envelope", "matched_filter"}
    metrics = {m: json.loads((tmp_path / "eval" / m / "metrics.json").read_text()) for m in rows}
    ref = metrics["matched_filter"]
    fpr = summary["working_point_fpr"]
    for name, m in metrics.items():
        row = rows[name]
        assert m["method"] == name and row["auc"] == m["auc"]
        for prefix, key in (("", "working_points"), ("noise_", "working_points_noise")):
            for wp in m.get(key, []):
                f = f"{wp['target_fpr']:g}"
                assert row[f"{prefix}tpr_at_fpr_{f}"] == (wp["tpr"] if wp.get("available") else None)
            mine = next((w for w in m.get(key, []) if w.get("available") and w["target_fpr"] == fpr), {})
            theirs = next((w for w in ref.get(key, []) if w.get("available") and w["target_fpr"] == fpr), None)
            if theirs is not None:
                v, r = mine.get("snr_50"), theirs.get("snr_50")
                assert row[f"{prefix}snr50_ratio_to_matched_filter_at_fpr_{fpr:g}"] == (v / r if v and r else None)
    # the model cards carry the folder names, and the config's time limit (the CLI's default)
    for name in ("gru", "lstm"):
        card = json.loads((tmp_path / "models" / name / "model.card.json").read_text())
        assert card["name"] == name
        assert card["training"]["max_time_s"] == _config()["training"]["max_time_s"]
    page = (tmp_path / "report" / "summary.html").read_text()
    assert page.count("<td>gru</td>") == page.count("<td>lstm</td>") >= 1


def _metrics_stub(path, method: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"method": method, "kind": "model", "auc": 0.9, "roc": {}, "working_points": []}))


def test_report_refuses_two_methods_of_one_name(tmp_path):
    a, b = tmp_path / "eval" / "a" / "metrics.json", tmp_path / "eval" / "b" / "metrics.json"
    _metrics_stub(a, "model")
    _metrics_stub(b, "model")
    proc = run_crnn("report", "--metrics", a, b, "-o", tmp_path / "report", check=False)
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert str(a) in line and str(b) in line and "'model'" in line and "--name" in line
    assert not (tmp_path / "report").exists()


def test_train_names_a_model_after_its_folder_by_default():
    from crnn.cli import build_parser
    from crnn.train import default_name

    args = build_parser(["train"]).parse_args(["train", "--train", "t.h5", "--val", "v.h5", "-o", "models/gru/"])
    assert args.name is None and default_name(args.output_dir) == "gru"


def _config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_train_time_limit_and_epochs_flags_default_to_the_config():
    from crnn.cli import build_parser
    from crnn.train import TrainingSettings

    assert TrainingSettings().max_time_s == _config()["training"]["max_time_s"]
    args = build_parser(["train"]).parse_args(
        ["train", "--train", "t.h5", "--val", "v.h5", "-o", "m", "--max-time-s", "60", "--epochs", "3"]
    )
    assert args.max_time_s == 60 and args.epochs == 3


@pytest.mark.parametrize(
    "stage",
    [
        "simulate",
        "predict",
        "train",
        "ingest",
        "dataset",
        "evaluate",
        "calibrate",
        "robustness",
        "report",
        "merge",
        "inspect",
    ],
)
def test_help_shows_every_default(stage):
    import argparse

    from crnn.cli import build_parser

    parser = build_parser([stage])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[stage]
    text = " ".join(sub.format_help().split())
    for action in sub._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        if action.default is None or action.default is False or action.default == []:
            continue
        flag = max(action.option_strings, key=len)
        helptext = " ".join((sub.formatter_class(stage)._get_help_string(action) or "").split())
        assert "default" in helptext, f"crnn {stage} {flag}: help names no default ({helptext!r})"
        assert helptext.split("(default")[0].strip()[:20] in text
    wanted = {
        "predict": ["--overlap", "--chunk-size"],
        "train": ["--threads", "--epochs", "--max-time-s"],
        "simulate": ["--n-traces", "--signal-fraction", "--band-hz", "--sampling-rate-hz", "--n-samples"],
    }
    for flag in wanted.get(stage, []):
        action = next(a for a in sub._actions if flag in a.option_strings)
        helptext = " ".join(sub.formatter_class(stage)._get_help_string(action).split())
        assert re.search(r"default:? [0-9]", helptext), f"crnn {stage} {flag}: {helptext!r}"
        assert helptext[:30] in text


def test_simulate_takes_band_rate_and_length_directly(tmp_path):
    out = tmp_path / "sim.h5"
    run_crnn(
        "simulate",
        "-o",
        out,
        "--n-traces",
        "40",
        "--band-hz",
        "50e6",
        "200e6",
        "--sampling-rate-hz",
        "500e6",
        "--n-samples",
        "1024",
        "--n-channels",
        "3",
    )
    with h5py.File(out) as f:
        assert f["traces"].shape == (40, 3, 1024)
        assert f.attrs["sampling_rate_hz"] == 500e6 and list(f.attrs["band_hz"]) == [50e6, 200e6]


def test_ingest_label_refuses_to_relabel_a_labelled_file_unless_relabel(tmp_path):
    src, out = tmp_path / "labelled.h5", tmp_path / "out.h5"
    run_crnn("simulate", "-o", src, "--n-traces", "40", "--signal-fraction", "0.5")
    proc = run_crnn("ingest", "-i", src, "-o", out, "--label", "0", check=False)
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert str(src) in line and "already holds labels [0, 1]" in line and "--relabel" in line
    assert not out.exists()
    run_crnn("ingest", "-i", src, "-o", out, "--label", "0", "--relabel")
    with h5py.File(out) as f:
        assert not np.asarray(f["labels"]).any()


def test_dataset_rate_mismatch_names_the_config_fix(tmp_path):
    sim, other = tmp_path / "traces.h5", tmp_path / "ingest" / "example_root.h5"
    other.parent.mkdir()
    run_crnn("simulate", "-o", sim, "--n-traces", "40")
    run_crnn(
        "ingest",
        "-i",
        EXAMPLE_ROOT,
        "-o",
        other,
        "--tree",
        "events",
        "--branch",
        "trace",
        "--unit",
        "V",
        "--sampling-rate-hz",
        "180e6",
        "--label-branch",
        "label",
        "--resample-hz",
        "200e6",
    )
    proc = run_crnn(
        "dataset",
        "-i",
        sim,
        "-i",
        other,
        "--train",
        tmp_path / "tr.h5",
        "--val",
        tmp_path / "va.h5",
        "--test",
        tmp_path / "te.h5",
        check=False,
    )
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert "does not match" in line and "ingest.example_root.dataset: false" in line
    assert "ingest.example_root.resample_hz: 1.8e+08" in line
    assert not (tmp_path / "tr.h5").exists()


GP13 = REPO.parent / "shared" / "realdata" / "grand" / "noise_traces_gp13_2024_01_night_datafiles_185-190_merged.root"


def _grand_recipe() -> str:
    """The measured-background recipe of config/presets/grand.yaml's header, uncommented."""
    head = (REPO / "config" / "presets" / "grand.yaml").read_text().split("add to this file:\n", 1)[1]
    lines = []
    for ln in head.splitlines():
        if not ln.startswith("#   "):
            break
        lines.append(ln[4:])
    return "\n".join(lines) + "\n"


@pytest.mark.workflow
def test_grand_preset_measured_background_recipe_plans_from_the_repository(tmp_path):
    from conftest import snakemake

    if not GP13.exists():
        pytest.skip(f"{GP13} (../shared beside the clone) is not here")
    recipe = tmp_path / "gp13.yaml"
    recipe.write_text(_grand_recipe() + "robustness: {enabled: false}\n")
    proc = snakemake(
        "-n",
        "--cores",
        "1",
        "--directory",
        str(tmp_path / "run"),
        "--configfile",
        str(REPO / "config" / "presets" / "grand.yaml"),
        str(recipe),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "results/grand/ingest/gp13.h5" in proc.stdout and GP13.name in proc.stdout


@pytest.mark.workflow
def test_a_missing_config_input_names_its_key_and_where_it_was_looked_for(tmp_path):
    from conftest import snakemake

    cfg = tmp_path / "missing.yaml"
    cfg.write_text("ingest:\n  mine: {path: ../no_such_folder/mine.root, format: root}\n")
    proc = snakemake("-n", "--cores", "1", "--directory", str(tmp_path / "run"), "--configfile", str(cfg))
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "ingest.mine.path = ../no_such_folder/mine.root: no such file" in text
    assert str((REPO / ".." / "no_such_folder" / "mine.root").resolve()) in text and "repository folder" in text


@pytest.mark.parametrize(
    "stage, options",
    [
        ("simulate", {"--settings": "crnn.simulate:SimulationSettings"}),
        ("evaluate", {"--settings": "crnn.evaluate:EvaluationSettings"}),
        (
            "robustness",
            {
                "--settings": "crnn.robustness:RobustnessSettings",
                "--baseline-settings": "crnn.baselines:BaselineSettings",
            },
        ),
        ("train", {"--model": "crnn.model_settings:ModelSettings", "--training": "crnn.train:TrainingSettings"}),
    ],
)
def test_print_settings_lists_every_key_with_its_default_and_meaning(stage, options, capsys):
    """`crnn STAGE --print-settings` (issue 16, item 5): YAML whose values are the defaults that the
    stage's settings options accept, every key with the schema's description; nothing else needed."""
    import importlib

    import yaml

    from crnn.cli import main
    from crnn.settings import to_mapping

    with pytest.raises(SystemExit) as exit_:
        main([stage, "--print-settings"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    parts = re.split(r"^# crnn \S+ (--[\w-]+): .*$", text, flags=re.M)[1:]
    assert [parts[i] for i in range(0, len(parts), 2)] == list(options)
    for (option, name), body in zip(options.items(), parts[1::2], strict=True):
        module, _, cls_name = name.partition(":")
        cls = getattr(importlib.import_module(module), cls_name)
        assert yaml.safe_load(body) == to_mapping(cls()), option  # the listing is the defaults, as YAML
        for line in body.strip().splitlines():
            assert re.search(r"  # \S", line), f"{option}: no description in {line!r}"
