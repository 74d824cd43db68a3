"""Shared bits of the retrieval benchmarks: one library run (``recforge.runs.train``) and what its
run directory recorded, result files, peak memory, the command line."""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from recforge.layout import METRICS_LOG, RunLayout
from recforge.runs import RunResult, train
from recforge.runs.train import SELECTION

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


@dataclass
class LibraryRun:
    """One ``recforge.runs.train`` call and what its run directory recorded.

    ``history``: the tested model's per-epoch records (``metrics.jsonl``); ``selection``: with
    ``trainer.refit``, the validation run's records (``selection/metrics.jsonl``), else ``history``
    itself when it was validated, else empty; ``best_epoch``: the epoch chosen on validation
    (0-based; ``None`` without validation); ``users``: ``users_evaluated`` / ``users_total`` /
    ``users_without_history`` of the test split; ``test``: its metrics; ``wall_s``: the whole call
    (data preparation, training, validation, refit, test).
    """

    result: RunResult
    history: list[dict[str, float]]
    selection: list[dict[str, float]]
    best_epoch: int | None
    users: dict[str, int]
    test: dict[str, float]
    wall_s: float


USER_COUNTS = ("users_evaluated", "users_total", "users_without_history")


def _records(path: Path) -> list[dict[str, float]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@contextmanager
def run_directory(given: Path | None) -> Iterator[Path]:
    """``given`` (kept), or a temporary directory removed afterwards."""
    if given is not None:
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="recforge-bench-") as tmp:
        yield Path(tmp) / "run"


def run_library(config: Mapping[str, Any], run_dir: Path) -> LibraryRun:
    """Train ``config`` (a raw config mapping) with ``recforge.runs.train`` into ``run_dir`` and
    collect the per-epoch records, the selected epoch and the test split's metrics."""
    t0 = time.perf_counter()
    result = train(config, run_dir=run_dir)
    wall_s = time.perf_counter() - t0
    layout = RunLayout.of(result.run_dir)
    history = _records(layout.metrics_log)
    selection_dir = result.run_dir / SELECTION
    selected = selection_dir / "selected.json"
    if selected.exists():  # trainer.refit: the epoch count was chosen on validation, then refit
        selection = _records(selection_dir / METRICS_LOG)
        best: int | None = int(json.loads(selected.read_text(encoding="utf-8"))["best_epoch"])
    elif any(k.startswith("val_") for r in history for k in r):
        selection = history
        best = int(torch.load(layout.best, map_location="cpu", weights_only=True)["epoch"])
    else:  # no validation: every epoch ran and the last one is tested
        selection, best = [], None
    test = dict(result.metrics["test"])
    users = {k: int(test.pop(k)) for k in USER_COUNTS if k in test}
    return LibraryRun(result, history, selection, best, users, {k: float(v) for k, v in test.items()}, wall_s)


def reject_dropped(given: Sequence[str], dropped: Mapping[str, str]) -> None:
    """Exit with a clear message when a flag the library path cannot express is given."""
    for flag, why in dropped.items():
        if any(a == flag or a.startswith(flag + "=") for a in given):
            raise SystemExit(f"{flag} is no longer supported: {why}")
