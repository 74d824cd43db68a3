"""The next-item objective: ``SequenceObjective(hidden (B, L, D), batch) -> loss`` over every
history position with a target (``recforge.data.sequence_samples`` rows). The loss is one of

- ``sampled_softmax`` (default): the positive against ``num_negatives`` items shared by the batch,
  with logQ correction and accidental hits masked;
- ``full``: cross-entropy over every item (SASRec/BERT4Rec-style "full CE");
- ``bce``: SASRec's original loss, one sampled negative per position.

Logits are ``model.score(h, items) / temperature``; ``l2_normalize`` normalises both sides first
(cosine similarity, use a small temperature such as 0.05).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from recforge.choices import Choice
from recforge.data.catalog import ItemCatalog
from recforge.data.dataset import Batch
from recforge.data.sampling import NegativeSampler
from recforge.objectives.matching import (
    bce_loss,
    full_softmax_loss,
    linear_full_softmax_loss,
    sampled_softmax_loss,
)
from recforge.outputs import TowerModel


class SeqLoss(Choice):
    SAMPLED_SOFTMAX = "sampled_softmax"
    FULL = "full"
    BCE = "bce"


class SequenceObjective:
    """``objective(hidden (B, L, D), batch) -> loss`` over every position with a target."""

    def __init__(
        self,
        model: TowerModel,
        *,
        loss: SeqLoss,
        sampler: NegativeSampler,
        catalog: ItemCatalog | None,
        num_negatives: int,
        temperature: float,
        l2_normalize: bool,
        logq: bool,
        target_column: str,
    ) -> None:
        self.model, self.loss, self.sampler, self.catalog = model, loss, sampler, catalog
        self.num_negatives, self.temperature = num_negatives, temperature
        self.l2_normalize, self.logq, self.target_column = l2_normalize, logq, target_column

    def _items(self, ids: Tensor) -> Tensor:
        if self.catalog is None:
            batch: Batch = {self.model.item_id: ids}
        else:
            if self.catalog.columns[self.catalog.item_id].device != ids.device:
                self.catalog = self.catalog.to(ids.device)
            batch = self.catalog.batch(ids)
        v = self.model.item_tower(batch)
        return F.normalize(v, dim=-1) if self.l2_normalize else v

    def _score(self, h: Tensor, items: Tensor) -> Tensor:
        return self.model.score(h, items) / self.temperature

    def __call__(self, outputs: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        """``outputs``: the hidden states ``(B, L, D)`` of ``model.sequence_tower``."""
        hidden = outputs
        try:
            targets = batch[self.target_column]
        except KeyError:
            raise KeyError(
                f"batch has no target column {self.target_column!r}; it has {sorted(batch)}"
            ) from None
        if hidden.dim() != 3 or targets.shape != hidden.shape[:2]:
            raise ValueError(
                f"sequence_tower must give (B, L, D) aligned with {self.target_column!r} (B, L); "
                f"got {tuple(hidden.shape)} and {tuple(targets.shape)}"
            )
        valid = targets > 0
        h = hidden[valid]  # (P, D)
        t = targets[valid]  # (P,)
        if self.l2_normalize:
            h = F.normalize(h, dim=-1)
        if self.loss is SeqLoss.FULL:
            ids = torch.arange(self.sampler.num_items, device=t.device)
            items = self._items(ids)  # (V, D)
            if getattr(self.model, "scores_by_dot_product", False):
                # the same loss without the (P, V) logits: 1.4x less CPU per step in float32 and
                # 2.1x under bf16 (P 2,000, V 54,543, D 64; benchmarks/results/sasrec_recbole.md)
                temperature = self.temperature * float(getattr(self.model, "temperature", 1.0))
                return linear_full_softmax_loss(h, items, t, temperature=temperature)
            return full_softmax_loss(self._score(h, items), t)
        pos = self._score(h, self._items(t).unsqueeze(1)).squeeze(1)  # (P,)
        if self.loss is SeqLoss.BCE:
            neg_ids, _ = self.sampler.sample(t, 1)
            neg = self._score(h, self._items(neg_ids))  # (P, 1)
            return bce_loss(pos, neg)
        neg_ids, _ = self.sampler.sample_shared(self.num_negatives, t.device)
        neg = self._score(h, self._items(neg_ids))  # (P, N)
        log_n = math.log(self.num_negatives)
        return sampled_softmax_loss(
            pos,
            neg,
            pos_ids=t,
            neg_ids=neg_ids,
            pos_log_q=self.sampler.log_prob(t) + log_n if self.logq else None,
            neg_log_q=self.sampler.log_prob(neg_ids) + log_n if self.logq else None,
        )


__all__ = ["SeqLoss", "SequenceObjective"]
