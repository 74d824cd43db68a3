"""Shared bits of the retrieval benchmarks: result files, peak memory, model specs."""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "retrieval"


def default_data_dir() -> Path:
    return (
        ROOT.parent / "shared" / "data"
        if not (ROOT / "../shared/data").exists()
        else (ROOT / "../shared/data").resolve()
    )


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def command_line() -> str:
    return "PYTHONPATH=src python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])


def write_result(name: str, record: dict[str, object], out_dir: Path = RESULTS) -> Path:
    """Atomically write ``<out_dir>/<name>.json`` (default ``results/retrieval``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(record, fh, indent=1)
    os.replace(tmp, path)
    return path
