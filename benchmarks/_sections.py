"""Write one script's section of a shared results markdown file (atomic replace)."""

from __future__ import annotations

import os
from pathlib import Path


def write_section(path: Path, name: str, lines: list[str], title: str) -> None:
    """Replace the block between ``<!-- begin:name -->`` and ``<!-- end:name -->`` (append if new)."""
    begin, end = f"<!-- begin:{name} -->", f"<!-- end:{name} -->"
    block = "\n".join([begin, *lines, end])
    text = path.read_text(encoding="utf-8") if path.exists() else f"{title}\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
