"""CTR preset: binary cross-entropy on logits; AUC, logloss (and GAUC with a group column)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from recforge.data.dataset import LABEL
from recforge.metrics import auc_score, gauc_score, log_loss, nan_if_undefined
from recforge.objectives import BinaryCrossEntropy, Objective
from recforge.outputs import logits_of
from recforge.trainers.loop import Trainer
from recforge.trainers.options import COMMON_ORDER, TrainOptions


class CTRMetrics(dict[str, float]):
    """Validation/test metrics of a CTR model; ``float()`` and a format spec give the AUC, so code
    written for Torch-RecHub (``auc = trainer.evaluate(...)``; ``f"{auc:.4f}"``) keeps working."""

    def __float__(self) -> float:
        return float(self["auc"])

    def __format__(self, spec: str) -> str:
        return format(self["auc"], spec) if spec else str(self)


class CTRTrainer(Trainer):
    """Click-through-rate training. Validation metrics: ``auc``, ``logloss`` (+ ``gauc`` when
    ``gauc_group`` names a batch column such as ``"user_id"``); early stopping monitors ``auc``.

    Args:
        model: a ranking model (``model(batch) -> logits (B,)`` or ``RankingOutput``).
        *args, **kwargs: ``TrainOptions`` fields in Torch-RecHub's order (``optimizer_fn,
            optimizer_params, regularization_params, scheduler_fn, scheduler_params, n_epoch,
            earlystop_patience, device, gpus, loss_mode, model_path``) or by name.
            ``loss_mode`` (Torch-RecHub: whether the model returns an auxiliary loss) is accepted
            and needs no setting: a model's ``RankingOutput.aux_loss`` is always added.
        gauc_group: batch column grouping rows for GAUC.
        objective: replaces the binary cross-entropy.
        options: the options as one object.
    """

    ORDER = (*COMMON_ORDER[:-1], "loss_mode", "model_path")
    default_metric = "auc"

    def __init__(
        self,
        model: nn.Module,
        *args: Any,
        gauc_group: str | None = None,
        objective: Objective | None = None,
        options: TrainOptions | None = None,
        **kwargs: Any,
    ) -> None:
        opts, _ = TrainOptions.bind(
            type(self).__name__, self.ORDER, args, kwargs, own=("loss_mode",), base=options
        )
        self.gauc_group = gauc_group
        super().__init__(model, objective=objective or BinaryCrossEntropy(), options=opts)

    def collect(self, model: nn.Module, data_loader: Iterable[object]) -> dict[str, np.ndarray]:
        """Probabilities, labels (when present) and the GAUC group column over ``data_loader``."""
        probs, labels, groups = [], [], []
        for batch, logits in self._run(model, data_loader):
            probs.append(torch.sigmoid(logits_of(logits).float()).cpu())
            if LABEL in batch:
                labels.append(batch[LABEL].float().reshape(-1).cpu())
            if self.gauc_group is not None:
                groups.append(batch[self.gauc_group].cpu())
        if not probs:
            raise ValueError("the loader yielded no batches: no rows to evaluate (an empty split?)")
        out = {"prob": torch.cat(probs).numpy()}
        if labels:
            out["label"] = torch.cat(labels).numpy()
        if groups:
            out["group"] = torch.cat(groups).numpy()
        return self.gather(out)

    def evaluate(self, model: nn.Module, data_loader: Iterable[object]) -> dict[str, float]:
        """``{"auc", "logloss"[, "gauc"]}``; the dict also converts and formats as its AUC
        (``float(m)``, ``f"{m:.4f}"``), the number Torch-RecHub's ``evaluate`` returns."""
        c = self.collect(model, data_loader)
        if "label" not in c:
            raise ValueError("evaluate() needs labels in the loader's batches")
        out = CTRMetrics(
            {
                "auc": nan_if_undefined(auc_score, c["label"], c["prob"], name="auc"),
                "logloss": log_loss(c["label"], c["prob"]),
            }
        )
        if "group" in c:
            out["gauc"] = nan_if_undefined(gauc_score, c["label"], c["prob"], c["group"], name="gauc")
        return out

    def predict(self, model: nn.Module, data_loader: Iterable[object]) -> np.ndarray:
        """Click probabilities ``(N,)``."""
        return self.collect(model, data_loader)["prob"]
