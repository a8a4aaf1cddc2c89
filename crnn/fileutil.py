"""Atomic outputs: write to a temporary name beside the target, rename on success; refuse an output
that is one of the stage's inputs or another of its outputs."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from crnn.errors import CrnnError


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path; on success it is renamed to ``path``, on error deleted."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        publish(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def publish(tmp_path: Path, target: Path) -> None:
    """Give a finished temporary file the usual permissions and rename it onto ``target``."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    os.replace(tmp_path, target)


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
                msg = (f"{out}: output {out_label} is also the input {in_label} ({src}); writing it would destroy "
                       f"the input, give the output another path")
                raise CrnnError(msg)
        for other_label, other in outs[:i]:
            if _same_file(out, other):
                msg = (f"{out}: outputs {other_label} and {out_label} are the same file ({other}); "
                       f"give each output a path of its own")
                raise CrnnError(msg)
    for out_label, folder in folders:
        for in_label, src in ins:
            if _same_file(folder, src) or src.resolve().is_relative_to(folder.resolve()):
                msg = (f"{folder}: output folder {out_label} holds the input {in_label} ({src}); the folder is "
                       f"replaced as a whole, give the output another folder")
                raise CrnnError(msg)


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False
