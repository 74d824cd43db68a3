"""A behaviour-sequence CTR generator with a planted target-history signal and a known oracle.

Each row has a history of ``1..max_len`` items (left-padded with 0), each item has a category,
and the click probability depends only on how the target's category relates to the history:

    logit = bias + w_recent * [target category among the last ``recent`` behaviours]
                 + w_any * [target category anywhere in the history]

so a model must compare the target with the behaviours (and, for the recency term, know their
order). The true probabilities are returned, so the oracle (Bayes-optimal) AUC on any split is
``auc_score(label, prob)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SyntheticBehavior:
    """Columns ``item_id, cate_id, hist_item_id, hist_cate_id, neg_hist_item_id, neg_hist_cate_id,
    label`` plus the true click probability ``prob`` (not a model input)."""

    columns: dict[str, np.ndarray]
    prob: np.ndarray
    num_items: int  # table size (ids 1 .. num_items - 1)
    num_categories: int  # table size (ids 1 .. num_categories - 1)
    max_len: int


def make_behavior_ctr(
    n: int,
    *,
    num_items: int = 500,
    num_categories: int = 20,
    max_len: int = 20,
    recent: int = 3,
    w_recent: float = 2.0,
    w_any: float = 1.0,
    bias: float = -1.5,
    p_related: float = 0.5,
    seed: int = 0,
) -> SyntheticBehavior:
    """``n`` rows of the planted generator (see the module docstring).

    Args:
        n: rows. num_items, num_categories: vocabulary sizes (id 0 is padding).
        max_len: history length L. recent: how many latest behaviours count as recent.
        w_recent, w_any, bias: the planted logit's weights.
        p_related: chance that the target is drawn from a category in the history.
        seed: RNG seed.
    """
    if num_items < 2 or num_categories < 2 or max_len < 1 or n < 1:
        raise ValueError("n, max_len >= 1 and num_items, num_categories >= 2 are required")
    rng = np.random.default_rng(seed)
    cate_of = np.r_[0, rng.integers(1, num_categories, size=num_items - 1)]  # (V,), 0 for padding
    lengths = rng.integers(1, max_len + 1, size=n)
    real = np.arange(max_len)[None, :] >= (max_len - lengths)[:, None]  # (n, L) left padding
    hist = np.where(real, rng.integers(1, num_items, size=(n, max_len)), 0)
    hist_cate = cate_of[hist]
    # Half the targets come from a category the user has seen: draw an item of that category.
    pick = rng.integers(0, lengths)  # index among the real behaviours
    seen_cate = hist_cate[np.arange(n), max_len - lengths + pick]
    related = rng.random(n) < p_related
    target = rng.integers(1, num_items, size=n)
    by_cate = [np.flatnonzero(cate_of == c) for c in range(num_categories)]
    for c in np.unique(seen_cate[related]):
        rows = np.flatnonzero(related & (seen_cate == c))
        if len(by_cate[c]):
            target[rows] = rng.choice(by_cate[c], size=len(rows))
    target_cate = cate_of[target]
    match = hist_cate == target_cate[:, None]  # (n, L), padding never matches (cate >= 1)
    logit = bias + w_recent * match[:, -recent:].any(1) + w_any * match.any(1)
    prob = 1.0 / (1.0 + np.exp(-logit))
    label = (rng.random(n) < prob).astype(np.float32)
    neg = np.where(real, rng.integers(1, num_items, size=(n, max_len)), 0)
    columns = {
        "item_id": target.astype(np.int64),
        "cate_id": target_cate.astype(np.int64),
        "hist_item_id": hist.astype(np.int64),
        "hist_cate_id": hist_cate.astype(np.int64),
        "neg_hist_item_id": neg.astype(np.int64),
        "neg_hist_cate_id": cate_of[neg].astype(np.int64),
        "label": label,
    }
    return SyntheticBehavior(columns, prob, num_items, num_categories, max_len)
