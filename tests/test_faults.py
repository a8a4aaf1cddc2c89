"""The output contract under faults, with real subprocesses and real signals: a signal removes the
stage's temporaries and ends it with one line; a rerun removes what SIGKILL left; outputs that are
folders are refused before work; a full disk is one line (exit 2), never a crash or a partial file."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import pytest

from tests.conftest import REPO, run_crnn

EXAMPLE = REPO / "data" / "example_traces.h5"
MODEL = REPO / "tests" / "data" / "model_v0_1"
N_SLOW = 60000  # traces: simulate takes well over the time to the first temporary


def _start_simulate(out: Path, n_traces: int = N_SLOW) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "crnn", "simulate", "-o", str(out), "--n-traces", str(n_traces)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if ".tmp" in p.name]


def _wait_for_temporary(proc: subprocess.Popen, folder: Path) -> Path:
    """Wait until the stage's temporary exists and holds data (the stage is writing)."""
    while proc.poll() is None:
        tmps = _temporaries(folder)
        if tmps and tmps[0].stat().st_size > 0:
            return tmps[0]
        time.sleep(0.05)
    raise AssertionError(f"the stage ended ({proc.returncode}) before its temporary appeared: {proc.stderr.read()}")


def _errors(stderr: str) -> list[str]:
    """stderr without the INFO log lines."""
    return [line for line in stderr.splitlines() if line.strip() and " INFO: " not in line]


@pytest.fixture(scope="module")
def old_output(tmp_path_factory) -> bytes:
    folder = tmp_path_factory.mktemp("old")
    run_crnn("simulate", "-o", folder / "a.h5", "--n-traces", "200")
    return (folder / "a.h5").read_bytes()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_removes_temporary_and_keeps_old_output(tmp_path, old_output, sig):
    out = tmp_path / "a.h5"
    out.write_bytes(old_output)
    proc = _start_simulate(out)
    _wait_for_temporary(proc, tmp_path)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, stderr
    lines = _errors(stderr)
    assert len(lines) == 1, stderr
    assert signal.Signals(sig).name in lines[0] and "Traceback" not in stderr
    assert _temporaries(tmp_path) == []
    assert out.read_bytes() == old_output


def test_rerun_removes_stale_temporary_of_sigkill(tmp_path, old_output):
    out = tmp_path / "a.h5"
    proc = _start_simulate(out)
    stale = _wait_for_temporary(proc, tmp_path)
    proc.kill()
    proc.communicate(timeout=60)
    assert stale.exists() and not out.exists()  # SIGKILL cannot be caught
    other = tmp_path / ".b.abcdefgh.tmp.h5"  # the temporary of another output stays
    other.write_bytes(b"x")
    run_crnn("simulate", "-o", out, "--n-traces", "200")
    assert not stale.exists()
    assert other.exists()
    assert out.read_bytes() == old_output  # same seed, same bytes


def test_output_that_is_a_folder_is_refused_before_work(tmp_path):
    out = tmp_path / "a.h5"
    out.mkdir()
    proc = run_crnn("simulate", "-o", out, "--n-traces", str(N_SLOW), check=False)
    assert proc.returncode == 2
    lines = _errors(proc.stderr)
    assert len(lines) == 1 and str(out) in lines[0] and "folder" in lines[0], proc.stderr
    assert "simulating" not in proc.stderr  # refused before the work
    assert os.listdir(tmp_path) == ["a.h5"] and os.listdir(out) == []


def _tmpfs(where: Path, size: str):
    """A tmpfs of ``size`` mounted at ``where`` (skips where mounting is not allowed), unmounted after."""
    where.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a {size} tmpfs here: {proc.stderr.strip() or proc.returncode}")
    yield where
    subprocess.run(["umount", str(where)], check=False)


@pytest.fixture
def small_tmpfs(tmp_path):
    yield from _tmpfs(tmp_path / "small", "5m")


def test_full_disk_is_one_line(small_tmpfs):
    out = small_tmpfs / "a.h5"
    proc = run_crnn("simulate", "-o", out, "--n-traces", "3000", check=False)  # ~12 MB
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = _errors(proc.stderr)
    assert len(lines) == 1 and str(out) in lines[0] and "no space" in lines[0], proc.stderr[-3000:]
    assert os.listdir(small_tmpfs) == []


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """8 kB: smaller than the HDF5 file of a few hundred scores."""
    yield from _tmpfs(tmp_path / "tiny", "8k")


@pytest.mark.parametrize(("stage", "target"), [("predict", "s.h5"), ("evaluate", "ev/scores.h5")])
def test_full_disk_under_scores_is_one_line_without_a_crash(tiny_tmpfs, stage, target):
    """Issue 15, item 4: predict gave 17 tracebacks and a segmentation fault; evaluate left scores.h5
    without metrics.json. Now: one line naming the output, exit 2, nothing on the disk."""
    argv = {
        "predict": ["predict", "-m", MODEL, "-i", EXAMPLE, "-o", tiny_tmpfs / "s.h5"],
        "evaluate": [
            "evaluate",
            "--test",
            EXAMPLE,
            "-o",
            tiny_tmpfs / "ev",
            "--baseline",
            "amplitude",
            "--n-bootstrap",
            "0",
        ],
    }[stage]
    proc = run_crnn(*argv, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("crnn ")]  # not TensorFlow's C++ logs
    assert len(lines) == 1 and lines[0].startswith(f"crnn {stage}: error: {tiny_tmpfs / target}: "), proc.stderr
    assert "no space" in lines[0]
    assert list(tiny_tmpfs.rglob("*")) == []


def test_dataset_splits_share_a_run_id(splits):
    ids = set()
    for path in splits.values():
        with h5py.File(path, "r") as f:
            ids.add(str(f.attrs["dataset_run_id"]))
    assert len(ids) == 1 and ids != {""}


def test_dataset_failure_leaves_old_splits_untouched(tmp_path, sim_file, splits):
    """The test split would be empty: train and val were written already, yet none is published."""
    out = {s: tmp_path / f"{s}.h5" for s in ("train", "val", "test")}
    for s, p in out.items():
        p.write_bytes(splits[s].read_bytes())
    proc = run_crnn(
        "dataset",
        "-i",
        sim_file,
        "--train",
        out["train"],
        "--val",
        out["val"],
        "--test",
        out["test"],
        "--fractions",
        "0.5",
        "0.5",
        "0",
        "--seed",
        "9",
        check=False,
    )
    assert proc.returncode == 2 and "test split would be empty" in proc.stderr, proc.stderr[-2000:]
    for s, p in out.items():
        assert p.read_bytes() == splits[s].read_bytes()
    assert _temporaries(tmp_path) == []


def test_train_refuses_splits_of_different_dataset_runs(tmp_path, sim_file, splits):
    from crnn.dataset import build_dataset
    from crnn.errors import CrnnError
    from crnn.tracefile import check_same_dataset_run

    other = build_dataset(
        [sim_file], {s: tmp_path / f"{s}.h5" for s in ("train", "val", "test")}, fractions=(0.6, 0.2, 0.2), seed=4
    )
    check_same_dataset_run(splits["train"], splits["val"])  # one run: accepted
    with pytest.raises(CrnnError):
        check_same_dataset_run(other["train"], splits["val"])
    bare = tmp_path / "bare_val.h5"  # a file without the attribute is accepted
    bare.write_bytes(splits["val"].read_bytes())
    with h5py.File(bare, "a") as f:
        del f.attrs["dataset_run_id"]
    check_same_dataset_run(other["train"], bare)
    proc = run_crnn(
        "train",
        "--train",
        other["train"],
        "--val",
        splits["val"],
        "--output-dir",
        tmp_path / "m",
        "--epochs",
        "1",
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("crnn ")]  # TensorFlow logs too
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for path in (other["train"], splits["val"]):
        assert str(path) in lines[0]
        with h5py.File(path, "r") as f:
            assert str(f.attrs["dataset_run_id"]) in lines[0]
    assert not (tmp_path / "m" / "model.keras").exists()


def test_dataset_run_id_is_reproducible(tmp_path, sim_file, splits):
    from crnn.dataset import build_dataset

    again = build_dataset(
        [sim_file], {s: tmp_path / f"{s}.h5" for s in ("train", "val", "test")}, fractions=(0.6, 0.2, 0.2), seed=3
    )
    assert again["test"].read_bytes() == splits["test"].read_bytes()


def test_dataset_output_that_is_a_folder_is_refused(tmp_path, sim_file):
    (tmp_path / "val.h5").mkdir()
    proc = run_crnn(
        "dataset",
        "-i",
        sim_file,
        "--train",
        tmp_path / "train.h5",
        "--val",
        tmp_path / "val.h5",
        "--test",
        tmp_path / "test.h5",
        check=False,
    )
    assert proc.returncode == 2
    lines = _errors(proc.stderr)
    assert len(lines) == 1 and f"{tmp_path / 'val.h5'}: output --val is a folder" in lines[0], proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["val.h5"]


#: every stage that writes, with its inputs (real files) and its outputs in folder {o}
WRITERS = {
    "simulate": ["simulate", "-o", "{o}/a.h5", "--n-traces", "10"],
    "ingest": ["ingest", "-i", str(EXAMPLE), "-o", "{o}/a.h5"],
    "dataset": ["dataset", "-i", str(EXAMPLE), "--train", "{o}/a.h5", "--val", "{o}/b.h5", "--test", "{o}/c.h5"],
    "merge": ["merge", "-i", str(EXAMPLE), "-o", "{o}/a.h5"],
    "train": ["train", "--train", str(EXAMPLE), "--val", str(EXAMPLE), "-o", "{o}/m", "--epochs", "1"],
    "predict": ["predict", "-m", str(MODEL), "-i", str(EXAMPLE), "-o", "{o}/a.h5"],
    "evaluate": ["evaluate", "--test", str(EXAMPLE), "-o", "{o}/ev", "--baseline", "amplitude"],
    "calibrate": [
        "calibrate",
        "-m",
        str(MODEL),
        "-b",
        str(EXAMPLE),
        "-o",
        "{o}/cal",
        "--fprs",
        "0.1",
        "--working-point-fpr",
        "0.1",
    ],
    "robustness": ["robustness", "--shift", f"a={EXAMPLE}", "-o", "{o}/r.json", "--baseline", "power"],
    "report": ["report", "--metrics", "{o}/../m.json", "-o", "{o}/rep"],
}


@pytest.fixture(scope="module")
def read_only_folder(tmp_path_factory):
    mnt = tmp_path_factory.mktemp("ro") / "mnt"
    mnt.mkdir()
    (mnt.parent / "m.json").write_text("{}")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(mnt)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:  # chmod is no test where root runs it: root writes anyway
        pytest.skip(f"cannot mount a read-only tmpfs here: {proc.stderr.strip() or proc.returncode}")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


@pytest.mark.parametrize("stage", list(WRITERS))
def test_a_read_only_output_folder_is_one_line_before_work(read_only_folder, capsys, stage):
    """Issue 15, item 8: every stage, not a traceback; the line names the output and the cause."""
    from crnn.cli import main

    argv = [a.format(o=read_only_folder) for a in WRITERS[stage]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"crnn {stage}: error: {read_only_folder}/") and "read-only file system" in err[0], err
    assert ".tmp" not in err[0]  # the output, not its temporary
    assert os.listdir(read_only_folder) == []


#: stages given a folder where an input file belongs
FOLDER_INPUTS = {
    "ingest": ["ingest", "-i", "{d}", "-o", "{o}/a.h5"],
    "predict": ["predict", "-m", str(MODEL), "-i", "{d}", "-o", "{o}/a.h5"],
    "dataset": ["dataset", "-i", "{d}", "--train", "{o}/a.h5", "--val", "{o}/b.h5", "--test", "{o}/c.h5"],
    "train": ["train", "--train", "{d}", "--val", str(EXAMPLE), "-o", "{o}/m", "--epochs", "1"],
    "merge": ["merge", "-i", "{d}", "-o", "{o}/a.h5"],
    "evaluate": ["evaluate", "--test", "{d}", "-o", "{o}/ev", "--baseline", "amplitude"],
}


@pytest.mark.parametrize("stage", list(FOLDER_INPUTS))
def test_a_folder_as_input_is_one_line(tmp_path, capfd, stage):
    """Issue 15, item 8: no traceback, no HDF5 error dump; nothing written."""
    from crnn.cli import main

    d, o = tmp_path / "dir", tmp_path / "out"
    d.mkdir()
    o.mkdir()
    assert main([a.format(d=d, o=o) for a in FOLDER_INPUTS[stage]]) == 2
    captured = capfd.readouterr()  # at the level of file descriptors: the HDF5 library writes its dumps there
    assert "Traceback" not in captured.err and "HDF5-DIAG" not in captured.err + captured.out, captured.err
    err = [line for line in captured.err.splitlines() if line.startswith("crnn ")]  # not TensorFlow's C++ logs
    assert len(err) == 1, captured.err
    assert err[0].startswith(f"crnn {stage}: error: {d}: ") and ("folder" in err[0] or "directory" in err[0]), err
    assert os.listdir(o) == []


# -- signals during crnn dataset and crnn ingest (issue 15, item 2) ----------------------------
N_BIG = 30_000  # traces of 2 x 500 samples (120 MB): dataset writes its splits for about half a second


@pytest.fixture(scope="module")
def big_input(tmp_path_factory) -> dict[str, Path]:
    """A canonical file big enough to catch `crnn dataset` while it writes, and its splits of seed 3."""
    import numpy as np

    from crnn.dataset import build_dataset
    from crnn.tracefile import TraceSet, write_traces

    d = tmp_path_factory.mktemp("big")
    labels = (np.arange(N_BIG) % 2).astype(np.int8)
    x = np.random.default_rng(11).normal(size=(N_BIG, 2, 500)).astype(np.float32)
    write_traces(d / "big.h5", TraceSet(x, 180e6, "V", {"labels": labels, "snr": 5.0 * labels.astype(np.float32)}))
    old = build_dataset(
        [d / "big.h5"], {s: d / f"old_{s}.h5" for s in ("train", "val", "test")}, fractions=(0.6, 0.2, 0.2), seed=3
    )
    return {"input": d / "big.h5", **old}


def _dataset_cmd(input_file: Path, folder: Path, seed: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "crnn",
        "dataset",
        "-i",
        str(input_file),
        "--train",
        str(folder / "train.h5"),
        "--val",
        str(folder / "val.h5"),
        "--test",
        str(folder / "test.h5"),
        "--seed",
        str(seed),
    ]


def _published(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def _signal_when(
    cmd: list[str], folder: Path, prefix: str, sig: int, reset: Callable[[], object], attempts: int = 3
) -> subprocess.Popen:
    """Call ``reset``, start ``cmd`` and send ``sig`` as soon as a temporary whose name starts with
    ``prefix`` holds data (polled every millisecond); a run that ends before is tried again."""
    for _ in range(attempts):
        reset()
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        while proc.poll() is None:
            tmps = [p for p in _temporaries(folder) if p.name.startswith(prefix)]
            with contextlib.suppress(FileNotFoundError):
                if tmps and tmps[0].stat().st_size > 0:
                    proc.send_signal(sig)
                    return proc
            time.sleep(0.001)
        proc.communicate()
    raise AssertionError(f"{cmd[3]} ended {attempts} times before a temporary {prefix}* appeared")


def test_sigterm_while_dataset_writes_its_validation_split_keeps_the_old_splits(tmp_path, big_input):
    """The moment of the issue: the training split is written, the validation split is being written;
    a rerun with another seed must not leave a new train.h5 beside the old val.h5 and test.h5."""
    old = {s: big_input[s].read_bytes() for s in ("train", "val", "test")}

    def put_back_the_old_splits() -> None:
        for s, data in old.items():
            (tmp_path / f"{s}.h5").write_bytes(data)

    proc = _signal_when(
        _dataset_cmd(big_input["input"], tmp_path, seed=9), tmp_path, ".val.", signal.SIGTERM, put_back_the_old_splits
    )
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    lines = _errors(stderr)
    assert len(lines) == 1 and "SIGTERM" in lines[0] and "Traceback" not in stderr, stderr[-2000:]
    assert {s: (tmp_path / f"{s}.h5").read_bytes() for s in old} == old  # all three old, none new
    assert _temporaries(tmp_path) == []


@pytest.mark.parametrize("stage", ["dataset", "ingest"])
def test_a_rerun_after_sigkill_removes_the_stale_temporaries_and_ends_like_an_uninterrupted_run(
    tmp_path, big_input, stage
):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir()
    killed.mkdir()
    if stage == "dataset":
        cmd = _dataset_cmd(big_input["input"], killed, seed=9)
        prefix = ".val."
    else:
        cmd = [sys.executable, "-m", "crnn", "ingest", "-i", str(big_input["input"]), "-o", str(killed / "a.h5")]
        prefix = ".a."

    def empty() -> None:
        for p in killed.iterdir():
            p.unlink()

    proc = _signal_when(cmd, killed, prefix, signal.SIGKILL, empty)
    proc.communicate(timeout=60)
    assert _temporaries(killed) and _published(killed) == []  # SIGKILL cannot be caught: temporaries left
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)  # the same command again
    assert _temporaries(killed) == []
    subprocess.run([a.replace(str(killed), str(whole)) for a in cmd], check=True, capture_output=True, cwd=REPO)
    names = sorted(p.name for p in whole.iterdir())
    assert sorted(p.name for p in killed.iterdir()) == names == _published(whole)
    for name in names:
        assert (killed / name).read_bytes() == (whole / name).read_bytes(), name


def test_a_signal_that_a_library_turns_into_another_error_still_ends_with_one_line(capsys):
    """Seen in the fault-injection test: SIGTERM while scipy's C extension was being imported; the
    extension's module initialisation turned the handler's Interrupted into "ImportError:
    initialization failed", which came out as a traceback."""
    from crnn.cli import _interruptible
    from crnn.fileutil import install_signal_handlers, restore_signal_handlers

    old = install_signal_handlers("evaluate")
    try:
        with _interruptible("evaluate") as code:
            try:
                os.kill(os.getpid(), signal.SIGTERM)  # a real signal: the handler raises Interrupted
                time.sleep(5)
            except BaseException as exc:  # what a C extension's module initialisation does with it
                raise ImportError("initialization failed") from exc
    finally:
        restore_signal_handlers(old)
    assert code[0] == 128 + signal.SIGTERM
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("crnn evaluate: interrupted by SIGTERM"), err


def test_a_signal_raised_where_python_cannot_propagate_it_still_stops_the_stage(capsys):
    """Seen in the fault-injection test: SIGTERM during a garbage-collector callback (JAX's); Python
    printed "Exception ignored ... Interrupted" and the stage went on to the end."""
    from crnn.cli import _interruptible
    from crnn.fileutil import install_signal_handlers, restore_signal_handlers

    class SignalsOnRelease:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, inside __del__
            time.sleep(0.01)

    went_on = []
    old = install_signal_handlers("train")
    try:
        with _interruptible("train") as code:
            SignalsOnRelease()  # released at once
            for _ in range(100):  # the work after it: stopped within a few steps
                time.sleep(0.01)
                went_on.append(1)
    finally:
        restore_signal_handlers(old)
    assert code[0] == 128 + signal.SIGTERM
    assert len(went_on) < 5
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("crnn train: interrupted by SIGTERM"), err


def test_evaluate_writes_its_outputs_as_one_group_without_nested_temporaries(tmp_path):
    """Every temporary of crnn evaluate has a name that a rerun removes after SIGKILL: the plots and
    metrics are written straight into their group's temporaries, not into temporaries of those."""
    from crnn.fileutil import new_temporary, remove_stale_temporaries

    out = tmp_path / "ev"
    names = []
    real_new = new_temporary

    import crnn.fileutil as fileutil

    def recording(target, **kwargs):  # records the names; the files are the real ones
        tmp = real_new(target, **kwargs)
        names.append((Path(target), tmp))
        return tmp

    fileutil.new_temporary = recording
    try:
        from crnn.cli import main

        assert (
            main(["evaluate", "--test", str(EXAMPLE), "-o", str(out), "--baseline", "amplitude", "--n-bootstrap", "0"])
            == 0
        )
    finally:
        fileutil.new_temporary = real_new
    assert sorted(t.name for t, _ in names) == sorted(
        ["scores.h5", "roc.png", "efficiency.png", "gallery.png", "metrics.json"]
    )
    for target, tmp in names:  # each a temporary of a published output, of a name its rerun removes
        assert tmp.parent == out and not tmp.exists()
        tmp.write_bytes(b"left by SIGKILL")
        assert remove_stale_temporaries(target) == [tmp]
