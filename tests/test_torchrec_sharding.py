"""Training with TorchRec-sharded embedding tables (``recforge.torchrec.sharding``): table-wise,
column-wise and row-wise over 2 gloo ranks on CPU against the unsharded model trained on the same
global batches.

The distributed test needs the real TorchRec (the ``recforge[torchrec]`` extra, see docs/torchrec.md)
and runs with ``-m distributed``; without TorchRec it is skipped. The other tests run everywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from recforge import distributed as rdist
from recforge.data import BatchLoader
from recforge.features import SequenceFeature, SparseFeature
from recforge.optim import RowWiseAdagrad
from recforge.torchrec.sharding import FusedRowWiseAdagrad, PooledFeatures, ShardingType, require_torchrec
from recforge.trainers import CTRTrainer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import sharded_worker as w  # noqa: E402

# float32 sums in another order (per-rank halves, fbgemm kernels) over 2 epochs of 9 steps;
# measured: at most 3.6e-7 apart in probability and in any weight
ATOL = 1e-5


class GlobalBatches:
    """The batches of ``world`` ranks' ``BatchLoader(..., shuffle=True)`` shares, step by step,
    concatenated in rank order: what one data-parallel step sees in total."""

    def __init__(self, loader: BatchLoader, world: int) -> None:
        self.ranks = [
            BatchLoader(
                loader.dataset, loader.batch_size, shuffle=True, seed=loader.seed, rank=r, world_size=world
            )
            for r in range(world)
        ]

    def set_epoch(self, epoch: int) -> None:
        for r in self.ranks:
            r.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.ranks[0])

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for parts in zip(*self.ranks):
            yield {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def reference(
    name: str, tmp: Path, *, column_blocks: int = 1, emb_lr: float = w.EMB_LR, emb_eps: float = w.EMB_EPS
) -> CTRTrainer:
    """The unsharded model trained single-process on the same global batches: Adam on the dense
    weights, recforge's RowWiseAdagrad (TorchRec's fused rule) on the sparse-gradient tables. A
    table split column-wise in k shards keeps one accumulator per row in each shard:
    ``column_blocks=k``."""
    model = w.build_model(name, sparse=True)
    trainer = CTRTrainer(
        model,
        optimizer_fn=torch.optim.Adam,
        optimizer_params={"lr": w.LR},
        sparse_optimizer_fn=lambda params, lr: RowWiseAdagrad(
            params, lr=emb_lr, eps=emb_eps, column_blocks=column_blocks
        ),
        n_epoch=w.EPOCHS,
        earlystop_metric="logloss",
        model_path=tmp,
        progress=False,
        plot=False,
    )
    train = BatchLoader(w.make_data(w.N_TRAIN, 1), w.BATCH, shuffle=True, seed=w.SEED)
    trainer.fit(GlobalBatches(train, 2), BatchLoader(w.make_data(w.N_VALID, 2), 100))
    return trainer


@pytest.mark.distributed
def test_two_rank_sharded_training_matches_unsharded(tmp_path: Path) -> None:
    pytest.importorskip("torchrec")
    pytest.importorskip("fbgemm_gpu")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [*rdist.launch_command([], 2)[:5], str(ROOT / "tests" / "sharded_worker.py"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    valid = BatchLoader(w.make_data(w.N_VALID, 2), 100)
    for name in w.MODELS:
        for sharding in w.SHARDINGS:
            blocks = 2 if sharding == "column_wise" else 1
            ref = reference(name, tmp_path / f"ref_{name}_{sharding}", column_blocks=blocks)
            ref_probs = ref.predict(ref.model, valid)
            ref_state = ref.model.state_dict()
            r0, r1 = (
                torch.load(tmp_path / f"{name}_{sharding}_rank{r}.pt", weights_only=False) for r in (0, 1)
            )
            where = f"{name}/{sharding}"
            # the plan is the one asked for: whole tables on alternating ranks, or each table
            # split over both ranks by columns or by rows
            ranks = [[i % 2] for i in range(3)] if sharding == "table_wise" else [[0, 1]] * 3
            expected = {t: (sharding, r) for t, r in zip(("t_c0", "t_c1", "t_c2"), ranks)}
            assert r0["plan"] == expected, where
            assert "feature 'c1': ids must lie in [0, 30)" in r0["bad"] and r1["bad"] == r0["bad"], where
            # every rank evaluated the whole validation set with the same (sharded) weights
            np.testing.assert_allclose(r0["probs"], r1["probs"], rtol=0, atol=1e-7, err_msg=where)
            # ... and equals the unsharded reference, epoch by epoch and at the end
            for got, want in zip(r0["history"], ref.history, strict=True):
                for k in ("train_loss", "val_logloss", "val_auc"):
                    assert got[k] == pytest.approx(want[k], abs=ATOL), (where, got["epoch"], k)
            np.testing.assert_allclose(r0["probs"], ref_probs, rtol=0, atol=ATOL, err_msg=where)
            # the gathered state dict is the unsharded model's, with the reference's weights
            assert r1["state"] is None and r0["state"].keys() == ref_state.keys(), where
            for k, v in ref_state.items():
                torch.testing.assert_close(r0["state"][k], v, rtol=0, atol=ATOL, msg=f"{where} {k}")
            best = torch.load(tmp_path / f"run_{name}_{sharding}" / "best.pt", weights_only=True)
            assert best["model"].keys() == ref_state.keys(), where
            # the saved weights reload into a plain model and predict what the sharded model did
            plain = w.build_model(name)
            plain.load_state_dict(r0["state"])
            np.testing.assert_allclose(ref.predict(plain, valid), r0["probs"], rtol=0, atol=1e-6)
    # every ranking model of the contract test runs sharded (column-wise) with the unsharded
    # model's outputs, and backward reaches all its dense parameters; no skip list
    from test_contract_ranking import FACTORIES
    from test_contract_seq_ranking import FACTORIES as SEQUENCE_FACTORIES

    for r in (0, 1):
        results = torch.load(tmp_path / f"registry_rank{r}.pt", weights_only=False)
        assert results.keys() == FACTORIES.keys() | SEQUENCE_FACTORIES.keys()
        for name in SEQUENCE_FACTORIES:  # ... and the attention models are refused, saying why
            assert "an embedding bag pools by mean or sum, not concat" in results.pop(name), name
        for name, result in results.items():
            assert not isinstance(result, str), (name, result)
            expected, got, all_grads = result
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-6, msg=name)
            assert all_grads, name
    # the tolerance separates (measured: these are 3e-3 and 8e-2 away in probability): one accumulator per row instead of per column
    # shard; embedding gradients summed over the ranks (2x the global-batch mean, i.e. eps / 2)
    for sharding, kw in (("column_wise", {"column_blocks": 1}), ("table_wise", {"emb_eps": w.EMB_EPS / 2})):
        r0 = torch.load(tmp_path / f"deepfm_{sharding}_rank0.pt", weights_only=False)
        other = reference("deepfm", tmp_path / f"control_{sharding}", **kw)  # type: ignore[arg-type]
        assert np.abs(other.predict(other.model, valid) - r0["probs"]).max() > 100 * ATOL, kw


def test_missing_torchrec_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from recforge.torchrec.sharding import ShardedModel

    monkeypatch.setitem(sys.modules, "torchrec", None)  # an import of it now raises ImportError
    with pytest.raises(ImportError, match=r"recforge\[torchrec\]"):
        require_torchrec()
    with pytest.raises(ImportError, match=r"recforge\[torchrec\]"):
        ShardedModel(w.build_model("dlrm"))


def test_sharded_model_needs_a_process_group() -> None:
    pytest.importorskip("torchrec")
    pytest.importorskip("fbgemm_gpu")
    from recforge.torchrec.sharding import ShardedModel

    assert not rdist.is_initialized()
    with pytest.raises(RuntimeError, match="process group"):
        ShardedModel(w.build_model("dlrm"))


def test_pooled_features_serve_only_pooled_vectors() -> None:
    feats = {"c0": SparseFeature("c0", vocab_size=5, embed_dim=4)}
    layer = PooledFeatures(feats, {"c0": "c0"})
    assert not list(layer.parameters())
    batch = {"c0": torch.tensor([1, 2])}
    with pytest.raises(RuntimeError, match="ShardedModel"):
        layer.stack(batch, list(feats.values()))
    with pytest.raises(NotImplementedError, match="unpooled"):
        layer.lookup("c0", batch["c0"])
    seq = SequenceFeature("h", vocab_size=5, embed_dim=4, pooling="concat")
    with pytest.raises(NotImplementedError, match="unpooled"):
        PooledFeatures({"h": seq}, {"h": "h"}).sequence({"h": torch.ones(2, 3, dtype=torch.long)}, "h")


def test_choices_and_optimizer_settings() -> None:
    assert ShardingType.parse("Column_Wise") is ShardingType.COLUMN_WISE
    with pytest.raises(ValueError, match="sharding_type must be one of"):
        ShardingType.parse("grid")
    assert FusedRowWiseAdagrad.parse({"lr": 0.1}) == FusedRowWiseAdagrad(lr=0.1, eps=1e-8)
    with pytest.raises(ValueError, match="unknown keys"):
        FusedRowWiseAdagrad.parse({"lr": 0.1, "momentum": 0.9})
    with pytest.raises(ValueError, match="lr must be > 0"):
        FusedRowWiseAdagrad(lr=0)


def test_config_sharding_keys() -> None:
    from recforge.config import parse_config

    base = {"data": {"train": "x.csv"}, "features": [{"name": "a"}], "model": {"name": "DeepFM"}}
    cfg = parse_config(
        {**base, "trainer": {"sharding": "Column_Wise", "embedding_optimizer_params": {"lr": 0.1}}}
    )
    assert cfg.trainer.sharding == "column_wise" and cfg.trainer.embedding_optimizer_params == {"lr": 0.1}
    assert parse_config(base).trainer.sharding is None
    with pytest.raises(ValueError, match=r"trainer\.sharding must be one of"):
        parse_config({**base, "trainer": {"sharding": "grid"}})
    with pytest.raises(ValueError, match=r"needs trainer\.sharding"):
        parse_config({**base, "trainer": {"embedding_optimizer_params": {"lr": 0.1}}})
    with pytest.raises(ValueError, match="unknown keys"):
        parse_config({**base, "trainer": {"sharding": "row_wise", "embedding_optimizer_params": {"beta": 1}}})


def test_cli_sharding_needs_processes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from recforge.cli import main
    from test_cli import small_config

    assert main(["train", str(small_config(tmp_path)), "--set", "trainer.sharding=table_wise"]) == 2
    assert "--nproc N" in capsys.readouterr().err


@pytest.mark.distributed
def test_cli_trains_sharded_on_two_processes_and_the_run_reloads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torchrec")
    pytest.importorskip("fbgemm_gpu")
    from recforge.cli import main
    from test_cli import small_config

    config = small_config(tmp_path)
    sets = ["trainer.sharding=column_wise", "trainer.embedding_optimizer_params.lr=0.05"]
    sets += ["trainer.optimizer_params.lr=0.01", "trainer.n_epoch=3"]
    cmd = [sys.executable, "-m", "recforge", "train", str(config), "--nproc", "2"]
    cmd += [a for s in sets for a in ("--set", s)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert done.stdout.count("test: auc=") == 1  # only rank 0 reports
    metrics = json.loads((tmp_path / "run" / "test_metrics.json").read_text())
    assert metrics["test"]["auc"] > 0.9
    # the run directory holds the unsharded model: `recforge evaluate` reloads it in one process
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run"), "--data", str(tmp_path / "test.parquet")]) == 0
    reloaded = json.loads(capsys.readouterr().out)
    assert reloaded["auc"] == pytest.approx(metrics["test"]["auc"], abs=1e-6)
    assert reloaded["logloss"] == pytest.approx(metrics["test"]["logloss"], abs=1e-5)
