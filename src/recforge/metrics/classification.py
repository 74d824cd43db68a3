"""Binary-classification metrics on probabilities: AUC, logloss, GAUC.

Inputs are 1-D array-likes; all computations are vectorised numpy.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike


class UndefinedMetricError(ValueError):
    """The metric has no value on these labels (e.g. AUC when only one class is present)."""


class UndefinedMetricWarning(UserWarning):
    """A metric was undefined and is reported as NaN."""


def _as_1d(name: str, x: ArrayLike) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if a.size and not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _labels(x: ArrayLike) -> np.ndarray:
    """``y_true``: binary 0/1 or soft labels in [0, 1]; anything else (e.g. -1/1) is refused."""
    y = _as_1d("y_true", x)
    bad = (y < 0) | (y > 1)
    if bad.any():
        shown = ", ".join(f"{v:g}" for v in np.unique(y[bad])[:5])
        raise ValueError(f"y_true must hold labels in [0, 1] (0/1 or probabilities), found {shown}")
    return y


def nan_if_undefined(metric: Callable[..., float], *args: ArrayLike, name: str) -> float:
    """``metric(*args)``, or NaN with an ``UndefinedMetricWarning`` when it is undefined on these
    labels (training code logs NaN, never a made-up 0, and never selects such an epoch)."""
    try:
        return metric(*args)
    except UndefinedMetricError as e:
        warnings.warn(f"{name} is undefined and reported as NaN: {e}", UndefinedMetricWarning, stacklevel=2)
        return math.nan


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank (as scipy.stats.rankdata)."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.r_[True, xs[1:] != xs[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    ends = np.r_[first[1:], len(xs)]
    avg = (first + ends + 1) / 2.0  # average of 1-based ranks first+1 .. end
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = avg[group]
    return ranks


def auc_score(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """ROC AUC (Mann-Whitney U, ties count one half); a label counts as positive above 0.5.
    Raises ``UndefinedMetricError`` if only one class is present."""
    y = _labels(y_true)
    s = _as_1d("y_score", y_score)
    if y.shape != s.shape:
        raise ValueError(f"y_true and y_score differ in length: {y.shape[0]} vs {s.shape[0]}")
    pos = y > 0.5
    n_pos = int(pos.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise UndefinedMetricError("AUC is undefined when only one class is present")
    ranks = _average_ranks(s)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(y_true: ArrayLike, y_prob: ArrayLike, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities clipped to ``[eps, 1 - eps]``; labels 0/1 or in [0, 1]."""
    y = _labels(y_true)
    p = np.clip(_as_1d("y_prob", y_prob), eps, 1 - eps)
    if y.shape != p.shape:
        raise ValueError(f"y_true and y_prob differ in length: {y.shape[0]} vs {p.shape[0]}")
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def gauc_score(y_true: ArrayLike, y_score: ArrayLike, groups: ArrayLike, *, weighted: bool = True) -> float:
    """Group AUC: the AUC of each group (e.g. user), averaged.

    Groups whose labels are all one class have no AUC and are skipped (never NaN). ``weighted``
    weights each group by its number of impressions (the DIN paper's GAUC); otherwise a plain mean.
    Raises ``UndefinedMetricError`` if no group has both classes.
    """
    y = _labels(y_true)
    s = _as_1d("y_score", y_score)
    g = np.asarray(groups).reshape(-1)
    if not (len(y) == len(s) == len(g)):
        raise ValueError(f"y_true, y_score and groups differ in length: {len(y)}, {len(s)}, {len(g)}")
    _, gid = np.unique(g, return_inverse=True)
    order = np.lexsort((s, gid))  # by group, then score
    gid, y, s = gid[order], y[order], s[order]
    # Average ranks within each group of tied (group, score) runs.
    n = len(y)
    new_run = np.r_[True, (gid[1:] != gid[:-1]) | (s[1:] != s[:-1])]
    run = np.cumsum(new_run) - 1
    run_start = np.flatnonzero(new_run)
    run_end = np.r_[run_start[1:], n]
    group_start_idx = np.flatnonzero(np.r_[True, gid[1:] != gid[:-1]])
    group_first = np.repeat(group_start_idx, np.diff(np.r_[group_start_idx, n]))
    rank_in_group = ((run_start + run_end + 1) / 2.0)[run] - group_first
    n_groups = len(group_start_idx)
    size = np.bincount(gid, minlength=n_groups).astype(np.float64)
    n_pos = np.bincount(gid, weights=(y > 0.5).astype(np.float64), minlength=n_groups)
    n_neg = size - n_pos
    rank_pos = np.bincount(gid, weights=rank_in_group * (y > 0.5), minlength=n_groups)
    valid = (n_pos > 0) & (n_neg > 0)
    if not valid.any():
        raise UndefinedMetricError("GAUC is undefined: no group has both positive and negative labels")
    auc = (rank_pos[valid] - n_pos[valid] * (n_pos[valid] + 1) / 2.0) / (n_pos[valid] * n_neg[valid])
    w = size[valid] if weighted else np.ones(int(valid.sum()))
    return float(np.sum(auc * w) / np.sum(w))
