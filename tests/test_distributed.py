"""Data-parallel training with torchrun + gloo on CPU (``pytest -m distributed``), plus the
single-process behaviour of the helpers (default suite)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from recforge import distributed as rdist
from recforge.data import BatchLoader, ColumnarDataset
from recforge.trainers import CTRTrainer

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.distributed
def test_two_gloo_ranks_match_single_process(tmp_path: Path) -> None:
    import distributed_worker as w

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [*rdist.launch_command([], 2)[:5], str(ROOT / "tests" / "distributed_worker.py"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    # identical weights on both ranks (DDP broadcast at start, averaged gradients, best restored)
    assert r0["state"].keys() == r1["state"].keys()
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    # gathered metrics equal the single-process evaluation of the same weights on all rows
    model = w.build_model()
    model.load_state_dict(r0["state"])
    single = CTRTrainer(model, model_path=tmp_path / "single", progress=False, plot=False)
    assert not single.distributed
    valid = BatchLoader(w.make_data(w.N_VALID, 2), 100)
    expected = single.evaluate(model, valid)
    for r in (r0, r1):
        assert r["metrics"].keys() == expected.keys()
        for k in expected:
            assert r["metrics"][k] == pytest.approx(expected[k], abs=1e-9), k
        np.testing.assert_allclose(r["probs"], single.predict(model, valid), rtol=0, atol=1e-7)
    # every sample trained once per epoch over the two ranks; rank 0 alone wrote the log
    assert [h["epoch"] for h in r0["history"]] == [0, 1]
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1]
    assert (tmp_path / "run" / "best.pt").exists()


def test_helpers_without_process_group() -> None:
    assert not rdist.is_distributed() and rdist.rank() == 0 and rdist.world_size() == 1 and rdist.is_main()
    loader = BatchLoader(ColumnarDataset({"a": torch.arange(10)}), 4)
    assert loader.block_for_rank(rdist.rank(), rdist.world_size()) is loader
    assert loader.for_rank(rdist.rank(), rdist.world_size()) is loader
    arrays = {"p": np.arange(3.0)}
    assert rdist.gather_arrays(arrays)["p"] is arrays["p"]
    assert rdist.all_reduce_sum([1.5, 2]) == [1.5, 2.0]


def test_launch_command_and_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    cmd = rdist.launch_command(["train", "cfg.yaml"], 3)
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc_per_node=3" in cmd and cmd[-4:] == ["-m", "recforge", "train", "cfg.yaml"]
    with pytest.raises(ValueError, match="nproc"):
        rdist.launch_command([], 0)
    with pytest.raises(ValueError, match="backend must be one of"):
        rdist.Backend.parse("mpi")
    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        rdist.init_from_env()
    for k, v in {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(RuntimeError, match="inside a torchrun worker"):
        rdist.launch(["train", "x"], 2)
