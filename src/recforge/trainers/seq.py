"""Next-item (sequential) preset: trains on every history position via ``model.sequence_tower``
with ``recforge.objectives.SequenceObjective``.

Batches come from ``recforge.data.sequence_samples``: a left-padded history ``(B, L)`` (read by the
model) and the aligned next items ``batch[target_column] (B, L)`` (0 = no target). Evaluation is
full ranking through a ``RankingEvaluator`` over evaluation rows (``recforge.data.eval_samples``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np
from torch import Tensor, nn

from recforge.data.catalog import ItemCatalog
from recforge.data.dataset import Batch, split_batch
from recforge.data.sampling import NegativeSampler
from recforge.metrics.ranking import RankingEvaluator
from recforge.objectives.sequence import SeqLoss, SequenceObjective
from recforge.trainers.loop import Trainer
from recforge.trainers.match import _default_metric, tower_vectors
from recforge.trainers.options import TrainOptions

log = logging.getLogger("recforge")


class SeqTrainer(Trainer):
    """Next-item training on all positions (SASRec, GRU4Rec, NARM, STAMP, HSTU...).

    Args:
        model: a ``TwoTowerModel`` that also implements ``sequence_tower(batch) -> (B, L, D)``.
        *args, **kwargs: ``TrainOptions`` fields, in Torch-RecHub's order (``optimizer_fn,
            optimizer_params, regularization_params, ...``) or by name.
        num_items: item-id space including padding (or give ``catalog``/``sampler``).
        loss: ``"sampled_softmax"`` (default), ``"full"`` or ``"bce"``.
        num_negatives: shared negatives per batch for sampled softmax.
        temperature: divides every logit. l2_normalize: cosine similarity.
        sampler: negatives' distribution (default uniform over ``num_items``).
        catalog: item-side columns (id-only item towers may omit it).
        logq: logQ correction of sampled softmax.
        evaluator: full-ranking evaluation (validation metric, default ``ndcg@10``).
        target_column: the ``(B, L)`` next-item column.
        objective: replaces the ``SequenceObjective`` built from the arguments above.
        options: the ``TrainOptions`` as one object.
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
        objective: SequenceObjective | None = None,
        options: TrainOptions | None = None,
        **kwargs: Any,
    ) -> None:
        opts, _ = TrainOptions.bind(type(self).__name__, self.ORDER, args, kwargs, base=options)
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
        self.objective_args = dict(
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
        if objective is None:
            objective = SequenceObjective(model, **self.objective_args)  # type: ignore[arg-type]
        super().__init__(model, objective=objective, options=opts)

    def train_outputs(self, model: nn.Module, batch: Batch) -> Tensor:
        return model.sequence_tower(batch)  # type: ignore[operator]

    def evaluate(self, model: nn.Module, data_loader: Iterable[object]) -> dict[str, float]:
        """Full-ranking metrics through ``evaluator`` (or the mean all-position loss without one)."""
        if self.evaluator is None:
            return super().evaluate(model, data_loader)
        return self.evaluator.evaluate(model, (split_batch(b) for b in data_loader), self.device)  # type: ignore[arg-type]

    def predict(self, model: nn.Module, data_loader: Iterable[object]) -> np.ndarray:
        """User (query) vectors ``(N, D)`` of every row: the hidden state after the last position."""
        return tower_vectors(model, data_loader, self.device, user=True).numpy()


__all__ = ["SeqLoss", "SeqTrainer", "SequenceObjective"]
