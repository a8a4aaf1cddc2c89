"""Model builders, gain invariance, saving with a card and safe loading."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from crnn.classifier import load_classifier
from crnn.errors import CrnnError
from crnn.models import ModelSettings, build_classifier


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("readout", ["max", "max_logit", "last", "flatten"])
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


def test_max_logit_readout_scores_the_best_time_step():
    """readout max_logit: a logit per time step, the trace's score the sigmoid of the largest (a
    pulse anywhere decides, whatever the rest of the trace holds)."""
    m = build_classifier((2, 200), ModelSettings(units=6, conv_filters=0, readout="max_logit", dropout=0.0))
    per_step = keras.Model(m.input, m.get_layer("logit_per_step").output)
    x = np.random.default_rng(3).normal(size=(4, 2, 200)).astype("float32")
    logits = per_step.predict(x, verbose=0)[..., 0]
    assert logits.shape == (4, 200) and np.ptp(logits, axis=1).min() > 0
    np.testing.assert_allclose(m.predict(x, verbose=0)[:, 0], 1 / (1 + np.exp(-logits.max(axis=1))), rtol=1e-5)


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
    np.testing.assert_allclose(s_uv, s_v, atol=1e-5)
    # ADC counts: ~10 counts per noise RMS (a typical digitiser) changes little; at ~1 count per
    # noise RMS the rounding adds 8 % to the noise power, which moves a few scores more
    s_adc = clf.predict(np.round(x * 7.3e5), sampling_rate_hz=180e6)
    np.testing.assert_allclose(s_adc, s_v, atol=0.02)
    s_coarse = clf.predict(np.round(x * 7.3e4), sampling_rate_hz=180e6)
    assert np.mean(np.abs(s_coarse - s_v) < 0.05) >= 0.99 and np.abs(s_coarse - s_v).max() < 0.1


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
    with pytest.raises(
        CrnnError, match=r"evil\.keras: refused to load a model that carries arbitrary code.*--trust-model"
    ):
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
    _copy_card_for(path, tiny_model, input_shape=[3, 500], n_channels=3)
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
    path = train(
        parts["train"],
        parts["val"],
        tmp_path / cell,
        model_settings=ModelSettings(cell=cell, units=16),
        training=TrainingSettings(epochs=4, batch_size=64),
        seed=1,
        name=cell,
    )
    assert load_classifier(path).card["metrics"]["val_auc"] > 0.95


def _band_noise(rng, n_traces: int, n_samples: int, fs_hz: float, order: int) -> np.ndarray:
    from scipy import signal

    sos = signal.butter(order, [30e6, 80e6], btype="band", fs=fs_hz, output="sos")
    return signal.sosfilt(sos, rng.normal(size=(n_traces, 2, n_samples)), axis=-1)


def test_spectral_whitening_flattens_the_band_and_cuts_cw_lines():
    from crnn.models import SpectralWhitening

    rng = np.random.default_rng(3)
    fs_hz, n = 180e6, 500
    freq = np.fft.rfftfreq(n, 1 / fs_hz)
    x = _band_noise(rng, 256, n, fs_hz, order=4)
    # a sloped sky: the low end 10 dB louder than the high end, and a CW line 20 dB over the noise
    x = np.fft.irfft(np.fft.rfft(x, axis=-1) * np.interp(freq, [30e6, 80e6], [3.16, 1.0]), n, axis=-1)
    cw_hz = freq[np.argmin(np.abs(freq - 58.5e6))]
    x += 10.0 * x.std() * np.sin(2 * np.pi * cw_hz * np.arange(n) / fs_hz)
    before = (np.abs(np.fft.rfft(x, axis=-1)) ** 2).mean(axis=(0, 1))
    y = np.asarray(SpectralWhitening()(x.astype("float32")))
    after = (np.abs(np.fft.rfft(y, axis=-1)) ** 2).mean(axis=(0, 1))
    band = (freq > 36e6) & (freq < 74e6) & (np.abs(freq - cw_hz) > 3e6)
    cw = np.argmin(np.abs(freq - cw_hz))
    assert before[band].max() / before[band].min() > 5.0
    assert after[band].max() / after[band].min() < 1.6  # flat within 2 dB
    # a line 30 dB over the noise ends at most smooth_bins (9) times the whitened background
    assert before[cw] / np.median(before[band]) > 1000.0
    assert after[cw] / np.median(after[band]) < 9.5
    # out of band (below 15 MHz, where a 4th-order band-pass leaves > 20 dB less) stays below the band
    assert after[freq < 15e6].mean() < 0.3 * after[band].mean()


def test_spectral_whitening_keeps_a_pulse_where_it_is():
    from crnn.models import SpectralWhitening

    rng = np.random.default_rng(4)
    x = _band_noise(rng, 64, 500, 180e6, order=6)
    x /= x.std()
    pulse = np.zeros(500)
    pulse[300] = 1.0
    pulse = np.fft.irfft(np.fft.rfft(pulse) * (np.abs(np.fft.rfftfreq(500, 1 / 180e6) - 55e6) < 25e6), 500)
    x[:, 0] += 12.0 * pulse / np.abs(pulse).max()
    y = np.asarray(SpectralWhitening()(x.astype("float32")))
    envelope = np.abs(y[:, 0])
    assert np.all(np.abs(np.argmax(envelope, axis=-1) - 300) <= 3)


def test_band_limited_whitening_keeps_only_the_band():
    from crnn.models import SpectralWhitening

    rng = np.random.default_rng(6)
    fs_hz, n = 180e6, 500
    freq = np.fft.rfftfreq(n, 1 / fs_hz)
    x = rng.normal(size=(64, 2, n)).astype("float32")  # white: every bin equal before
    y = np.asarray(SpectralWhitening(band=(30e6 / fs_hz, 80e6 / fs_hz))(x))
    power = (np.abs(np.fft.rfft(y, axis=-1)) ** 2).mean(axis=(0, 1))
    inside, outside = (freq > 35e6) & (freq < 75e6), (freq < 25e6) | (freq > 85e6)
    assert power[outside].max() < 1e-6 * power[inside].mean()
    assert power[inside].max() / power[inside].min() < 1.6


def test_whitening_models_round_trip(tmp_path):
    import keras

    settings = ModelSettings(whiten=True, units=8, conv_filters=4)
    model = build_classifier((2, 500), settings)
    assert model.get_layer("whiten") is not None
    x = np.random.default_rng(5).normal(size=(8, 2, 500)).astype("float32")
    path = tmp_path / "w.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_robust_normalisation_ignores_a_transient_that_rms_follows():
    from crnn.models import TraceNormalization

    rng = np.random.default_rng(7)
    noise = rng.normal(size=(32, 2, 500)).astype("float32")
    loud = noise.copy()
    loud[:, :, 100:160] += 10.0 * rng.normal(size=(32, 2, 60)).astype("float32")  # a burst in 1 of 8 segments
    quiet = slice(300, 500)  # the part of the trace the burst leaves alone
    for method, lo, hi in (("rms", 0.2, 0.4), ("robust", 0.9, 1.1)):
        layer = TraceNormalization(method=method)
        assert np.std(np.asarray(layer(noise))) == pytest.approx(1.0, abs=0.05)
        # the noise beside the burst keeps its unit scale only with the robust estimate
        assert lo < np.std(np.asarray(layer(loud))[:, :, quiet]) < hi, method


def test_median_spectrum_whitening_is_not_pulled_down_by_a_transient():
    from crnn.models import SpectralWhitening

    rng = np.random.default_rng(8)
    x = _band_noise(rng, 64, 500, 180e6, order=6)
    x /= x.std()
    burst = x.copy()
    burst[:, :, 60:120] += 8.0 * _band_noise(rng, 64, 60, 180e6, order=2)[:, :, :60] / x.std()
    quiet = slice(250, 500)
    gains = {}
    for estimate in ("periodogram", "median"):
        layer = SpectralWhitening(estimate=estimate)
        ref = np.std(np.asarray(layer(x.astype("float32")))[:, :, quiet])
        gains[estimate] = np.std(np.asarray(layer(burst.astype("float32")))[:, :, quiet]) / ref
    # the whole-trace periodogram takes the burst's power as background and shrinks the rest
    assert gains["periodogram"] < 0.6
    assert 0.8 < gains["median"] < 1.2


@pytest.mark.parametrize("estimate", ["periodogram", "median"])
def test_median_whitening_flattens_a_coloured_band(estimate):
    from crnn.models import SpectralWhitening

    rng = np.random.default_rng(9)
    fs_hz, n = 180e6, 500
    freq = np.fft.rfftfreq(n, 1 / fs_hz)
    x = _band_noise(rng, 256, n, fs_hz, order=4)
    x = np.fft.irfft(np.fft.rfft(x, axis=-1) * np.interp(freq, [30e6, 80e6], [3.16, 1.0]), n, axis=-1)
    after = np.abs(np.fft.rfft(np.asarray(SpectralWhitening(estimate=estimate)(x.astype("float32"))), axis=-1)) ** 2
    band = (freq > 36e6) & (freq < 74e6)
    profile = after.mean(axis=(0, 1))[band]
    assert profile.max() / profile.min() < 1.6


def test_robust_models_round_trip(tmp_path):
    import keras

    settings = ModelSettings(
        whiten=True, units=8, conv_filters=4, normalise="robust", whiten_estimate="median", whiten_segment_samples=128
    )
    model = build_classifier((2, 500), settings)
    assert model.get_layer("normalise").method == "robust"
    x = np.random.default_rng(5).normal(size=(8, 2, 500)).astype("float32")
    path = tmp_path / "r.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    assert again.get_layer("whiten").estimate == "median"
    assert again.get_layer("whiten").segment_samples == 128
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
