"""Top-K metrics of recommendation lists that were already computed (Torch-RecHub's ``topk_metrics``).

``y_true`` and ``y_pred`` map each user to a list of items (any hashable ids: encoded or raw);
``y_pred`` is ranked, best first. Each ground-truth item's rank is its 1-based position in the
user's list (``inf`` when absent), and ``recforge.metrics.ranking.RankingAccumulator`` turns the
ranks into recall, precision, hit rate, NDCG and MRR, so these are the same definitions as
recforge's full-ranking evaluation.

Differences from Torch-RecHub 0.9.0: users whose ground truth is empty are not counted (Torch-RecHub
divides MRR/recall/precision/NDCG by every user); ``Hit@K`` is the hit rate, the share of users with
at least one ground-truth item in their top K (Torch-RecHub's ``Hit`` is total hits over total
ground-truth items; both agree when each user has one ground-truth item); repeated ground-truth
items count once; a list shorter than K is fine (Torch-RecHub raises ``IndexError``).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import torch

from recforge.ints import as_ints
from recforge.metrics.ranking import RankingAccumulator

# Torch-RecHub's result keys -> recforge's metric names.
NAMES = {"NDCG": "ndcg", "MRR": "mrr", "Recall": "recall", "Hit": "hr", "Precision": "precision"}


def list_metrics(
    y_true: Mapping[Hashable, Sequence[Hashable]],
    y_pred: Mapping[Hashable, Sequence[Hashable]],
    ks: Sequence[int],
) -> dict[str, float]:
    """``{"recall@K": ..., "precision@K", "hr@K", "ndcg@K", "mrr@K"}`` of ranked lists ``y_pred``
    against ``y_true`` (see the module docstring), averaged over users with ground truth."""
    cutoffs = as_ints(ks, "ks", minimum=1)
    if not cutoffs:
        raise ValueError("ks must hold at least one cut-off, e.g. [10]")
    missing = [u for u in y_true if u not in y_pred]
    if missing:
        raise KeyError(f"y_pred has no list for {len(missing)} user(s) of y_true, e.g. {missing[:3]}")
    max_k = max(cutoffs)
    ranks: list[float] = []
    rows: list[int] = []
    for row, (user, truth) in enumerate(y_true.items()):
        position: dict[Hashable, int] = {}
        for j, item in enumerate(list(y_pred[user])[:max_k]):
            position.setdefault(_key(item), j + 1)
        for item in dict.fromkeys(_key(t) for t in truth):
            ranks.append(float(position.get(item, math.inf)))
            rows.append(row)
    acc = RankingAccumulator(cutoffs, num_items=2, coverage=False)
    acc.update(torch.tensor(ranks, dtype=torch.float64), torch.tensor(rows, dtype=torch.long), len(y_true))
    return acc.result()


def topk_metrics(
    y_true: Mapping[Hashable, Sequence[Hashable]],
    y_pred: Mapping[Hashable, Sequence[Hashable]],
    topKs: Sequence[int] = (5,),
) -> dict[str, list[str]]:
    """Torch-RecHub's result shape: ``{"NDCG": ["NDCG@10: 0.1234", ...], "MRR": [...], "Recall",
    "Hit", "Precision"}``, one string per cut-off in ``topKs`` order, values rounded to 4 places."""
    if not isinstance(topKs, tuple | list):
        raise ValueError(f"topKs must be a list or tuple of cut-offs, e.g. topKs=[10], got {topKs!r}")
    values = list_metrics(y_true, y_pred, topKs)
    return {
        label: [f"{label}@{int(k)}: {round(values[f'{name}@{int(k)}'], 4)}" for k in topKs]
        for label, name in NAMES.items()
    }


def _key(item: Hashable) -> Hashable:
    """NumPy/torch scalars compare by value: use their Python value as the dictionary key."""
    value = getattr(item, "item", None)
    return value() if callable(value) and getattr(item, "shape", None) == () else item
