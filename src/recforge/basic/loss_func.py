"""``torch_rechub.basic.loss_func``: Torch-RecHub's loss modules over ``recforge.objectives``.

Each module calls recforge's loss function; only the call shape is Torch-RecHub's. Inputs are
scores/logits (recforge models return logits).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from recforge.objectives import bpr_loss, full_softmax_loss, hinge_loss
from recforge.trainers.loop import _Regularizer


def _pair(pos_score: Tensor, neg_score: Tensor) -> tuple[Tensor, Tensor]:
    pos = pos_score.reshape(-1)  # (B,)
    neg = neg_score.reshape(pos.shape[0], -1)  # (B, K)
    return pos, neg


class BPRLoss(nn.Module):
    """``-log sigmoid(pos - neg)`` averaged over pairs (``recforge.objectives.bpr_loss``)."""

    def forward(self, pos_score: Tensor, neg_score: Tensor, in_batch_neg: bool = False) -> Tensor:
        return bpr_loss(*_pair(pos_score, neg_score))


class HingeLoss(nn.Module):
    """``max(0, margin - pos + max(neg))`` averaged over rows: the hinge of each row's hardest
    negative (``recforge.objectives.hinge_loss``). Torch-RecHub's WARP weighting (``num_items``) is
    not available."""

    def __init__(self, margin: float = 2, num_items: int | None = None) -> None:
        super().__init__()
        if num_items is not None:
            raise ValueError(
                "HingeLoss: num_items (WARP rank weighting) is not supported; leave num_items=None"
            )
        self.margin = float(margin)

    def forward(self, pos_score: Tensor, neg_score: Tensor, in_batch_neg: bool = False) -> Tensor:
        pos, neg = _pair(pos_score, neg_score)
        return hinge_loss(pos, neg.max(1, keepdim=True).values, margin=self.margin)


class NCELoss(nn.Module):
    """Softmax cross-entropy of ``logits (B, V) / temperature`` against item ids ``targets (B,)``;
    rows whose target is padding 0 are ignored and column 0 is never a candidate
    (``recforge.objectives.full_softmax_loss``)."""

    def __init__(self, temperature: float = 1.0, ignore_index: int = 0, reduction: str = "mean") -> None:
        super().__init__()
        if ignore_index != 0 or reduction != "mean":
            raise ValueError(
                "NCELoss: only ignore_index=0 (padding) and reduction='mean' are supported; "
                "use torch.nn.functional.cross_entropy for other settings"
            )
        self.temperature = float(temperature)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return full_softmax_loss(logits / self.temperature, targets)


class RegularizationLoss(nn.Module):
    """L1/L2 penalties on embedding and dense weights: the trainers' ``regularization_params``."""

    def __init__(
        self,
        embedding_l1: float = 0.0,
        embedding_l2: float = 0.0,
        dense_l1: float = 0.0,
        dense_l2: float = 0.0,
    ) -> None:
        super().__init__()
        self.params: Mapping[str, float] = {
            "embedding_l1": embedding_l1,
            "embedding_l2": embedding_l2,
            "dense_l1": dense_l1,
            "dense_l2": dense_l2,
        }

    def forward(self, model: nn.Module) -> Tensor | float:
        return _Regularizer(model, self.params)()


__all__ = ["BPRLoss", "HingeLoss", "NCELoss", "RegularizationLoss"]
