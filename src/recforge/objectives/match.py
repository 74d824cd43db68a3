"""The retrieval objective: ``MatchObjective(TowerOutput, batch) -> loss`` for two-tower models.

``mode`` picks the loss form and ``negatives`` where the negatives come from:

============  =====================================================================
mode          0 point-wise (BCE), 1 pair-wise (BPR or hinge), 2 list-wise (softmax)
negatives     ``sampled``: K per row, from ``batch[neg_column] (B, K)`` when present, else
              the ``sampler`` (never the positive; optionally never a seen item)
              ``in_batch``: the other rows' positives (no sampling)
              ``shared``: ``num_negatives`` sampled items shared by the batch (sampled softmax)
              ``mixed``: in-batch plus shared sampled negatives
              (these three mask each row's positive and, when the sampler has ``seen``, every
              item that row's user has seen)
              ``all``: every catalog item (full softmax; list-wise only, small catalogs)
============  =====================================================================

Point-wise training on rows that carry their own 0/1 ``label`` (Torch-RecHub mode-0 data) is used
when the batch has a label and no negative source (``negatives="labelled"``).

List-wise losses apply the logQ correction (Yi et al., RecSys 2019) when every candidate has a
sampling probability: sampled items use the sampler's, in-batch items their training frequency
(``item_counts``), or the model's own streaming estimate (``YoutubeSBC``); the subtracted term is the log *expected count* (``log(K q)``), so mixed
sources are corrected consistently.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from recforge.choices import Choice
from recforge.data.catalog import ItemCatalog
from recforge.data.dataset import LABEL, Batch
from recforge.data.sampling import NegativeSampler, frequency_log_q
from recforge.objectives.matching import (
    bce_loss,
    bpr_loss,
    full_softmax_loss,
    hinge_loss,
    labelled_bce_loss,
    softmax_loss,
)
from recforge.outputs import TowerModel, TowerOutput


class MatchMode(enum.IntEnum):
    """Torch-RecHub's training modes."""

    POINTWISE = 0
    PAIRWISE = 1
    LISTWISE = 2

    @classmethod
    def parse(cls, value: MatchMode | int | str) -> MatchMode:
        if isinstance(value, str) and not value.isdigit():
            names = {m.name.lower(): m for m in cls}
            if value.lower() not in names:
                raise ValueError(f"mode must be 0/1/2 or one of {sorted(names)}, got {value!r}")
            return names[value.lower()]
        try:
            return cls(int(value))
        except ValueError:
            raise ValueError(
                f"mode must be 0/1/2 or one of {[m.name.lower() for m in cls]}, got {value!r}"
            ) from None


class NegativeSource(Choice):
    SAMPLED = "sampled"
    IN_BATCH = "in_batch"
    SHARED = "shared"
    MIXED = "mixed"
    ALL = "all"
    LABELLED = "labelled"


class PairLoss(Choice):
    BPR = "bpr"
    HINGE = "hinge"


class Candidates(NamedTuple):
    """Logits of each row's positive and its negatives (column-aligned masks and log expected counts)."""

    pos: Tensor  # (B,)
    neg: Tensor  # (B, N)
    valid: Tensor | None  # (B, N) bool
    pos_log_q: Tensor | None  # (B,)
    neg_log_q: Tensor | None  # (B, N)


def _item_batch(catalog: ItemCatalog | None, item_id: str, ids: Tensor) -> Batch:
    if catalog is None:
        return {item_id: ids}
    return catalog.batch(ids)


def _carried_negatives(model: TowerModel, batch: Mapping[str, Tensor]) -> dict[str, Tensor] | None:
    """The item-tower columns of negatives a batch carries for the model (``neg_item_features``,
    Torch-RecHub's ``neg_item_feature``), each ``(B, K)`` (a ``(B,)`` column is one per row)."""
    has = getattr(model, "negative_batch_in", None)
    if has is None or not has(batch):
        return None
    cols = model.negative_batch(batch)  # type: ignore[attr-defined]
    if not cols:
        return None
    return {k: v.unsqueeze(1) if v.dim() == 1 else v for k, v in cols.items()}


class MatchObjective:
    """``objective(TowerOutput, batch) -> loss`` for two-tower models (see the module docstring).

    It holds the model to compute the item vectors of negatives through ``model.item_tower``.
    """

    def __init__(
        self,
        model: TowerModel,
        *,
        mode: MatchMode,
        negatives: NegativeSource,
        sampler: NegativeSampler | None = None,
        catalog: ItemCatalog | None = None,
        num_negatives: int = 4,
        pair_loss: PairLoss = PairLoss.BPR,
        margin: float = 1.0,
        item_counts: Tensor | np.ndarray | None = None,
        logq: bool = True,
        user_column: str = "user_id",
        neg_column: str = "neg_items",
    ) -> None:
        self.model = model
        self.mode, self.negatives = mode, negatives
        self.sampler, self.catalog = sampler, catalog
        self.num_negatives, self.pair_loss, self.margin = num_negatives, pair_loss, margin
        self.freq_log_q = frequency_log_q(item_counts) if item_counts is not None else None
        self.logq = logq
        self.user_column, self.neg_column = user_column, neg_column
        self._catalog_device: ItemCatalog | None = catalog

    # -- item vectors -----------------------------------------------------------------------------
    def _items(self, ids: Tensor) -> Tensor:
        cat = self._catalog_device
        if cat is not None and cat.columns[cat.item_id].device != ids.device:
            cat = self._catalog_device = cat.to(ids.device)
        return self.model.item_tower(_item_batch(cat, self.model.item_id, ids))

    def _sampled_log_q(self, ids: Tensor, k: int) -> Tensor | None:
        if self.sampler is None:
            return None
        return self.sampler.log_prob(ids) + math.log(k)

    def _batch_log_q(self, ids: Tensor, b: int) -> Tensor | None:
        """log expected count of each in-batch item: from ``item_counts`` when given, else the
        model's streaming estimate (``YoutubeSBC``: already a per-batch frequency), else None."""
        if self.freq_log_q is None:
            return self.model.item_log_q(ids)
        return self.freq_log_q.to(ids.device)[ids] + math.log(b)

    def _seen_by_row(self, batch: Mapping[str, Tensor], ids: Tensor) -> Tensor | None:
        """``(B, M)``: whether each row's user has seen each of ``ids (M,)``, by the sampler's
        ``seen`` (None without one): such items are not negatives for that row."""
        seen = self.sampler.seen if self.sampler is not None else None
        return None if seen is None else seen.grid(batch[self.user_column], ids)

    # -- candidates -------------------------------------------------------------------------------
    def candidates(self, outputs: TowerOutput, batch: Mapping[str, Tensor]) -> Candidates:
        model, user, item = self.model, outputs.user, outputs.item
        pos_ids = batch[model.item_id]  # (B,)
        b = pos_ids.shape[0]
        pos = model.score(user, item.unsqueeze(1)).squeeze(1)  # (B,)
        src = self.negatives
        if src is NegativeSource.SAMPLED:
            carried = _carried_negatives(model, batch)  # the model's neg_item_features columns
            if carried is not None:
                neg_ids = carried[model.item_id]  # (B, K)
                neg = model.score(user, model.item_tower(carried))  # (B, K)
                return Candidates(pos, neg, neg_ids != pos_ids.unsqueeze(1), None, None)
            if self.neg_column in batch:
                neg_ids = batch[self.neg_column]  # (B, K), or (B,): one per row
                neg_ids = neg_ids.unsqueeze(1) if neg_ids.dim() == 1 else neg_ids
                neg_log_q, pos_log_q = None, None
            else:
                assert self.sampler is not None
                users = batch[self.user_column] if self.sampler.seen is not None else None
                neg_ids, _ = self.sampler.sample(pos_ids, self.num_negatives, users=users)
                neg_log_q = self._sampled_log_q(neg_ids, neg_ids.shape[1])
                pos_log_q = self._sampled_log_q(pos_ids, neg_ids.shape[1])
            neg = model.score(user, self._items(neg_ids))  # (B, K)
            return Candidates(pos, neg, neg_ids != pos_ids.unsqueeze(1), pos_log_q, neg_log_q)
        parts_ids, parts_logit, parts_valid, parts_q = [], [], [], []
        pos_log_q = None
        if src in (NegativeSource.IN_BATCH, NegativeSource.MIXED):
            in_batch = model.score(user, item)  # (B, B) — item is (B, D): shared by all rows
            same = pos_ids.unsqueeze(0) == pos_ids.unsqueeze(1)  # (B, B), diagonal and duplicates
            parts_ids.append(pos_ids)
            parts_logit.append(in_batch)
            parts_valid.append(~same)
            q = self._batch_log_q(pos_ids, b)
            parts_q.append(None if q is None else q.unsqueeze(0).expand(b, b))
            pos_log_q = q
        if src in (NegativeSource.SHARED, NegativeSource.MIXED):
            assert self.sampler is not None
            shared_ids, _ = self.sampler.sample_shared(self.num_negatives, pos_ids.device)
            parts_logit.append(model.score(user, self._items(shared_ids)))  # (B, N)
            parts_ids.append(shared_ids)
            parts_valid.append(shared_ids.unsqueeze(0) != pos_ids.unsqueeze(1))
            q = self._sampled_log_q(shared_ids, self.num_negatives)
            parts_q.append(None if q is None else q.unsqueeze(0).expand(b, -1))
            if pos_log_q is None:
                pos_log_q = self._sampled_log_q(pos_ids, self.num_negatives)
        valid = torch.cat(parts_valid, 1)
        seen = self._seen_by_row(batch, torch.cat(parts_ids))  # one lookup for every source
        if seen is not None:
            valid &= ~seen
        neg_log_q = None if any(q is None for q in parts_q) else torch.cat(parts_q, 1)  # type: ignore[arg-type]
        return Candidates(pos, torch.cat(parts_logit, 1), valid, pos_log_q, neg_log_q)

    def __call__(self, outputs: TowerOutput | Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        if isinstance(outputs, Tensor) and outputs.dim() == 2 and LABEL in batch:
            # a model whose forward gives every item's logits (Torch-RecHub's session models):
            # full softmax against the next item under "label"
            return full_softmax_loss(outputs, batch[LABEL].long().reshape(-1))
        if not isinstance(outputs, TowerOutput):
            raise TypeError(
                f"MatchObjective needs TowerOutput(user, item) from the model, got {type(outputs).__name__}"
            )
        if self.negatives is NegativeSource.LABELLED:
            logits = self.model.score(outputs.user, outputs.item.unsqueeze(1)).squeeze(1)  # (B,)
            return labelled_bce_loss(logits, batch[LABEL])
        if self.negatives is NegativeSource.ALL:
            ids = torch.arange(self._num_items(), device=outputs.user.device)
            logits = self.model.score(outputs.user, self._items(ids))  # (B, V)
            return full_softmax_loss(logits, batch[self.model.item_id])
        c = self.candidates(outputs, batch)
        if self.mode is MatchMode.POINTWISE:
            return bce_loss(c.pos, c.neg, c.valid)
        if self.mode is MatchMode.PAIRWISE:
            if self.pair_loss is PairLoss.BPR:
                return bpr_loss(c.pos, c.neg, c.valid)
            return hinge_loss(c.pos, c.neg, c.valid, margin=self.margin)
        logits = torch.cat([c.pos.unsqueeze(1), c.neg], 1)  # (B, 1 + N)
        valid = None if c.valid is None else torch.cat([torch.ones_like(c.valid[:, :1]), c.valid], 1)
        log_q = None
        if self.logq and c.pos_log_q is not None and c.neg_log_q is not None:
            log_q = torch.cat([c.pos_log_q.unsqueeze(1), c.neg_log_q], 1)
        return softmax_loss(logits, log_q, valid)

    def _num_items(self) -> int:
        if self.catalog is not None:
            return self.catalog.num_items
        if self.sampler is not None:
            return self.sampler.num_items
        raise ValueError("negatives='all' needs a catalog (or a sampler) to know the item count")


__all__ = ["Candidates", "MatchMode", "MatchObjective", "NegativeSource", "PairLoss"]
