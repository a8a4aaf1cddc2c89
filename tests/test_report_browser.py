"""The generated reports in a real browser: headless Chromium, driven by Playwright for Python, opens
them; they load without console errors or failed requests and show every plot. Screenshots go to
``test-artifacts/`` (kept by CI).

Needs Playwright (the test extra) and Debian's ``chromium`` package (``.ci/run`` installs it):
Playwright starts that executable (``executable_path``) and downloads no browser of its own. Skipped,
with the reason, where either is missing. Set ``CRNN_CHROMIUM`` to use another Chromium or Chrome.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO

from crnn.robustness import RobustnessSettings

# one group with the workflow test: both use the session's pipeline_run, which runs once per worker
pytestmark = [pytest.mark.workflow, pytest.mark.slow, pytest.mark.browser, pytest.mark.xdist_group("pipeline")]
ARTIFACTS = REPO / "test-artifacts"
CATEGORIES = ("1. Summary", "2. Comparison", "3. Training", "4. Example traces", "Per method")
PLOT = "#app img[src^='data:image/png']"  # a displayed result (the logo is SVG)
RENDERED = "document.querySelector('#app') !== null && document.querySelector('#app').children.length > 0"

# click the element whose own text is exactly `text` (the innermost one)
CLICK_TEXT = """(() => {
  const hits = [...document.querySelectorAll('#app a, #app li, #app div, #app span, #app td')]
    .filter(e => e.textContent.trim() === %s);
  if (!hits.length) return false;
  hits[hits.length - 1].click();
  return true;
})()"""
# every row of the result table: click its "eye" button, then report what the content area shows
SHOW_EACH_ROW = """(async () => {
  const PLOT = "#app img[src^='data:image/png']";
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  const rows = [...document.querySelectorAll('#app table tr')].filter(r => r.querySelector('a[iconname=eye]'));
  const seen = [];
  for (const row of rows) {
    row.querySelector('a[iconname=eye]').click();
    let shown = null;
    for (let i = 0; i < 50 && !shown; i++) {
      await sleep(100);
      const img = document.querySelector(PLOT);
      const frame = document.querySelector('#app iframe');
      if (img && img.complete && img.naturalWidth > 0) shown = {kind: 'img', width: img.naturalWidth, height: img.naturalHeight};
      else if (frame) shown = {kind: 'iframe', src: frame.src.slice(0, 15)};
    }
    seen.push({label: row.querySelector('td').textContent.trim(), shown});
  }
  return seen;
})()"""
# click a button ("eye": show, "information-circle": caption) in the result row labelled %s
ROW_BUTTON = """(() => {
  const row = [...document.querySelectorAll('#app table tr')]
    .find(r => r.querySelector('td') && r.querySelector('td').textContent.trim() === %s);
  row.querySelector('a[iconname="' + %s + '"]').click();
  return true;
})()"""
# the robustness table of the summary page: is it displayed, which shifts are its rows, cells per row
ROBUSTNESS_TABLE = """(() => {
  const t = document.querySelector('#robustness-table');
  if (!t) return {visible: false, rows: [], cells: []};
  t.scrollIntoView();
  const box = t.getBoundingClientRect();
  const rows = [...t.querySelectorAll('tbody tr')];
  return {visible: box.width > 300 && box.height > 40 && getComputedStyle(t).visibility === 'visible',
          rows: rows.map(r => r.dataset.shift), cells: rows.map(r => r.querySelectorAll('td').length)};
})()"""
# the acquisition and training tables of the summary page: displayed, and their cells' text
FACT_TABLES = """(() => {
  const out = {};
  for (const id of ['acquisition', 'training-facts', 'trigger-rates', 'kind-false-alarms']) {
    const t = document.querySelector('#' + id);
    if (!t) { out[id] = null; continue; }
    const box = t.getBoundingClientRect();
    out[id] = {visible: box.width > 100 && box.height > 40 && getComputedStyle(t).visibility === 'visible',
               head: [...t.querySelectorAll('thead th')].map(c => c.innerText.trim()),
               rows: [...t.querySelectorAll('tbody tr')].map(r => [...r.querySelectorAll('td')].map(c => c.innerText.trim()))};
  }
  return out;
})()"""
# the report's iframe (the summary page): its document's address and its displayed size
IFRAME_SHOWN = """(() => {
  const f = document.querySelector('#app iframe');
  const box = f.getBoundingClientRect();
  return {src: f.src, width: box.width, height: box.height};
})()"""
# all images of a page, once loaded
IMAGES_LOADED = """(async () => {
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  for (let i = 0; i < 100 && (document.readyState !== 'complete' || [...document.images].some(im => !im.complete)); i++)
    await sleep(100);
  return [...document.images].map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 300, w: i.naturalWidth}));
})()"""
# every image of the report decodes (also those in sub-categories that the clicks above skip)
DECODE_ALL = """(async () => {
  const out = {};
  for (const [path, r] of Object.entries(results)) {
    if (r.mime_type !== 'image/png') continue;
    const img = new Image();
    const ok = await new Promise(res => { img.onload = () => res(true); img.onerror = () => res(false); img.src = r.data_uri; });
    out[path] = ok ? img.naturalWidth : 0;
  }
  return out;
})()"""


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--hide-scrollbars",
    "--mute-audio",
]
TIMEOUT_MS = 30_000


def find_chromium() -> str | None:
    """Path of a Chromium executable (``CRNN_CHROMIUM``, else the first on PATH), or None."""
    env = os.environ.get("CRNN_CHROMIUM")
    if env:
        return env if shutil.which(env) or Path(env).exists() else None
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


class Page:
    """One Playwright page that records what went wrong while it was open: uncaught exceptions,
    console errors (Chromium reports a resource it could not load there too) and failed requests."""

    def __init__(self, browser, width: int = 1400, height: int = 950) -> None:
        self.page = browser.new_page(viewport={"width": width, "height": height})
        self.page.set_default_timeout(TIMEOUT_MS)
        self._errors: list[str] = []
        self.page.on("pageerror", lambda exc: self._errors.append(f"exception: {exc}"))
        self.page.on(
            "console",
            lambda msg: (
                self._errors.append(f"console.{msg.type}: {msg.text} {msg.location}")
                if msg.type in ("error", "assert")
                else None
            ),
        )
        self.page.on(
            "requestfailed", lambda req: self._errors.append(f"request failed: {req.url[:100]} ({req.failure})")
        )

    def open(self, url: str) -> None:
        self.page.goto(url, wait_until="load")

    def evaluate(self, expression: str):
        """Value of a JavaScript expression (promises are awaited)."""
        return self.page.evaluate(expression)

    def wait_until(self, expression: str):
        return self.page.wait_for_function(expression).json_value()

    def screenshot(self, path: Path, full_page: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), full_page=full_page)

    def errors(self) -> list[str]:
        return list(self._errors)


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="Playwright for Python not installed "
        "(the test extra: pip install -e '.[test]'): the browser check of the report needs it",
    )
    path = find_chromium()
    if path is None:
        pytest.skip(
            "Chromium not installed (Debian: apt-get install -y chromium; .ci/run installs it; "
            "or set CRNN_CHROMIUM): the browser check of the report needs it"
        )
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


def test_snakemake_report_loads_and_shows_every_plot(chromium, request):
    run = request.getfixturevalue("pipeline_run")  # after the skip check: the pipeline only runs if needed
    browser = Page(chromium)
    browser.open(run["report"].as_uri())
    browser.wait_until(RENDERED)
    assert browser.evaluate("Object.keys(categories)") is not None
    assert set(CATEGORIES) <= set(browser.evaluate("Object.keys(categories)"))
    shown: dict[str, list[dict]] = {}
    for category in CATEGORIES[:4]:
        browser.evaluate("app.setView({navbarMode: 'menu'})")
        assert browser.evaluate(CLICK_TEXT % json.dumps(category)), f"no menu entry {category!r}"
        browser.wait_until("document.querySelector('#app table a[iconname=eye]') !== null")
        shown[category] = browser.evaluate(SHOW_EACH_ROW)
        if category == "2. Comparison":  # the ROC with its caption, as a user sees it
            roc_uri = "results['results/test/report/roc.png'].data_uri"
            browser.evaluate(ROW_BUTTON % (json.dumps("ROC"), json.dumps("eye")))
            browser.wait_until(
                f"document.querySelector({PLOT!r}) && document.querySelector({PLOT!r}).src === {roc_uri}"
            )
            browser.evaluate(ROW_BUTTON % (json.dumps("ROC"), json.dumps("information-circle")))
            browser.wait_until("document.querySelector('#app').innerText.includes('DESCRIPTION')")
            browser.screenshot(ARTIFACTS / "report_roc.png")
        if category == "4. Example traces":  # the first model's gallery
            gallery_uri = "results['results/test/evaluate/gru/gallery.png'].data_uri"
            browser.evaluate(ROW_BUTTON % (json.dumps("gru"), json.dumps("eye")))
            browser.wait_until(f"document.querySelector({PLOT!r}).src === {gallery_uri}")
            browser.screenshot(ARTIFACTS / "report_gallery.png")
    # the summary page inside the report: an iframe whose plots must load too
    browser.evaluate("app.setView({navbarMode: 'menu'})")
    browser.evaluate(CLICK_TEXT % json.dumps("1. Summary"))
    # the summary's own row (the previous category's table may still be on the page for a moment)
    browser.wait_until(
        "[...document.querySelectorAll('#app table tr td:first-child')].some(td => td.textContent.trim() === 'summary page')"
    )
    browser.evaluate(ROW_BUTTON % (json.dumps("summary page"), json.dumps("eye")))
    browser.wait_until("document.querySelector('#app iframe') !== null")
    frame = browser.evaluate(IFRAME_SHOWN)
    browser.screenshot(ARTIFACTS / "report_summary.png")
    # the document that iframe shows, opened on its own page: how Chromium exposes a data: iframe to
    # the driver differs between versions (some report an empty URL), the document itself does not
    summary = Page(chromium)
    summary.open(frame["src"])
    summary_images = summary.evaluate(IMAGES_LOADED)
    decoded = browser.evaluate(DECODE_ALL)
    errors = browser.errors() + summary.errors()
    assert not errors, errors
    assert frame["src"].startswith("data:text/html") and frame["width"] > 300 and frame["height"] > 300, {
        k: (v[:40] if isinstance(v, str) else v) for k, v in frame.items()
    }
    # every plot of the comparison, training and gallery categories is displayed as an image
    for category in CATEGORIES[1:4]:
        assert shown[category], f"{category}: no results listed"
        for item in shown[category]:
            assert item["shown"] and item["shown"]["kind"] == "img" and item["shown"]["width"] > 300, (category, item)
    assert [i["shown"]["kind"] for i in shown["1. Summary"]] == ["iframe"]
    assert len(summary_images) == 7 + 6 and all(i["ok"] for i in summary_images), summary_images
    labels = {i["label"] for i in shown["2. Comparison"]}
    assert {
        "ROC",
        "efficiency vs SNR",
        "score distributions",
        "confusion matrices",
        "efficiency vs arrival time and polarisation",
    } <= labels
    assert len(shown["4. Example traces"]) == 6  # gru, lstm and the four baselines
    assert len(decoded) == 7 + 3 * 6 and all(w > 300 for w in decoded.values()), decoded  # 7 comparison + 3 per method


def test_summary_page_loads_and_shows_every_plot(chromium, request):
    run = request.getfixturevalue("pipeline_run")
    page = run["results"] / "report" / "summary.html"
    browser = Page(chromium, height=1100)
    browser.open(page.as_uri())
    images = browser.evaluate(IMAGES_LOADED)
    text = browser.evaluate("document.body.innerText")
    robustness = browser.evaluate(ROBUSTNESS_TABLE)
    facts = browser.evaluate(FACT_TABLES)
    browser.screenshot(ARTIFACTS / "summary_page.png", full_page=True)
    errors = browser.errors()
    assert not errors, errors
    alts = [i["alt"] for i in images]
    for name in (
        "roc.png",
        "efficiency.png",
        "snr.png",
        "scores.png",
        "confusion.png",
        "training.png",
        "efficiency_arrival_polarisation.png",
    ):
        assert name in alts
    assert alts.count("gallery.png") == 6
    assert all(i["ok"] for i in images), images
    for method in ("gru", "lstm", "amplitude", "envelope", "power", "matched_filter"):
        assert method in text
    assert "How to read" in text and "false alarms on transients" in text.lower()
    # the robustness section: a visible table with a row per shift (and the in-domain split), a cell
    # per method and SNR point plus transients passing, and the caption saying how to read it
    assert "Robustness to other detectors" in text
    assert robustness["visible"], robustness
    assert robustness["rows"] == ["in-domain test split", "band_plus_5mhz", "receiver_300k"], robustness
    n_points = len(RobustnessSettings().snr_points)  # the test config keeps the default SNR points
    assert all(n == 6 * (n_points + 1) + 1 for n in robustness["cells"]), robustness
    assert "own noise-only background" in text and "receiver noise temperature 300 K" in text
    # the acquisition and the training facts, as displayed, match the test split and the model cards
    from crnn.tracefile import TraceFile

    with TraceFile(run["results"] / "dataset" / "test.h5") as tf:
        rate, n, c, unit, band = tf.sampling_rate_hz, tf.n_samples, tf.n_channels, tf.unit, tf.attrs["band_hz"]
    acq = facts["acquisition"]
    assert acq and acq["visible"], facts
    shown = dict(acq["rows"])
    assert shown["band"] == f"{band[0] / 1e6:g}-{band[1] / 1e6:g} MHz"
    assert shown["sampling rate"].startswith(f"{rate / 1e6:g} MHz")
    assert shown["trace length"] == f"{n} samples = {n / rate * 1e9:.0f} ns"
    assert shown["channels"] == str(c) and shown["unit"] == unit
    training = facts["training-facts"]
    assert training and training["visible"], facts
    by_model = {r[0]: dict(zip(training["head"], r, strict=True)) for r in training["rows"]}
    assert set(by_model) == {"gru", "lstm"}
    for name, row in by_model.items():
        card = json.loads((run["results"] / "models" / name / "model.card.json").read_text())
        assert (
            row["training traces (with a pulse)"] == f"{card['data']['train']['n_traces']} "
            f"({card['data']['train']['n_signal']})"
        )
        assert row["epochs run / maximum"] == f"{card['training']['epochs_run']} / {card['training']['epochs']}"
        assert row["stopped by"].startswith("the epoch limit")  # test.yaml: two epochs, far from the time limit
        assert row["training time (s) / limit"].startswith(f"{card['training']['train_time_s']:.0f} / 540")
        assert re.fullmatch(r"0\.\d{4} \([12]\)", row["best validation AUC (epoch)"]), row
    assert facts["trigger-rates"]["visible"] and facts["kind-false-alarms"]["visible"], facts
    assert facts["kind-false-alarms"]["head"] == ["method", "ringing", "pulse train", "burst"]
    assert "MHz" in text and "trial rate" in text
