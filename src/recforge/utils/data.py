"""Torch-RecHub's ``torch_rechub.utils.data`` names, so ported code only renames the import.

Thin adapters: loaders are recforge's ``ColumnarDataset`` + ``BatchLoader`` (``DataGenerator``,
``MatchDataGenerator``, ``SequenceDataGenerator``), histories come from
``recforge.data.build_histories``/``next_item_samples`` and negatives from
``recforge.data.NegativeSampler``. Only ``TorchDataset``/``PredictDataset`` are plain row datasets,
for code that feeds ragged lists through its own ``collate_fn``.

Where the behaviour differs from Torch-RecHub 0.9.0 (see ``docs/migrating.md``): loaders yield dict
batches with the labels under ``"label"`` (recforge's batch contract), histories are left-padded with
the most recent item last, and every user's most recent ``max_len`` items are the history.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from recforge.data import (
    ColumnarDataset,
    DataGenerator,
    NegativeSampler,
    build_histories,
    next_item_samples,
)
from recforge.data.dataset import ArrayLike, BatchLoader
from recforge.features import auto_embed_dim
from recforge.ints import as_int
from recforge.metrics import auc_score
from recforge.objectives import BinaryCrossEntropy, MeanSquaredError, Objective


def df_to_dict(data: pd.DataFrame) -> dict[str, np.ndarray]:
    """A DataFrame as ``{column: values}`` (list columns become stacked 2-D arrays)."""
    out: dict[str, np.ndarray] = {}
    for col in data.columns:
        values = data[col].to_numpy()
        if values.dtype == object and len(values) and isinstance(values[0], list | tuple | np.ndarray):
            values = np.stack([np.asarray(v) for v in values])
        out[str(col)] = values
    return out


def pad_sequences(
    sequences: Sequence[Sequence[int]],
    maxlen: int | None = None,
    dtype: str = "int64",
    padding: str = "pre",
    truncating: str = "pre",
    value: int = 0,
) -> np.ndarray:
    """Pad/truncate id lists to ``(N, maxlen)`` like Keras: ``"pre"`` pads or cuts at the front
    (recforge's convention: the most recent item stays last)."""
    for arg, v in (("padding", padding), ("truncating", truncating)):
        if v not in ("pre", "post"):
            raise ValueError(f"{arg} must be 'pre' or 'post', got {v!r}")
    maxlen = (
        as_int(maxlen, "maxlen", minimum=0)
        if maxlen is not None
        else max((len(s) for s in sequences), default=0)
    )
    out = np.full((len(sequences), maxlen), value, dtype=dtype)
    for i, s in enumerate(sequences):
        s = list(s)
        s = s[-maxlen:] if truncating == "pre" else s[:maxlen]
        if not s or maxlen == 0:
            continue
        if padding == "pre":
            out[i, maxlen - len(s) :] = s
        else:
            out[i, : len(s)] = s
    return out


def array_replace_with_dict(array: ArrayLike, dic: Mapping[Hashable, object]) -> np.ndarray:
    """Every value of ``array`` replaced by ``dic[value]`` (a value missing from ``dic`` is a
    ``KeyError`` naming it)."""
    arr = np.asarray(array)
    keys = np.array(list(dic.keys()))
    values = np.array(list(dic.values()))
    order = keys.argsort()
    pos = np.searchsorted(keys, arr, sorter=order).clip(max=len(keys) - 1)
    found = keys[order[pos]] == arr
    if not np.all(found):
        raise KeyError(f"array_replace_with_dict: no replacement for value(s) {np.unique(arr[~found])[:5]}")
    return values[order[pos]]


def get_auto_embedding_dim(num_classes: int) -> int:
    """``floor(6 * num_classes ** 0.25)`` (recforge's ``auto_embed_dim``)."""
    return auto_embed_dim(as_int(num_classes, "num_classes", minimum=1))


def get_loss_func(task_type: str = "classification") -> Objective:
    """The objective of a task type. recforge's objectives take logits (models output logits):
    binary cross-entropy with logits for ``"classification"``, MSE for ``"regression"``."""
    if task_type == "classification":
        return BinaryCrossEntropy()
    if task_type == "regression":
        return MeanSquaredError()
    raise ValueError(f"task_type must be 'classification' or 'regression', got {task_type!r}")


def get_metric_func(task_type: str = "classification") -> Any:
    """AUC for ``"classification"``, mean squared error for ``"regression"``."""
    if task_type == "classification":
        return auc_score
    if task_type == "regression":
        return lambda y_true, y_pred: float(np.mean((np.asarray(y_true) - np.asarray(y_pred)) ** 2))
    raise ValueError(f"task_type must be 'classification' or 'regression', got {task_type!r}")


# -- datasets and loaders ------------------------------------------------------------------------
class TorchDataset(torch.utils.data.Dataset[tuple[dict[str, Any], Any]]):
    """Rows ``({column: value}, label)`` of a dict of columns, one at a time, for a
    ``torch.utils.data.DataLoader`` with your own ``collate_fn`` (e.g. ragged lists). Rectangular
    data trains faster through ``DataGenerator`` (whole-tensor batches)."""

    def __init__(self, x: Mapping[str, Any], y: Sequence[Any] | np.ndarray | Tensor) -> None:
        super().__init__()
        self.x, self.y = x, y

    def __getitem__(self, index: int) -> tuple[dict[str, Any], Any]:
        return {k: v[index] for k, v in self.x.items()}, self.y[index]

    def __len__(self) -> int:
        return len(self.y)


class PredictDataset(torch.utils.data.Dataset[dict[str, Any]]):
    """Rows ``{column: value}`` without labels (see ``TorchDataset``)."""

    def __init__(self, x: Mapping[str, Any]) -> None:
        super().__init__()
        self.x = x

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {k: v[index] for k, v in self.x.items()}

    def __len__(self) -> int:
        return len(next(iter(self.x.values()))) if self.x else 0


class MatchDataGenerator:
    """Retrieval loaders: ``(train, test users, all items)``.

    ``y`` (optional) is stored as the batches' ``"label"``; the test-user and item loaders keep their
    row order (embeddings come back aligned with ``x_test_user`` / ``x_all_item``).
    """

    def __init__(
        self, x: Mapping[str, ArrayLike] | pd.DataFrame, y: ArrayLike | None = None, *, seed: int = 2022
    ) -> None:
        labels = None if y is None or len(y) == 0 else y
        self.dataset = ColumnarDataset(x, labels)
        self.seed = seed

    def generate_dataloader(
        self,
        x_test_user: Mapping[str, ArrayLike] | pd.DataFrame,
        x_all_item: Mapping[str, ArrayLike] | pd.DataFrame,
        batch_size: int,
        num_workers: int = 8,
    ) -> tuple[BatchLoader, BatchLoader, BatchLoader]:
        """``num_workers`` is accepted for compatibility: batches are tensor slices, no workers."""
        del num_workers
        batch_size = as_int(batch_size, "batch_size", minimum=1)
        return (
            BatchLoader(self.dataset, batch_size, shuffle=True, seed=self.seed),
            BatchLoader(ColumnarDataset(x_test_user), batch_size),
            BatchLoader(ColumnarDataset(x_all_item), batch_size),
        )


SEQUENCE_COLUMNS = ("seq_tokens", "seq_positions", "seq_time_diffs", "label")


class SequenceBatches:
    """A ``BatchLoader`` whose batches are Torch-RecHub's tuples ``(seq_tokens (B, L),
    seq_positions (B, L), seq_time_diffs (B, L), targets (B,))`` (its HSTU scripts unpack them)."""

    def __init__(self, loader: BatchLoader) -> None:
        self.loader = loader
        self.dataset = loader.dataset

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        for batch in self.loader:
            yield tuple(batch[c] for c in SEQUENCE_COLUMNS)


class SequenceDataGenerator:
    """Next-item sequences (Torch-RecHub's HSTU data) in a ``ColumnarDataset`` with columns
    ``SEQUENCE_COLUMNS`` (the target item id is the ``"label"``); loaders yield Torch-RecHub's tuples
    (``SequenceBatches``)."""

    def __init__(
        self, seq_tokens: ArrayLike, seq_positions: ArrayLike, targets: ArrayLike, seq_time_diffs: ArrayLike
    ) -> None:
        self.dataset = ColumnarDataset(
            {"seq_tokens": seq_tokens, "seq_positions": seq_positions, "seq_time_diffs": seq_time_diffs}
        )
        self.dataset.columns["label"] = torch.as_tensor(np.asarray(targets), dtype=torch.long).reshape(-1)
        if len(self.dataset.columns["label"]) != len(self.dataset):
            raise ValueError(
                f"targets has {len(self.dataset.columns['label'])} rows, seq_tokens has {len(self.dataset)}"
            )

    def generate_dataloader(
        self,
        batch_size: int = 32,
        num_workers: int = 0,
        split_ratio: Sequence[float] | None = None,
        shuffle: bool = True,
        *,
        seed: int = 2022,
    ) -> tuple[SequenceBatches, ...]:
        """``(loader,)`` without ``split_ratio``; ``(train, valid, test)`` for a ``(train, valid,
        test)`` split summing to 1 (seeded random split)."""
        del num_workers
        batch_size = as_int(batch_size, "batch_size", minimum=1)
        if split_ratio is None:
            return (SequenceBatches(BatchLoader(self.dataset, batch_size, shuffle=shuffle, seed=seed)),)
        if len(split_ratio) != 3 or abs(sum(split_ratio) - 1.0) > 1e-6:
            raise ValueError(
                f"split_ratio must be (train, valid, test) fractions summing to 1, got {split_ratio}"
            )
        n = len(self.dataset)
        n_train, n_val = int(n * split_ratio[0]), int(n * split_ratio[1])
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        parts = (perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :])
        return tuple(
            SequenceBatches(BatchLoader(self.dataset.subset(p), batch_size, shuffle=(i == 0), seed=seed))
            for i, p in enumerate(parts)
        )


# -- behaviour-sequence samples ------------------------------------------------------------------
def _encode_in_place(data: pd.DataFrame) -> None:
    """Every column as ids ``1 .. n`` in sorted value order (Torch-RecHub's ``LabelEncoder() + 1``),
    written back into ``data``: scripts then size their tables with ``data[col].max() + 1``."""
    for col in data.columns:
        codes, _ = pd.factorize(data[col], sort=True)
        data[col] = codes.astype(np.int64) + 1


def _behaviour_rows(
    data: pd.DataFrame,
    user_col: str,
    item_col: str,
    time_col: str,
    attribute_cols: Sequence[str],
    *,
    min_item: int,
    max_len: int,
    shuffle: bool,
) -> tuple[dict[str, np.ndarray], ...]:
    """Encoded log -> (train, valid, test) columns: for every interaction after a user's first, a
    positive row (label 1) and a row with one sampled negative item (label 0) sharing its history.

    The history is the user's most recent ``max_len`` earlier items (left-padded, most recent last;
    ``next_item_samples``); the negative is uniform over the items the user never interacted with
    (``NegativeSampler`` with the user's items as ``seen``); the last interaction is the test row,
    the one before it the validation row.
    """
    missing = [c for c in (user_col, item_col, time_col, *attribute_cols) if c not in data.columns]
    if missing:
        raise KeyError(f"data has no column(s) {missing}; it has {list(data.columns)}")
    log = data
    if min_item > 0:
        log = log[log.groupby(user_col)[user_col].transform("size") >= min_item]
    num_items = int(data[item_col].max()) + 1
    num_users = int(data[user_col].max()) + 1
    hist = build_histories(
        log, user=user_col, item=item_col, time=time_col, num_users=num_users, num_items=num_items
    )
    s = next_item_samples(hist, max_len, user_column=user_col, history_column="hist", target_column="target")
    users, target = s[user_col], s["target"]
    sampler = NegativeSampler(num_items, seen=hist.seen())
    negative = sampler.sample(target, 1, users=users).ids[:, 0]
    # position of each sample counted from the end of its user's history: 1 = test, 2 = valid
    lengths = torch.from_numpy(hist.lengths())
    n_targets = (lengths - 1).clamp_min(0)
    first = torch.repeat_interleave(torch.cumsum(n_targets, 0) - n_targets, n_targets)
    from_end = n_targets[users] - (torch.arange(len(users)) - first)  # (N,)
    tables = {}
    for col in attribute_cols:
        table = np.zeros(num_items, dtype=np.int64)
        table[log[item_col].to_numpy(np.int64)] = log[col].to_numpy(np.int64)
        tables[col] = torch.from_numpy(table)
    rows = {
        "label": torch.tensor([1, 0]).repeat(len(users)),
        "target": torch.stack([target, negative], 1).reshape(-1),
        user_col: users.repeat_interleave(2),
        "hist": s["hist"].repeat_interleave(2, 0),
    }
    for col, lookup in tables.items():
        rows[f"hist_{col}"] = lookup[rows["hist"]]
        rows[f"target_{col}"] = lookup[rows["target"]]
    split = from_end.repeat_interleave(2)
    out = []
    for mask in (split > 2, split == 2, split == 1):
        idx = torch.nonzero(mask).reshape(-1)
        if shuffle:
            idx = idx[torch.randperm(len(idx))]
        out.append({k: v[idx].numpy() for k, v in rows.items()})
    return tuple(out)


def _frame(columns: Mapping[str, np.ndarray], names: Mapping[str, str]) -> pd.DataFrame:
    """Columns renamed by ``names`` (in that order); 2-D columns become list cells."""
    return pd.DataFrame(
        {
            new: (list(columns[old].tolist()) if columns[old].ndim == 2 else columns[old])
            for old, new in names.items()
        }
    )


def generate_seq_feature(
    data: pd.DataFrame,
    user_col: str,
    item_col: str,
    time_col: str,
    item_attribute_cols: Sequence[str] = (),
    min_item: int = 0,
    shuffle: bool = True,
    max_len: int = 50,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Behaviour-sequence CTR samples (DIN/DIEN data) as Torch-RecHub builds them.

    Like Torch-RecHub, every column of ``data`` is first encoded **in place** to ids ``1 .. n``
    (sorted values), so ``data[col].max() + 1`` is each table's size afterwards. For each user's
    interactions after the first: a positive row and a negative row (one item the user never
    interacted with), with the history of earlier items; the last interaction is the test row, the
    one before it the validation row, the rest train (see ``_behaviour_rows``).

    Returns:
        ``(train, valid, test)`` DataFrames with columns ``label``, ``target_item_id``, ``user_col``,
        ``hist_item_id`` (lists of ``max_len``) and, per attribute, ``hist_<attr>``, ``target_<attr>``.
    """
    _encode_in_place(data)
    parts = _behaviour_rows(
        data,
        user_col,
        item_col,
        time_col,
        list(item_attribute_cols),
        min_item=as_int(min_item, "min_item", minimum=0),
        max_len=as_int(max_len, "max_len", minimum=1),
        shuffle=shuffle,
    )
    names = {"label": "label", "target": "target_item_id", user_col: user_col, "hist": "hist_item_id"}
    for col in item_attribute_cols:
        names[f"hist_{col}"] = f"hist_{col}"
        names[f"target_{col}"] = f"target_{col}"
    train, valid, test = (_frame(p, names) for p in parts)
    return train, valid, test


def create_seq_features(
    data: pd.DataFrame,
    seq_feature_col: Sequence[str] = ("item_id", "cate_id"),
    max_len: int = 50,
    drop_short: int = 3,
    shuffle: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``generate_seq_feature`` for a log with columns ``user_id, item_id, cate_id, time`` (encoded
    in place), in Torch-RecHub's other layout: columns ``user_id``, ``history_item``,
    ``history_cate``, ``target_item``, ``target_cate``, ``label``; users with fewer than
    ``drop_short`` interactions are dropped."""
    item, cate = [*seq_feature_col, "item_id", "cate_id"][:2]
    _encode_in_place(data)
    parts = _behaviour_rows(
        data,
        "user_id",
        item,
        "time",
        [cate],
        min_item=as_int(drop_short, "drop_short", minimum=0),
        max_len=as_int(max_len, "max_len", minimum=1),
        shuffle=shuffle,
    )
    names = {
        "user_id": "user_id",
        "hist": "history_item",
        f"hist_{cate}": "history_cate",
        "target": "target_item",
        f"target_{cate}": "target_cate",
        "label": "label",
    }
    train, valid, test = (_frame(p, names) for p in parts)
    return train, valid, test


__all__ = [
    "DataGenerator",
    "MatchDataGenerator",
    "PredictDataset",
    "SequenceBatches",
    "SequenceDataGenerator",
    "TorchDataset",
    "array_replace_with_dict",
    "create_seq_features",
    "df_to_dict",
    "generate_seq_feature",
    "get_auto_embedding_dim",
    "get_loss_func",
    "get_metric_func",
    "pad_sequences",
]
