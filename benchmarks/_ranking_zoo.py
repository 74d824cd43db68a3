"""Shared helpers of the ranking benchmarks: one model builder per registry entry, one training run."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from recforge.data import BatchLoader, ColumnarDataset
from recforge.features import DenseFeature, SparseFeature
from recforge.metrics import auc_score, log_loss
from recforge.models import ranking
from recforge.trainers import CTRTrainer

Builder = Callable[[list[SparseFeature], list[DenseFeature]], nn.Module]


def builders(mlp: dict[str, object]) -> dict[str, Builder]:
    """name -> builder(sparse, dense). Every non-sequence registry model once (AutoInt+ is the
    registry's AutoInt with an MLP; plain AutoInt is listed too). The behaviour-sequence models
    (``ranking.SEQUENCE_MODELS``) need histories: ``seq_ctr_planted.py`` / ``seq_ctr_amazon.py``."""
    d = lambda s: s[0].dim  # noqa: E731
    out: dict[str, Builder] = {
        "WideDeep": lambda s, x: ranking.WideDeep(s + x, s + x, mlp),
        "DeepFM": lambda s, x: ranking.DeepFM(s + x, s + x, mlp),
        "DCN": lambda s, x: ranking.DCN(s + x, 3, mlp),
        "DCNv2": lambda s, x: ranking.DCNv2(s + x, 3, mlp, "parallel", low_rank=16, num_experts=4),
        "EDCN": lambda s, x: ranking.EDCN(s + x, 3, {"dropout": mlp.get("dropout", 0.0)}),
        "AFM": lambda s, x: ranking.AFM(s + x, None, 16),
        "FiBiNet": lambda s, x: ranking.FiBiNet(s + x, mlp, 3, "field_interaction"),
        "DeepFFM": lambda s, x: ranking.DeepFFM(s + x, s, None, mlp),
        "FatDeepFFM": lambda s, x: ranking.FatDeepFFM(s + x, s, None, 2, mlp),
        "AutoInt": lambda s, x: ranking.AutoInt(s, x, 2, 2, 0.0, None),
        "AutoInt+": lambda s, x: ranking.AutoInt(s, x, 2, 2, 0.0, mlp),
        "xDeepFM": lambda s, x: ranking.xDeepFM(s + x, (16, 16), mlp),
        "NFM": lambda s, x: ranking.NFM(s + x, mlp),
        "PNN": lambda s, x: ranking.PNN(s + x, mlp, "inner"),
        "FinalMLP": lambda s, x: ranking.FinalMLP(s + x, mlp, mlp),
        "DLRM": lambda s, x: ranking.DLRM(x, s, {"dims": [32, d(s)]}, mlp),
    }
    missing = set(ranking.MODELS) - set(ranking.SEQUENCE_MODELS) - set(out)
    if missing:
        raise RuntimeError(f"benchmark builders miss registry models {sorted(missing)}")
    return out


def train_eval(
    model: nn.Module,
    train: ColumnarDataset,
    val: ColumnarDataset,
    test: ColumnarDataset,
    *,
    seed: int,
    lr: float,
    epochs: int,
    batch_size: int,
    patience: int = 2,
    weight_decay: float = 0.0,
) -> dict[str, float]:
    """Fit with early stopping on validation AUC (best weights restored); test AUC/logloss."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = CTRTrainer(
            model,
            optimizer_params={"lr": lr, "weight_decay": weight_decay},
            n_epoch=epochs,
            earlystop_patience=patience,
            model_path=run_dir,
            progress=False,
            plot=False,
        )
        trainer.fit(BatchLoader(train, batch_size, shuffle=True, seed=seed), BatchLoader(val, 8192))
        prob = trainer.predict(model, BatchLoader(test, 8192))
    labels = test.columns["label"].numpy()
    return {
        "auc": auc_score(labels, prob),
        "logloss": log_loss(labels, prob),
        "epochs": float(len(trainer.history)),
        "seconds": time.perf_counter() - t0,
    }


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def fmt(values: Sequence[float], digits: int = 4) -> str:
    """``mean ± std`` (population std over seeds) or the single value."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"
