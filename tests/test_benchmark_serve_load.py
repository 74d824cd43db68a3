"""Smoke run of the HTTP serving load benchmark: a small index, a few hundred real requests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.benchmark
def test_serve_load_script_runs_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    out = tmp_path / "serve_load.md"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "serve_load.py"), "--requests", "200", "--warmup", "10"]
    cmd += ["--concurrency", "8", "1", "--num-items", "2000", "--rerank", "20", "--out", str(out)]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    md = out.read_text(encoding="utf-8")
    assert "--requests 200 --concurrency 8 1 --num-items 2000 --rerank 20" in md
    rows = [line for line in md.splitlines() if line.startswith("| h11 + asyncio | 200 |")]
    assert len(rows) == 2 and all(r.split("|")[4].strip() == "0" for r in rows)  # zero errors
    assert "Errors: none." in md
