"""Shared pieces of the behaviour-sequence CTR benchmarks: model factories and one training run."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from recforge.data import BatchLoader, ColumnarDataset, length_bucketed
from recforge.data.behavior import BehaviorFeatures
from recforge.models.defaults import default_model
from recforge.models.ranking import WideDeep
from recforge.trainers import CTRTrainer

MODEL_NAMES = ("DNN", "DIN", "DIEN", "BST")
MLP = {"dims": [200, 80]}


def build_model(name: str, specs: BehaviorFeatures) -> nn.Module:
    """The compared models over one feature set: DIN, DIEN and BST are their registry defaults
    (``recforge.models.defaults``: the prediction MLP 200-80, DIN's attention weights
    softmax-normalised over the real behaviours as DIEN's, the authors' code; the paper's
    unnormalised sum is ``softmax_attention=False``), BST with room for 64 positions; DNN is
    WideDeep with a mean-pooled history."""
    if name == "DNN":
        return WideDeep(
            specs.target_features, [*specs.features, *specs.mean_history_features], mlp_params=MLP
        )
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; valid: {list(MODEL_NAMES)}")
    features = [*specs.features, *specs.history_features, *specs.neg_history_features]
    return default_model(name, features, **({"max_seq_len": 64} if name == "BST" else {}))


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
