"""Model cards are checked as a whole on every load; a card without its model's SHA-256 is refused
unless the user trusts the file (issue 15, item 6). Real models (the committed v0.1 fixture), real
commands."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import REPO

from crnn.classifier import load_classifier
from crnn.cli import main
from crnn.errors import CrnnError

FIXTURE = REPO / "tests" / "data" / "model_v0_1"
EXAMPLE = REPO / "data" / "example_traces.h5"


def _copy(tmp_path, **changes):
    d = tmp_path / "model"
    shutil.copytree(FIXTURE, d)
    card = json.loads((d / "model.card.json").read_text())
    for key, value in changes.items():
        if value is None:
            del card[key]
        else:
            card[key] = value
    (d / "model.card.json").write_text(json.dumps(card))
    return d


def test_the_committed_v0_1_fixture_still_loads():
    clf = load_classifier(FIXTURE)
    assert clf.n_channels == 2 and clf.n_samples == 500 and clf.sampling_rate_hz == 180e6


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"sampling_rate_hz": "fast"}, "field sampling_rate_hz: 'fast' is not of type 'number'"),
        ({"working_point": {}}, "field working_point: 'target_fpr' is a required property"),
        ({"working_point": {"target_fpr": 1e-3, "threshold": "high"}}, "field working_point.threshold: 'high' is not"),
        ({"working_point": {"target_fpr": 5, "threshold": 0.5}}, "field working_point.target_fpr: 5 is greater than"),
        ({"n_channels": 0}, "field n_channels: 0 is less than the minimum of 1"),
        ({"n_channels": 3}, "input_shape [2, 500] disagrees with n_channels 3"),
        ({"input_shape": [2]}, "field input_shape: [2] is too short"),
        ({"band_hz": [80e6, 30e6]}, "band_hz [80000000.0, 30000000.0] must satisfy low < high <= Nyquist"),
        ({"model_sha256": 42}, "field model_sha256: 42 is not of type 'string'"),
        ({"working_point": None}, "model card lacks ['working_point']"),
    ],
)
def test_a_broken_card_is_one_line(tmp_path, capsys, changes, needle):
    d = _copy(tmp_path, **changes)
    assert main(["predict", "-m", str(d), "-i", str(EXAMPLE), "-o", str(tmp_path / "s.h5")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and "model.card.json" in err[0], err
    assert not (tmp_path / "s.h5").exists()


def _tamper(d):
    """Flip bytes in the weights: the SHA-256 no longer matches (and nothing else checks them)."""
    data = bytearray((d / "model.keras").read_bytes())
    data[-200:-100] = bytes(100)
    (d / "model.keras").write_bytes(bytes(data))


#: every command that loads a model, with files it needs that come before the model is loaded
LOADERS = {
    "predict": ["predict", "-m", "{m}", "-i", str(EXAMPLE), "-o", "{d}/s.h5"],
    "evaluate": ["evaluate", "--model", "{m}", "--test", str(EXAMPLE), "-o", "{d}/ev", "--n-bootstrap", "0"],
    "inspect": ["inspect", "{m}"],
    "calibrate": [
        "calibrate",
        "-m",
        "{m}",
        "-b",
        str(EXAMPLE),
        "-o",
        "{d}/cal",
        "--fprs",
        "0.1",
        "--working-point-fpr",
        "0.1",
    ],
    "robustness": [
        "robustness",
        "--model",
        "{m}",
        "--shift",
        "a={d}/shift.h5",
        "-o",
        "{d}/rob.json",
        "--settings",
        '{{"fpr": 0.1}}',
    ],
    "train --init-from": [
        "train",
        "--train",
        str(EXAMPLE),
        "--val",
        str(EXAMPLE),
        "-o",
        "{d}/ft",
        "--init-from",
        "{m}",
        "--epochs",
        "1",
    ],
}


@pytest.mark.parametrize("command", list(LOADERS))
def test_a_card_without_model_sha256_is_refused_unless_trusted(tmp_path, capsys, command):
    from crnn.simulate import SimulationSettings, simulate

    d = _copy(tmp_path, model_sha256=None)
    if command == "robustness":  # a shift file is a simulation
        simulate(SimulationSettings(n_traces=200), tmp_path / "shift.h5", seed=1)
    argv = [a.format(m=d, d=tmp_path) for a in LOADERS[command]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "lacks model_sha256" in err[0] and "--trust-model" in err[0], err[0]
    # the flag the message suggests exists for this command: with it, the model loads (and the
    # command goes on to whatever comes next, which may refuse something else)
    capsys.readouterr()
    main([*argv, "--trust-model"])
    assert "lacks model_sha256" not in capsys.readouterr().err


def test_tampered_weights_without_their_sha256_are_refused(tmp_path, capsys):
    d = _copy(tmp_path, model_sha256=None)
    _tamper(d)
    assert main(["predict", "-m", str(d), "-i", str(EXAMPLE), "-o", str(tmp_path / "s.h5")]) == 2
    assert "lacks model_sha256" in capsys.readouterr().err
    with pytest.raises(CrnnError, match="lacks model_sha256"):
        load_classifier(d)
    assert not (tmp_path / "s.h5").exists()


# --- the software a model was trained under (crnn.versions, issue 20) ---------------------------------------------


def _inspect(capsys, model) -> tuple[str, str]:
    assert main(["inspect", str(model)]) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_a_new_card_records_the_software_of_crnn_version_and_inspect_finds_no_difference(tiny_model, capsys):
    from crnn.versions import software

    card = json.loads(tiny_model.with_name("model.card.json").read_text())
    now = software(card["backend"])
    assert card["software"] == now  # the same block that `crnn --version` prints
    assert card["software"]["numpy"] and card["software"]["h5py"] and card["software"]["backend_version"]
    out, err = _inspect(capsys, tiny_model)
    assert f"trained under: crnn {now['crnn']}, keras {now['keras']}, backend {now['backend']}" in out
    assert "warning:" not in out + err and "note:" not in out


def test_inspect_warns_when_a_model_was_trained_under_other_major_versions(tmp_path, capsys, caplog):
    from crnn.versions import software

    now = software("tensorflow")
    old = {**now, "keras": "2.15.0", "backend_version": "1.15.5", "numpy": "1.26.4"}
    out, _ = _inspect(capsys, _copy(tmp_path, software=old))
    warnings = [line for line in out.splitlines() if line.startswith("  warning:")]
    assert warnings == [
        f"  warning: trained under keras 2.15.0, installed is keras {now['keras']} (other major version)",
        f"  warning: trained under tensorflow 1.15.5, installed is tensorflow {now['backend_version']} "
        "(other major version)",
        f"  warning: trained under numpy 1.26.4, installed is numpy {now['numpy']} (other major version)",
    ]
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records if r.levelname == "WARNING"] == [
        w.removeprefix("  warning: ") for w in warnings
    ]
    # the same major versions, other minor ones: no warning
    out, _ = _inspect(capsys, _copy(tmp_path / "minor", software={**now, "numpy": f"{now['numpy'].split('.')[0]}.0.0"}))
    assert "warning:" not in out
    out, _ = _inspect(capsys, _copy(tmp_path / "jax", software={**now, "backend": "jax", "backend_version": "0.4.30"}))
    assert "  warning: trained with the jax backend, Keras here uses tensorflow" in out


def test_inspect_of_the_v0_1_fixture_says_gently_what_its_card_does_not_record(capsys):
    out, err = _inspect(capsys, FIXTURE)
    assert "  trained under: crnn 0.1.0, keras 3.15.1, backend tensorflow" in out
    assert (
        "  note: this card (from an older crnn) does not record the versions of tensorflow, numpy, h5py it was "
        "trained under; those are not compared"
    ) in out
    assert "warning" not in out + err
