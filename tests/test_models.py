"""Model builders, gain invariance, saving with a card and safe loading."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from crnn.classifier import load_classifier
from crnn.errors import CrnnError
from crnn.models import ModelSettings, build_classifier


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("readout", ["max", "last", "flatten"])
def test_builders_return_functional_models(cell, readout):
    m = build_classifier((2, 500), ModelSettings(cell=cell, units=8, conv_filters=4, readout=readout))
    assert isinstance(m, keras.Model) and m.input_shape == (None, 2, 500) and m.output_shape == (None, 1)
    assert any(layer.name.startswith(cell) for layer in m.layers)
    y = m.predict(np.random.default_rng(0).normal(size=(3, 2, 500)).astype("float32"), verbose=0)
    assert y.shape == (3, 1) and np.all((y >= 0) & (y <= 1))


def test_rnn_layers_keep_cudnn_compatible_settings():
    m = build_classifier((2, 500), ModelSettings(cell="lstm", units=8, bidirectional=True))
    rnns = [layer.forward_layer if hasattr(layer, "forward_layer") else layer for layer in m.layers]
    rnns = [r for r in rnns if isinstance(r, (keras.layers.GRU, keras.layers.LSTM))]
    assert rnns
    for r in rnns:
        assert r.activation is keras.activations.tanh and r.recurrent_activation is keras.activations.sigmoid
        assert r.recurrent_dropout == 0 and not r.unroll and r.use_bias


def test_flatten_readout_sees_every_step_of_the_last_layer():
    m = build_classifier((1, 100), ModelSettings(units=(6, 3), conv_filters=0, readout="flatten", dropout=0.0))
    assert tuple(m.get_layer("flatten").output.shape) == (None, 100 * 3)
    assert m.get_layer("score").kernel.shape == (300, 1)


def test_no_front_end_keeps_the_full_sequence():
    m = build_classifier((1, 100), ModelSettings(units=4, conv_filters=0))
    gru = next(layer for layer in m.layers if isinstance(layer, keras.layers.GRU))
    assert gru.output.shape[1] == 100


def test_scores_do_not_depend_on_gain_or_unit(tiny_model, splits):
    from crnn.tracefile import read_traces

    clf = load_classifier(tiny_model)
    x = read_traces(splits["test"]).traces[:200]
    s_v = clf.predict(x, sampling_rate_hz=180e6)
    s_uv = clf.predict(x * 1e6, sampling_rate_hz=180e6)
    s_adc = clf.predict(np.round(x * 7.3e4), sampling_rate_hz=180e6)  # ~0.1 mV per count
    np.testing.assert_allclose(s_uv, s_v, atol=1e-5)
    np.testing.assert_allclose(s_adc, s_v, atol=0.05)


def test_saved_model_round_trip_and_card(tiny_model, splits):
    from crnn.modelcard import card_path
    from crnn.tracefile import read_traces

    clf = load_classifier(tiny_model)
    card = clf.card
    assert card_path(tiny_model).exists()
    assert card["input_shape"] == [2, 500] and card["sampling_rate_hz"] == 180e6
    assert card["band_hz"] == [30e6, 80e6]
    assert len(card["data"]["train"]["sha256"]) == 64
    assert card["working_point"]["target_fpr"] == 1e-3 and 0 <= card["working_point"]["threshold"] <= 1
    x = read_traces(splits["test"]).traces[:64]
    direct = clf.model.predict(x, verbose=0).reshape(-1)
    again = load_classifier(tiny_model.parent).predict(x, sampling_rate_hz=180e6)
    np.testing.assert_allclose(again, direct, rtol=1e-6)


def _copy_card_for(model_path, tiny_model, **changes):
    import json

    from crnn.modelcard import card_path, file_sha256

    card = json.loads(card_path(tiny_model).read_text())
    card["model_sha256"] = file_sha256(model_path)
    card.update(changes)
    card_path(model_path).write_text(json.dumps(card))


def test_lambda_layers_are_refused_in_safe_mode(tmp_path, tiny_model):
    inputs = keras.Input((2, 500))
    outputs = keras.layers.Dense(1)(keras.layers.Lambda(lambda t: t * 2)(keras.layers.Flatten()(inputs)))
    path = tmp_path / "evil.keras"
    keras.Model(inputs, outputs).save(path)
    _copy_card_for(path, tiny_model)
    with pytest.raises(CrnnError, match=r"evil\.keras: refused to load a model that carries arbitrary code.*--trust-model"):
        load_classifier(path)
    assert load_classifier(path, safe_mode=False).model.output_shape == (None, 1)


def test_a_model_must_match_its_card(tmp_path, tiny_model):
    import shutil

    from crnn.modelcard import card_path

    other = build_classifier((2, 500), ModelSettings(units=4, conv_filters=4))
    path = tmp_path / "model.keras"
    other.save(path)
    shutil.copy(card_path(tiny_model), card_path(path))  # the card of another model file
    with pytest.raises(CrnnError, match="does not match its card"):
        load_classifier(path)
    card_path(path).unlink()
    with pytest.raises(CrnnError, match=r"model\.card\.json: model card not found"):
        load_classifier(path)
    _copy_card_for(path, tiny_model, input_shape=[3, 500])
    with pytest.raises(CrnnError, match=r"takes input \[2, 500\], but its card says \[3, 500\]"):
        load_classifier(path)


def test_incompatible_traces_are_refused_with_what_the_model_expects(tiny_model):
    clf = load_classifier(tiny_model)
    with pytest.raises(CrnnError, match=r"trained on 1.8e\+08 Hz traces"):
        clf.predict(np.ones((2, 2, 600), np.float32), sampling_rate_hz=200e6, resample=False)
    with pytest.raises(CrnnError, match=r"3 channel\(s\), but model model.keras expects 2"):
        clf.predict(np.ones((2, 3, 500), np.float32), sampling_rate_hz=180e6)
    with pytest.raises(CrnnError, match=r"400 samples, but model model.keras expects at least 500"):
        clf.predict(np.ones((2, 2, 400), np.float32), sampling_rate_hz=180e6)
    with pytest.raises(CrnnError, match=r"500 samples \(450 after resampling to 1.8e\+08 Hz\)"):
        clf.predict(np.ones((2, 2, 500), np.float32), sampling_rate_hz=200e6)
    with pytest.raises(CrnnError, match=r"unknown unit 'furlong'"):
        clf.predict(np.ones((2, 2, 500), np.float32), sampling_rate_hz=180e6, unit="furlong")
    padded = clf.predict(np.random.default_rng(0).normal(size=(2, 2, 400)), sampling_rate_hz=180e6, pad=True)
    assert padded.shape == (2,)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_training_learns_clear_pulses(tmp_path, cell):
    """Bright pulses (SNR 6-10) in the default noise: two short epochs must separate them well."""
    from crnn.dataset import build_dataset
    from crnn.simulate import SimulationSettings, simulate
    from crnn.train import TrainingSettings, train

    simulate(SimulationSettings(n_traces=4000, snr_range=(6.0, 10.0)), tmp_path / "sim.h5", seed=21)
    parts = {s: tmp_path / f"{s}.h5" for s in ("train", "val", "test")}
    build_dataset([tmp_path / "sim.h5"], parts, fractions=(0.7, 0.15, 0.15), seed=1)
    path = train(parts["train"], parts["val"], tmp_path / cell, model_settings=ModelSettings(cell=cell, units=16),
                 training=TrainingSettings(epochs=4, batch_size=64), seed=1, name=cell)
    assert load_classifier(path).card["metrics"]["val_auc"] > 0.95
