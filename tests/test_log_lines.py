"""Units and numbers in the logs (issue 16, item 6): the noise RMS of a digitised simulation in volts and
ADC counts; ``crnn predict`` warns once per kind of mismatch, counts per file and in all, states the
threshold with its false-positive rate, says how traces were fitted (padding, windows) and writes the
input file names into its CSV."""

from __future__ import annotations

import csv
import logging
import re
import shutil

import pytest
import yaml
from conftest import REPO

from crnn.settings import from_mapping
from crnn.simulate import SimulationSettings, simulate

FIXTURE = REPO / "tests" / "data" / "model_v0_1"  # GRU of crnn 0.1: 2 channels, 500 samples, 180 MHz


def test_grand_preset_logs_the_noise_rms_in_volts_and_adc_counts(tmp_path, caplog):
    preset = yaml.safe_load((REPO / "config" / "presets" / "grand.yaml").read_text())["simulate"]
    mapping = {"receiver": preset["receiver"], "noise_temperature_k": preset["noise_temperature_k"], "n_traces": 16}
    settings = from_mapping(SimulationSettings, mapping, "simulate settings")
    with caplog.at_level(logging.INFO, logger="crnn"):
        simulate(settings, tmp_path / "grand.h5", seed=1)
    line = next(r.getMessage() for r in caplog.records if "expected noise RMS" in r.getMessage())
    volts, counts = re.search(r"noise RMS ([\d.e+-]+) V at the ADC input = ([\d.e+-]+) ADC counts", line).groups()
    lsb_v = 2 * preset["receiver"]["adc_full_scale_v"] / 2 ** preset["receiver"]["adc_bits"]
    assert float(counts) == pytest.approx(float(volts) / lsb_v, rel=0.01)
    assert 5 < float(counts) < 30  # the preset's chain brings the noise to ~12 counts (its comment)


def test_predict_logs_per_file_and_in_all_with_the_fpr_padding_windows_and_file_names(tmp_path, caplog):
    coreas = [tmp_path / "a_coreas.hdf5", tmp_path / "b_coreas.hdf5"]
    for path in coreas:
        shutil.copy(REPO / "data" / "example_coreas.hdf5", path)
    inputs = [*coreas, REPO / "data" / "example_traces.h5"]
    out = tmp_path / "scores.csv"
    from crnn.predict import predict_files

    with caplog.at_level(logging.INFO, logger="crnn"):
        predict_files(FIXTURE, inputs, out, pad=True, force_resample=True)
    lines = [r.getMessage() for r in caplog.records]
    # the unit warning once, not once per observer or per file; the second file named at the end
    unit = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "unit V/m" in r.getMessage()]
    assert len(unit) == 1 and unit[0].startswith(str(coreas[0])), unit
    assert any("1 more input(s) with the same mismatch" in ln and str(coreas[1]) in ln for ln in lines)
    # counts per file (4 observers each, 200 canonical traces), then the total
    scored = {
        ln.split(":")[0]: int(re.search(r"scored (\d+) traces", ln).group(1))
        for ln in lines
        if re.search(r"scored \d+ traces", ln)
    }
    assert scored == {str(coreas[0]): 4, str(coreas[1]): 4, str(inputs[2]): 200}
    total = next(ln for ln in lines if "in all" in ln)
    assert "208 traces from 3 file(s) in all" in total and "FPR 1e-3 working point" in total
    # the threshold with its false-positive rate and where it was chosen, for each input
    thr = [
        ln
        for ln in lines
        if re.search(
            r"threshold 0\.5459 \(FPR 1e-3 working point of the card, chosen on "
            r"validation background\)",
            ln,
        )
    ]
    assert len(thr) == 4  # one per input and the total
    # padding and windows: CoREAS 2000 samples at 5 GHz -> 72 at 180 MHz, zero-padded to 500
    fit = {ln.split(": ")[0]: ln for ln in lines if "window" in ln and "per trace" in ln}
    assert re.search(
        r"resampled 2000 -> 72 samples \(5e\+09 -> 1\.8e\+08 Hz\), zero-padded from 72 to 500 samples, "
        r"1 window of 500 samples per trace",
        fit[str(coreas[0])],
    )
    assert fit[str(inputs[2])].endswith("no padding, 1 window of 500 samples per trace")
    # the CSV names each row's input file beside its index
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 208
    assert all(row["file"] == str(inputs[int(row["file_index"])]) for row in rows)
    assert [row["file"] for row in rows[:5]] == [str(coreas[0])] * 4 + [str(coreas[1])]


def test_predict_over_many_windows_says_how_many(tmp_path, caplog):
    import h5py
    import numpy as np

    from crnn.predict import predict_files

    path = tmp_path / "long.h5"
    rng = np.random.default_rng(5)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("traces", data=rng.normal(size=(3, 2, 1400)).astype(np.float32))
        ds.attrs["sampling_rate_hz"] = 180e6
        ds.attrs["unit"] = "V"
    with caplog.at_level(logging.INFO, logger="crnn"):
        predict_files(FIXTURE, [path], tmp_path / "s.h5", overlap=0.5)
    fit = next(r.getMessage() for r in caplog.records if "per trace" in r.getMessage())
    # hop 250: starts 0, 250, ..., 750, then 900 so that the last window ends with the trace
    assert fit.endswith("no padding, 5 windows of 500 samples per trace"), fit
