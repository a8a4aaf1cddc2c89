"""Fault injection (issue 15, "Done when"): the test workflow's stages are stopped with SIGTERM (what
``scancel`` and a SLURM time limit send) at seeded random moments, the same Snakemake command is run
again after each kill, and the end is an uninterrupted run's outputs with no stray temporary file.

Config ``config/test_faults.yaml`` and one target keep it small: simulate, ingest (the ROOT example),
dataset, train (gru, one epoch) and evaluate (gru), one job each; an uninterrupted run takes about
20-30 s. N_KILLS rounds stop the stages in the workflow's order, each stage at least once and the
long ones (training, scoring) more often; each kill comes at a seeded random fraction of the time
the stage took in the uninterrupted run (from interpreter start-up to its outputs being written),
so it lands anywhere from the imports to the renames at the end.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from conftest import REPO

pytestmark = [pytest.mark.workflow, pytest.mark.slow, pytest.mark.xdist_group("fault_injection")]

CONFIG = REPO / "config" / "test_faults.yaml"
RESULTS = "results/faults"
#: the crnn stage of each job of the run and the output that shows it done
STAGES = {
    "simulate": "simulate/traces.h5",
    "ingest": "ingest/example_root.h5",
    "dataset": "dataset/test.h5",
    "train": "models/gru/model.keras",
    "evaluate": "evaluate/gru/metrics.json",
}
LOGS = {
    "simulate": "logs/simulate_traces.log",
    "ingest": "logs/ingest_traces/example_root.log",
    "dataset": "logs/build_dataset.log",
    "train": "logs/train_classifier/gru.log",
    "evaluate": "logs/evaluate_classifier/gru.log",
}
TARGETS = [f"{RESULTS}/{STAGES['evaluate']}"]  # and with it every stage before
CHECKPOINT_STATE = "models/gru/checkpoint/state.json"
N_KILLS = 10
SEED = 15


def _command(work: Path, *extra: str) -> list[str]:
    # the target comes before --configfile, which takes several values
    return [
        sys.executable,
        "-m",
        "snakemake",
        *TARGETS,
        "--cores",
        "2",
        "--directory",
        str(work),
        "--configfile",
        str(CONFIG),
        *extra,
    ]


def _start(work: Path, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    with open(log, "w") as out:  # a file, not a pipe: nobody reads while the rounds poll
        return subprocess.Popen(_command(work), cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def _stage_of(pid: int) -> str | None:
    """The crnn stage a process runs (``crnn STAGE ...`` or ``python -m crnn STAGE ...``), else None."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    for i in range(1, len(argv) - 1):
        if Path(argv[i]).name == "crnn" or argv[i - 1 : i + 1] == ["-m", "crnn"]:
            return argv[i + 1] if argv[i + 1] in STAGES else None
    return None


def _running_stages(root: int) -> dict[str, int]:
    """The crnn stages running under process ``root`` (Snakemake): stage -> PID."""
    kids, found, todo = _children(), {}, [root]
    while todo:
        for child in kids.get(todo.pop(), []):
            todo.append(child)
            stage = _stage_of(child)
            if stage is not None:
                found[stage] = child
    return found


def _uninterrupted_run(work: Path) -> dict[str, float]:
    """Run the workflow once; return how long each stage's process lived (s)."""
    proc = _start(work, work.parent / f"{work.name}.log")
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    while proc.poll() is None:
        now = time.monotonic()
        for stage in _running_stages(proc.pid):
            first.setdefault(stage, now)
            last[stage] = now
        time.sleep(0.01)
    assert proc.returncode == 0, (work.parent / f"{work.name}.log").read_text()[-4000:]
    assert set(first) == set(STAGES), first
    return {s: last[s] - first[s] for s in STAGES}


def _plan() -> dict[str, int]:
    """How many of the N_KILLS rounds stop each stage: every stage once, the long ones more often
    (training resumes from its checkpoints, so where its kills land matters most)."""
    return {"simulate": 1, "ingest": 1, "dataset": 1, "train": 4, "evaluate": 3}


def _next_aim(work: Path, plan: dict[str, int]) -> str:
    """The first stage still to do that has kills left; kills left to stages that are done already
    (one that ran beside the stopped one and completed) pass to the last stage."""
    todo = [s for s, out in STAGES.items() if not (work / RESULTS / out).exists()]
    for stage in [s for s in plan if s not in todo and plan[s]]:
        plan[todo[-1]] += plan.pop(stage)
    return next(s for s in todo if plan.get(s))


def _killed_round(
    work: Path, aim: str, fraction: float, durations: dict[str, float], k: int, when: Path | None = None
) -> tuple[str, float]:
    """Run the same command and SIGTERM stage ``aim`` ``fraction`` of its uninterrupted time into its
    run (the stages before it complete), or with ``when`` as soon as that file exists; should it end
    sooner, the stage that runs next. Returns (stage, seconds into its run)."""
    target, moment = aim, fraction * durations[aim]
    proc = _start(work, work.parent / f"round{k}.log")
    started: dict[str, float] = {}
    try:
        while proc.poll() is None:
            running = _running_stages(proc.pid)
            now = time.monotonic()
            for stage in running:
                started.setdefault(stage, now)
            if target in started and target not in running and running:  # it ended before its moment
                target, moment = sorted(running)[0], 0.0
            due = when.exists() if when is not None and target == aim else now - started.get(target, now) >= moment
            if target in running and due:
                try:
                    os.kill(running[target], signal.SIGTERM)
                except ProcessLookupError:  # it ended meanwhile
                    continue
                at = f"when {when.name} appeared" if when is not None else f"{fraction:.2f} x {durations[aim]:.1f} s"
                print(f"round {k}: aimed at {aim} {at}; SIGTERM to {target} {now - started[target]:.2f} s into it")
                return target, now - started[target]
            time.sleep(0.01)
        raise AssertionError(f"round {k}: the run ended (rc {proc.returncode}) before {aim} could be stopped")
    finally:
        proc.wait(timeout=300)


def _stray(results: Path) -> list[str]:
    """Temporaries, moved-aside old versions, checkpoints and locks anywhere in the results."""
    return sorted(
        str(p.relative_to(results))
        for p in results.rglob("*")
        if ".tmp" in p.name or ".old." in p.name or p.name in ("checkpoint", ".train.lock")
    )


# -- what "identical" means -----------------------------------------------------------------------
#: keys that differ between any two runs, interrupted or not: wall-clock times and dates, the card's
#: list of resumes (it records the kills) and the SHA-256 of model.keras (a zip archive that holds its
#: save date); the weights inside model.keras are compared array by array instead
VOLATILE_KEYS = {"scoring_time_s", "train_time_s", "created_utc", "resumed", "model_sha256"}
#: history.csv's column of seconds per epoch
VOLATILE_COLUMNS = {"epoch_time_s"}


def _json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [_json(v) for v in value]
    return value


def _keras_config(config: Any) -> Any:
    """A model's config without Keras's ``shared_object_id``: the address of a Python object in the
    saving process, written where layers share one (a freshly built model's layers share the dtype
    policy; those of a model loaded from a checkpoint, as a resumed run saves it, each have their own)."""
    if isinstance(config, dict):
        return {k: _keras_config(v) for k, v in config.items() if k != "shared_object_id"}
    if isinstance(config, list):
        return [_keras_config(v) for v in config]
    return config


def _plain(value: Any) -> str:
    return json.dumps(np.asarray(value).tolist(), default=str)


def _h5(source: Path | bytes) -> dict[str, Any]:
    """Every dataset (dtype, shape, values) and every attribute of an HDF5 file."""
    content: dict[str, Any] = {}
    with h5py.File(io.BytesIO(source) if isinstance(source, bytes) else source, "r") as f:

        def visit(name: str, obj: Any) -> None:
            content[f"{name}@attrs"] = {k: _plain(v) for k, v in obj.attrs.items()}
            if isinstance(obj, h5py.Dataset):
                v = obj[()]
                data = _plain(v) if np.asarray(v).dtype.kind == "O" else np.asarray(v).tobytes()
                content[name] = (str(obj.dtype), obj.shape, data)

        visit("/", f)
        f.visititems(visit)
    return content


def _content(path: Path) -> Any:
    if path.suffix == ".h5":
        return _h5(path)
    if path.suffix == ".json":
        return _json(json.loads(path.read_text()))
    if path.suffix == ".csv":
        with open(path, newline="") as f:
            return [{k: v for k, v in row.items() if k not in VOLATILE_COLUMNS} for row in csv.DictReader(f)]
    if path.suffix == ".keras":  # metadata.json holds the save date
        with zipfile.ZipFile(path) as z:
            return {
                "config": _keras_config(json.loads(z.read("config.json"))),
                "names": sorted(z.namelist()),
                "weights": _h5(z.read("model.weights.h5")),
            }
    return path.read_bytes()  # the PNG plots: the same bytes


def _outputs(results: Path) -> dict[str, Any]:
    """The run's outputs, without its logs and benchmarks (timings)."""
    return {
        str(p.relative_to(results)): _content(p)
        for p in sorted(results.rglob("*"))
        if p.is_file() and p.relative_to(results).parts[0] not in ("logs", "benchmarks")
    }


def test_sigterm_at_random_moments_then_the_same_command_ends_like_an_uninterrupted_run(tmp_path):
    whole, faulted = tmp_path / "whole", tmp_path / "faulted"
    whole.mkdir()
    faulted.mkdir()
    durations = _uninterrupted_run(whole)
    expected = _outputs(whole / RESULTS)
    assert {str(Path(out)) for out in STAGES.values()} <= set(expected)

    rng = random.Random(SEED)
    plan = _plan()
    assert sum(plan.values()) == N_KILLS
    train_kills = plan["train"]
    kills: list[tuple[str, float]] = []
    resumed_in: list[int] = []  # rounds in which training resumed from its checkpoint
    for k in range(1, N_KILLS + 1):
        aim = _next_aim(faulted, plan)
        plan[aim] -= 1
        # the last stage is stopped early enough that it cannot finish first
        fraction = rng.uniform(0.0, 0.5 if aim == list(STAGES)[-1] else 0.95)
        # the first kill of training comes once its checkpoint holds the finished epoch, before its
        # outputs are written: the next runs resume from it ("the checkpoint is of a finished
        # training"), and the later kills of training stop those resumed runs
        when = CHECKPOINT_STATE if aim == "train" and plan["train"] == train_kills - 1 else None
        killed = _killed_round(faulted, aim, fraction, durations, k, when and faulted / RESULTS / when)
        kills.append(killed)
        stage, at_s = killed
        log = faulted / RESULTS / LOGS[stage]
        text = log.read_text(errors="replace") if log.exists() else ""
        assert "Traceback" not in text, f"round {k}, {stage} at {at_s:.2f} s:\n{text[-3000:]}"
        train_log = faulted / RESULTS / LOGS["train"]
        if train_log.exists() and "from its checkpoint after epoch" in train_log.read_text(errors="replace"):
            resumed_in.append(k)
        # the stage removed its temporaries (a checkpoint is kept on purpose; a lock may stay if the
        # signal came while it was being taken, and the next run takes it over)
        stray = [p for p in _stray(faulted / RESULTS) if "checkpoint" not in p and ".train.lock" not in p]
        assert stray == [], f"round {k}, {stage} at {at_s:.2f} s: {stray}"
    print("kills:", ", ".join(f"{stage} at {at_s:.2f} s" for stage, at_s in kills))
    # the same command once more, not interrupted: it completes what is left
    proc = _start(faulted, tmp_path / "final.log")
    assert proc.wait(timeout=300) == 0, (tmp_path / "final.log").read_text()[-4000:]

    results = faulted / RESULTS
    assert _stray(results) == []
    assert _outputs(results) == expected, f"kills: {kills}"
    card = json.loads((results / "models" / "gru" / "model.card.json").read_text())
    n_train_kills = sum(1 for stage, _ in kills if stage == "train")
    assert len(card["training"]["resumed"]) <= n_train_kills
    # after the kill at its checkpoint, training resumed at least once (a resumed run that finished
    # and was stopped as it left counts as failed for Snakemake: its outputs go, and the next run
    # trains afresh, to the same weights)
    assert resumed_in, kills
    print("training resumed in rounds", resumed_in, "; resumes in the final card:", card["training"]["resumed"])
    # and Snakemake sees every output complete: nothing to rerun, no --rerun-incomplete needed
    dry = subprocess.run(
        _command(faulted, "-n"),
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"},
    )
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]
    assert {"train", "evaluate"} <= {stage for stage, _ in kills}, kills
