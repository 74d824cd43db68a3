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
from recforge.models.defaults import default_model
from recforge.trainers import CTRTrainer

Builder = Callable[[list[SparseFeature], list[DenseFeature]], nn.Module]


def builders(mlp: dict[str, object]) -> dict[str, Builder]:
    """name -> builder(sparse, dense): every non-sequence registry model once, from its registry
    default (``recforge.models.defaults``) with this benchmark's MLP and the settings its published
    tables used (AutoInt+ is the registry's AutoInt with an MLP). The behaviour-sequence models
    (``ranking.SEQUENCE_MODELS``) need histories: ``seq_ctr_planted.py`` / ``seq_ctr_amazon.py``."""
    settings: dict[str, Callable[[list[SparseFeature], list[DenseFeature]], dict[str, object]]] = {
        "DeepFM": lambda s, x: {"fm_features": s + x, "mlp_params": mlp},  # the dense values' linear term too
        "EDCN": lambda s, x: {"mlp_params": {"dropout": mlp.get("dropout", 0.0)}},
        "AFM": lambda s, x: {},
        "AutoInt": lambda s, x: {},
        "FinalMLP": lambda s, x: {"mlp1_params": mlp, "mlp2_params": mlp},
        "DLRM": lambda s, x: {"bottom_params": {"dims": [32, s[0].dim]}, "top_params": mlp},
        "AutoInt+": lambda s, x: {"mlp_params": mlp},
    }
    names = [*(n for n in ranking.MODELS if n not in ranking.SEQUENCE_MODELS), "AutoInt+"]

    def build(name: str) -> Builder:
        model = name.removesuffix("+")
        params = settings.get(name, lambda s, x: {"mlp_params": mlp})
        return lambda s, x: default_model(model, s + x, **params(s, x))

    return {name: build(name) for name in names}


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
