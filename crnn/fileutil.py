"""The output contract of every stage: temporaries beside the target, published by a rename at the
end; signals clean up; I/O errors are one line; an output is never one of the stage's inputs.

* Every output is written to a temporary ``.{stem}.XXXXXXXX.tmp{suffix}`` (a file or a folder) in
  the target's folder, fsynced and renamed onto the target when it is complete. A process keeps a
  registry of its live temporaries; they are forgotten when published and removed on any failure.
* Outputs that belong together (the three splits of ``crnn dataset``, the files of ``crnn
  evaluate``) are an :class:`OutputGroup`: all are written first, then renamed in quick
  succession, with SIGTERM/SIGINT/SIGHUP held back until the last rename is done.
* :func:`install_signal_handlers` (the CLI does it) turns SIGTERM, SIGINT and SIGHUP into
  :class:`Interrupted`, a ``BaseException``: ``with`` blocks and ``finally`` clauses run and remove
  the temporaries; the CLI prints one line and exits with 128 + the signal number.
* SIGKILL cannot be caught: :func:`remove_stale_temporaries` (called by :func:`check_outputs` when a
  stage starts, and before every new temporary) removes what a killed run left beside its targets.
* OSErrors of writing (no space, read-only, permission, is a directory) become a
  :class:`CrnnError` naming the target and the cause (:func:`write_error`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from crnn.errors import CrnnError

#: the signals that end a stage cleanly (what scancel, a SLURM time limit, Ctrl-C and a closed terminal send)
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: the marker of a temporary name: ``.{stem}.XXXXXXXX.tmp{suffix}``
TMP_MARK = ".tmp"
_RANDOM = "[a-z0-9_]{8}"  # tempfile's random part

#: live temporaries of this process -> the target each becomes
_LIVE: dict[Path, Path] = {}
#: objects whose files could not be closed (HDF5 after a full disk): kept alive, never deallocated
_UNCLOSABLE: list[object] = []


class Interrupted(BaseException):
    """A stage was stopped by a signal; raised by the handlers of :func:`install_signal_handlers`."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        self.name = signal.Signals(signum).name
        super().__init__(self.name)


# -- signals ----------------------------------------------------------------------------------
_state: dict[str, Any] = {"depth": 0, "pending": None, "interrupted": None, "stage": "crnn"}


def interrupted_message(stage: str, signum: int) -> str:
    """The one line a stage prints when a signal stops it."""
    return (
        f"crnn {stage}: interrupted by {signal.Signals(signum).name}; its temporary files are removed and no "
        "partial output is left; run the same command again"
    )


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _state["interrupted"] is not None:  # a second signal while cleaning up: clean up now and leave
        remove_temporaries()
        _hard_exit(128 + signum)
    if _state["depth"]:  # inside a critical section (a group of renames): act when it ends
        _state["pending"] = _state["pending"] or signum
        return
    _state["interrupted"] = signum
    raise Interrupted(signum)


def interrupted_by() -> int | None:
    """The signal whose handler ran in this stage (it raised :class:`Interrupted`), else None."""
    return _state["interrupted"]


#: times an Interrupted that Python could not raise is sent again (see :func:`_on_unraisable`)
_RESEND = 3


def _on_unraisable(info: Any) -> None:
    """An :class:`Interrupted` raised where Python cannot propagate it (a garbage-collector callback,
    a ``__del__``: Python prints "Exception ignored" and goes on) is sent again, quietly, so that
    the handler raises it from ordinary code; anything else goes to the previous hook. The signal
    comes from a thread a millisecond later: sent from here, its handler would run inside this hook."""
    if isinstance(info.exc_value, Interrupted) and _state["resent"] < _RESEND:
        import threading

        _state["resent"] += 1
        _state["interrupted"] = None
        resend = threading.Timer(0.001, os.kill, (os.getpid(), info.exc_value.signum))
        resend.daemon = True
        resend.start()
        return
    _state["unraisablehook"](info)


def install_signal_handlers(stage: str) -> dict[int, Any]:
    """Let SIGTERM, SIGINT and SIGHUP raise :class:`Interrupted`; returns the previous handlers
    (for :func:`restore_signal_handlers`). Outside the main thread it does nothing."""
    _state.update(depth=0, pending=None, interrupted=None, stage=stage, resent=0)
    old: dict[int, Any] = {}
    try:
        for s in SIGNALS:
            old[s] = signal.signal(s, _on_signal)
    except ValueError:  # not the main thread
        return old
    _state["unraisablehook"] = sys.unraisablehook
    sys.unraisablehook = _on_unraisable
    return old


def restore_signal_handlers(old: dict[int, Any]) -> None:
    for s, handler in old.items():
        signal.signal(s, handler)
    if old and sys.unraisablehook is _on_unraisable:
        sys.unraisablehook = _state["unraisablehook"]


@contextlib.contextmanager
def critical() -> Iterator[None]:
    """Hold SIGTERM/SIGINT/SIGHUP back while the block runs (e.g. renames that must all happen);
    a signal that came meanwhile raises :class:`Interrupted` when the block ends without error."""
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
    if not _state["depth"] and _state["pending"] is not None:
        signum, _state["pending"] = _state["pending"], None
        _state["interrupted"] = signum
        raise Interrupted(signum)


def _hard_exit(code: int) -> None:
    """Leave at once (a second signal, or HDF5 files that cannot be closed and would crash the
    interpreter's shutdown): print the interrupted line if a signal is the cause, flush, ``os._exit``."""
    signum = _state["interrupted"]
    if signum is not None and code == 128 + signum:
        with contextlib.suppress(Exception):
            sys.stderr.write(interrupted_message(_state["stage"], signum) + "\n")
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def hold_unclosable(obj: object) -> None:
    """Keep ``obj`` (whose file could not be closed) alive until the process ends with ``os._exit``."""
    _UNCLOSABLE.append(obj)


def needs_hard_exit() -> bool:
    """Whether objects are held that the interpreter's normal shutdown would crash on."""
    return bool(_UNCLOSABLE)


def leave(code: int) -> int:
    """``code``, or leave with it at once when :func:`needs_hard_exit`."""
    if needs_hard_exit():
        _hard_exit(code)
    return code


# -- temporaries ------------------------------------------------------------------------------
def _temporary_patterns(target: Path) -> list[re.Pattern[str]]:
    """Names a temporary of ``target`` has (and had in crnn before the output contract)."""
    stem, suffix, name = map(re.escape, (target.stem, target.suffix, target.name))
    patterns = [rf"\.{stem}\.{_RANDOM}\.tmp{suffix}", rf"\.{name}\.{_RANDOM}\.tmp", rf"\.{name}\.old\.\d+"]
    if target.suffix:
        patterns.append(rf"\.{stem}\.{_RANDOM}{suffix}")
    return [re.compile(p) for p in patterns]


def remove_stale_temporaries(target: str | os.PathLike[str]) -> list[Path]:
    """Remove what an earlier, killed run left beside ``target``: its temporaries (files or
    folders), and a previous version moved aside while a folder was being replaced (put back
    when ``target`` is missing, else removed). Temporaries of this process stay. Returns the
    paths removed or put back."""
    target = Path(target)
    folder = target.parent
    if not folder.is_dir():
        return []
    patterns = _temporary_patterns(target)
    done: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    live = {p.resolve() for p in _LIVE}
    for p in entries:
        if not any(pat.fullmatch(p.name) for pat in patterns) or p.resolve() in live:
            continue
        with contextlib.suppress(OSError):
            if ".old." in p.name and p.is_dir() and not target.exists():
                os.replace(p, target)
            elif p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            done.append(p)
    return done


def new_temporary(target: str | os.PathLike[str], *, directory: bool = False) -> Path:
    """Create an empty temporary file (or folder) beside ``target`` and register it; stale
    temporaries of ``target`` are removed first."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target)
        with critical():
            if directory:
                tmp = Path(
                    tempfile.mkdtemp(prefix=f".{target.stem}.", suffix=f"{TMP_MARK}{target.suffix}", dir=target.parent)
                )
            else:
                fd, name = tempfile.mkstemp(
                    prefix=f".{target.stem}.", suffix=f"{TMP_MARK}{target.suffix}", dir=target.parent
                )
                os.close(fd)
                tmp = Path(name)
            _LIVE[tmp] = target
    except OSError as exc:
        raise write_error(target, exc) or exc from exc
    return tmp


def target_of(path: str | os.PathLike[str]) -> Path:
    """The output that ``path`` (a live temporary, possibly of a temporary) becomes; else ``path``."""
    p = Path(path)
    while p in _LIVE:
        p = _LIVE[p]
    return p


def discard_temporary(tmp: Path) -> None:
    """Remove a temporary file or folder and forget it."""
    with contextlib.suppress(OSError):
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
    _LIVE.pop(tmp, None)


def remove_temporaries() -> list[Path]:
    """Remove every live temporary of this process (after a failure or a signal)."""
    live = list(_LIVE)
    for tmp in live:
        discard_temporary(tmp)
    return live


def live_temporaries() -> list[Path]:
    return list(_LIVE)


def _fsync(path: Path) -> None:
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.EROFS):  # folders on some file systems
            raise
    finally:
        os.close(fd)


def publish(tmp_path: Path, target: Path) -> None:
    """Give a finished temporary (file or folder) the usual permissions, fsync it and rename it
    onto ``target``; a folder that is there already is replaced as a whole."""
    target = Path(target)
    umask = os.umask(0)
    os.umask(umask)
    try:
        with critical():
            if tmp_path.is_dir():
                os.chmod(tmp_path, 0o777 & ~umask)
                for p in tmp_path.rglob("*"):
                    if p.is_file():
                        _fsync(p)
                old = None
                if target.is_dir():
                    old = target.with_name(f".{target.name}.old.{os.getpid()}")
                    os.replace(target, old)
                try:
                    os.replace(tmp_path, target)
                except BaseException:
                    if old is not None:
                        os.replace(old, target)
                    raise
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
            else:
                os.chmod(tmp_path, 0o666 & ~umask)
                _fsync(tmp_path)
                os.replace(tmp_path, target)
            _LIVE.pop(tmp_path, None)
            _fsync(target.parent)
    except OSError as exc:
        raise write_error(target, exc) or exc from exc


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path (a file, or with ``directory`` a folder); on success it is renamed
    to ``path``, on error deleted. Errors of writing become one line (:func:`write_error`).

    A ``path`` that is itself a live temporary (of an :class:`OutputGroup`) is yielded as it is:
    written in place and published by its group (a temporary of a temporary would have a name that
    no rerun recognises, should SIGKILL leave it)."""
    target = Path(path)
    if target in _LIVE:
        yield target
        return
    tmp = new_temporary(target, directory=directory)
    try:
        yield tmp
        publish(tmp, target)
    except OSError as exc:
        discard_temporary(tmp)
        raise write_error(target, exc, temporary=tmp) or exc from exc
    except BaseException:
        discard_temporary(tmp)
        raise


class OutputGroup:
    """Outputs that appear together or not at all: each is written to its temporary (:meth:`add`),
    and :meth:`publish` renames them all at the end, holding signals back meanwhile."""

    def __init__(self) -> None:
        self._items: list[tuple[Path, Path]] = []

    def add(self, target: str | os.PathLike[str], *, directory: bool = False) -> Path:
        """The temporary to write ``target``'s content to."""
        tmp = new_temporary(target, directory=directory)
        self._items.append((tmp, Path(target)))
        return tmp

    @property
    def targets(self) -> list[Path]:
        return [t for _, t in self._items]

    def publish(self) -> None:
        with critical():
            for tmp, target in self._items:
                publish(tmp, target)

    def discard(self) -> None:
        for tmp, _ in self._items:
            discard_temporary(tmp)


@contextlib.contextmanager
def output_group() -> Iterator[OutputGroup]:
    """An :class:`OutputGroup` published when the block ends without error, discarded otherwise."""
    group = OutputGroup()
    try:
        yield group
        group.publish()
    except OSError as exc:
        group.discard()
        # an error without a file name (a plotting library's) is of the output being written: the last added
        last = group.targets[-1] if group.targets else None
        raise write_error(target_of(exc.filename) if exc.filename else last, exc) or exc from exc
    except BaseException:
        group.discard()
        raise


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    return Path(path)


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    msg = f"not JSON serialisable: {type(obj).__name__}"
    raise TypeError(msg)


# -- I/O errors -------------------------------------------------------------------------------
#: errno -> the cause in words, for errors of reading or writing a user's path
IO_CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EISDIR: "is a directory",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EFBIG: "file too large",
    errno.ENAMETOOLONG: "file name too long",
    errno.EIO: "input/output error of the device",
}
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def os_errno(exc: BaseException) -> int | None:
    """The errno of an OSError, or the one HDF5 names in its message (h5py raises RuntimeError
    when closing a file fails)."""
    code = getattr(exc, "errno", None)
    if isinstance(code, int):
        return code
    found = re.search(r"errno = (\d+)", str(exc))
    return int(found.group(1)) if found else None


def write_error(
    target: str | os.PathLike[str] | None, exc: BaseException, *, temporary: Path | None = None
) -> CrnnError | None:
    """One line for a failed write of ``target`` (no space, read-only, permission, a folder in the
    way): the target, the cause and what to do. None when ``exc`` is not such an error, or names a
    file other than ``target`` and its temporary (an input: the CLI names that one)."""
    code = os_errno(exc)
    if code not in IO_CAUSES:
        return None
    filename = getattr(exc, "filename", None)
    if target is None and filename is not None:
        target = target_of(filename)
    if target is None:
        return None
    target = target_of(target)  # a temporary (of an output group) names the output it becomes
    if filename is not None:
        named = Path(os.fsdecode(filename))
        ours = {target, target.parent, *(p for p in (temporary,) if p is not None)}
        if target_of(named) != target and named not in ours and not target.is_relative_to(named):
            return None
    if code in _FULL:
        what = "free some space there or write the output elsewhere"
    elif code == errno.EISDIR:
        what = "give the path of a file, not of a folder"
    else:
        what = "write the output to a folder you can write to"
    return CrnnError(f"{target}: cannot write it: {IO_CAUSES[code]}; {what} (nothing partial is left)")


def io_error_line(exc: OSError) -> str | None:
    """One line for an OSError of reading or writing a user's path that no stage turned into a
    :class:`CrnnError` (the CLI's last resort); None for other errors, which keep their traceback."""
    code = os_errno(exc)
    if code not in IO_CAUSES:
        return None
    where = exc.filename if exc.filename is not None else "a file"
    if exc.filename is not None and exc.filename2 is not None:
        where = f"{exc.filename} -> {exc.filename2}"
    where = target_of(where) if exc.filename is not None and exc.filename2 is None else where
    return f"{where}: {IO_CAUSES[code]}"


def check_input_file(path: str | os.PathLike[str], expected: str) -> Path:
    """Refuse an input that is missing, a folder or unreadable, in one line naming ``expected``."""
    p = Path(path)
    if p.is_dir():
        msg = f"{p}: is a folder; expected {expected}"
        raise CrnnError(msg)
    if not p.exists():
        msg = f"{p}: no such file; expected {expected}"
        raise CrnnError(msg)
    if not os.access(p, os.R_OK):
        msg = f"{p}: cannot read it (permission denied); expected {expected}"
        raise CrnnError(msg)
    return p


def _check_writable(label: str, target: Path, folder: Path) -> None:
    """Refuse ``target`` (output ``label``) when ``folder``, where it goes, cannot be made or written."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        msg = f"{target}: cannot write output {label}: {existing} is a file, not a folder"
        raise CrnnError(msg)
    if not os.access(existing, os.W_OK | os.X_OK):
        readonly = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
        cause = IO_CAUSES[errno.EROFS if readonly else errno.EACCES]
        msg = f"{target}: cannot write output {label}: {cause} ({existing}); write the output to a folder you can write to"
        raise CrnnError(msg)


def check_outputs(files: Iterable[Labelled] = (), *, folders: Iterable[Labelled] = ()) -> None:
    """Before a stage starts its work: refuse an output file that is a folder, an output folder that
    is a file, and outputs that cannot be written (read-only file system, no permission); then remove
    the temporaries a killed run left beside them (:func:`remove_stale_temporaries`)."""
    for label, path in folders:
        if path is None:
            continue
        p = Path(path)
        if p.exists() and not p.is_dir():
            msg = f"{p}: output {label} must be a folder; a file is there"
            raise CrnnError(msg)
        _check_writable(label, p, p)
        remove_stale_temporaries(p)
    for label, path in files:
        if path is None:
            continue
        p = Path(path)
        if p.is_dir():
            msg = f"{p}: output {label} is a folder; give the path of a file to write"
            raise CrnnError(msg)
        _check_writable(label, p, p.parent)
        remove_stale_temporaries(p)


#: a labelled path of a stage: (what it is, e.g. "--train", path); None paths are skipped
Labelled = tuple[str, str | os.PathLike[str] | None]


def folder_outputs(label: str, folder: str | os.PathLike[str], names: Iterable[str]) -> list[Labelled]:
    """The folder output ``label`` and the files ``names`` that a stage writes into it."""
    return [(label, folder), *((f"{label} file {name}", Path(folder) / name) for name in names)]


def refuse_aliases(
    inputs: Iterable[Labelled], outputs: Iterable[Labelled], *, replaced_folders: Iterable[Labelled] = ()
) -> None:
    """Raise CrnnError when an output is an input or another output (same path or same file).

    Paths are compared after resolving links and ``..``, and by inode (``os.path.samefile``) where
    both exist, so a hard link or another spelling of a path is caught too. ``replaced_folders``
    are output folders that a stage replaces as a whole: no input may lie inside them.
    """
    ins = [(label, Path(p)) for label, p in inputs if p is not None]
    outs = [(label, Path(p)) for label, p in outputs if p is not None]
    folders = [(label, Path(p)) for label, p in replaced_folders if p is not None]
    for i, (out_label, out) in enumerate(outs):
        for in_label, src in ins:
            if _same_file(out, src):
                msg = (
                    f"{out}: output {out_label} is also the input {in_label} ({src}); writing it would destroy "
                    f"the input, give the output another path"
                )
                raise CrnnError(msg)
        for other_label, other in outs[:i]:
            if _same_file(out, other):
                msg = (
                    f"{out}: outputs {other_label} and {out_label} are the same file ({other}); "
                    f"give each output a path of its own"
                )
                raise CrnnError(msg)
    for out_label, folder in folders:
        for in_label, src in ins:
            if _same_file(folder, src) or src.resolve().is_relative_to(folder.resolve()):
                msg = (
                    f"{folder}: output folder {out_label} holds the input {in_label} ({src}); the folder is "
                    f"replaced as a whole, give the output another folder"
                )
                raise CrnnError(msg)


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


# -- a folder that one process at a time writes into ------------------------------------------
@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str], name: str, what: str) -> Iterator[Path]:
    """Hold an exclusive ``flock`` on ``folder/name`` while the block runs; refuse a second holder.

    The lock file holds the holder's PID; it is removed and closed when the block ends (returns,
    raises or is interrupted), and the kernel drops the lock of a killed holder. A process that
    locked a file which the holder unlinked meanwhile tries again on the new file, so two
    processes never both hold a lock on ``folder/name``. ``what`` names the holder in the refusal:
    ``"{folder}: another {what} (PID n) is ... into this folder"``.
    """
    import fcntl

    path = Path(folder) / name
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            msg = f"{folder}: another {what} (PID {pid}) is writing into this folder; wait for it or stop it"
            raise CrnnError(msg) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)  # the previous holder removed this file after we opened it: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        try:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # while still locked: a waiting process then locks the new file
        finally:
            os.close(fd)
