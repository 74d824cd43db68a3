"""Interaction-log data of a run (``match``, ``seq``): read the log, split it, fit the pipeline on
the training part with vocabularies covering the catalogue, and build training batches and
full-ranking evaluation rows for every user with a held-out item.

Columns: the user and item columns of the log (``data.user``, ``data.item``), the history column
(the ``sequence`` feature ``shared_with`` the item column), user-side columns (``data.user_columns``,
from the log's user table or the log) and item-side columns (``data.item_columns``, from its item
table or the log; they reach the item tower through the ``ItemCatalog``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from recforge.config import Preset, RunConfig, SampleKind
from recforge.data import (
    BagSamples,
    Batch,
    BatchLoader,
    ColumnarDataset,
    Histories,
    InteractionLog,
    InteractionSplit,
    ItemCatalog,
    LengthBucketedLoader,
    SeenItems,
    bag_rows,
    encode_split,
    next_item_samples,
    recent_items,
    sequence_samples,
    shortest_first,
    split_parts,
)
from recforge.datasets.formats import LOG_READERS, DataFormat
from recforge.metrics.ranking import ListRankingEvaluator, RankingEvaluator
from recforge.preprocess import Categorical, FeaturePipeline, SequenceColumn
from recforge.preprocess.vocab import NUM_RESERVED
from recforge.runs.model import column_specs, is_generative

log = logging.getLogger("recforge")


def read_log(cfg: RunConfig) -> InteractionLog:
    """The config's interaction log, its columns named as the config names them."""
    d = cfg.data
    assert d.path is not None
    if d.format is DataFormat.INTERACTIONS:
        return LOG_READERS[d.format](d.path, user=d.user, item=d.item, time=d.time)
    raw = LOG_READERS[d.format](d.path)
    names = {raw.user: d.user, raw.item: d.item, raw.time: d.time}
    names = {k: v for k, v in names.items() if k != v}
    if not names:
        return raw
    return InteractionLog(
        raw.frame.rename(columns=names),
        user=d.user,
        item=d.item,
        time=d.time,
        ordered=raw.ordered,
        split=raw.split,
        items=raw.items.rename(columns=names) if raw.items is not None else None,
        users=raw.users.rename(columns=names) if raw.users is not None else None,
    )


def _side_table(
    frame: pd.DataFrame,
    key: str,
    columns: Sequence[str],
    table: pd.DataFrame | None,
    what: str,
    option: str = "",
) -> pd.DataFrame:
    """One row per ``key`` value with ``columns``: from ``table`` when it has them, else the first
    row of each key in the log ``frame``."""
    if not columns:
        return pd.DataFrame({key: pd.unique(frame[key])})
    source = table if table is not None and all(c in table.columns for c in columns) else frame
    missing = [c for c in columns if c not in source.columns]
    if missing:
        raise KeyError(
            f"data.{option or what + '_columns'}: {missing} are neither in the log nor in its {what} table"
        )
    return source[[key, *columns]].drop_duplicates(key, keep="first").reset_index(drop=True)


@dataclass
class EvalPart:
    """Evaluation rows of one held-out part: one row per user with a held-out item."""

    rows: ColumnarDataset
    evaluator: RankingEvaluator | ListRankingEvaluator  # full ranking, or a generative model's lists
    users_total: int
    cold_users: int  # users without any training item (ranked from an empty history)


@dataclass
class LogData:
    """An interaction log ready for training and evaluation."""

    pipeline: FeaturePipeline
    split: InteractionSplit
    catalog: ItemCatalog
    user_table: dict[str, Tensor]  # user-side columns, row = encoded user id
    user: str
    item: str
    history: str | None
    target: str
    kind: SampleKind
    train_len: int
    eval_len: int
    items_raw: pd.DataFrame | None = None  # raw item-side columns of the catalogue, when the model reads any
    item_texts: list[str] | None = None  # each item id's text (``data.item_text``), "" for reserved ids
    item_table: pd.DataFrame | None = None  # the log's raw item table, when it has one
    length_bucketed: bool = False  # next-item batches of similar history length

    @property
    def num_items(self) -> int:
        return self.split.num_items

    def histories(self, *parts: str) -> Histories:
        return self.split.histories(*parts)

    def input_parts(self, part: str) -> tuple[str, ...]:
        """The parts whose items are a user's history when ``part`` is held out."""
        return ("train",) if part == "valid" else ("train", "valid")

    def item_counts(self, *parts: str) -> np.ndarray:
        frames = [getattr(self.split, p) for p in parts or ("train",)]
        items = np.concatenate([f[self.item].to_numpy(np.int64) for f in frames])
        return np.bincount(items, minlength=self.num_items)

    def _join(self, batch: Batch) -> Batch:
        """Add the user-side columns of each row's user and the item-side columns of its item."""
        if self.user_table:
            ids = batch[self.user]
            batch.update({k: v[ids] for k, v in self.user_table.items()})
        if self.item in batch and len(self.catalog.columns) > 1:
            ids = batch[self.item]
            batch.update({k: v[ids] for k, v in self.catalog.columns.items() if k != self.item})
        return batch

    def train_loader(
        self, cfg: RunConfig, *, parts: Sequence[str] = ("train",), seed: int | None = None
    ) -> Iterable[Batch]:
        """Training batches from the histories of ``parts`` (``("train", "valid")`` to refit)."""
        d, s = cfg.data, cfg.data.samples
        seed = cfg.seed if seed is None else seed
        h = self.histories(*parts)
        if self.kind is SampleKind.BAG:
            assert self.history is not None
            bags = BagSamples(
                h,
                self.train_len,
                d.batch_size,
                seed=seed,
                dropout=s.dropout,
                max_per_user=s.max_per_user,
                user_column=self.user,
                history_column=self.history,
                item_column=self.item,
            )
            return _Joined(bags, self._join)
        if self.kind is SampleKind.SEQUENCE:
            cols = sequence_samples(
                h,
                self.train_len,
                user_column=self.user,
                history_column=self.history or "history",
                target_column=self.target,
            )
        elif self.history is not None:
            cols = next_item_samples(
                h, self.train_len, user_column=self.user, history_column=self.history, target_column=self.item
            )
            if self.length_bucketed and len(cols[self.user]):
                return LengthBucketedLoader(self._join(cols), d.batch_size, key=self.history, seed=seed)
        else:  # user-id models: one row per training interaction
            rows = np.repeat(np.arange(h.num_users), h.lengths())
            cols = {self.user: torch.from_numpy(rows), self.item: torch.from_numpy(h.items.copy())}
        cols = self._join(cols)
        if len(cols[self.user]) == 0:
            raise ValueError("the training part yields no training samples (every user has one item?)")
        return BatchLoader(ColumnarDataset(cols), d.batch_size, shuffle=True, seed=seed)

    def eval_part(
        self,
        part: str,
        *,
        ks: Sequence[int],
        normalize: bool,
        exclude_seen: bool,
        seed: int = 0,
        generate: bool = False,
        beam_width: int | None = None,
    ) -> EvalPart:
        """Rows of the users holding a ``part`` ("valid"/"test") item, ranked by full ranking
        against every item (``generate``: by the model's generated lists, ``beam_width`` beams);
        their earlier items are the history and (``exclude_seen``) left out."""
        frame: pd.DataFrame = getattr(self.split, part)
        h = self.histories(*self.input_parts(part))
        users = np.unique(frame[self.user].to_numpy(np.int64))
        cols: dict[str, Tensor] = {self.user: torch.from_numpy(users)}
        if self.history is not None:
            hist = (
                recent_items(h, users, self.eval_len)
                if self.split.ordered
                else bag_rows(h, users, self.eval_len, seed=seed)["history"]
            )
            cols[self.history] = torch.from_numpy(hist)
        if self.user_table:
            cols.update({k: v[cols[self.user]] for k, v in self.user_table.items()})
        truth = SeenItems.from_pairs(
            frame[self.user].to_numpy(np.int64),
            frame[self.item].to_numpy(np.int64),
            num_rows=self.split.num_users,
            num_items=self.num_items,
        )
        seen = h.seen() if exclude_seen else None
        evaluator: RankingEvaluator | ListRankingEvaluator = (
            ListRankingEvaluator(
                self.num_items,
                ks=ks,
                seen=seen,
                ground_truth=truth,
                user_column=self.user,
                generate_kwargs={"beam_width": beam_width or max(ks)},
            )
            if generate
            else RankingEvaluator(
                self.catalog, ks=ks, seen=seen, ground_truth=truth, user_column=self.user, normalize=normalize
            )
        )
        cold = int((h.lengths()[users] == 0).sum())
        if self.history is not None:
            cols = shortest_first(cols, self.history)
        return EvalPart(ColumnarDataset(cols), evaluator, len(users), cold)


def side_columns(
    pipeline: FeaturePipeline, key: str, columns: Sequence[str], table: pd.DataFrame
) -> dict[str, Tensor]:
    """``columns`` of a raw side ``table`` encoded by ``pipeline``, each a tensor whose row ``i`` is
    the encoded ``key`` id ``i`` (rows of unknown ids stay 0)."""
    if not columns:
        return {}
    n = len(pipeline.vocabulary(key))
    enc = pipeline.transform_records(table.to_dict("records"), columns=[key, *columns])
    ids = torch.from_numpy(enc[key])
    out: dict[str, Tensor] = {}
    for c in columns:
        values = torch.from_numpy(np.ascontiguousarray(enc[c]))
        full = torch.zeros((n, *values.shape[1:]), dtype=values.dtype)
        full[ids] = values
        out[c] = full
    return out


def item_catalog(
    pipeline: FeaturePipeline, item: str, columns: Sequence[str], items: pd.DataFrame | None
) -> ItemCatalog:
    """Every item id of the pipeline's item vocabulary with its encoded side ``columns`` (read from
    the raw ``items`` table)."""
    cols = {item: torch.arange(len(pipeline.vocabulary(item)))}
    if columns:
        if items is None:
            raise ValueError(f"the item tower reads {list(columns)}: an item table is needed")
        cols.update(side_columns(pipeline, item, columns, items))
    return ItemCatalog(cols, item_id=item, reserved=NUM_RESERVED)


class _Joined:
    """A loader whose batches get extra columns (``set_epoch`` and ``len`` pass through)."""

    def __init__(self, inner: BagSamples, join: object) -> None:
        self.inner, self.join = inner, join

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Iterator[Batch]:
        for batch in self.inner:
            yield self.join(batch)  # type: ignore[operator]


def prepare_log(cfg: RunConfig) -> LogData:
    """Read, split and encode the config's interaction log (see the module docstring)."""
    d = cfg.data
    raw = read_log(cfg)
    parts = split_parts(
        raw,
        d.split or "",
        valid_fraction=d.valid_fraction,
        valid_start=d.valid_start,
        test_start=d.test_start,
        min_interactions=d.min_interactions,
        seed=cfg.seed,
    )
    specs = column_specs(cfg.features)
    names = {s.name for s in specs}
    if d.item not in names:
        raise ValueError(
            f"features: declare the item column {d.item!r} (type: categorical); it is the candidates' id"
        )
    if d.user not in names:  # known users are looked up by id when serving: keep its vocabulary
        specs.append(Categorical(d.user))
    pipeline = FeaturePipeline(specs)
    history = next((s.name for s in specs if isinstance(s, SequenceColumn) and s.shared_with == d.item), None)
    side = set(d.user_columns) | set(d.item_columns)
    undeclared = sorted(side - names)
    if undeclared:
        raise ValueError(f"data.user_columns/item_columns {undeclared} need an entry in features")
    inputs = {s.name for s in specs} - {d.user, d.item, *side} - ({history} if history else set())
    if inputs:
        raise ValueError(
            f"features {sorted(inputs)} are not columns of the interaction data: list user-side columns "
            f"in data.user_columns and item-side ones in data.item_columns"
        )
    users_side = _side_table(raw.frame, d.user, d.user_columns, raw.users, "user")
    items_side = _side_table(raw.frame, d.item, d.item_columns, raw.items, "item")
    if raw.items is not None and d.item_columns:  # the item table is the catalogue
        items_side = pd.concat(
            [items_side, pd.DataFrame({d.item: raw.catalog()})], ignore_index=True
        ).drop_duplicates(d.item, keep="first")
    train = parts["train"][[d.user, d.item]]
    fit = train.merge(users_side, on=d.user, how="left").merge(items_side, on=d.item, how="left")
    for s in specs:
        if isinstance(s, SequenceColumn) and s.name not in fit.columns:
            fit[s.name] = [[] for _ in range(len(fit))]  # shares the item vocabulary: nothing to fit
    pipeline.fit(fit, catalog={d.item: raw.catalog(), d.user: raw.all_users()})
    users_vocab, items_vocab = pipeline.vocabulary(d.user), pipeline.vocabulary(d.item)
    if users_vocab.hash_buckets is not None or items_vocab.hash_buckets is not None:
        raise ValueError(f"features: {d.user!r} and {d.item!r} need vocabularies (no hash_buckets) in a log")
    split = encode_split(
        parts,
        user=d.user,
        item=d.item,
        time=d.time,
        users=users_vocab,
        items=items_vocab,
        ordered=raw.ordered,
    )
    catalog = item_catalog(pipeline, d.item, d.item_columns, items_side if d.item_columns else None)
    user_table = side_columns(pipeline, d.user, d.user_columns, users_side)
    generative = is_generative(cfg.model.name)
    kind = d.samples.kind or (
        SampleKind.SEQUENCE
        if cfg.trainer.preset is Preset.SEQ and not generative
        else SampleKind.NEXT_ITEM
        if raw.ordered
        else SampleKind.BAG
    )
    if kind is not SampleKind.NEXT_ITEM and history is None:
        raise ValueError(
            f"data.samples.kind {kind.value!r} builds histories: declare a sequence feature with "
            f"shared_with: {d.item}"
        )
    if kind is not SampleKind.BAG and not raw.ordered:
        raise ValueError(
            f"data.samples.kind {kind.value!r} needs time-ordered data; {d.format.value!r} files list each "
            "user's items as a set: use kind: bag"
        )
    eval_len = next((s.max_len for s in specs if s.name == history), 1)
    assert isinstance(eval_len, int)
    return LogData(
        pipeline=pipeline,
        split=split,
        catalog=catalog,
        user_table=user_table,
        user=d.user,
        item=d.item,
        history=history,
        target=f"target_{d.item}",
        kind=kind,
        train_len=d.samples.max_len or eval_len,
        eval_len=eval_len,
        items_raw=items_side.reset_index(drop=True) if d.item_columns else None,
        item_texts=_item_texts(raw, d.item, d.item_text, pipeline) if d.item_text else None,
        item_table=raw.items,
        length_bucketed=generative if d.samples.length_bucketed is None else d.samples.length_bucketed,
    )


def row_text(row: Mapping[str, object], columns: Sequence[str]) -> str:
    """An item's text: its ``columns`` joined by ". " (a list's values by spaces; missing values skipped)."""
    parts = []
    for c in columns:
        v = row.get(c)
        if isinstance(v, list | tuple | np.ndarray):
            parts.append(" ".join(map(str, v)))
        elif v is not None and not (isinstance(v, float) and np.isnan(v)):
            parts.append(str(v))
    return ". ".join(p for p in parts if p)


def _item_texts(
    raw: InteractionLog, item: str, columns: Sequence[str], pipeline: FeaturePipeline
) -> list[str]:
    """Each encoded item id's text: its ``columns`` in the item table (lists joined by spaces)."""
    table = _side_table(raw.frame, item, columns, raw.items, "item", "item_text")

    vocab = pipeline.vocabulary(item)
    out = [""] * len(vocab)
    for i, row in zip(vocab.encode(table[item], column=item).tolist(), table.to_dict("records")):
        if i >= NUM_RESERVED:
            out[i] = row_text(row, columns)
    missing = sum(1 for t in out[NUM_RESERVED:] if not t)
    if missing:
        log.warning("data.item_text: %d item(s) have no text in the item table", missing)
    return out


def describe(data: LogData) -> Mapping[str, int]:
    """Sizes to print beside a run's metrics."""
    sp = data.split
    return {
        "users": sp.num_users - NUM_RESERVED,
        "items": sp.num_items - NUM_RESERVED,
        "train": len(sp.train),
        "valid": len(sp.valid),
        "test": len(sp.test),
    }
