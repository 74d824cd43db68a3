"""A torchrun worker for tests/test_distributed.py: trains a small DeepFM data-parallel (gloo) and
saves its final weights, gathered validation metrics and predictions as ``OUT_DIR/rank{r}.pt``.

Usage: python -m torch.distributed.run --standalone --nproc_per_node=2 tests/distributed_worker.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from recforge import distributed as rdist
from recforge.data import BatchLoader, ColumnarDataset
from recforge.features import DenseFeature, SparseFeature
from recforge.models.ranking import DeepFM
from recforge.trainers import CTRTrainer

N_TRAIN, N_VALID = 3001, 1001  # not divisible by 2: uneven shards must still be exact


def make_data(n: int, seed: int) -> ColumnarDataset:
    g = torch.Generator().manual_seed(seed)
    cols = {f"c{i}": torch.randint(0, 20, (n,), generator=g) for i in range(3)}
    cols["x"] = torch.rand(n, generator=g)
    logit = (cols["c0"] % 3 - 1).float() * 1.5 + (cols["x"] - 0.5) * 2
    return ColumnarDataset(cols, (torch.rand(n, generator=g) < torch.sigmoid(logit)).float())


def features() -> tuple[list, list]:
    sparse = [SparseFeature(f"c{i}", vocab_size=20, embed_dim=8) for i in range(3)]
    return [*sparse, DenseFeature("x")], sparse


def build_model() -> DeepFM:
    torch.manual_seed(0)
    deep, fm = features()
    return DeepFM(deep, fm, mlp_params={"dims": [16]})


def main(out_dir: Path) -> None:
    torch.set_num_threads(1)
    info = rdist.init_from_env("gloo")
    model = build_model()
    if info.rank == 1:  # DDP must start every rank from rank 0's weights
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
    trainer = CTRTrainer(
        model,
        optimizer_params={"lr": 1e-2},
        n_epoch=2,
        model_path=out_dir / "run",
        progress=False,
        plot=False,
    )
    assert trainer.distributed
    train = BatchLoader(make_data(N_TRAIN, 1), 128, shuffle=True, seed=3)
    valid = BatchLoader(make_data(N_VALID, 2), 100)
    trainer.fit(train, valid)
    metrics = trainer.evaluate(trainer.model, valid)
    probs = trainer.predict(trainer.model, valid)
    torch.save(
        {"state": trainer.model.state_dict(), "metrics": metrics, "probs": probs, "history": trainer.history},
        out_dir / f"rank{info.rank}.pt",
    )
    rdist.destroy()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
