"""End-to-end smoke run of the DeepFM throughput benchmark on a tiny table (recforge only)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.benchmark
def test_throughput_script_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "throughput.md"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "throughput_deepfm.py"),
        "--rows",
        "5000",
        "--skip-peers",
        "--repeats",
        "1",
        "--threads",
        "1",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(out),
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    md = out.read_text(encoding="utf-8")
    assert "--rows 5000 --skip-peers" in md.splitlines()[5]  # the command heads the file
    assert "| recforge | 1 |" in md and "| recforge-dense | 1 |" in md
    raw = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert {r["run"] for r in raw["records"]} == {"recforge", "recforge-fp32", "recforge-dense"}
    for rec in raw["records"]:
        assert rec["train_rows"] == 4500 and rec["infer_rows"] == 500
        assert (
            rec["train_samples_per_s"] > 0 and rec["train_samples_per_cpu_s"] > 0 and rec["peak_rss_mb"] > 0
        )
        assert math.isfinite(rec["auc"]) and 0.0 <= rec["auc"] <= 1.0
    assert 0.5 < raw["meta"]["oracle_auc"] <= 1.0
    import torch

    assert torch.backends.cpu.get_cpu_capability() in raw["meta"]["machine"]  # read, not hard-coded
    assert not list(tmp_path.glob("**/*.tmp*"))  # no partial files left behind
