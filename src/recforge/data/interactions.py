"""Retrieval samples from an interaction log ``(user, item, time, ...)``.

The pipeline: a raw log (``InteractionLog``, as ``recforge.datasets`` readers return it) is split
(``split_log``: ``leave_one_out_split``, ``temporal_split`` or ``given_split``) and encoded with
user/item vocabularies that cover the whole catalogue; time-ordered per-user ``Histories`` come from
the training part; they become next-item samples (``next_item_samples``, one row per position;
``sequence_samples``, one row per user for all-position training; ``recforge.data.BagSamples`` for
unordered data) and evaluation rows (``eval_samples``). ``SeenItems`` is the CSR of items per user
used to exclude seen items from negative sampling and from ranking.

Leakage rules: histories and training samples come from the training part only; knowing the
catalogue is not leakage (no validation/test interaction trains anything), and dropping users
whose held-out item is new to training would change the protocol, so the vocabularies cover every
item and user of the log by default. At test time the history may include the validation
interaction (it precedes the test one); it never enters training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from recforge.choices import Choice
from recforge.preprocess.vocab import NUM_RESERVED, Vocabulary


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


class SplitKind(Choice):
    """How an interaction log is split (``split_log``)."""

    LEAVE_ONE_OUT = "leave_one_out"
    TEMPORAL = "temporal"
    GIVEN = "given"


@dataclass(frozen=True)
class InteractionLog:
    """A raw interaction log as the readers of ``recforge.datasets`` return it.

    Attributes:
        frame: one row per interaction with the user, item and time columns (raw values) and any
            extra columns.
        user, item, time: column names. Within a user, ``time`` orders the interactions (a reader of
            a file without timestamps uses the file order).
        ordered: whether that order is meaningful (False for files that list each user's items as a
            set, e.g. LightGCN's ``train.txt``): histories are then bags, not sequences.
        split: a column of ``"train"``/``"valid"``/``"test"`` when the data comes split (``given``).
        items: item side table, one row per catalogue item, keyed by the item column (the whole
            catalogue: items no user interacted with are still candidates).
        users: user side table keyed by the user column.
    """

    frame: pd.DataFrame
    user: str = "user_id"
    item: str = "item_id"
    time: str = "time"
    ordered: bool = True
    split: str | None = None
    items: pd.DataFrame | None = None
    users: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        _check_columns(self.frame, [self.user, self.item, self.time] + ([self.split] if self.split else []))
        for name, table, key in (("items", self.items, self.item), ("users", self.users, self.user)):
            if table is not None and key not in table.columns:
                raise KeyError(f"InteractionLog.{name}: no {key!r} column; it has {list(table.columns)}")

    def catalog(self) -> np.ndarray:
        """Every item: the item table's and every item of the log."""
        values = [self.frame[self.item].to_numpy()]
        if self.items is not None:
            values.append(self.items[self.item].to_numpy())
        return pd.unique(np.concatenate(values))

    def all_users(self) -> np.ndarray:
        values = [self.frame[self.user].to_numpy()]
        if self.users is not None:
            values.append(self.users[self.user].to_numpy())
        return pd.unique(np.concatenate(values))


@dataclass(frozen=True)
class InteractionSplit:
    """An encoded split of an interaction log. Ids follow ``recforge.preprocess``: 0 is padding,
    1 the out-of-vocabulary id (never used here), ``2 ..`` the known users / items, so the
    encoded frames, a ``FeaturePipeline`` with the same vocabularies and a served model agree.

    Each frame has the (encoded) user, item and time columns plus any extra columns of the log,
    sorted by user then time. ``dropped`` counts the valid/test rows whose user or item is outside
    the given vocabularies (none when they cover the log, the default).
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    user: str
    item: str
    time: str
    users: Vocabulary
    items: Vocabulary
    dropped: dict[str, int] = field(default_factory=dict)
    ordered: bool = True

    @property
    def num_users(self) -> int:
        return len(self.users)

    @property
    def num_items(self) -> int:
        return len(self.items)

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


def catalog_vocabulary(values: np.ndarray | pd.Series) -> Vocabulary:
    """A vocabulary of every distinct value, sorted (ids ``2 ..``): the catalogue of a log."""
    return Vocabulary(np.sort(pd.unique(np.asarray(values))))


def _encode(
    parts: dict[str, pd.DataFrame],
    user: str,
    item: str,
    users: Vocabulary,
    items: Vocabulary,
) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:
    """Encode every part's user/item columns; rows outside the vocabularies are dropped and counted
    (a training row outside them is an error: the vocabularies must cover training)."""
    out, dropped = {}, {}
    for name, frame in parts.items():
        u = users.encode(frame[user], column=user)
        i = items.encode(frame[item], column=item)
        keep = (u >= NUM_RESERVED) & (i >= NUM_RESERVED)
        if name == "train" and not keep.all():
            raise ValueError(
                f"{int((~keep).sum())} training interactions have a user or item outside the given "
                "vocabularies; they must cover the training part"
            )
        if name != "train":
            dropped[name] = int((~keep).sum())
        f = frame.loc[keep].copy()
        f[user], f[item] = u[keep], i[keep]
        out[name] = f.reset_index(drop=True)
    return out, dropped


def encode_split(
    parts: dict[str, pd.DataFrame],
    *,
    user: str,
    item: str,
    time: str,
    users: Vocabulary | None = None,
    items: Vocabulary | None = None,
    ordered: bool = True,
) -> InteractionSplit:
    """Encode raw ``train``/``valid``/``test`` frames (see ``split_parts``) with ``users``/``items``
    (default: every value of the frames, the catalogue)."""
    if users is None or items is None:
        whole = pd.concat(parts.values(), ignore_index=True)
        users = users if users is not None else catalog_vocabulary(whole[user])
        items = items if items is not None else catalog_vocabulary(whole[item])
    enc, dropped = _encode(parts, user, item, users, items)
    return InteractionSplit(
        enc["train"], enc["valid"], enc["test"], user, item, time, users, items, dropped, ordered
    )


def _loo_parts(log: pd.DataFrame, user: str, time: str, min_interactions: int) -> dict[str, pd.DataFrame]:
    if min_interactions < 3:
        raise ValueError(f"min_interactions must be >= 3 (train, valid, test), got {min_interactions}")
    log = _sorted(log, user, time)
    n = log.groupby(user, sort=False)[user].transform("size").to_numpy()
    rank_from_end = log.groupby(user, sort=False).cumcount(ascending=False).to_numpy()
    eligible = n >= min_interactions
    test_mask = eligible & (rank_from_end == 0)
    valid_mask = eligible & (rank_from_end == 1)
    return {"train": log[~(test_mask | valid_mask)], "valid": log[valid_mask], "test": log[test_mask]}


def _temporal_parts(
    log: pd.DataFrame, user: str, time: str, valid_start: object, test_start: object
) -> dict[str, pd.DataFrame]:
    if not valid_start <= test_start:  # type: ignore[operator]
        raise ValueError(f"valid_start ({valid_start}) must not be after test_start ({test_start})")
    log = _sorted(log, user, time)
    t = log[time]
    train_mask = (t < valid_start).to_numpy()
    if not bool(train_mask.any()):
        raise ValueError(f"temporal_split: no interaction before valid_start={valid_start}")
    valid_mask = ((t >= valid_start) & (t < test_start)).to_numpy()
    return {"train": log[train_mask], "valid": log[valid_mask], "test": log[(t >= test_start).to_numpy()]}


def _given_parts(
    log: pd.DataFrame, split: str, user: str, time: str, valid_fraction: float, seed: int
) -> dict[str, pd.DataFrame]:
    unknown = set(log[split].unique()) - {"train", "valid", "test"}
    if unknown:
        raise ValueError(
            f"column {split!r}: values must be train/valid/test, got {sorted(map(str, unknown))}"
        )
    log = _sorted(log, user, time)
    part = log[split].to_numpy()
    masks = {k: part == k for k in ("train", "valid", "test")}
    if not masks["valid"].any() and valid_fraction > 0:
        train_idx = np.flatnonzero(masks["train"])
        held = holdout_mask(log[user].to_numpy()[train_idx], valid_fraction, seed)
        masks["valid"] = np.zeros(len(log), dtype=bool)
        masks["valid"][train_idx[held]] = True
        masks["train"] = masks["train"] & ~masks["valid"]
    log = log.drop(columns=[split])
    return {k: log[m] for k, m in masks.items()}


def leave_one_out_split(
    log: pd.DataFrame,
    *,
    user: str = "user_id",
    item: str = "item_id",
    time: str = "time",
    min_interactions: int = 3,
    users: Vocabulary | None = None,
    items: Vocabulary | None = None,
) -> InteractionSplit:
    """Per user, in time order: last interaction = test, second-last = validation, rest = train.

    Users with fewer than ``min_interactions`` interactions keep them all in train. The vocabularies
    (default: every user and item of the log, the catalogue) cover held-out items that training
    never holds, so every user with a test interaction is ranked.
    """
    _check_columns(log, [user, item, time])
    parts = _loo_parts(log, user, time, min_interactions)
    return encode_split(parts, user=user, item=item, time=time, users=users, items=items)


def temporal_split(
    log: pd.DataFrame,
    *,
    valid_start: float | pd.Timestamp,
    test_start: float | pd.Timestamp,
    user: str = "user_id",
    item: str = "item_id",
    time: str = "time",
    users: Vocabulary | None = None,
    items: Vocabulary | None = None,
) -> InteractionSplit:
    """Global temporal split: train ``time < valid_start``, validation ``valid_start <= time <
    test_start``, test ``time >= test_start``. Later rows may hold users or items training never
    holds: the vocabularies (default: the whole log) still cover them."""
    _check_columns(log, [user, item, time])
    parts = _temporal_parts(log, user, time, valid_start, test_start)
    return encode_split(parts, user=user, item=item, time=time, users=users, items=items)


def holdout_mask(users: np.ndarray, fraction: float, seed: int, *, min_items: int = 3) -> np.ndarray:
    """Per user, a seeded random ``round(fraction * n)`` (at least 1) of its rows, for users with at
    least ``min_items`` rows: a validation split carved out of a training part that has none."""
    if not 0 < fraction < 1:
        raise ValueError(f"valid_fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng((seed, 7))
    order = np.lexsort((rng.random(len(users)), users))  # each user's rows, shuffled within
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    counts = np.diff(np.r_[starts, len(users)])
    rank = np.arange(len(users)) - np.repeat(starts, counts)
    take = np.where(counts >= min_items, np.maximum(1, np.round(fraction * counts)), 0)
    mask = np.zeros(len(users), dtype=bool)
    mask[order[rank < np.repeat(take, counts)]] = True
    return mask


def given_split(
    log: pd.DataFrame,
    *,
    split: str = "split",
    user: str = "user_id",
    item: str = "item_id",
    time: str = "time",
    valid_fraction: float = 0.0,
    seed: int = 0,
    users: Vocabulary | None = None,
    items: Vocabulary | None = None,
    ordered: bool = True,
) -> InteractionSplit:
    """The split the data came with (column ``split``: ``train``/``valid``/``test``). Without
    validation rows and with ``valid_fraction > 0``, that fraction of every user's training rows
    (users with at least 3) is held out for validation (seeded)."""
    _check_columns(log, [user, item, time, split])
    parts = _given_parts(log, split, user, time, valid_fraction, seed)
    return encode_split(parts, user=user, item=item, time=time, users=users, items=items, ordered=ordered)


def split_parts(
    log: InteractionLog,
    how: SplitKind | str,
    *,
    valid_fraction: float = 0.0,
    valid_start: object = None,
    test_start: object = None,
    min_interactions: int = 3,
    seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """The raw ``train``/``valid``/``test`` frames of ``log`` split the way ``how`` names, sorted
    by user then time (``encode_split`` encodes them)."""
    kind = SplitKind.parse(how, where="split")
    if kind is SplitKind.GIVEN:
        if log.split is None:
            raise ValueError("split: 'given' needs data that comes split (train/test files)")
        return _given_parts(log.frame, log.split, log.user, log.time, valid_fraction, seed)
    if log.split is not None:
        raise ValueError(f"split: the data comes split already; use 'given', not {kind.value!r}")
    if not log.ordered:
        raise ValueError(f"split: {kind.value!r} needs time-ordered data; this log is not ordered")
    if kind is SplitKind.LEAVE_ONE_OUT:
        return _loo_parts(log.frame, log.user, log.time, min_interactions)
    if valid_start is None or test_start is None:
        raise ValueError("split: 'temporal' needs valid_start and test_start")
    return _temporal_parts(log.frame, log.user, log.time, valid_start, test_start)


def split_log(
    log: InteractionLog,
    how: SplitKind | str,
    *,
    valid_fraction: float = 0.0,
    valid_start: object = None,
    test_start: object = None,
    min_interactions: int = 3,
    seed: int = 0,
    users: Vocabulary | None = None,
    items: Vocabulary | None = None,
) -> InteractionSplit:
    """``split_parts`` then ``encode_split``, with vocabularies covering the whole log (every
    user, ``log.catalog()``) unless given."""
    parts = split_parts(
        log,
        how,
        valid_fraction=valid_fraction,
        valid_start=valid_start,
        test_start=test_start,
        min_interactions=min_interactions,
        seed=seed,
    )
    return encode_split(
        parts,
        user=log.user,
        item=log.item,
        time=log.time,
        users=users if users is not None else catalog_vocabulary(log.all_users()),
        items=items if items is not None else catalog_vocabulary(log.catalog()),
        ordered=log.ordered,
    )


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


def recent_items(histories: Histories, users: np.ndarray, max_len: int) -> np.ndarray:
    """Each of ``users``' most recent ``<= max_len`` items, left-padded ``(U, L)``."""
    u = np.asarray(users, dtype=np.int64)
    if len(u) and (u.min() < 0 or u.max() >= histories.num_users):
        raise ValueError(f"user ids must lie in [0, {histories.num_users})")
    return _windows(histories.items, histories.indptr[u], histories.indptr[u + 1], max_len)


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
