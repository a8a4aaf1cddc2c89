"""What the summary page states for a physicist (issue 16, item 9), on small hand-made files: the
acquisition, each model's training, trigger rates in Hz, false alarms per kind of transient,
efficiency against arrival time and polarisation, the headline's choice of network, the matched
filter's gallery; and the report's log lines (item 6). No pipeline run: the metrics come from
crnn.metrics on scores whose outcome is known by construction."""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import re

import h5py
import numpy as np
import pytest
from conftest import run_crnn
from PIL import Image

from crnn import report as report_mod
from crnn.metrics import (
    binned_efficiency,
    false_alarms_by_kind,
    operating_point,
    summarise,
    threshold_at_fpr,
    trigger_rate_hz,
)
from crnn.runfacts import stop_reason, training_facts
from crnn.tracefile import TraceSet, write_traces

RATE, N_SAMPLES, FPR = 180e6, 64, 0.01
EDGES = np.arange(2.0, 10.01, 1.0)


# -- the computations alone ------------------------------------------------------------------------
def test_binned_efficiency_counts_each_bin_and_leaves_nan_out():
    values = np.array([0.5, 1.5, 1.7, 2.5, np.nan, 9.0])
    passed = np.array([True, False, True, True, True, True])
    e = binned_efficiency(values, passed, [0, 1, 2, 3, 4])
    assert e["n"] == [1, 2, 1, 0] and e["passed"] == [1, 1, 1, 0]
    assert e["efficiency"][:3] == [1.0, 0.5, 1.0] and e["efficiency"][3] is None
    assert e["lower"][1] < 0.5 < e["upper"][1]


def test_false_alarms_by_kind_merges_codes_of_one_name():
    scores = np.array([0.9, 0.1, 0.8, 0.7, 0.2, 0.95])
    labels = np.array([0, 0, 0, 0, 0, 1])
    kind = np.array([0, 0, 1, 2, 2, 0])  # codes 1 and 2 both "ringing" (two source files)
    fa = false_alarms_by_kind(scores, labels, kind, {0: "burst", 1: "ringing", 2: "ringing"}, threshold=0.5)
    assert fa["burst"]["false_positives"] == 1 and fa["burst"]["n"] == 2  # the signal trace does not count
    assert fa["ringing"]["false_positives"] == 2 and fa["ringing"]["n"] == 3


def test_trigger_rate_is_fpr_times_trial_rate():
    t = trigger_rate_hz({"fpr": 0.002, "fpr_interval": [0.001, 0.004]}, 5e4)
    assert math.isclose(t["rate_hz"], 100.0) and np.allclose(t["interval_hz"], [50.0, 200.0])


def _hist(val_loss, val_auc):
    return {"epoch": list(range(1, len(val_loss) + 1)), "val_loss": val_loss, "val_auc": val_auc}


def test_stop_reason_from_card_and_history():
    base = {"epochs": 10, "early_stopping_patience": 2, "max_time_s": 540.0}
    assert stop_reason({**base, "epochs_run": 10}, _hist([1.0] * 10, [0.5] * 10)) == "max_epochs"
    assert stop_reason({**base, "epochs_run": 4}, _hist([0.6, 0.5, 0.55, 0.52], [0.7] * 4)) == "early_stopping"
    assert stop_reason({**base, "epochs_run": 4}, _hist([0.6, 0.5, 0.45, 0.52], [0.7] * 4)) == "time_limit"
    assert (
        stop_reason({**base, "max_time_s": 0, "epochs_run": 4}, _hist([0.6, 0.5, 0.45, 0.52], [0.7] * 4)) == "unknown"
    )
    assert stop_reason({**base, "epochs_run": 4, "stopped_by": "early_stopping"}, {}) == "early_stopping"


def test_training_facts_flag_a_rising_auc_and_time_over_the_limit():
    card = {
        "training": {
            "epochs": 15,
            "epochs_run": 6,
            "early_stopping_patience": 4,
            "max_time_s": 540.0,
            "train_time_s": 570.6,
        },
        "data": {"train": {"n_traces": 1000, "n_signal": 500}, "val": {"n_traces": 200}},
        "metrics": {"val_auc": 0.91},
    }
    f = training_facts(card, _hist([0.6, 0.5, 0.45, 0.44, 0.43, 0.42], [0.8, 0.85, 0.87, 0.88, 0.9, 0.92]))
    assert f["stopped_by"] == "time_limit" and f["val_auc_rising_at_end"]
    assert f["best_val_auc"] == 0.92 and f["best_val_auc_epoch"] == 6
    assert math.isclose(f["over_time_limit_s"], 30.6) and f["n_train"] == 1000


# -- a whole report on hand-made files -------------------------------------------------------------
def _scores(rng, labels, snr, kind, *, noise_hi, ringing, other_hi):
    """Signal: snr / 10; noise-only background uniform(0, noise_hi); ringing uniform(*ringing);
    other transients uniform(0, other_hi)."""
    s = np.where(labels == 1, snr / 10, 0.0)
    bg = labels == 0
    s[bg & (kind == 0)] = rng.uniform(0, noise_hi, np.sum(bg & (kind == 0)))
    s[bg & (kind == 1)] = rng.uniform(*ringing, np.sum(bg & (kind == 1)))
    s[bg & (kind > 1)] = rng.uniform(0, other_hi, np.sum(bg & (kind > 1)))
    return s


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("facts")
    rng = np.random.default_rng(5)
    n_sig, kinds = 200, np.repeat([0, 1, 2, 3], [100, 40, 30, 30])  # background: noise, ringing, pulse train, burst
    labels = np.r_[np.ones(n_sig, int), np.zeros(len(kinds), int)]
    kind = np.r_[np.zeros(n_sig, int), kinds].astype(np.int8)
    snr = np.r_[rng.uniform(2, 10, n_sig), np.zeros(len(kinds))].astype(np.float32)
    n = len(labels)
    duration_ns = N_SAMPLES / RATE * 1e9
    t = np.r_[rng.uniform(0.1, 0.9, n_sig) * duration_ns * 1e-9, np.full(len(kinds), np.nan)].astype(np.float32)
    pol = np.r_[rng.uniform(-np.pi, np.pi, n_sig), np.full(len(kinds), np.nan)].astype(np.float32)
    # two sources: the simulation (kinds none, ringing, pulse_train, burst) and one whose code 1 is a burst
    src = np.zeros(n, np.int16)
    src[-5:] = 1  # the last five bursts come from the second file, as code 1
    kind[-5:] = 1
    sources = []
    for i, names in enumerate((["none", "ringing", "pulse_train", "burst"], ["none", "burst"])):
        sources.append(d / f"source{i}.h5")
        with h5py.File(sources[-1], "w") as f:
            f.attrs["transient_kinds"] = names
    meta = {
        "labels": labels.astype(np.int8),
        "snr": snr,
        "has_transient": (kind > 0).astype(np.int8),
        "transient_kind": kind,
        "source_id": src,
        "pulse_time_s": t,
        "polarisation_angle_rad": pol,
    }
    traces = rng.normal(size=(n, 2, N_SAMPLES)).astype(np.float32)
    test = write_traces(
        d / "test.h5",
        TraceSet(traces, RATE, "V", meta),
        attrs={"split": "test", "band_hz": [30e6, 80e6], "source_files": json.dumps([str(p) for p in sources])},
    )
    named_kind = np.where(src == 1, 3, kind)  # the kind codes of the first source, for the expectations below
    methods = {
        # alpha: the best TPR on all background (ringing below 0.9), poor in noise only (noise up to 0.5)
        "alpha": ("model", _scores(rng, labels, snr, named_kind, noise_hi=0.5, ringing=(0.7, 0.9), other_hi=0.3)),
        # beta: worse on all background (ringing up to 0.98), better in noise only (noise below 0.1)
        "beta": ("model", _scores(rng, labels, snr, named_kind, noise_hi=0.1, ringing=(0.9, 0.98), other_hi=0.3)),
        "amplitude": (
            "baseline",
            _scores(rng, labels, snr, named_kind, noise_hi=0.4, ringing=(0.5, 0.6), other_hi=0.8),
        ),
        "matched_filter": (
            "baseline",
            _scores(rng, labels, snr, named_kind, noise_hi=0.3, ringing=(0.5, 0.95), other_hi=0.3),
        ),
    }
    paths = []
    for i, (name, (kind_m, s)) in enumerate(methods.items()):
        out = d / name
        out.mkdir()
        m = summarise(s, labels, snr, fprs=(FPR,), snr_edges=EDGES, has_transient=(kind > 0).astype(int), n_bootstrap=0)
        thr = threshold_at_fpr(s[labels == 0], FPR)
        wp = operating_point(s, labels, snr, thr, EDGES, target_fpr=FPR, has_transient=(kind > 0).astype(int))
        m = {
            "format": "crnn-metrics/1",
            "method": name,
            "kind": kind_m,
            "test_file": str(test),
            "score_meaning": "score",
            **m,
            "report_working_point": {**wp, "note": "threshold set on the test background"},
        }
        (out / "metrics.json").write_text(json.dumps(m))
        with h5py.File(out / "scores.h5", "w") as f:
            for k, v in (
                ("scores", s),
                ("labels", labels),
                ("snr", snr),
                ("has_transient", (kind > 0).astype(np.int8)),
            ):
                f.create_dataset(k, data=v)
        # galleries of known sizes: noise, so that PNG cannot compress them
        Image.fromarray(rng.integers(0, 255, (150, 300 + 10 * i), dtype=np.uint8)).save(out / "gallery.png")
        paths.append(out / "metrics.json")
    cards, histories = [], []
    for name, (run_, stop_loss) in {
        "alpha": (6, [0.6, 0.5, 0.45, 0.44, 0.43, 0.42]),
        "beta": (6, [0.6, 0.4, 0.45, 0.46, 0.47, 0.48]),
    }.items():
        card = {
            "name": name,
            "sampling_rate_hz": RATE,
            "n_samples": N_SAMPLES,
            "n_channels": 2,
            "training": {
                "epochs": 15,
                "epochs_run": run_,
                "early_stopping_patience": 4,
                "max_time_s": 540.0,
                "train_time_s": 570.6 if name == "alpha" else 300.2,
            },
            "data": {"train": {"n_traces": 12345, "n_signal": 6170}, "val": {"n_traces": 2500}},
            "metrics": {"val_auc": 0.9},
        }
        (d / name / "model.card.json").write_text(json.dumps(card))
        cards.append(d / name / "model.card.json")
        with open(d / name / "history.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["epoch", "loss", "val_loss", "val_auc"])
            for e, loss in enumerate(stop_loss, 1):
                w.writerow([e, loss + 0.05, loss, 0.8 + 0.01 * e])
        histories.append(d / name / "history.csv")
    return {
        "dir": d,
        "metrics": paths,
        "cards": cards,
        "histories": histories,
        "test": test,
        "methods": methods,
        "labels": labels,
        "kind": named_kind,
    }


def _report(run, out, **kw):
    page = report_mod.report(
        run["metrics"], out, histories=run["histories"], cards=run["cards"], dataset=[run["test"]], **kw
    )
    return page, json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def default_report(run, tmp_path_factory):
    """The report with the default settings, once for the tests below."""
    out = tmp_path_factory.mktemp("default")
    page, summary = _report(run, out)
    return out, page, summary


def _text(page):
    return re.sub(r"<[^>]+>", " ", re.sub(r'data:[^"]+', "", page.read_text()))


def test_report_states_acquisition_training_rates_and_false_alarms_per_kind(run, tmp_path):
    page, summary = _report(run, tmp_path / "r", settings=report_mod.ReportSettings(trial_rate_hz=1000.0))
    text = _text(page)
    # acquisition, in MHz and ns
    assert summary["acquisition"]["n_samples"] == N_SAMPLES and summary["acquisition"]["band_hz"] == [30e6, 80e6]
    for s in ("30-80 MHz", "180 MHz", f"{N_SAMPLES} samples = 356 ns"):
        assert s in text, s
    rows = {r["method"]: r for r in summary["rows"]}
    # training facts: alpha was cut by the time limit (30.6 s over), beta by early stopping
    assert rows["alpha"]["training"]["stopped_by"] == "time_limit"
    assert rows["beta"]["training"]["stopped_by"] == "early_stopping"
    assert "12345" in text and "the time limit" in text and "early stopping" in text and "31 s over" in text
    # trigger rates: achieved FPR x trial rate
    for name, r in rows.items():
        m = json.loads((run["dir"] / name / "metrics.json").read_text())
        assert math.isclose(r["trigger_rate_hz_at_fpr_0.01"], m["working_points"][0]["fpr"] * 1000.0)
    # false alarms per kind, counted here from the scores and the kind each trace was given
    labels, kind = run["labels"], run["kind"]
    assert summary["transient_kinds"] == ["ringing", "pulse_train", "burst"]
    for name, (_, s) in run["methods"].items():
        thr = json.loads((run["dir"] / name / "metrics.json").read_text())["report_working_point"]["threshold"]
        for code, k in ((1, "ringing"), (2, "pulse_train"), (3, "burst")):
            mask = (labels == 0) & (kind == code)
            got = rows[name][f"false_alarms_{k}_at_fpr_0.01"]
            assert got["n"] == mask.sum() and got["false_positives"] == int(np.sum(s[mask] > thr)), (name, k)
    # alpha's two allowed false alarms (2 of 200 background) are both ringing by construction
    assert rows["alpha"]["false_alarms_ringing_at_fpr_0.01"]["false_positives"] == 2
    assert "pulse train" in text
    # efficiency vs arrival time and polarisation: every pulse in one bin, as many passed as scored above
    eff = summary["efficiency_by_pulse"]
    for name in run["methods"]:
        assert sum(eff["time_ns"][name]["n"]) == sum(eff["polarisation_deg"][name]["n"]) == 200
        thr = json.loads((run["dir"] / name / "metrics.json").read_text())["report_working_point"]["threshold"]
        assert sum(eff["time_ns"][name]["passed"]) == int(np.sum(run["methods"][name][1][labels == 1] > thr))
    assert (tmp_path / "r" / "efficiency_arrival_polarisation.png").stat().st_size > 10_000


def test_default_trial_rate_is_continuous_back_to_back_traces(default_report):
    _, _, summary = default_report
    assert math.isclose(summary["trial_rate_hz"], RATE / N_SAMPLES)


def test_headline_names_the_best_network_by_its_figure_and_the_better_noise_only_network(default_report):
    _, page, summary = default_report
    rows = {r["method"]: r for r in summary["rows"]}
    # by construction alpha detects more on all background, beta needs less SNR in noise only
    assert rows["alpha"]["tpr_at_fpr_0.01"] > rows["beta"]["tpr_at_fpr_0.01"]
    key = "noise_snr50_ratio_to_matched_filter_at_fpr_0.01"
    assert rows["beta"][key] < rows["alpha"][key]
    lead = re.search(r"<p class='lead'>(.*?)</p>", page.read_text()).group(1)
    assert "the network that detects the most pulses, <b>alpha</b>" in lead
    assert "another network is better: <b>beta</b>" in lead


def test_matched_filters_gallery_comes_before_other_baselines(default_report):
    summaries = re.findall(r"<details[^>]*><summary>([^<]+)</summary>", default_report[1].read_text())
    assert summaries[:3] == ["alpha", "beta", "matched_filter"] and len(summaries) == len(set(summaries)) >= 4


def test_galleries_are_scaled_down_to_keep_the_page_under_the_data_url_limit(run, monkeypatch):
    # the Snakemake report shows the page as a base64 data URL: a third larger, and Chromium refuses 2 MiB
    assert report_mod.MAX_PAGE_BYTES * 4 / 3 < 2 * 2**20
    monkeypatch.setattr(report_mod, "MIN_GALLERY_WIDTH_PX", 120)  # the test's galleries are small
    galleries = [(n, run["dir"] / n / "gallery.png") for n in run["methods"]]
    full = report_mod._gallery_html(galleries, 10**9)
    widths_full = _gallery_widths(full)
    assert list(widths_full) == list(run["methods"]) and "reduced resolution" not in full
    room = len(full.encode()) * 2 // 3  # a third less room than the galleries need at full size
    html = report_mod._gallery_html(galleries, room)
    assert len(html.encode()) <= room
    widths = _gallery_widths(html)
    assert list(widths) == list(widths_full)  # every gallery still shown, in the same order
    assert all(widths[n] < widths_full[n] for n in widths) and min(widths.values()) >= report_mod.MIN_GALLERY_WIDTH_PX
    assert "shown at reduced resolution" in html and "left out" not in html
    # with room for almost nothing, the galleries are left out, and the page says where they are
    html = report_mod._gallery_html(galleries, 5_000)
    assert len(html.encode()) <= 5_000 and "are left out" in html and "gallery.png" in html
    assert not _gallery_widths(html)


def _gallery_widths(page: str) -> dict[str, int]:
    out = {}
    for name, data in re.findall(
        r"<summary>([^<]+)</summary><figure><img src=\"data:image/png;base64,([^\"]+)\"", page
    ):
        with Image.open(io.BytesIO(base64.b64decode(data))) as im:
            out[name] = im.size[0]
    return out


def test_report_logs_readable_lines_and_where_the_page_is(run, tmp_path):
    proc = run_crnn(
        "report",
        "--metrics",
        *run["metrics"],
        "--card",
        *run["cards"],
        "--history",
        *run["histories"],
        "--dataset",
        run["test"],
        "--trial-rate-hz",
        "2000",
        "-o",
        tmp_path / "r",
    )
    assert "{'" not in proc.stderr  # no raw Python dicts
    assert re.search(r"alpha \(model\): AUC 0\.\d{4}; at FPR 0\.01: TPR 0\.\d{3}", proc.stderr), proc.stderr
    assert "trigger rate" in proc.stderr and "at 2 kHz trials" in proc.stderr
    assert "acquisition: band 30-80 MHz; sampling rate 180 MHz" in proc.stderr
    assert "training of alpha: 12345 training traces, 6 of 15 epochs, stopped by the time limit" in proc.stderr
    assert f"summary page: {(tmp_path / 'r' / 'summary.html').resolve()}" in proc.stderr


def test_report_refuses_a_trial_rate_that_is_not_positive(run, tmp_path):
    proc = run_crnn("report", "--metrics", *run["metrics"], "--trial-rate-hz", "-5", "-o", tmp_path / "r", check=False)
    assert proc.returncode == 2
    assert "--trial-rate-hz" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
