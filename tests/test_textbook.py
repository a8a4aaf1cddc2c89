"""The textbook reference: its model, its SNR definition, its preset, and the FLOP counts."""

from __future__ import annotations

import dataclasses
import json

import h5py
import jsonschema
import numpy as np
import pytest
import yaml
from conftest import REPO

keras = pytest.importorskip("keras")

from crnn.detector import RandomiseSettings
from crnn.errors import CrnnError
from crnn.flops import conv1d_flops, forward_flops, gru_flops, layer_flops, lstm_flops, training_flops
from crnn.flops import main as flops_main
from crnn.modelcard import card_path
from crnn.models import ModelSettings, build_classifier
from crnn.noise import ReceiverSettings, StationaryNoise
from crnn.pulse import PulseModel, PulseSettings, amplitude_for_snr
from crnn.settings import from_mapping, to_mapping
from crnn.simulate import SimulationSettings, Simulator, simulate
from crnn.textbook import TEXTBOOK_MODEL, accuracy_at, baseline_accuracy, best_threshold, textbook_training_flops
from crnn.tracefile import read_traces

SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
EXERCISE_SIM = SimulationSettings(
    n_traces=2000,
    snr_range=(2.0, 2.0),
    snr_definition="trace_rms",
    cw_lines=(),
    transients=(),
    receiver=ReceiverSettings(n_channels=1),
    randomise=RandomiseSettings(enabled=False),
)


def _rms(x: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=(1, 2)))


# -- the model -------------------------------------------------------------------------------------


def test_the_textbook_bilstm_has_the_exercise_parameter_count_and_layers():
    settings = from_mapping(ModelSettings, TEXTBOOK_MODEL)
    assert settings.layer_units == (32, 64, 10)
    m = build_classifier((1, 500), settings)
    assert m.count_params() == 95_873  # the exercise's model.summary(); our normalisation has no weights
    bis = [layer for layer in m.layers if isinstance(layer, keras.layers.Bidirectional)]
    assert [b.forward_layer.units for b in bis] == [32, 64, 10]
    assert all(b.forward_layer.return_sequences for b in bis)
    for b in bis:  # fused-kernel (cuDNN) compatible
        r = b.forward_layer
        assert isinstance(r, keras.layers.LSTM) and r.recurrent_dropout == 0 and not r.unroll and r.use_bias
    flat = m.get_layer("flatten")
    assert tuple(flat.output.shape) == (None, 500 * 20)
    assert m.get_layer("dropout").rate == 0.3
    assert not any(isinstance(layer, keras.layers.Conv1D) for layer in m.layers)
    y = m.predict(np.random.default_rng(0).normal(size=(2, 1, 500)).astype("float32"), verbose=0)
    assert y.shape == (2, 1) and np.all((y > 0) & (y < 1))


def test_units_take_an_int_or_one_entry_per_layer():
    assert from_mapping(ModelSettings, {"units": 8, "recurrent_layers": 2}).layer_units == (8, 8)
    s = from_mapping(ModelSettings, {"units": [8, 4]})
    assert s.layer_units == (8, 4) and to_mapping(s)["units"] == [8, 4]
    assert from_mapping(ModelSettings, {"units": [8, 4], "recurrent_layers": 2}).layer_units == (8, 4)
    m = build_classifier((1, 64), ModelSettings(units=(8, 4), conv_filters=0))
    assert [layer.units for layer in m.layers if isinstance(layer, keras.layers.GRU)] == [8, 4]
    with pytest.raises(CrnnError, match=r"units \[8, 4\] give 2 recurrent layers, but recurrent_layers is 3"):
        build_classifier((1, 64), ModelSettings(units=(8, 4), recurrent_layers=3))
    with pytest.raises(CrnnError, match=r"settings.units: expected an integer or a list, got 'many'"):
        from_mapping(ModelSettings, {"units": "many"})
    with pytest.raises(CrnnError, match=r"settings.units: expected an integer or a list, got \[8, 2.5\]"):
        from_mapping(ModelSettings, {"units": [8, 2.5]})
    node = SCHEMA["properties"]["models"]["additionalProperties"]
    for units in (64, [32, 64, 10]):
        jsonschema.validate({"units": units, "readout": "flatten"}, node)
    for bad in (0, [], [4, 0], "64"):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"units": bad}, node)


# -- the SNR definition ------------------------------------------------------------------------------


def test_amplitude_for_snr_solves_both_definitions_on_real_noise_and_pulses():
    r = ReceiverSettings(n_channels=1)
    rng = np.random.default_rng(5)
    noise = StationaryNoise(r, noise_temperature_k=40.0).generate(300, rng)
    pulses = PulseModel(r, PulseSettings()).generate(300, rng).waveforms
    snr = rng.uniform(1.0, 8.0, size=300)
    a = amplitude_for_snr(noise, pulses, snr, "trace_rms")
    trace = noise + a[:, None, None] * pulses
    np.testing.assert_allclose(a / _rms(trace), snr, rtol=1e-9)  # peak |signal| = a (unit-peak pulses)
    a_noise = amplitude_for_snr(noise, pulses, snr, "noise_rms")
    np.testing.assert_allclose(a_noise / _rms(noise), snr, rtol=1e-12)
    # the pulse raises the trace RMS (unless it happens to cancel the noise): more amplitude, same SNR
    assert np.median(a / a_noise) > 1.01
    with pytest.raises(ValueError, match="out of reach"):  # a trace that is all pulse has SNR 1 / RMS(p)
        amplitude_for_snr(noise[:1], pulses[:1], np.array([1.01 / _rms(pulses[:1])[0]]), "trace_rms")
    with pytest.raises(ValueError, match="snr_definition must be one of"):
        amplitude_for_snr(noise, pulses, snr, "peak")


def test_exercise_like_file_has_every_pulse_at_trace_rms_snr_2(tmp_path):
    sim = Simulator(EXERCISE_SIM, seed=3)
    block, signals = sim.draw_with_signals(0)
    sig = block.meta["labels"] == 1
    assert 400 < sig.sum() < 600 and np.all(signals[~sig] == 0)
    ratio = np.max(np.abs(signals[sig]), axis=(1, 2)) / _rms(block.traces[sig])
    np.testing.assert_allclose(ratio, 2.0, rtol=1e-5)
    assert np.all(block.meta["snr"][sig] == 2.0) and np.all(block.meta["snr"][~sig] == 0)
    # by the noise-RMS definition the same pulses are, typically, a little stronger
    assert np.median(np.max(np.abs(signals[sig]), axis=(1, 2)) / block.meta["noise_rms"][sig]) > 2.0

    path = simulate(EXERCISE_SIM, tmp_path / "ex.h5", seed=3)
    data = read_traces(path)
    assert data.traces.shape == (2000, 1, 500)
    np.testing.assert_array_equal(data.traces[:1000], block.traces)  # the file holds exactly these traces
    assert not data.meta["has_transient"].any() and not data.meta["n_cw_lines"].any()
    with h5py.File(path) as f:
        assert "RMS of the whole trace" in f.attrs["snr_definition"]
        assert json.loads(f.attrs["settings_json"])["snr_definition"] == "trace_rms"


def test_noise_rms_stays_the_default_definition():
    block, signals = Simulator(dataclasses.replace(EXERCISE_SIM, snr_definition="noise_rms"), seed=3).draw_with_signals(
        0
    )
    sig = block.meta["labels"] == 1
    np.testing.assert_allclose(np.max(np.abs(signals[sig]), axis=(1, 2)) / block.meta["noise_rms"][sig], 2.0, rtol=1e-5)
    assert SimulationSettings().snr_definition == "noise_rms"
    with pytest.raises(CrnnError, match="snr_definition must be one of noise_rms, trace_rms, got 'peak'"):
        Simulator(dataclasses.replace(EXERCISE_SIM, snr_definition="peak"), seed=1)
    with pytest.raises(CrnnError, match="simulate: snr_definition trace_rms: SNR 40 is out of reach"):
        Simulator(dataclasses.replace(EXERCISE_SIM, snr_range=(40.0, 40.0)), seed=1).block(0, 10)


# -- the preset ------------------------------------------------------------------------------------


def _merge(base: dict, over: dict) -> dict:  # as Snakemake merges --configfile into the default
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def test_textbook_preset_validates_and_describes_the_exercise():
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    merged = _merge(default, yaml.safe_load((REPO / "config" / "presets" / "textbook.yaml").read_text()))
    jsonschema.validate(merged, SCHEMA)
    sim = from_mapping(SimulationSettings, merged["simulate"])
    assert (sim.n_traces, sim.snr_range, sim.snr_definition) == (50_000, (2.0, 2.0), "trace_rms")
    r = sim.receiver
    assert (r.sampling_rate_hz, r.n_samples, r.n_channels, r.band_hz) == (180e6, 500, 1, (30e6, 80e6))
    assert sim.cw_lines == () and sim.transients == () and sim.galactic_noise
    assert not merged["ingest"]["example_root"]["dataset"]  # two-channel example data stay out
    fractions = merged["dataset"]["fractions"]
    assert [round(f * 50_000) for f in fractions] == [36_000, 4_000, 10_000]
    models = {name: from_mapping(ModelSettings, m) for name, m in merged["models"].items()}
    assert build_classifier((1, 500), models["textbook"]).count_params() == 95_873
    assert merged["training"]["max_time_s"] > 0  # the BiLSTM is slow on CPUs: time-boxed
    block = Simulator(sim, seed=1).block(0, 100)
    assert block.traces.shape == (100, 1, 500)


# -- FLOPs -------------------------------------------------------------------------------------------


def test_flops_of_a_tiny_model_match_a_hand_count():
    m = build_classifier(
        (1, 8), ModelSettings(cell="gru", units=3, conv_filters=2, conv_kernel_size=3, conv_strides=2, whiten=False)
    )
    per = {x.name: x.flops for x in layer_flops(m)}
    # conv_1: 8 steps x (2 x 3 taps x 1 channel x 2 filters + 2 biases) = 8 x 14
    # conv_2: stride 2 -> 4 steps x (2 x 3 x 2 x 2 + 2) = 4 x 26
    # gru_1: 4 steps x (2 x 3 gates x 3 units x (2 in + 3 rec) + 2 x 3 x 3 biases (reset_after)) = 4 x 108
    # score: 2 x 3 + 1
    assert per == {
        "traces": 0,
        "normalise": 0,
        "time_major": 0,
        "conv_1": 112,
        "conv_2": 104,
        "gru_1": 432,
        "max_over_time": 0,
        "dropout": 0,
        "score": 7,
    }
    assert forward_flops(m) == 655
    assert gru_flops(4, 2, 3, reset_after=False) == 4 * (90 + 9)
    assert conv1d_flops(8, 1, 2, 3) == 112
    # bidirectional LSTM, flatten read-out: 2 directions x 5 steps x (2 x 4 x 2 x (1 + 2) + 4 x 2), dense 20 -> 1
    m = build_classifier(
        (1, 5), ModelSettings(cell="lstm", units=2, bidirectional=True, conv_filters=0, readout="flatten", whiten=False)
    )
    assert forward_flops(m) == 2 * 5 * (48 + 8) + 2 * 20 + 1 == 2 * lstm_flops(5, 1, 2) + 41
    assert training_flops(655, 1000, 7) == 3 * 655 * 1000 * 7


def test_textbook_flops_and_the_cli(capsys, tiny_model):
    fwd, total = textbook_training_flops()
    per_step = 2 * (2 * 4 * 32 * 33 + 4 * 32) + 2 * (2 * 4 * 64 * 128 + 4 * 64) + 2 * (2 * 4 * 10 * 138 + 4 * 10)
    assert fwd == 500 * per_step + 2 * 10_000 + 1
    assert total == 3 * fwd * 36_000 * 100
    assert (
        flops_main(
            [
                "--settings",
                json.dumps(TEXTBOOK_MODEL),
                "--input-shape",
                "1",
                "500",
                "--traces",
                "36000",
                "--epochs",
                "100",
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["parameters"] == 95_873 and out["forward_flops_per_trace"] == fwd and out["training_flops"] == total
    assert flops_main(["--model", str(tiny_model)]) == 0  # traces and epochs from the model's card
    text = capsys.readouterr().out
    card = json.loads(card_path(tiny_model).read_text())
    n, e = card["data"]["train"]["n_traces"], card["training"]["epochs_run"]
    assert f"({n:,d} traces x {e} epochs)" in text
    assert flops_main(["--settings", "{}"]) == 2
    assert "--input-shape" in capsys.readouterr().err


def test_accuracy_at_threshold():
    assert accuracy_at(np.array([0.1, 0.6, 0.7, 0.4]), np.array([0, 1, 0, 1])) == 0.5
    assert accuracy_at(np.array([0.1, 0.6]), np.array([0, 1]), threshold=0.7) == 0.5


def test_best_threshold_maximises_accuracy():
    scores = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.9])
    labels = np.array([0, 0, 1, 0, 1, 1])
    t = best_threshold(scores, labels)
    assert accuracy_at(scores, labels, t) == max(accuracy_at(scores, labels, c) for c in scores) == 5 / 6


def test_matched_filter_accuracy_on_exercise_like_data(tmp_path):
    """The comparison's classical reference: at SNR 6 the matched filter separates nearly all traces."""
    from crnn.dataset import build_dataset

    settings = dataclasses.replace(EXERCISE_SIM, n_traces=3000, snr_range=(6.0, 6.0))
    simulate(settings, tmp_path / "sim.h5", seed=4)
    parts = {s: tmp_path / f"{s}.h5" for s in ("train", "val", "test")}
    build_dataset([tmp_path / "sim.h5"], parts, fractions=(0.4, 0.3, 0.3), seed=1)
    (tmp_path / "sim.json").write_text(json.dumps({"simulate": to_mapping(settings)}))
    mf = baseline_accuracy("matched_filter", parts["val"], parts["test"], parts["train"], str(tmp_path / "sim.json"))
    amp = baseline_accuracy("amplitude", parts["val"], parts["test"], parts["train"], str(tmp_path / "sim.json"))
    assert mf["n_test"] == 900 and mf["test_accuracy"] > 0.97 and mf["test_auc"] > 0.99
    assert amp["test_accuracy"] < mf["test_accuracy"]
