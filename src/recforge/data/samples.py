"""Training-sample builders beyond fixed tables: bags of a user's other items (unordered data) and
length-bucketed row orders (``length_bucketed``; ``LengthBucketedLoader`` redraws one every epoch).

``BagSamples`` yields one row per training interaction ``(u, i)``: the target ``i`` and a bag of
``u``'s *other* training items (all of them up to ``max_len``, else ``max_len`` drawn at random,
redrawn every epoch), so the target never leaks into its own input. It is how two-tower models
train on data without timestamps (a user's items are a set, e.g. LightGCN's files), as BARS'
YoutubeNet setting with the target held out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import torch
from torch import Tensor

from recforge.data.dataset import Batch
from recforge.data.interactions import Histories


class BagSamples:
    """Batches of ``(user, bag of the user's other items, target)``; bags are redrawn every epoch.

    Args:
        histories: each user's training items (order unused).
        max_len: bag size L (at most; left-padded with 0).
        batch_size: rows per batch.
        seed: seeds the shuffles, bags and dropout (with the epoch, so ``set_epoch`` replays).
        dropout: drop each bag item with this probability (at least one kept): an input dropout
            that keeps bag models from memorising users.
        max_per_user: at most this many targets per user and epoch (a fresh random subset each
            epoch; 0 = all), so that heavy users do not dominate the loss (YoutubeDNN's paper,
            Covington et al. 2016, section 4.1: a fixed number of examples per user).
        user_column, history_column, item_column: the batch's column names.
    """

    def __init__(
        self,
        histories: Histories,
        max_len: int,
        batch_size: int,
        *,
        seed: int = 0,
        dropout: float = 0.0,
        max_per_user: int = 0,
        user_column: str = "user_id",
        history_column: str = "hist_item_id",
        item_column: str = "item_id",
    ) -> None:
        if max_len < 1 or batch_size < 1:
            raise ValueError(f"max_len and batch_size must be >= 1, got {max_len}, {batch_size}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if max_per_user < 0:
            raise ValueError(f"max_per_user must be >= 0, got {max_per_user}")
        self.lengths = histories.lengths()
        self.indptr = histories.indptr
        self.items = histories.items
        self.users = np.repeat(np.arange(histories.num_users), self.lengths)  # one row per interaction
        self.pos = np.arange(len(self.items)) - self.indptr[self.users]  # target's place in its list
        self.max_len, self.batch_size, self.seed, self.epoch = max_len, batch_size, seed, 0
        self.dropout, self.max_per_user = dropout, max_per_user
        self.columns = (user_column, history_column, item_column)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def num_samples(self) -> int:
        if not self.max_per_user:
            return len(self.items)
        return int(np.minimum(self.lengths, self.max_per_user).sum())

    def __len__(self) -> int:
        return -(-self.num_samples() // self.batch_size)

    def _epoch_rows(self, rng: np.random.Generator) -> np.ndarray:
        """This epoch's interactions in random order (all, or at most ``max_per_user`` per user)."""
        if not self.max_per_user:
            return rng.permutation(len(self.items))
        by_user = np.lexsort((rng.random(len(self.items)), self.users))  # users' rows, shuffled within
        rank = np.arange(len(by_user)) - self.indptr[self.users[by_user]]
        return rng.permutation(by_user[rank < self.max_per_user])

    def __iter__(self) -> Iterator[Batch]:
        rng = np.random.default_rng((self.seed, self.epoch))
        order = self._epoch_rows(rng)
        h = self.max_len
        user_col, hist_col, item_col = self.columns
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            u, p = self.users[idx], self.pos[idx]
            others = self.lengths[u] - 1  # (B,)
            r = np.broadcast_to(np.arange(h), (len(idx), h)).copy()  # (B, L)
            big = others > h
            r[big] = rng.integers(0, others[big, None], (int(big.sum()), h))
            j = r + (r >= p[:, None])  # skip the target's own position
            valid = r < others[:, None]
            if self.dropout:  # drop each bag item with this probability, keeping at least one
                keep = rng.random(valid.shape) >= self.dropout
                keep[np.arange(len(idx)), rng.integers(0, np.maximum(np.minimum(others, h), 1))] = True
                valid &= keep
            hist = np.where(valid, self.items[self.indptr[u][:, None] + np.where(valid, j, 0)], 0)
            yield {
                user_col: torch.from_numpy(u),
                hist_col: torch.from_numpy(hist[:, ::-1].copy()),  # (B, L) left-padded
                item_col: torch.from_numpy(self.items[idx]),
            }


def bag_rows(
    histories: Histories, users: np.ndarray, max_len: int, *, seed: int = 0
) -> dict[str, np.ndarray]:
    """Evaluation bags: each of ``users``' training items (at most ``max_len``, a fixed seeded
    random subset beyond that), left-padded ``(U, L)``."""
    rng = np.random.default_rng(seed)
    hist = np.zeros((len(users), max_len), np.int64)
    for row, u in enumerate(users):
        items = histories.items[histories.indptr[u] : histories.indptr[u + 1]]
        if len(items) > max_len:
            items = rng.choice(items, max_len, replace=False)
        if len(items):
            hist[row, max_len - len(items) :] = items
    return {"user": np.asarray(users, dtype=np.int64), "history": hist}


def length_bucketed(
    columns: Mapping[str, np.ndarray], batch_size: int, seed: int, key: str, *, window: int = 32
) -> dict[str, np.ndarray]:
    """Rows shuffled, then sorted by the length of the list column ``key`` within chunks of
    ``window`` batches, and the batches shuffled: each batch holds similar lengths, so the models'
    left-padding trim saves most of the recurrent/attention work."""
    rng = np.random.default_rng(seed)
    n = len(next(iter(columns.values())))
    perm = rng.permutation(n)
    lengths = (columns[key][perm] != 0).sum(1)
    chunk = window * batch_size
    order = np.concatenate(
        [perm[s : s + chunk][np.argsort(lengths[s : s + chunk], kind="stable")] for s in range(0, n, chunk)]
    )
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    order = np.concatenate([batches[i] for i in rng.permutation(len(batches))]) if batches else order
    return {k: v[order] for k, v in columns.items()}


def shortest_first(columns: Mapping[str, Tensor], key: str) -> dict[str, Tensor]:
    """Evaluation rows ordered by the length of the left-padded list column ``key``, shortest first
    (stable): each batch then holds similar lengths and sequential towers drop the columns that are
    padding in every row. Full-ranking metrics do not depend on the row order."""
    order = torch.argsort((columns[key] != 0).sum(1), stable=True)
    return {k: v[order] for k, v in columns.items()}


class LengthBucketedLoader:
    """Batches of similar ``key`` length: every epoch a fresh ``length_bucketed`` order (seeded
    with ``seed + epoch``, so ``set_epoch`` replays), cut into ``batch_size`` rows.

    Args:
        columns: equal-length columns, ``columns[key]`` a left-padded ``(N, L)`` list column.
        batch_size: rows per batch. key: the list column whose length buckets the rows.
        seed: seeds the order. window: batches sorted together (larger: less padding, less mixing).
    """

    def __init__(
        self, columns: Mapping[str, Tensor], batch_size: int, *, key: str, seed: int = 0, window: int = 32
    ) -> None:
        if batch_size < 1 or window < 1:
            raise ValueError(f"batch_size and window must be >= 1, got {batch_size}, {window}")
        if key not in columns:
            raise KeyError(f"LengthBucketedLoader: no column {key!r}; columns are {sorted(columns)}")
        self.columns = {k: v.numpy() for k, v in columns.items()}
        self.batch_size, self.key, self.seed, self.window, self.epoch = batch_size, key, seed, window, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.columns[self.key]) // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        cols = length_bucketed(
            self.columns, self.batch_size, self.seed + self.epoch, self.key, window=self.window
        )
        n = len(cols[self.key])
        for a in range(0, n, self.batch_size):
            yield {k: torch.from_numpy(v[a : a + self.batch_size]) for k, v in cols.items()}
