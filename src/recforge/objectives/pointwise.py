"""Point-wise objectives on logits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import torch.nn.functional as F
from torch import Tensor

from recforge.data.dataset import LABEL
from recforge.outputs import RankingOutput


class Objective(Protocol):
    """``objective(outputs, batch) -> loss``: a scalar to minimise. ``outputs`` is whatever the
    trainer's forward gives (logits, ``TowerOutput``, hidden states...), so it is typed ``Any``."""

    def __call__(self, outputs: Any, batch: Mapping[str, Tensor]) -> Tensor: ...


def _label(batch: Mapping[str, Tensor], key: str, like: Tensor) -> Tensor:
    try:
        y = batch[key]
    except KeyError:
        raise KeyError(f"batch has no target column {key!r}; it has {sorted(batch)}") from None
    y = y.to(like.dtype).reshape(like.shape)
    return y


class BinaryCrossEntropy:
    """Log loss on logits ``(B,)`` against 0/1 targets in ``batch[label]``; a model's auxiliary
    loss (``RankingOutput.aux_loss``) is added."""

    def __init__(self, label: str = LABEL) -> None:
        self.label = label

    def __call__(self, outputs: Tensor | RankingOutput, batch: Mapping[str, Tensor]) -> Tensor:
        if isinstance(outputs, RankingOutput):
            return self(outputs.logits, batch) + outputs.aux_loss
        return F.binary_cross_entropy_with_logits(outputs, _label(batch, self.label, outputs))


class MeanSquaredError:
    """Squared error of predictions ``(B,)`` against ``batch[label]``."""

    def __init__(self, label: str = LABEL) -> None:
        self.label = label

    def __call__(self, outputs: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        return F.mse_loss(outputs, _label(batch, self.label, outputs))
