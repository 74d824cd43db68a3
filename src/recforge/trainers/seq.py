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
import torch
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
        *args, **kwargs: ``TrainOptions`` fields in Torch-RecHub's ``SeqTrainer`` order
            (``optimizer_fn, optimizer_params, scheduler_fn, scheduler_params, n_epoch,
            earlystop_patience, device, gpus, model_path, loss_type, loss_params``) or by name;
            ``loss_type="cross_entropy"`` means ``loss="full"``, ``"nce"`` sampled softmax at
            ``loss_params["temperature"]``.
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

    ORDER = (
        "optimizer_fn", "optimizer_params", "scheduler_fn", "scheduler_params", "n_epoch",
        "earlystop_patience", "device", "gpus", "model_path", "loss_type", "loss_params",
    )  # fmt: skip

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
        opts, own = TrainOptions.bind(
            type(self).__name__, self.ORDER, args, kwargs, own=("loss_type", "loss_params"), base=options
        )
        if own.get("loss_type") is not None:  # Torch-RecHub's names for the losses
            kind = str(own["loss_type"])
            if kind not in ("cross_entropy", "nce"):
                raise ValueError(f"loss_type must be 'cross_entropy' or 'nce', got {kind!r} (or use loss=)")
            loss = SeqLoss.FULL if kind == "cross_entropy" else SeqLoss.SAMPLED_SOFTMAX
            temperature = float(dict(own.get("loss_params") or {}).get("temperature", temperature))  # type: ignore[call-overload]
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
            or _model_num_items(model)
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

    def to_batch(self, raw: object) -> Batch:
        """Dict batches as they are; Torch-RecHub's ``SequenceDataGenerator`` tuples ``(seq_tokens,
        seq_positions, seq_time_diffs, targets)`` become the history, its times, the next item at
        every position (``seq_tokens[1:] + [target]``, 0 on padding) and the held-out target."""
        if not (isinstance(raw, tuple | list) and len(raw) == 4 and all(isinstance(t, Tensor) for t in raw)):
            return super().to_batch(raw)
        tokens, _positions, time_diffs, targets = raw
        targets = targets.reshape(-1).long()
        nxt = torch.cat([tokens[:, 1:], targets.unsqueeze(1)], 1).masked_fill(tokens == 0, 0)  # (B, L)
        model = self.model
        batch: Batch = {
            getattr(model, "history_column", "hist_item_id"): tokens.long(),
            self.objective_args["target_column"]: nxt,  # type: ignore[dict-item]
            getattr(model, "item_id", "item_id"): targets,
        }
        time_column = getattr(model, "time_column", None)
        if time_column is not None and getattr(model, "use_time", False):
            batch[time_column] = time_diffs
        return batch

    def evaluate(  # type: ignore[override]
        self, model: nn.Module | Iterable[object], data_loader: Iterable[object] | None = None
    ) -> dict[str, float] | tuple[float, float]:
        """Full-ranking metrics through ``evaluator`` (or the mean all-position loss without one).

        Torch-RecHub's one-argument call ``evaluate(data_loader)`` returns ``(loss, accuracy)``:
        the mean all-position loss and the share of rows whose held-out item is the top-1 item."""
        if data_loader is None:
            loader = model
            loss = super().evaluate(self.model, loader)["loss"]  # type: ignore[arg-type]
            return loss, self._top1_accuracy(loader)  # type: ignore[arg-type]
        assert isinstance(model, nn.Module)
        if self.evaluator is None:
            return super().evaluate(model, data_loader)
        return self.evaluator.evaluate(model, (split_batch(b) for b in data_loader), self.device)  # type: ignore[arg-type]

    def _top1_accuracy(self, data_loader: Iterable[object]) -> float:
        """The share of rows whose held-out item is the top-scored item (padding excluded)."""
        model = self.model
        all_items = {model.item_id: torch.arange(self.sampler.num_items, device=self.device)}  # type: ignore[dict-item]
        items: list[Tensor] = []  # every item's vector (V, D), computed in the first step

        def top1(m: nn.Module, batch: Batch) -> Tensor:
            if not items:
                items.append(m.item_tower(all_items))  # type: ignore[operator]
            scores = m.score(m.user_tower(batch), items[0])  # type: ignore[operator]  # (B, V)
            scores[:, 0] = -torch.inf
            return scores.argmax(1)  # (B,)

        hits = total = 0
        for batch, top in self._run(model, data_loader, top1):
            target = batch[model.item_id]  # type: ignore[index]
            hits += int((top == target).sum())
            total += int(target.numel())
        g = self.gather({"hits": np.asarray([hits]), "total": np.asarray([total])})  # one row per rank
        return int(g["hits"].sum()) / max(int(g["total"].sum()), 1)

    def predict(self, model: nn.Module, data_loader: Iterable[object]) -> np.ndarray:
        """User (query) vectors ``(N, D)`` of every row: the hidden state after the last position."""
        return tower_vectors(model, data_loader, self.device, user=True).numpy()


def _model_num_items(model: nn.Module) -> int | None:
    """The item-id space of a model whose first item feature is the item id."""
    items = getattr(model, "item_features", None)
    return int(items[0].vocab_size) if items and hasattr(items[0], "vocab_size") else None


__all__ = ["SeqLoss", "SeqTrainer", "SequenceObjective"]
