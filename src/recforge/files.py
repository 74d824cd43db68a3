"""Writing a file so that a failure never leaves a partial one behind (the one home of that rule).

Every writer of run directories, checkpoints, pipelines, indexes and exported graphs goes through
``atomic_write``: the content is written to a hidden temporary file next to the target, which is
moved into place with ``os.replace`` only when the writer returned; on any error the temporary file
is removed and the target is untouched. Importing this module does not import torch.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

_TEMPORARY = re.compile(r"^\..+\.tmp(?P<pid>\d+)")  # what ``atomic_write`` names its temporary files


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Run ``write(tmp_path)`` and move the result to ``path`` (parents created); returns ``path``.

    The temporary path keeps ``path``'s suffix, for writers that pick the format from it.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}{target.suffix}")  # see _TEMPORARY
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def atomic_write_all(writers: Mapping[Path, Callable[[Path], object]]) -> None:
    """``atomic_write`` of several files as one change: every file is written to its temporary
    path first, and only when all succeeded are they moved into place (a failure leaves every
    target as it was)."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, write in writers.items():
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp{os.getpid()}{target.suffix}")  # see _TEMPORARY
            staged.append((tmp, target))
            write(tmp)
        for tmp, target in staged:
            os.replace(tmp, target)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """``atomic_write`` of UTF-8 text."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


@contextmanager
def staged_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A folder written as a whole: the caller fills the yielded staging folder (a hidden sibling of
    ``path``); on success it replaces ``path`` (a previous ``path`` is moved aside, then removed),
    on any error it is removed and ``path`` stays as it was."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = target.with_name(f".{target.name}.tmp{os.getpid()}")
    old = target.with_name(f".{target.name}.old{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
        if target.exists():
            os.replace(target, old)
        os.replace(stage, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files ``atomic_write`` left in ``directory`` and its subdirectories
    when its process was killed (SIGKILL runs no cleanup); returns them. A temporary file whose
    process is still running (a write in progress) is left alone."""
    root = Path(directory)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for path in list(root.rglob(".*.tmp*")):
        m = _TEMPORARY.match(path.name)
        if m is None or not path.exists():
            continue
        pid = int(m["pid"])
        if pid == os.getpid() or _alive(pid):
            continue
        if path.is_dir():  # a staged_dir of a killed writer
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed
