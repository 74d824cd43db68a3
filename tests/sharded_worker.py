"""A torchrun worker for tests/test_torchrec_sharding.py: trains small recforge models with their
tables sharded by TorchRec's DistributedModelParallel (gloo, CPU) through the CTRTrainer, and saves
per run ``OUT_DIR/{model}_{sharding}_rank{r}.pt`` (history, validation predictions, and on rank 0
the gathered unsharded state dict).

Usage: python -m torch.distributed.run --standalone --nproc_per_node=2 tests/sharded_worker.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from recforge import distributed as rdist
from recforge.data import BatchLoader, ColumnarDataset
from recforge.features import DenseFeature, SequenceFeature, SparseFeature
from recforge.models.ranking import DLRM, DeepFM
from recforge.torchrec.sharding import ShardedModel
from recforge.trainers import CTRTrainer

N_TRAIN, N_VALID = 1030, 301  # 515 rows per rank: the last batch of each epoch is short
BATCH, EPOCHS, SEED = 64, 2, 7  # per-rank batch; the global batch is world_size * BATCH
# eps large enough to count: a gradient scaled by c acts as eps / c, so the scale is checked too
LR, EMB_LR, EMB_EPS = 0.02, 0.05, 0.01
MODELS = ("deepfm", "dlrm")
SHARDINGS = ("table_wise", "column_wise", "row_wise")


def make_data(n: int, seed: int) -> ColumnarDataset:
    g = torch.Generator().manual_seed(seed)
    cols = {f"c{i}": torch.randint(0, 30, (n,), generator=g) for i in range(3)}
    hist = torch.randint(1, 30, (n, 4), generator=g)
    cols["hist"] = hist * (torch.rand(n, 4, generator=g) < 0.6)  # 0 pads; some rows are empty
    cols["x"] = torch.rand(n, generator=g)
    logit = (cols["c0"] % 3 - 1).float() * 1.5 + (cols["x"] - 0.5) * 2 + (cols["c2"] % 2) * 0.5
    return ColumnarDataset(cols, (torch.rand(n, generator=g) < torch.sigmoid(logit)).float())


def build_model(name: str, *, sparse: bool = False) -> nn.Module:
    torch.manual_seed(0)
    sparse_feats = [
        SparseFeature("c0", vocab_size=30, embed_dim=8),
        SparseFeature("c1", vocab_size=30, embed_dim=8),
        SparseFeature("c2", vocab_size=30, embed_dim=8),
        SequenceFeature("hist", vocab_size=30, embed_dim=8, pooling="mean", shared_with="c0"),
    ]
    dense = [DenseFeature("x")]
    if name == "deepfm":
        return DeepFM(
            [*sparse_feats, *dense], sparse_feats, mlp_params={"dims": [16]}, sparse=sparse, fused=True
        )
    return DLRM(
        dense,
        sparse_feats,
        bottom_params={"dims": [8]},
        top_params={"dims": [16]},
        sparse=sparse,
        fused=False,
    )


def main(out_dir: Path) -> None:
    torch.set_num_threads(1)
    info = rdist.init_from_env("gloo")
    valid = BatchLoader(make_data(N_VALID, 2), 100)
    for name in MODELS:
        for sharding in SHARDINGS:
            model = build_model(name)
            if info.rank == 1:  # the shards and dense weights must start from rank 0's model
                with torch.no_grad():
                    for p in model.parameters():
                        p.add_(1.0)
            sharded = ShardedModel(
                model, sharding=sharding, embedding_optimizer={"lr": EMB_LR, "eps": EMB_EPS}
            )
            trainer = CTRTrainer(
                sharded,
                optimizer_fn=torch.optim.Adam,
                optimizer_params={"lr": LR},
                n_epoch=EPOCHS,
                earlystop_metric="logloss",
                model_path=out_dir / f"run_{name}_{sharding}",
                progress=False,
                plot=False,
            )
            assert trainer.distributed and trainer.model_parallel
            train = BatchLoader(make_data(N_TRAIN, 1), BATCH, shuffle=True, seed=SEED)
            trainer.fit(train, valid)  # ends with the best epoch's weights on every rank
            probs = trainer.predict(trainer.model, valid)
            bad = {**next(iter(valid)), "c1": torch.full((100,), 30)}  # c1 has 30 ids: 0..29
            try:
                sharded(bad)
                bad_id_error = ""
            except IndexError as e:  # raised on every rank before any collective
                bad_id_error = str(e)
            state = sharded.unsharded_state_dict()
            plan = {t: (p.sharding_type, p.ranks) for t, p in sharded.plan.plan["ebc"].items()}
            torch.save(
                {
                    "history": trainer.history,
                    "probs": probs,
                    "state": state,
                    "plan": plan,
                    "bad": bad_id_error,
                },
                out_dir / f"{name}_{sharding}_rank{info.rank}.pt",
            )
    registry_outputs(out_dir, info.rank)
    rdist.destroy()


def registry_outputs(out_dir: Path, rank: int) -> None:
    """Every ranking model of the contract tests, sharded column-wise: its eval outputs (which
    must equal the unsharded model's) and whether every dense parameter got a gradient; the
    sequence models (attention over unpooled histories) must be refused."""
    from contract import synthetic_batch
    from test_contract_ranking import ALL, FACTORIES

    batch = synthetic_batch(ALL, 16, seed=3)
    results: dict[str, object] = {}
    for name, factory in FACTORIES.items():
        torch.manual_seed(0)
        model = factory()
        try:
            sharded = ShardedModel(model, sharding="column_wise")
        except (ValueError, NotImplementedError) as e:  # refused at construction, with a reason
            results[name] = f"refused: {e}"
            continue
        model.eval()
        sharded.eval()
        with torch.no_grad():
            expected, got = model(batch), sharded(batch)
        sharded.train()
        sharded(batch).sum().backward()
        grads = all(p.grad is not None for p in sharded.dense_parameters())
        results[name] = (expected, got, grads)
    from test_contract_seq_ranking import FACTORIES as SEQUENCE_FACTORIES

    for name, factory in SEQUENCE_FACTORIES.items():  # attention over unpooled histories
        try:
            ShardedModel(factory(), sharding="table_wise")
            results[name] = "sharded"
        except ValueError as e:
            results[name] = f"refused: {e}"
    torch.save(results, out_dir / f"registry_rank{rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
