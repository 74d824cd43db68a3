"""prepare -> train -> evaluate -> export -> serve on the bundled Adult data, through the real CLI."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import recforge
from recforge.datasets import load as load_dataset
from serving_runs import free_port

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "adult_deepfm.yaml"


def cli(*args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), TQDM_DISABLE="1")
    out = subprocess.run(
        [sys.executable, "-m", "recforge", *args], capture_output=True, text=True, env=env, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.slow
def test_prepare_train_evaluate_export_serve(tmp_path):
    run = tmp_path / "adult"
    fast = ["--set", "trainer.n_epoch=1", "--set", "trainer.progress=false", "--set", "trainer.num_threads=1"]
    out = cli("prepare", str(CONFIG), "--run-dir", str(run), *fast)
    assert "train: 29,305 rows" in out
    train = pq.read_table(run / "data" / "train.parquet")
    assert train.num_rows == 29_305 and "label" in train.column_names
    assert (run / "pipeline").is_dir()

    cli("train", str(CONFIG), "--run-dir", str(run), *fast)
    metrics = json.loads((run / "test_metrics.json").read_text())
    assert metrics["test"]["auc"] > 0.85
    test = load_dataset("adult")["test"]
    test.to_parquet(tmp_path / "test.parquet")
    evaluated = json.loads(cli("evaluate", str(run), "--data", str(tmp_path / "test.parquet")))
    assert evaluated["auc"] == pytest.approx(metrics["test"]["auc"], abs=1e-6)

    cli("export", str(run), "--quantize", "int8")
    assert (run / "export" / "model.onnx").exists() and (run / "export" / "model.int8.onnx").exists()

    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    server = subprocess.Popen(
        [sys.executable, "-m", "recforge", "serve", str(run), "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.stdout.read().decode()
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.25)
        rows = test.drop(columns=["label"]).head(200)
        rows = pd.concat([rows, rows.head(1).assign(native_country="Atlantis")], ignore_index=True)
        r = httpx.post(f"{url}/score", json={"rows": json.loads(rows.to_json(orient="records"))}, timeout=30)
        assert r.status_code == 200, r.text
        want = recforge.load(run).score(rows)
        np.testing.assert_allclose(r.json()["probabilities"], want, atol=1e-5)
        r = httpx.post(f"{url}/score", json={"rows": [{"age": "forty"}]}, timeout=30)
        assert r.status_code == 422 and "age" in r.json()["detail"]
    finally:
        server.terminate()
        server.wait(30)
