"""Shared pieces of the behaviour-sequence CTR benchmarks: model factories and one training run."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from recforge.data import BatchLoader, ColumnarDataset, length_bucketed
from recforge.data.behavior import BehaviorFeatures
from recforge.models.ranking import BST, DIEN, DIN, WideDeep
from recforge.trainers import CTRTrainer

MODEL_NAMES = ("DNN", "DIN", "DIEN", "BST")
MLP = {"dims": [200, 80]}


def build_model(name: str, specs: BehaviorFeatures) -> nn.Module:
    """The compared models over one feature set (DNN = WideDeep with a mean-pooled history). DIN's
    attention weights are softmax-normalised over the real behaviours, as DIEN's (the authors'
    code); the paper's unnormalised sum is ``DIN(..., softmax_attention=False)``."""
    factories: dict[str, Callable[[], nn.Module]] = {
        "DNN": lambda: WideDeep(specs.target_features, [*specs.features, *specs.mean_history_features], MLP),
        "DIN": lambda: DIN(
            specs.features, specs.history_features, specs.target_features, MLP, softmax_attention=True
        ),
        "DIEN": lambda: DIEN(
            specs.features, specs.history_features, specs.target_features, MLP,
            neg_history_features=specs.neg_history_features, gru_type="AUGRU", alpha=1.0,
        ),
        "BST": lambda: BST(specs.features, specs.history_features, specs.target_features, MLP, nhead=2,
                           dropout=0.1, num_layers=1, max_seq_len=64),
    }  # fmt: skip
    try:
        return factories[name]()
    except KeyError:
        raise ValueError(f"unknown model {name!r}; valid: {list(factories)}") from None


def run_one(
    name: str,
    specs: BehaviorFeatures,
    train: Mapping[str, np.ndarray],
    valid: Mapping[str, np.ndarray],
    test: Mapping[str, np.ndarray],
    *,
    seed: int,
    epochs: int,
    batch_size: int,
    lr: float,
    group: str | None,
    weight_decay: float = 0.0,
) -> dict[str, float]:
    """Train ``name`` (best validation-AUC epoch kept) and score the test split."""
    torch.manual_seed(seed)
    model = build_model(name, specs)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = CTRTrainer(
            model, optimizer_params={"lr": lr, "weight_decay": weight_decay}, n_epoch=epochs, model_path=run_dir, gauc_group=group,
            progress=False, plot=False, seed=seed,
        )  # fmt: skip
        t0 = time.perf_counter()
        bucketed = length_bucketed(train, batch_size, seed, "hist_item_id")
        trainer.fit(
            BatchLoader(ColumnarDataset(bucketed), batch_size),
            BatchLoader(ColumnarDataset(dict(valid)), 4096),
        )
        total = time.perf_counter() - t0
        metrics = trainer.evaluate(model, BatchLoader(ColumnarDataset(dict(test)), 4096))
    metrics["epoch_s"] = statistics.fmean(r["seconds"] for r in trainer.history)
    metrics["fit_s"] = total
    metrics["best_epoch"] = trainer.stopper.best_epoch
    return metrics


def mean_std(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"
