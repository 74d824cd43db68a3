"""Retrieval samples from an interaction log ``(user, item, time, ...)``.

The pipeline: split the raw log (``leave_one_out_split`` or ``temporal_split``), which fits the
user/item vocabularies on the training part only; build time-ordered per-user ``Histories`` from
the training part; turn them into next-item samples (``next_item_samples``, one row per position,
or ``sequence_samples``, one row per user for all-position training) and evaluation rows
(``eval_samples``). ``SeenItems`` is the CSR of items per user used to exclude seen items from
negative sampling and from ranking.

Leakage rules: vocabularies, histories and training samples come from the training part only;
validation/test rows whose user or item is unknown to the training vocabulary are dropped (their
number is kept in ``InteractionSplit.dropped``). At test time the history may include the validation
interaction (it precedes the test one); it never enters training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import Tensor


@dataclass(frozen=True)
class SeenItems:
    """Compressed sparse rows: for row ``r`` (a user id, or an evaluation row), the item ids
    ``indices[indptr[r]:indptr[r + 1]]``, sorted and unique.

    Attributes:
        indptr: ``(R + 1,)`` int64 row offsets.
        indices: ``(nnz,)`` int64 item ids.
        num_items: item-id space (including padding 0).
    """

    indptr: Tensor
    indices: Tensor
    num_items: int

    def __post_init__(self) -> None:
        if self.indptr.dim() != 1 or self.indptr.numel() < 1 or int(self.indptr[0]) != 0:
            raise ValueError("SeenItems: indptr must be 1-D, start at 0")
        if int(self.indptr[-1]) != self.indices.numel():
            raise ValueError(
                f"SeenItems: indptr ends at {int(self.indptr[-1])} but there are {self.indices.numel()} indices"
            )
        if self.indices.numel() and (
            int(self.indices.min()) < 0 or int(self.indices.max()) >= self.num_items
        ):
            raise ValueError(f"SeenItems: item ids must lie in [0, {self.num_items})")

    @classmethod
    def from_pairs(
        cls, rows: Tensor | np.ndarray, items: Tensor | np.ndarray, *, num_rows: int, num_items: int
    ) -> SeenItems:
        """CSR from ``(row, item)`` pairs (duplicates removed)."""
        r = rows.long() if isinstance(rows, Tensor) else torch.from_numpy(np.array(rows, dtype=np.int64))
        i = items.long() if isinstance(items, Tensor) else torch.from_numpy(np.array(items, dtype=np.int64))
        if r.shape != i.shape or r.dim() != 1:
            raise ValueError(
                f"SeenItems.from_pairs: rows and items must be 1-D of equal length, got {r.shape}, {i.shape}"
            )
        if r.numel() and (int(r.min()) < 0 or int(r.max()) >= num_rows):
            raise ValueError(f"SeenItems.from_pairs: rows must lie in [0, {num_rows})")
        keys = torch.unique(r * num_items + i)  # sorted
        rr, ii = keys // num_items, keys % num_items
        counts = torch.bincount(rr, minlength=num_rows)
        indptr = torch.zeros(num_rows + 1, dtype=torch.int64)
        indptr[1:] = torch.cumsum(counts, 0)
        return cls(indptr, ii, num_items)

    @classmethod
    def from_lists(cls, lists: list[list[int]], *, num_items: int) -> SeenItems:
        rows = np.repeat(np.arange(len(lists)), [len(x) for x in lists])
        items = (
            np.concatenate([np.asarray(x, dtype=np.int64) for x in lists]) if lists else np.zeros(0, np.int64)
        )
        return cls.from_pairs(rows, items, num_rows=len(lists), num_items=num_items)

    @property
    def num_rows(self) -> int:
        return self.indptr.numel() - 1

    def counts(self, rows: Tensor | None = None) -> Tensor:
        """Number of items per row (of ``rows``, or of every row)."""
        c = self.indptr[1:] - self.indptr[:-1]
        return c if rows is None else c[rows.to(c.device)]

    def pairs(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """The items of ``rows (B,)`` as flat pairs ``(position in rows (M,), item id (M,))``."""
        rows = rows.to(self.indptr.device)
        if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= self.num_rows):
            raise IndexError(
                f"SeenItems: rows must lie in [0, {self.num_rows}), got [{int(rows.min())}, {int(rows.max())}]"
            )
        start, counts = self.indptr[rows], self.counts(rows)
        pos = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), counts)  # (M,)
        first = torch.cumsum(counts, 0) - counts  # (B,)
        idx = start[pos] + torch.arange(pos.numel(), device=rows.device) - first[pos]
        return pos, self.indices[idx]

    def keys(self) -> Tensor:
        """Globally sorted ``row * num_items + item`` keys (for vectorised membership tests)."""
        rows = torch.repeat_interleave(torch.arange(self.num_rows, device=self.indptr.device), self.counts())
        return rows * self.num_items + self.indices

    def contains(self, rows: Tensor, items: Tensor) -> Tensor:
        """Whether ``items`` (shape ``S``) are in the rows ``rows`` (broadcastable to ``S``)."""
        keys = self._keys_cached()
        q = rows.to(keys.device) * self.num_items + items.to(keys.device)
        q = q.reshape(-1).contiguous()
        if not keys.numel():
            return torch.zeros(items.shape, dtype=torch.bool, device=items.device)
        pos = torch.searchsorted(keys, q).clamp_max(keys.numel() - 1)
        return (keys[pos] == q).reshape(torch.broadcast_shapes(rows.shape, items.shape)).to(items.device)

    def grid(self, rows: Tensor, items: Tensor) -> Tensor:
        """``(B, M)`` bool: whether each of ``items (M,)`` is in each of ``rows (B,)`` — e.g. which of
        a batch's shared negatives each row's user has seen. Walks the rows' own items and looks each
        up among the sorted ``items`` (repeats allowed), so the cost follows the rows' item counts,
        not ``B * M`` searches nor a ``(B, num_items)`` mask."""
        out = torch.zeros(rows.numel(), items.numel(), dtype=torch.bool, device=items.device)
        pos, seen_items = self.pairs(rows)
        sorted_items, order = items.to(seen_items.device).sort()
        lo = torch.searchsorted(sorted_items, seen_items)
        n = torch.searchsorted(sorted_items, seen_items, right=True) - lo  # columns holding that item
        hit_row = torch.repeat_interleave(pos, n)
        first = torch.repeat_interleave(lo - (torch.cumsum(n, 0) - n), n)
        hit_col = order[first + torch.arange(hit_row.numel(), device=first.device)]
        out[hit_row.to(out.device), hit_col.to(out.device)] = True
        return out

    def _keys_cached(self) -> Tensor:
        cache = self.__dict__.get("_keys")
        if cache is None:
            cache = self.keys()
            object.__setattr__(self, "_keys", cache)
        return cache

    def to(self, device: torch.device | str) -> SeenItems:
        return SeenItems(self.indptr.to(device), self.indices.to(device), self.num_items)

    def union(self, other: SeenItems) -> SeenItems:
        """Row-wise union with another CSR over the same rows."""
        if other.num_rows != self.num_rows or other.num_items != self.num_items:
            raise ValueError("SeenItems.union: both must have the same rows and num_items")
        r1 = torch.repeat_interleave(torch.arange(self.num_rows), self.counts())
        r2 = torch.repeat_interleave(torch.arange(other.num_rows), other.counts())
        return SeenItems.from_pairs(
            torch.cat([r1, r2]),
            torch.cat([self.indices, other.indices]),
            num_rows=self.num_rows,
            num_items=self.num_items,
        )


@dataclass(frozen=True)
class Histories:
    """Time-ordered items per user id (CSR): user ``u`` has ``items[indptr[u]:indptr[u + 1]]``,
    oldest first. Row 0 (padding user) is empty."""

    indptr: np.ndarray
    items: np.ndarray
    num_items: int

    @property
    def num_users(self) -> int:
        return len(self.indptr) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def seen(self) -> SeenItems:
        """Every item each user has interacted with, as ``SeenItems`` indexed by user id."""
        rows = np.repeat(np.arange(self.num_users), self.lengths())
        return SeenItems.from_pairs(rows, self.items, num_rows=self.num_users, num_items=self.num_items)


@dataclass(frozen=True)
class InteractionSplit:
    """An encoded split of an interaction log. Ids run ``1 .. num_* - 1`` (0 is padding);
    ``user_vocab[i - 1]`` / ``item_vocab[i - 1]`` is the raw value of id ``i``.

    Each frame has the (encoded) user, item and time columns plus any extra columns of the log,
    sorted by user then time.
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    user: str
    item: str
    time: str
    user_vocab: np.ndarray
    item_vocab: np.ndarray
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def num_users(self) -> int:
        return len(self.user_vocab) + 1

    @property
    def num_items(self) -> int:
        return len(self.item_vocab) + 1

    def histories(self, *parts: str) -> Histories:
        """Histories over the named parts (default ``"train"``; ``("train", "valid")`` for test-time
        histories in leave-one-out)."""
        names = parts or ("train",)
        unknown = set(names) - {"train", "valid", "test"}
        if unknown:
            raise ValueError(f"unknown split parts {sorted(unknown)}; valid: train, valid, test")
        frame = pd.concat([getattr(self, n) for n in names], ignore_index=True)
        return build_histories(
            frame,
            user=self.user,
            item=self.item,
            time=self.time,
            num_users=self.num_users,
            num_items=self.num_items,
        )


def _check_columns(log: pd.DataFrame, cols: list[str]) -> None:
    missing = [c for c in cols if c not in log.columns]
    if missing:
        raise KeyError(f"interaction log has no column(s) {missing}; it has {list(log.columns)}")


def _sorted(log: pd.DataFrame, user: str, time: str) -> pd.DataFrame:
    # Stable sort keeps the log order for equal timestamps.
    return log.sort_values([user, time], kind="mergesort").reset_index(drop=True)


def _encode(
    train: pd.DataFrame, others: dict[str, pd.DataFrame], user: str, item: str
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], np.ndarray, np.ndarray, dict[str, int]]:
    """Fit id vocabularies on ``train`` only; drop rows of ``others`` with unknown users/items."""
    user_vocab = np.sort(train[user].unique())
    item_vocab = np.sort(train[item].unique())
    uidx, iidx = pd.Index(user_vocab), pd.Index(item_vocab)
    train = train.copy()
    train[user] = uidx.get_indexer(train[user]) + 1
    train[item] = iidx.get_indexer(train[item]) + 1
    out, dropped = {}, {}
    for name, frame in others.items():
        u = uidx.get_indexer(frame[user]) + 1
        i = iidx.get_indexer(frame[item]) + 1
        keep = (u > 0) & (i > 0)
        dropped[name] = int((~keep).sum())
        f = frame.loc[keep].copy()
        f[user], f[item] = u[keep], i[keep]
        out[name] = f.reset_index(drop=True)
    return train.reset_index(drop=True), out, user_vocab, item_vocab, dropped


def leave_one_out_split(
    log: pd.DataFrame,
    *,
    user: str = "user_id",
    item: str = "item_id",
    time: str = "time",
    min_interactions: int = 3,
) -> InteractionSplit:
    """Per user, in time order: last interaction = test, second-last = validation, rest = train.

    Users with fewer than ``min_interactions`` interactions keep them all in train. Vocabularies are
    fit on the train part; validation/test rows with an item never seen in train are dropped.
    """
    _check_columns(log, [user, item, time])
    if min_interactions < 3:
        raise ValueError(f"min_interactions must be >= 3 (train, valid, test), got {min_interactions}")
    log = _sorted(log, user, time)
    n = log.groupby(user, sort=False)[user].transform("size").to_numpy()
    rank_from_end = log.groupby(user, sort=False).cumcount(ascending=False).to_numpy()
    eligible = n >= min_interactions
    test_mask = eligible & (rank_from_end == 0)
    valid_mask = eligible & (rank_from_end == 1)
    train_mask = ~(test_mask | valid_mask)
    train, parts, uv, iv, dropped = _encode(
        log[train_mask], {"valid": log[valid_mask], "test": log[test_mask]}, user, item
    )
    return InteractionSplit(train, parts["valid"], parts["test"], user, item, time, uv, iv, dropped)


def temporal_split(
    log: pd.DataFrame,
    *,
    valid_start: float | pd.Timestamp,
    test_start: float | pd.Timestamp,
    user: str = "user_id",
    item: str = "item_id",
    time: str = "time",
) -> InteractionSplit:
    """Global temporal split: train ``time < valid_start``, validation ``valid_start <= time <
    test_start``, test ``time >= test_start``. Vocabularies are fit on train; later rows with a user
    or item unknown to train are dropped (counted in ``dropped``)."""
    _check_columns(log, [user, item, time])
    if not valid_start <= test_start:
        raise ValueError(f"valid_start ({valid_start}) must not be after test_start ({test_start})")
    log = _sorted(log, user, time)
    t = log[time]
    train_mask = t < valid_start
    if not bool(train_mask.any()):
        raise ValueError(f"temporal_split: no interaction before valid_start={valid_start}")
    valid_mask = (t >= valid_start) & (t < test_start)
    train, parts, uv, iv, dropped = _encode(
        log[train_mask], {"valid": log[valid_mask], "test": log[t >= test_start]}, user, item
    )
    return InteractionSplit(train, parts["valid"], parts["test"], user, item, time, uv, iv, dropped)


def build_histories(
    frame: pd.DataFrame, *, user: str, item: str, time: str, num_users: int, num_items: int
) -> Histories:
    """Time-ordered CSR histories from encoded interactions (ties in time keep the frame order)."""
    _check_columns(frame, [user, item, time])
    f = _sorted(frame[[user, item, time]], user, time)
    u = f[user].to_numpy(np.int64)
    if len(u) and (u.min() < 1 or u.max() >= num_users):
        raise ValueError(f"column {user!r}: encoded ids must lie in [1, {num_users})")
    counts = np.bincount(u, minlength=num_users)
    indptr = np.zeros(num_users + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(counts)
    return Histories(indptr, f[item].to_numpy(np.int64), num_items)


def _windows(items: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_len: int) -> np.ndarray:
    """Left-padded windows ``items[max(start, end - L):end]`` -> ``(N, L)``."""
    idx = ends[:, None] - max_len + np.arange(max_len)[None, :]  # (N, L)
    valid = idx >= starts[:, None]
    out = items[np.clip(idx, 0, None)] if len(items) else np.zeros(idx.shape, np.int64)
    return np.where(valid, out, 0)


def next_item_samples(
    histories: Histories,
    max_len: int,
    *,
    min_history: int = 1,
    user_column: str = "user_id",
    history_column: str = "hist_item_id",
    target_column: str = "item_id",
) -> dict[str, Tensor]:
    """Sliding-window training samples: for each position ``t >= min_history`` of each user's
    history, the previous ``<= max_len`` items (left-padded, most recent last) and the target item.

    Returns columns ``user (N,)``, ``history (N, L)``, ``target (N,)``.
    """
    if max_len < 1 or min_history < 1:
        raise ValueError(f"max_len and min_history must be >= 1, got {max_len}, {min_history}")
    lengths = histories.lengths()
    starts = histories.indptr[:-1]
    n_targets = np.clip(lengths - min_history, 0, None)
    user = np.repeat(np.arange(histories.num_users), n_targets)
    offset = np.arange(n_targets.sum()) - np.repeat(np.cumsum(n_targets) - n_targets, n_targets)
    pos = np.repeat(starts, n_targets) + min_history + offset  # absolute index of each target
    hist = _windows(histories.items, np.repeat(starts, n_targets), pos, max_len)
    return {
        user_column: torch.from_numpy(user),
        history_column: torch.from_numpy(hist),
        target_column: torch.from_numpy(histories.items[pos]),
    }


def sequence_samples(
    histories: Histories,
    max_len: int,
    *,
    user_column: str = "user_id",
    history_column: str = "hist_item_id",
    target_column: str = "target_item_id",
) -> dict[str, Tensor]:
    """One row per user with >= 2 items for all-position training (SASRec-style): ``history (U, L)``
    holds the items before the last one and ``target (U, L)`` the item that follows each position
    (both left-padded with 0, aligned). Only the most recent ``max_len + 1`` items are used."""
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    lengths = histories.lengths()
    users = np.flatnonzero(lengths >= 2)
    starts, ends = histories.indptr[users], histories.indptr[users + 1]
    return {
        user_column: torch.from_numpy(users.astype(np.int64)),
        history_column: torch.from_numpy(_windows(histories.items, starts, ends - 1, max_len)),
        target_column: torch.from_numpy(_windows(histories.items, starts + 1, ends, max_len)),
    }


def eval_samples(
    histories: Histories,
    targets: pd.DataFrame,
    max_len: int,
    *,
    user: str = "user_id",
    item: str = "item_id",
    user_column: str = "user_id",
    history_column: str = "hist_item_id",
    target_column: str = "item_id",
) -> dict[str, Tensor]:
    """Evaluation rows: for each ``(user, item)`` row of ``targets``, the user's most recent
    ``<= max_len`` items from ``histories`` (left-padded) and the target item."""
    _check_columns(targets, [user, item])
    u = targets[user].to_numpy(np.int64, copy=True)
    if len(u) and (u.min() < 1 or u.max() >= histories.num_users):
        raise ValueError(f"targets column {user!r}: ids must lie in [1, {histories.num_users})")
    hist = _windows(histories.items, histories.indptr[u], histories.indptr[u + 1], max_len)
    return {
        user_column: torch.from_numpy(u),
        history_column: torch.from_numpy(hist),
        target_column: torch.from_numpy(targets[item].to_numpy(np.int64, copy=True)),
    }


def ground_truth(frame: pd.DataFrame, *, user: str, item: str, num_users: int, num_items: int) -> SeenItems:
    """All target items per user id (e.g. a test split with several items per user) as CSR."""
    _check_columns(frame, [user, item])
    return SeenItems.from_pairs(
        frame[user].to_numpy(), frame[item].to_numpy(), num_rows=num_users, num_items=num_items
    )
