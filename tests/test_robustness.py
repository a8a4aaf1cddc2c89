"""The robustness suite: `crnn robustness` on small shift files, its figures, its errors, the report section."""

from __future__ import annotations

import json
import math

import jsonschema
import numpy as np
import pytest
import yaml
from conftest import REPO, run_crnn

from crnn.baselines import baseline_scores
from crnn.robustness import DEFAULT_SHIFTS, SUITE_KEYS, RobustnessSettings, measure
from crnn.settings import from_mapping
from crnn.simulate import SimulationSettings, simulate
from crnn.tracefile import read_traces

SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
FPR = 0.02  # ~450 noise-only background traces per 1,000-trace shift: 9 false alarms allowed
SETTINGS = json.dumps(
    {
        "fpr": FPR,
        "snr_points": [4, 6, 10],
        "shifts": {
            "hot": {"description": "receiver at 300 K", "simulate": {"noise_temperature_k": 300.0}},
            "wide": {"description": "25-85 MHz", "simulate": {"receiver": {"band_hz": [25e6, 85e6]}}},
        },
    }
)


@pytest.fixture(scope="module")
def shift_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("shifts")
    hot = SimulationSettings(n_traces=1000, snr_range=(3.5, 10.5), noise_temperature_k=300.0)
    wide = from_mapping(
        SimulationSettings, {"n_traces": 1000, "snr_range": [3.5, 10.5], "receiver": {"band_hz": [25e6, 85e6]}}
    )
    simulate(hot, d / "hot.h5", seed=1001)
    simulate(wide, d / "wide.h5", seed=1002)
    return {"hot": d / "hot.h5", "wide": d / "wide.h5"}


def _noise_only_threshold(scores, labels, has_transient, fpr):
    bg = np.sort(scores[(labels == 0) & (has_transient == 0)].astype(np.float64))[::-1]
    return float(bg[math.floor(fpr * len(bg) + 1e-9)])


def test_baseline_on_two_shifts_thresholds_on_each_shifts_own_noise(tmp_path, shift_files):
    out = tmp_path / "envelope.json"
    run_crnn(
        "robustness",
        "--baseline",
        "envelope",
        "--settings",
        SETTINGS,
        "-o",
        out,
        "--shift",
        f"hot={shift_files['hot']}",
        "--shift",
        f"wide={shift_files['wide']}",
        "--skipped",
        "measured=data/other_detector.h5",
    )
    r = json.loads(out.read_text())
    assert r["format"] == "crnn-robustness/1" and r["method"] == "envelope" and r["kind"] == "baseline"
    assert [s["name"] for s in r["shifts"]] == ["hot", "wide"]
    assert r["skipped"] == [{"name": "measured", "reason": "not run: data/other_detector.h5 missing"}]
    for s in r["shifts"]:
        assert s["description"] and s["seed"] in (1001, 1002)
        data = read_traces(shift_files[s["name"]])
        scores = baseline_scores("envelope", data.traces, data.sampling_rate_hz)
        labels, tr = data.labels.astype(int), data.meta["has_transient"].astype(int)
        assert s["threshold_noise"]["available"]
        assert s["threshold_noise"]["threshold"] == pytest.approx(
            _noise_only_threshold(scores, labels, tr, FPR), rel=1e-6
        )
        assert s["threshold_noise"]["n"] == s["n_background_noise"] == int(np.sum((labels == 0) & (tr == 0)))
        assert s["threshold_noise"]["n_false_positives"] <= math.floor(FPR * s["n_background_noise"])
        for key in ("efficiency_noise", "efficiency_all"):
            assert [e["snr"] for e in s[key]] == [4, 6, 10]
            for e in s[key]:
                assert e["n"] > 0 and 0 <= e["efficiency"] <= 1
                assert e["interval"][0] <= e["efficiency"] <= e["interval"][1]
        # efficiency rises with SNR; at SNR 10 the envelope finds nearly every pulse
        eff = [e["efficiency"] for e in s["efficiency_noise"]]
        assert eff[0] <= eff[2] and eff[2] > 0.8
        t = s["threshold_noise"]["threshold"]
        transient = (labels == 0) & (tr == 1)
        assert s["transient_pass"]["n"] == int(transient.sum())
        assert s["transient_pass"]["passed"] == int(np.sum(scores[transient] > t))
        assert 0.5 < s["auc"] <= 1


def test_measure_on_a_hand_built_case():
    # 10 noise-only, 4 transient-only background traces, 4 clean pulses at SNR 4 and 2 with a transient
    scores = np.array(
        [
            0.1,
            0.2,
            0.3,
            0.4,
            0.5,
            0.6,
            0.7,
            0.8,
            0.9,
            1.0,  # noise: fpr 0.1 -> threshold 0.9
            0.5,
            0.95,
            2.0,
            3.0,  # transients: 3 of 4 pass 0.9
            0.85,
            0.95,
            1.5,
            5.0,  # clean pulses: 3 of 4 pass
            0.0,
            9.0,
        ]
    )
    labels = np.array([0] * 14 + [1] * 6)
    tr = np.array([0] * 10 + [1] * 4 + [0] * 4 + [1] * 2)
    snr = np.array([0.0] * 14 + [4.2, 3.9, 4.4, 3.6, 4.0, 6.0])
    m = measure(scores, labels, snr, tr, fpr=0.1, snr_points=(4.0, 6.0), snr_bin_width=1.0)
    assert m["threshold_noise"]["threshold"] == 0.9 and m["threshold_noise"]["n_false_positives"] == 1
    assert m["transient_pass"] == {"n": 4, "passed": 3, "rate": 0.75, "interval": m["transient_pass"]["interval"]}
    assert m["efficiency_noise"][0]["n"] == 4 and m["efficiency_noise"][0]["passed"] == 3
    assert m["efficiency_noise"][1]["n"] == 0 and m["efficiency_noise"][1]["efficiency"] is None
    # all background (14 traces, fpr 0.1 -> k = 1): threshold = 2nd largest = 2.0; all 6 pulses count
    assert m["threshold_all"]["threshold"] == 2.0
    assert m["efficiency_all"][0]["n"] == 5 and m["efficiency_all"][0]["passed"] == 1
    assert m["efficiency_all"][1] == {**m["efficiency_all"][1], "n": 1, "passed": 1, "efficiency": 1.0}
    # too little noise for the FPR: reported as unavailable, not as a number
    small = measure(scores, labels, snr, tr, fpr=0.05, snr_points=(4.0,), snr_bin_width=1.0)
    assert small["threshold_noise"]["available"] is False and "allow no FPR" in small["threshold_noise"]["reason"]
    assert small["efficiency_noise"][0]["efficiency"] is None and small["transient_pass"]["rate"] is None


def test_missing_and_garbage_shift_files_are_refused_in_one_line(tmp_path, shift_files):
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not an HDF5 file at all")
    missing = tmp_path / "missing.h5"
    for bad in (missing, garbage):
        out = tmp_path / "out.json"
        proc = run_crnn(
            "robustness",
            "--baseline",
            "amplitude",
            "-o",
            out,
            "--shift",
            f"hot={shift_files['hot']}",
            "--shift",
            f"bad={bad}",
            check=False,
        )
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and str(bad) in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr and not out.exists()
    # a canonical file without the simulation's has_transient: names the file and the field
    from crnn.tracefile import TraceSet, write_traces

    data = read_traces(shift_files["hot"])
    bare = tmp_path / "bare.h5"
    write_traces(
        bare,
        TraceSet(
            data.traces[:50],
            data.sampling_rate_hz,
            data.unit,
            {"labels": data.labels[:50], "snr": data.meta["snr"][:50]},
        ),
    )
    proc = run_crnn(
        "robustness", "--baseline", "amplitude", "-o", tmp_path / "o.json", "--shift", f"x={bare}", check=False
    )
    assert proc.returncode == 2 and str(bare) in proc.stderr and "'has_transient'" in proc.stderr
    proc = run_crnn(
        "robustness", "--baseline", "amplitude", "-o", tmp_path / "o.json", "--shift", "nofile", check=False
    )
    assert proc.returncode == 2 and "NAME=FILE" in proc.stderr


def test_committed_model_and_matched_filter_on_one_shift(tmp_path, shift_files):
    model = REPO / "tests" / "data" / "model_v0_1"
    run_crnn(
        "robustness",
        "--model",
        model,
        "--name",
        "fixture",
        "--settings",
        SETTINGS,
        "-o",
        tmp_path / "m.json",
        "--shift",
        f"hot={shift_files['hot']}",
    )
    r = json.loads((tmp_path / "m.json").read_text())
    assert r["method"] == "fixture" and r["kind"] == "model" and len(r["shifts"]) == 1
    s = r["shifts"][0]
    assert s["n_traces"] == 1000 and s["threshold_noise"]["available"]
    assert 0 <= s["threshold_noise"]["threshold"] <= 1  # a probability
    assert all(e["efficiency"] is None or 0 <= e["efficiency"] <= 1 for e in s["efficiency_noise"])
    run_crnn(
        "robustness",
        "--baseline",
        "matched_filter",
        "--settings",
        SETTINGS,
        "-o",
        tmp_path / "mf.json",
        "--baseline-settings",
        '{"matched_filter_templates": 2}',
        "--shift",
        f"hot={shift_files['hot']}",
    )
    mf = json.loads((tmp_path / "mf.json").read_text())
    assert str(shift_files["hot"]) in mf["shifts"][0]["noise_spectrum_from"]
    assert mf["baseline_settings"]["matched_filter_templates"] == 2
    assert mf["shifts"][0]["efficiency_noise"][-1]["efficiency"] > 0.8


def test_report_section_has_a_row_per_shift_and_the_in_domain_split(tmp_path, shift_files, splits):
    ev = tmp_path / "ev" / "envelope"
    run_crnn(
        "evaluate", "--test", splits["test"], "--baseline", "envelope", "-o", ev, "--n-bootstrap", "0", "--fpr", "0.02"
    )
    run_crnn(
        "robustness",
        "--baseline",
        "envelope",
        "--settings",
        SETTINGS,
        "-o",
        tmp_path / "rob" / "envelope.json",
        "--shift",
        f"hot={shift_files['hot']}",
        "--shift",
        f"wide={shift_files['wide']}",
        "--skipped",
        "measured=data/other.h5",
    )
    run_crnn(
        "report",
        "--metrics",
        ev / "metrics.json",
        "--robustness",
        tmp_path / "rob" / "envelope.json",
        "-o",
        tmp_path / "rep",
    )
    html = (tmp_path / "rep" / "summary.html").read_text()
    assert "Robustness to other detectors" in html and 'id="robustness-table"' in html
    for name in ("in-domain test split", "hot", "wide"):
        assert f'data-shift="{name}"' in html
    assert "not run: data/other.h5 missing" in html and "receiver at 300 K" in html
    rob = json.loads((tmp_path / "rep" / "summary.json").read_text())["robustness"]
    assert [s["name"] for s in rob["shifts"]] == ["in-domain test split", "hot", "wide"]
    assert rob["methods"] == ["envelope"] and rob["fpr"] == FPR
    assert rob["skipped"] == [{"name": "measured", "reason": "not run: data/other.h5 missing"}]
    for s in rob["shifts"]:
        assert all(e is None or 0 <= e <= 1 for e in s["results"]["envelope"]["efficiency_noise"])
    # a file that is not a robustness file: one line naming the file and the field
    (tmp_path / "wrong.json").write_text('{"format": "crnn-metrics/1"}')
    proc = run_crnn(
        "report",
        "--metrics",
        ev / "metrics.json",
        "--robustness",
        tmp_path / "wrong.json",
        "-o",
        tmp_path / "rep2",
        check=False,
    )
    assert proc.returncode == 2 and str(tmp_path / "wrong.json") in proc.stderr and "'format'" in proc.stderr


def test_default_shifts_agree_with_the_schema_and_make_valid_simulations():
    node = SCHEMA["properties"]["robustness"]
    assert node["properties"]["shifts"]["default"] == DEFAULT_SHIFTS
    assert RobustnessSettings().shifts == DEFAULT_SHIFTS
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert config["robustness"]["shifts"] == DEFAULT_SHIFTS
    jsonschema.validate(config, SCHEMA)

    def merge(base, over):
        return {
            **base,
            **{
                k: merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
                for k, v in over.items()
            },
        }

    for name, shift in DEFAULT_SHIFTS.items():
        section = merge(config["simulate"], shift["simulate"])
        for key in SUITE_KEYS:
            section.pop(key, None)
        settings = from_mapping(SimulationSettings, {**section, "snr_range": [3.5, 10.5]}, name)
        settings.check()
        assert "'" not in shift["description"]
    seeds = {config["seed"] + 1000 + k for k in range(len(DEFAULT_SHIFTS))}
    assert config["seed"] not in seeds
