"""Next-item (sequential) preset: trains on every history position via ``model.sequence_tower``.

Batches come from ``recforge.data.sequence_samples``: a left-padded history ``(B, L)`` (read by the
model) and the aligned next items ``batch[target_column] (B, L)`` (0 = no target). The loss is one of

- ``sampled_softmax`` (default): the positive against ``num_negatives`` items shared by the batch,
  with logQ correction and accidental hits masked;
- ``full``: cross-entropy over every item (SASRec/BERT4Rec-style "full CE");
- ``bce``: SASRec's original loss, one sampled negative per position.

Logits are ``model.score(h, items) / temperature``; ``l2_normalize`` normalises both sides first
(cosine similarity, use a small temperature such as 0.05; evaluate with
``RankingEvaluator(normalize=True)`` so ranking uses the same similarity). Evaluation is full ranking through a
``RankingEvaluator`` over evaluation rows (``recforge.data.eval_samples``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recforge.choices import Choice
from recforge.data.catalog import ItemCatalog
from recforge.data.dataset import Batch, split_batch
from recforge.data.sampling import NegativeSampler
from recforge.metrics.ranking import RankingEvaluator
from recforge.models.matching.base import TwoTowerModel
from recforge.objectives.matching import bce_loss, full_softmax_loss, sampled_softmax_loss
from recforge.trainers.loop import Trainer
from recforge.trainers.match import _default_metric, tower_vectors

log = logging.getLogger("recforge")


class SeqLoss(Choice):
    SAMPLED_SOFTMAX = "sampled_softmax"
    FULL = "full"
    BCE = "bce"


class SequenceObjective:
    """``objective(hidden (B, L, D), batch) -> loss`` over every position with a target."""

    def __init__(
        self,
        model: TwoTowerModel,
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

    def __call__(self, hidden: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
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
            return full_softmax_loss(self._score(h, self._items(ids)), t)
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


class SeqTrainer(Trainer):
    """Next-item training on all positions (SASRec, GRU4Rec, NARM, STAMP, HSTU...).

    Args (besides every ``Trainer`` argument):
        model: a ``TwoTowerModel`` that also implements ``sequence_tower(batch) -> (B, L, D)``.
        num_items: item-id space including padding (or give ``catalog``/``sampler``).
        loss: ``"sampled_softmax"`` (default), ``"full"`` or ``"bce"``.
        num_negatives: shared negatives per batch for sampled softmax.
        temperature: divides every logit. l2_normalize: cosine similarity.
        sampler: negatives' distribution (default uniform over ``num_items``).
        catalog: item-side columns (id-only item towers may omit it).
        logq: logQ correction of sampled softmax.
        evaluator: full-ranking evaluation (validation metric, default ``ndcg@10``).
        target_column: the ``(B, L)`` next-item column.
    """

    def __init__(
        self,
        model: nn.Module,
        *args: Any,
        num_items: int | None = None,
        loss: SeqLoss | str = SeqLoss.SAMPLED_SOFTMAX,
        num_negatives: int = 128,
        temperature: float = 1.0,
        l2_normalize: bool = False,
        sampler: NegativeSampler | None = None,
        catalog: ItemCatalog | None = None,
        logq: bool = True,
        evaluator: RankingEvaluator | None = None,
        target_column: str = "target_item_id",
        **kwargs: Any,
    ) -> None:
        if not callable(getattr(model, "sequence_tower", None)):
            raise TypeError(
                f"SeqTrainer trains on all positions and needs model.sequence_tower(batch) -> (B, L, D); "
                f"{type(model).__name__} has none (train it with MatchTrainer instead)"
            )
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        n = (
            num_items
            or (catalog.num_items if catalog is not None else None)
            or (sampler.num_items if sampler else None)
        )
        if n is None:
            raise ValueError("SeqTrainer needs num_items (or a catalog or sampler)")
        if catalog is not None and catalog.num_items != n:
            raise ValueError(f"catalog has {catalog.num_items} items but num_items={n}")
        if evaluator is not None and evaluator.normalize != l2_normalize:
            log.warning(
                "SeqTrainer(l2_normalize=%s) but the evaluator ranks with normalize=%s: evaluation "
                "scores differ from the trained ones",
                l2_normalize,
                evaluator.normalize,
            )
        self.sampler = sampler or NegativeSampler(n)
        self.evaluator = evaluator
        self._seq_args = dict(
            loss=SeqLoss.parse(loss),
            sampler=self.sampler,
            catalog=catalog,
            num_negatives=num_negatives,
            temperature=temperature,
            l2_normalize=l2_normalize,
            logq=logq,
            target_column=target_column,
        )
        self.default_metric = _default_metric(evaluator, ("ndcg", 10))
        super().__init__(model, *args, **kwargs)

    def default_objective(self) -> SequenceObjective:  # type: ignore[override]
        return SequenceObjective(self.model, **self._seq_args)  # type: ignore[arg-type]

    def train_outputs(self, model: nn.Module, batch: Batch) -> Tensor:
        return model.sequence_tower(batch)  # type: ignore[operator]

    def evaluate(self, model: nn.Module, data_loader: Iterable[object]) -> dict[str, float]:
        """Full-ranking metrics through ``evaluator`` (or the mean all-position loss without one)."""
        if self.evaluator is None:
            losses = []
            with torch.no_grad():
                was = model.training
                model.eval()
                try:
                    for raw in data_loader:
                        batch = {k: v.to(self.device) for k, v in split_batch(raw).items()}
                        losses.append(float(self.objective(self.train_outputs(model, batch), batch)))
                finally:
                    model.train(was)
            return {"loss": sum(losses) / max(len(losses), 1)}
        return self.evaluator.evaluate(model, (split_batch(b) for b in data_loader), self.device)  # type: ignore[arg-type]

    def predict(self, model: nn.Module, data_loader: Iterable[object]) -> np.ndarray:
        """User (query) vectors ``(N, D)`` of every row: the hidden state after the last position."""
        return tower_vectors(model, data_loader, self.device, user=True).numpy()
