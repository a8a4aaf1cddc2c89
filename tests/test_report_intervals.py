"""`crnn report` copes with bootstrap intervals that exclude their estimate, NaN values and empty
SNR bins (issue 15, item 3): plots and tables are written, nothing crashes."""

from __future__ import annotations

import json
import math
import re

from conftest import REPO, run_crnn


def _awkward_metrics(path):
    """Real metrics of `crnn evaluate`, then the values a resumed or small run can give."""
    m = json.loads(path.read_text())
    for key in ("working_points", "working_points_noise"):
        for wp in m.get(key, []):
            if not wp.get("available"):
                continue
            wp["snr_50"] = 7.25
            wp["snr_50_interval"] = [4.69, 6.85]  # seen in a real run: the estimate lies above its interval
            wp["snr_90"] = 9.0
            wp["snr_90_interval"] = [9.5, float("nan")]  # estimate below its interval, upper end unknown
            wp["tpr_bootstrap_interval"] = [float("nan"), float("nan")]
            e = wp["efficiency_vs_snr"]
            e["n"][0], e["passed"][0] = 0, 0  # an empty bin
            e["efficiency"][0], e["lower"][0], e["upper"][0] = None, None, None
            e["efficiency"][1], e["lower"][1], e["upper"][1] = float("nan"), float("nan"), float("nan")
    m["auc_interval"] = [float("nan"), m["auc"] + 0.01]
    path.write_text(json.dumps(m))


def test_report_with_intervals_that_exclude_the_estimate(tmp_path):
    ev = tmp_path / "amplitude"
    run_crnn(
        "evaluate",
        "--baseline",
        "amplitude",
        "--test",
        REPO / "data" / "example_traces.h5",
        "-o",
        ev,
        "--n-bootstrap",
        "20",
    )
    _awkward_metrics(ev / "metrics.json")
    proc = run_crnn("report", "--metrics", ev / "metrics.json", "-o", tmp_path / "report", check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for name in ("snr.png", "efficiency.png", "roc.png", "summary.html", "summary.json"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    text = re.sub(r'data:[^"]+', "", (tmp_path / "report" / "summary.html").read_text())  # without the images
    assert '7.25 <span class="ci">[4.69, 6.85]</span>' in text
    assert not re.search(r"(?i)\bnan\b", text)
    row = json.loads((tmp_path / "report" / "summary.json").read_text())["rows"][0]
    assert any(math.isclose(v, 7.25) for k, v in row.items() if k.startswith("snr50_at") and isinstance(v, float))
