"""Behaviour-sequence CTR samples from an interaction log, following the DIN Amazon protocol.

For each user, interactions are sorted by time (ties keep log order). Every interaction after the
first is a positive sample whose history is the ``max_len`` most recent *earlier* items (left-padded
with 0, most recent last); ``n_neg`` sampled items that are neither the positive nor in that history
make negatives with the same history. Each user's last interaction is the test sample, the one
before it the validation sample, the rest are training samples (leave-one-out). DIEN's negative
histories hold, step by step, a sampled item other than the one clicked at that step.

Nothing from validation or test leaks into training: histories only hold earlier interactions, and
every vocabulary (items, item attributes, users) is fitted on the training interactions only, i.e.
all interactions except each user's validation and test ones. Ids: 0 = padding, 1 = out of
vocabulary (values never seen in training), known values from 2. Negatives are drawn from the
items known at training time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recforge.features import Feature, Initializer, RandomNormal, SequenceFeature, SparseFeature

PAD, OOV = 0, 1
Columns = dict[str, np.ndarray]


@dataclass(frozen=True)
class BehaviorFeatures:
    """Feature specs matching ``BehaviorCTR`` columns, ready for ``DIN``/``DIEN``/``BST`` (and a
    mean-pooled history for a plain DNN)."""

    features: list[Feature]  # user + target features
    history_features: list[Feature]  # pooling="concat", sharing the targets' tables
    target_features: list[Feature]
    neg_history_features: list[Feature]
    mean_history_features: list[Feature]  # the same histories with pooling="mean"


@dataclass(frozen=True)
class BehaviorCTR:
    """Train/validation/test columns (``dict[str, np.ndarray]``, labels under ``"label"``) and the
    vocabularies (raw value -> id) fitted on the training interactions."""

    train: Columns
    valid: Columns
    test: Columns
    vocabs: dict[str, dict[object, int]]
    user_col: str
    item_col: str
    feature_cols: tuple[str, ...]
    max_len: int

    def vocab_size(self, column: str) -> int:
        """Table size for ``column`` (known values + padding + OOV)."""
        try:
            return len(self.vocabs[column]) + 2
        except KeyError:
            raise KeyError(f"no vocabulary for {column!r}; known: {sorted(self.vocabs)}") from None

    def feature_specs(
        self, embed_dim: int = 16, *, user_embed: bool = True, initializer: Initializer | None = None
    ) -> BehaviorFeatures:
        """Feature specs for these columns, all ``embed_dim`` wide, every table initialised by
        ``initializer`` (default ``RandomNormal()``)."""
        init = initializer if initializer is not None else RandomNormal()
        targets: list[Feature] = [
            SparseFeature(c, self.vocab_size(c), embed_dim, initializer=init)
            for c in (self.item_col, *self.feature_cols)
        ]

        def seq(prefix: str, pooling: str) -> list[Feature]:
            return [
                SequenceFeature(
                    f"{prefix}{t.name}", self.vocab_size(t.name), embed_dim, pooling=pooling,  # type: ignore[arg-type]
                    shared_with=t.name, max_len=self.max_len,
                )
                for t in targets
            ]  # fmt: skip

        user: list[Feature] = (
            [SparseFeature(self.user_col, self.vocab_size(self.user_col), embed_dim, initializer=init)]
            if user_embed
            else []
        )
        return BehaviorFeatures(
            features=[*user, *targets],
            history_features=seq("hist_", "concat"),
            target_features=targets,
            neg_history_features=seq("neg_hist_", "concat"),
            mean_history_features=seq("hist_", "mean"),
        )


def _fit_vocab(values: np.ndarray) -> dict[object, int]:
    uniq = pd.unique(values[pd.notna(values)])
    return {v: i + 2 for i, v in enumerate(uniq)}


def _encode(values: np.ndarray, vocab: Mapping[object, int]) -> np.ndarray:
    index = pd.Index(list(vocab.keys()))
    pos = index.get_indexer(values) if len(index) else np.full(len(values), -1)
    return np.where(pos >= 0, pos + 2, OOV).astype(np.int64)


def _item_attributes(
    item_features: pd.DataFrame | Mapping[str, Mapping[object, object]] | None,
) -> pd.DataFrame:
    if item_features is None:
        return pd.DataFrame()
    if isinstance(item_features, pd.DataFrame):
        return item_features
    if isinstance(item_features, Mapping):
        return pd.DataFrame({c: pd.Series(dict(m)) for c, m in item_features.items()})
    raise TypeError(
        "item_features must be a DataFrame indexed by item or a dict {column: {item: value}}, got "
        f"{type(item_features).__name__}"
    )


def _sample_excluding(
    rng: np.random.Generator, low: int, high: int, shape: tuple[int, ...], exclude: np.ndarray
) -> np.ndarray:
    """Uniform ints in ``[low, high)`` of ``shape (N, K)``, redrawn where they equal any id in the
    row's ``exclude (N, E)`` (a few rounds; with a tiny catalogue some may stay)."""
    out = rng.integers(low, high, size=shape)
    for _ in range(30):
        bad = (out[:, :, None] == exclude[:, None, :]).any(-1)  # (N, K)
        if not bad.any():
            break
        out[bad] = rng.integers(low, high, size=int(bad.sum()))
    return out


def build_behavior_ctr(
    log: pd.DataFrame,
    *,
    user_col: str,
    item_col: str,
    time_col: str,
    item_features: pd.DataFrame | Mapping[str, Mapping[object, object]] | None = None,
    max_len: int = 50,
    n_neg: int = 1,
    seed: int = 0,
) -> BehaviorCTR:
    """Build leak-free behaviour-sequence CTR samples from an interaction log.

    Args:
        log: one row per interaction.
        user_col, item_col, time_col: column names in ``log``.
        item_features: item attributes (e.g. category): a DataFrame indexed by item id with one
            column per attribute, or ``{column: {item: value}}``. Missing values become OOV.
        max_len: most history items kept (the most recent).
        n_neg: sampled negatives per positive.
        seed: negative-sampling seed.

    Returns:
        ``BehaviorCTR`` whose splits hold ``user_col``, ``item_col``, each attribute, ``hist_*`` and
        ``neg_hist_*`` ``(N, max_len)`` histories, and ``label``.
    """
    for col in (user_col, item_col, time_col):
        if col not in log.columns:
            raise KeyError(f"log has no column {col!r}; it has {list(log.columns)}")
    if max_len < 1 or n_neg < 1:
        raise ValueError(f"max_len and n_neg must be >= 1, got max_len={max_len}, n_neg={n_neg}")
    attrs = _item_attributes(item_features)
    feature_cols = tuple(str(c) for c in attrs.columns)
    clash = {user_col, item_col, "label"} & set(feature_cols)
    if clash:
        raise ValueError(f"item_features columns {sorted(clash)} clash with the log's column names")
    rng = np.random.default_rng(seed)

    # Sort by user, then time, then log order (stable); positions within each user.
    users, user_codes = np.unique(log[user_col].to_numpy(), return_inverse=True)
    times = log[time_col].to_numpy()
    order = np.lexsort((np.arange(len(log)), times, user_codes))
    u = user_codes[order]
    raw_items = log[item_col].to_numpy()[order]
    n = len(u)
    start_of_user = np.r_[0, np.flatnonzero(u[1:] != u[:-1]) + 1]
    count = np.diff(np.r_[start_of_user, n])
    start = np.repeat(start_of_user, count)  # (n,) first row of each row's user
    size = np.repeat(count, count)
    pos = np.arange(n) - start
    is_test = (pos == size - 1) & (size >= 2)
    is_valid = (pos == size - 2) & (size >= 3)
    is_train = (pos >= 1) & ~is_test & ~is_valid
    in_training = ~is_test & ~is_valid  # interactions whose values the vocabularies may see

    # Vocabularies from training interactions only.
    vocabs: dict[str, dict[object, int]] = {
        item_col: _fit_vocab(raw_items[in_training]),
        user_col: _fit_vocab(users[np.unique(u[in_training])]),
    }
    items = _encode(raw_items, vocabs[item_col])
    n_items = len(vocabs[item_col]) + 2
    if n_items <= 2:
        raise ValueError("the training interactions hold no items; the log is too small to split")
    attr_of_event: dict[str, np.ndarray] = {}
    attr_of_id: dict[str, np.ndarray] = {}
    known_raw = np.array(list(vocabs[item_col].keys()), dtype=object)
    for col in feature_cols:
        series = attrs[col]
        if not series.reindex(raw_items[in_training]).notna().any():
            raise ValueError(
                f"item_features column {col!r} has no value for any logged item: are its index "
                f"values of the same type as log[{item_col!r}]?"
            )
        vocab = _fit_vocab(series.reindex(raw_items[in_training]).to_numpy())
        vocabs[col] = vocab
        attr_of_event[col] = _encode(series.reindex(raw_items).to_numpy(), vocab)
        table = np.full(n_items, OOV, dtype=np.int64)
        table[PAD] = PAD
        table[2:] = _encode(series.reindex(known_raw).to_numpy(), vocab)
        attr_of_id[col] = table

    # Histories: the max_len rows before each row, within its user.
    idx = np.arange(n)[:, None] - max_len + np.arange(max_len)[None, :]  # (n, L)
    real = idx >= start[:, None]
    idx = np.where(real, idx, 0)
    # One sampled negative per interaction, other than its item: gathered into negative histories.
    neg_event = _sample_excluding(rng, 2, n_items, (n, 1), items[:, None])[:, 0]

    def split(mask: np.ndarray) -> Columns:
        rows = np.flatnonzero(mask)
        hist = np.where(real[rows], items[idx[rows]], PAD)  # (N, L)
        neg_hist = np.where(real[rows], neg_event[idx[rows]], PAD)
        negs = _sample_excluding(rng, 2, n_items, (len(rows), n_neg), np.c_[items[rows], hist])  # (N, K)
        k = n_neg + 1
        out: Columns = {
            user_col: np.repeat(_encode(users[u[rows]], vocabs[user_col]), k),
            item_col: np.c_[items[rows], negs].reshape(-1),
            f"hist_{item_col}": np.repeat(hist, k, axis=0),
            f"neg_hist_{item_col}": np.repeat(neg_hist, k, axis=0),
        }
        for col in feature_cols:
            table = attr_of_id[col]
            out[col] = np.c_[attr_of_event[col][rows], table[negs]].reshape(-1)
            out[f"hist_{col}"] = np.repeat(
                np.where(real[rows], attr_of_event[col][idx[rows]], PAD), k, axis=0
            )
            out[f"neg_hist_{col}"] = np.repeat(table[neg_hist], k, axis=0)
        out["label"] = np.tile(np.r_[1.0, np.zeros(n_neg)], len(rows)).astype(np.float32)
        return out

    return BehaviorCTR(
        train=split(is_train),
        valid=split(is_valid),
        test=split(is_test),
        vocabs=vocabs,
        user_col=user_col,
        item_col=item_col,
        feature_cols=feature_cols,
        max_len=max_len,
    )
