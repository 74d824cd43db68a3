"""Writing a file so that a failure never leaves a partial one behind (the one home of that rule).

Every writer of run directories, checkpoints, pipelines, indexes and exported graphs goes through
``atomic_write``: the content is written to a hidden temporary file next to the target, which is
moved into place with ``os.replace`` only when the writer returned; on any error the temporary file
is removed and the target is untouched. Importing this module does not import torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Run ``write(tmp_path)`` and move the result to ``path`` (parents created); returns ``path``.

    The temporary path keeps ``path``'s suffix, for writers that pick the format from it.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}{target.suffix}")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """``atomic_write`` of UTF-8 text."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
