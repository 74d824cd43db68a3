"""``torch_rechub.basic.metric``: Torch-RecHub's metric names over ``recforge.metrics``.

``auc_score``, ``log_loss`` and ``topk_metrics`` are recforge's own; the per-metric helpers
(``ndcg_score``...) pick one entry of ``topk_metrics`` as Torch-RecHub's do. Differences are listed in
``recforge.metrics.lists`` and ``docs/migrating.md``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from numpy.typing import ArrayLike

from recforge.metrics import auc_score, log_loss, topk_metrics
from recforge.metrics import gauc_score as _gauc_score

Lists = Mapping[Hashable, Sequence[Hashable]]


def gauc_score(
    y_true: ArrayLike, y_pred: ArrayLike, users: ArrayLike, weights: Mapping[Hashable, float] | None = None
) -> float:
    """Group AUC weighted by each user's number of rows (Torch-RecHub's default); users whose labels
    are all one class are skipped. Per-user ``weights`` are not supported."""
    if weights is not None:
        raise ValueError(
            "gauc_score: per-user weights are not supported; leave weights=None (users weighted by their "
            "row count) or call recforge.metrics.gauc_score(..., weighted=False) for equal weights"
        )
    return _gauc_score(y_true, y_pred, users, weighted=True)


def ndcg_score(y_true: Lists, y_pred: Lists, topKs: Sequence[int] = (5,)) -> list[str]:
    return topk_metrics(y_true, y_pred, list(topKs))["NDCG"]


def hit_score(y_true: Lists, y_pred: Lists, topKs: Sequence[int] = (5,)) -> list[str]:
    return topk_metrics(y_true, y_pred, list(topKs))["Hit"]


def mrr_score(y_true: Lists, y_pred: Lists, topKs: Sequence[int] = (5,)) -> list[str]:
    return topk_metrics(y_true, y_pred, list(topKs))["MRR"]


def recall_score(y_true: Lists, y_pred: Lists, topKs: Sequence[int] = (5,)) -> list[str]:
    return topk_metrics(y_true, y_pred, list(topKs))["Recall"]


def precision_score(y_true: Lists, y_pred: Lists, topKs: Sequence[int] = (5,)) -> list[str]:
    return topk_metrics(y_true, y_pred, list(topKs))["Precision"]


__all__ = [
    "auc_score",
    "gauc_score",
    "hit_score",
    "log_loss",
    "mrr_score",
    "ndcg_score",
    "precision_score",
    "recall_score",
    "topk_metrics",
]
