"""Smoke run of ``benchmarks/generative_tiger.py`` on tiny generated S3-Rec-layout files: SASRec
(which also writes the collaborative item vectors), then TIGER on attributes + those vectors, and
the cold-start path, so the script that produces ``results/tiger.md`` cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT / "src"))


def _s3rec_like(root: Path, users: int = 40, items: int = 30) -> None:
    """``uid i1 i2 ...`` lines (time order) and ``{"item": [attribute ids]}``."""
    rng = np.random.default_rng(0)
    d = root / "sequential" / "s3rec_amazon_beauty"
    d.mkdir(parents=True)
    lines = [
        " ".join(map(str, [u, *rng.integers(1, items + 1, rng.integers(5, 10))])) for u in range(1, users + 1)
    ]
    (d / "Beauty.txt").write_text("\n".join(lines) + "\n")
    attrs = {str(i): sorted({int(a) for a in rng.integers(1, 12, 3)}) for i in range(1, items + 1)}
    (d / "Beauty_item2attributes.json").write_text(json.dumps(attrs))


def _run(tmp_path: Path, *args: str) -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "generative_tiger.py"), "--data-dir", str(tmp_path / "data"),
           "--out-dir", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--epochs", "2",
           "--speed-users", "8", *args]  # fmt: skip
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.benchmark
def test_tiger_script_runs_sasrec_tiger_and_cold_start(tmp_path: Path) -> None:
    _s3rec_like(tmp_path / "data")
    tiny = ["--dim", "16", "--ffn", "32", "--heads", "2", "--rq-codes", "4", "--rq-latent", "4", "--rq-epochs", "3",
            "--beam", "10", "--valid-users", "20"]  # fmt: skip
    _run(tmp_path, "--model", "SASRec", "--dim", "8", "--negatives", "8")
    _run(tmp_path, "--model", "TIGER", "--content", "attributes+collaborative", *tiny)
    _run(tmp_path, "--model", "TIGER", "--content", "attributes", "--cold", "0.1", *tiny)
    rows = [json.loads(p.read_text()) for p in sorted((tmp_path / "out" / "tiger").glob("*.json"))]
    assert {r["model"] for r in rows} == {"SASRec", "TIGER"}
    assert all(r["users"] == r["total_users"] == 40 for r in rows)
    cold = next(r for r in rows if r["cold"])
    assert cold["collision_rate_after"] == 0.0 and "eps0.1_cold_recall@10" in cold
    table = (tmp_path / "out" / "tiger.md").read_text()
    assert "| beauty | TIGER | attributes | 0.1 |" in table and "## Cold start" in table
