"""Helpers shared by the suites: machine description, statistics, subprocess timing, tables."""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cores() -> int:
    """CPU cores this process may use (the affinity mask where there is one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def gpus() -> list[str]:
    """GPU names from nvidia-smi (empty without one)."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        # changes to the code that is timed (not to docs or results) mark the commit
        dirty = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                "crnn",
                "benchmarks/*.py",
                "config",
                "workflow",
                "Snakefile",
                "pyproject.toml",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return out + ("+changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def keras_backend() -> str:
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def machine() -> dict[str, Any]:
    backend = keras_backend()
    versions = {"python": platform.python_version(), "keras": _version("keras"), "numpy": _version("numpy")}
    if backend == "tensorflow":
        versions["tensorflow"] = _version("tensorflow-cpu") or _version("tensorflow")
    elif backend == "jax":
        versions["jax"] = _version("jax")
    versions["torch"] = _version("torch")
    return {
        "cpu": cpu_model(),
        "cores": cores(),
        "ram_gib": ram_gib(),
        "gpu": gpus(),
        "keras_backend": backend,
        "versions": {k: v for k, v in versions.items() if v},
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_commit": git_commit(),
        "host_load_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def summary(values: Sequence[float]) -> dict[str, float | int]:
    """Median and spread (min, max, quartiles) of one measurement's repeats."""
    v = sorted(float(x) for x in values)
    out: dict[str, float | int] = {"n": len(v), "median": statistics.median(v), "min": v[0], "max": v[-1]}
    if len(v) >= 4:
        q = statistics.quantiles(v, n=4, method="inclusive")
        out["q1"], out["q3"] = q[0], q[2]
    return out


def measurement(name: str, unit: str, values: Sequence[float], **extra: Any) -> dict[str, Any]:
    return {"name": name, "unit": unit, "values": [float(x) for x in values], **extra}


def run_measured(
    cmd: list[str], *, env: dict[str, str] | None = None, cwd: str | Path | None = None, timeout: float | None = None
) -> tuple[float, float]:
    """Wall time (s) and peak RSS (MiB) of ``cmd``, measured in a fresh wrapper process.

    The wrapper's RUSAGE_CHILDREN covers only ``cmd`` (and its own children), not this process.
    """
    wrapper = (
        "import json, resource, subprocess, sys, time;"
        "t = time.perf_counter(); p = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "dt = time.perf_counter() - t;"
        "sys.stderr.write(p.stdout[-4000:] + p.stderr[-4000:]) if p.returncode else None;"
        "print(json.dumps([p.returncode, dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", wrapper, *cmd],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    try:
        rc, dt, rss_kb = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        rc, dt, rss_kb = proc.returncode or 1, 0.0, 0
    if rc:
        msg = f"benchmark command failed (exit {rc}): {' '.join(cmd)}\n{proc.stderr[-6000:]}"
        raise RuntimeError(msg)
    return dt, rss_kb / 1024


def self_peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# Peak RSS of the running process, for code run in a child (``python -c``). VmHWM belongs to the
# process's own memory map; ru_maxrss would carry over the RSS of a large parent at fork + exec.
PEAK_RSS_KB = (
    "(lambda: next((int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')), None)"
    " if __import__('os').path.exists('/proc/self/status')"
    " else __import__('resource').getrusage(__import__('resource').RUSAGE_SELF).ru_maxrss)()"
)


def crnn_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "crnn", *args]


def env_with(**extra: str) -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": _pythonpath(), **extra}


def _pythonpath() -> str:
    old = os.environ.get("PYTHONPATH", "")
    return str(REPO) + (os.pathsep + old if old else "")


# -- Markdown ------------------------------------------------------------------------------------
def fmt(x: float | None, unit: str = "") -> str:
    """A number with a precision that suits a benchmark table (3 significant digits, thousands sep)."""
    if x is None:
        return "-"
    ax = abs(x)
    if ax >= 1000:
        s = f"{x:,.0f}"
    elif ax >= 100:
        s = f"{x:.0f}"
    elif ax >= 10:
        s = f"{x:.1f}"
    elif ax >= 1:
        s = f"{x:.2f}"
    else:
        s = f"{x:.3g}"
    return f"{s} {unit}".strip() if unit else s


def spread(m: dict[str, Any]) -> str:
    s = m.get("stats") or summary(m["values"])
    if s["n"] == 1:
        return "1 run"
    text = f"{fmt(s['min'])} - {fmt(s['max'])}"
    if "q1" in s:
        text += f" (IQR {fmt(s['q1'])} - {fmt(s['q3'])})"
    return text + f", {s['n']} runs"


def median(m: dict[str, Any]) -> float:
    return float((m.get("stats") or summary(m["values"]))["median"])


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def measurements_table(result: dict[str, Any]) -> str:
    """Default table: one row per measurement with its median and spread."""
    rows = [[m["name"], fmt(median(m), m["unit"]), spread(m)] for m in result["measurements"]]
    return table(["measurement", "median", "spread (min - max)"], rows)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


# -- a small default-shaped model, for suites that need one and were given none --------------------
def train_small_model(
    out_dir: str | Path,
    settings: Any,
    *,
    n_train: int = 2000,
    n_val: int = 1000,
    epochs: int = 1,
    seed: int = 11,
    name: str = "model",
) -> Path:
    """Train a default-shaped model quickly with ``crnn.train.train`` on freshly simulated traces.

    Its weights are barely trained: enough for timing (the speed does not depend on the weights)
    and for a smoke test of the quality suite, not for quality figures.
    """
    from crnn.simulate import SimulationSettings, simulate
    from crnn.train import TrainingSettings, train

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_h5, val_h5 = out / "train.h5", out / "val.h5"
    simulate(SimulationSettings(n_traces=n_train), train_h5, seed=seed)
    simulate(SimulationSettings(n_traces=n_val), val_h5, seed=seed + 1)
    model = train(
        train_h5,
        val_h5,
        out / name,
        model_settings=settings,
        training=TrainingSettings(epochs=epochs),
        seed=seed,
        name=name,
    )
    train_h5.unlink()
    val_h5.unlink()
    return model
