"""Matching (retrieval) preset: Torch-RecHub's ``MatchTrainer(model, mode=0|1|2)`` over the one loop.

The loss is ``recforge.objectives.MatchObjective`` (its docstring tabulates ``mode`` and
``negatives``); evaluation is full ranking through a ``RankingEvaluator``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from recforge.data.catalog import ItemCatalog
from recforge.data.dataset import LABEL, Batch, split_batch
from recforge.data.sampling import NegativeSampler
from recforge.layout import TORCH_RECHUB_WEIGHTS
from recforge.metrics.ranking import RankingEvaluator
from recforge.models.matching.base import TwoTowerModel
from recforge.objectives.match import MatchMode, MatchObjective, NegativeSource, PairLoss
from recforge.trainers.loop import Trainer
from recforge.trainers.options import COMMON_ORDER, TrainOptions


def _default_metric(evaluator: RankingEvaluator | None, preferred: tuple[str, int]) -> str:
    if evaluator is None:
        return "loss"
    name, k = preferred
    prefix = "sampled_" if evaluator.num_negatives is not None else ""
    return f"{prefix}{name}@{k if k in evaluator.ks else evaluator.ks[0]}"


class MatchTrainer(Trainer):
    """Two-tower retrieval training (Torch-RecHub's ``MatchTrainer``) over the one loop.

    Args:
        model: a ``TwoTowerModel`` (``forward -> TowerOutput``, ``score``, ``item_tower``).
        *args, **kwargs: Torch-RecHub's order ``mode, in_batch_neg, in_batch_neg_ratio,
            hard_negative, sampler_seed`` then the ``TrainOptions`` fields (``optimizer_fn, ...,
            model_path``), or any of them by name. ``mode``: 0 point-wise, 1 pair-wise, 2
            list-wise (default; or ``"pointwise"``...); ``in_batch_neg=True`` means
            ``negatives="in_batch"``.
        negatives: ``"sampled"`` (default), ``"in_batch"``, ``"shared"``, ``"mixed"``, ``"all"``,
            ``"labelled"`` (see the module docstring).
        sampler: draws negatives for ``sampled``/``shared``/``mixed``.
        catalog: item-side columns for negatives and for evaluation (id-only towers may omit it).
        num_negatives: K per row (``sampled``) or N shared (``shared``/``mixed``).
        pair_loss: ``"bpr"`` or ``"hinge"`` (mode 1); margin: the hinge margin.
        item_counts: training frequency per item id, for the in-batch logQ correction.
        logq: apply the logQ correction in list-wise losses when probabilities are known.
        evaluator: full-ranking evaluation for ``evaluate`` (validation and test); without it the
            validation metric is the objective's loss.
        user_column: user-id column (seen-item exclusion). neg_column: precomputed negatives.
        objective: replaces the ``MatchObjective`` built from the arguments above.
        options: the ``TrainOptions`` as one object.
    """

    ORDER = ("mode", "in_batch_neg", "in_batch_neg_ratio", "hard_negative", "sampler_seed", *COMMON_ORDER)
    _TORCH_RECHUB = ("in_batch_neg", "in_batch_neg_ratio", "hard_negative", "sampler_seed")

    def __init__(
        self,
        model: nn.Module,
        *args: Any,
        negatives: NegativeSource | str | None = None,
        sampler: NegativeSampler | None = None,
        catalog: ItemCatalog | None = None,
        num_negatives: int = 4,
        pair_loss: PairLoss | str = PairLoss.BPR,
        margin: float = 1.0,
        item_counts: Tensor | np.ndarray | None = None,
        logq: bool = True,
        evaluator: RankingEvaluator | None = None,
        user_column: str = "user_id",
        neg_column: str = "neg_items",
        objective: MatchObjective | None = None,
        options: TrainOptions | None = None,
        **kwargs: Any,
    ) -> None:
        opts, own = TrainOptions.bind(
            type(self).__name__, self.ORDER, args, kwargs, own=("mode", *self._TORCH_RECHUB), base=options
        )
        if own.get("in_batch_neg"):
            negatives = NegativeSource.IN_BATCH
        # None: chosen from the first training batch (Torch-RecHub infers it from its data)
        self.infer_negatives = negatives is None
        for name in ("in_batch_neg_ratio", "hard_negative", "sampler_seed"):
            if own.get(name):
                raise ValueError(
                    f"MatchTrainer: Torch-RecHub's {name}={own[name]!r} is not supported; give "
                    "negatives= ('sampled', 'in_batch', 'shared', 'mixed') and a sampler instead"
                )
        self.mode = MatchMode.parse(own.get("mode", MatchMode.LISTWISE))  # type: ignore[arg-type]
        self.negatives = NegativeSource.parse(negatives or NegativeSource.SAMPLED, where="negatives")
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
        for attr in ("user_tower", "item_tower", "score", "item_id"):
            if not hasattr(model, attr):
                raise TypeError(f"MatchTrainer needs a TwoTowerModel; {type(model).__name__} has no {attr!r}")
        if self.negatives is NegativeSource.ALL and self.mode is not MatchMode.LISTWISE:
            raise ValueError("negatives='all' (full softmax) is list-wise: use mode=2")
        if self.negatives is NegativeSource.LABELLED and self.mode is not MatchMode.POINTWISE:
            raise ValueError("negatives='labelled' (rows with their own 0/1 label) needs mode=0 (point-wise)")
        if self.negatives in (NegativeSource.SHARED, NegativeSource.MIXED) and sampler is None:
            raise ValueError(f"negatives={self.negatives.value!r} needs a sampler (NegativeSampler)")
        if self.negatives is NegativeSource.ALL and catalog is None and sampler is None:
            raise ValueError("negatives='all' needs a catalog to enumerate every item")
        self.sampler, self.catalog, self.evaluator = sampler, catalog, evaluator
        self.neg_column, self.user_column = neg_column, user_column
        self.objective_args = dict(
            mode=self.mode,
            negatives=self.negatives,
            sampler=sampler,
            catalog=catalog,
            num_negatives=num_negatives,
            pair_loss=PairLoss.parse(pair_loss, where="pair_loss"),
            margin=margin,
            item_counts=item_counts,
            logq=logq,
            user_column=user_column,
            neg_column=neg_column,
        )
        self.default_metric = _default_metric(evaluator, ("recall", 20))
        self._validated = False
        if objective is None:
            objective = MatchObjective(model, **self.objective_args)  # type: ignore[arg-type]
        super().__init__(model, objective=objective, options=opts)

    # -- validation before training ---------------------------------------------------------------
    def _infer_negatives(self, batch: Mapping[str, Tensor]) -> NegativeSource:
        """Where the negatives come from when ``negatives`` was not given, read off one batch as
        Torch-RecHub's trainer would: rows carrying negatives (``neg_column`` or the model's
        ``neg_item_features``) -> ``sampled``; point-wise rows with a 0/1 label -> ``labelled``;
        a sampler -> ``sampled``; list-wise otherwise: the other rows of the batch -> ``in_batch``
        (point- and pair-wise training without negatives is refused)."""
        model = self.model
        if isinstance(model, TwoTowerModel) and model.negative_batch_in(batch):
            return NegativeSource.SAMPLED
        if self.neg_column in batch:
            return NegativeSource.SAMPLED
        if self.mode is MatchMode.POINTWISE and LABEL in batch:
            return NegativeSource.LABELLED
        if self.sampler is not None or self.mode is not MatchMode.LISTWISE:
            return NegativeSource.SAMPLED  # point-/pair-wise without negatives: refused in validate
        return NegativeSource.IN_BATCH

    def validate(self, batch: Mapping[str, Tensor]) -> None:
        """Refuse an unsupported model/mode/negatives combination, with a clear message, on one
        batch (run by ``fit`` before the first step)."""
        model: TwoTowerModel = self.model  # type: ignore[assignment]
        if getattr(model, "catalog_logits", False):
            if LABEL not in batch:
                raise KeyError(
                    f"{type(model).__name__} returns the logits of every item: batches need the next item "
                    f"under {LABEL!r} (the (x, y) pairs of Torch-RecHub's session loaders)"
                )
            return
        if self.infer_negatives:
            self.negatives = self._infer_negatives(batch)
            self.objective_args["negatives"] = self.negatives
            self.objective = MatchObjective(model, **self.objective_args)  # type: ignore[arg-type]
        item_id = model.item_id
        if item_id not in batch:
            raise KeyError(
                f"training batches need the positive item column {item_id!r}; they have {sorted(batch)}"
            )
        with torch.no_grad():
            was = model.training
            model.eval()
            try:
                user = model.user_tower({k: v[:2] for k, v in batch.items()})
            finally:
                model.train(was)
        if user.dim() == 3 and self.mode is MatchMode.POINTWISE:
            raise ValueError(
                f"{type(model).__name__} is multi-interest (user tower gives (B, K, D)); point-wise BCE on "
                "its best-interest score is not supported — use mode=2 (list-wise) or mode=1"
            )
        src = self.negatives
        if src is NegativeSource.LABELLED and LABEL not in batch:
            raise KeyError(f"negatives='labelled' needs a {LABEL!r} column in every batch")
        carried = model.negative_batch_in(batch) if isinstance(model, TwoTowerModel) else False
        if (
            src is NegativeSource.SAMPLED
            and self.neg_column not in batch
            and self.sampler is None
            and not carried
        ):
            what = {
                MatchMode.POINTWISE: "point-wise",
                MatchMode.PAIRWISE: "pair-wise",
                MatchMode.LISTWISE: "list-wise",
            }
            raise ValueError(
                f"{what[self.mode]} training needs negatives: give batches a {self.neg_column!r} (B, K) column "
                "or pass sampler=NegativeSampler(...)"
                + ("; or rows with labels: negatives='labelled'" if self.mode is MatchMode.POINTWISE else "")
            )
        if (
            src is NegativeSource.SAMPLED
            and self.neg_column in batch
            and batch[self.neg_column].dim() not in (1, 2)
        ):
            raise ValueError(f"column {self.neg_column!r} must be (B, K) or (B,) negative ids")
        sampler = self.sampler
        if sampler is not None and sampler.seen is not None and self.user_column not in batch:
            raise KeyError(
                f"the sampler excludes seen items: batches need the user column {self.user_column!r}"
            )
        if src in (NegativeSource.IN_BATCH, NegativeSource.MIXED) and batch[item_id].shape[0] < 2:
            raise ValueError("in-batch negatives need batches of at least 2 rows")

    def fit(
        self, train_dataloader: Iterable[object], val_dataloader: Iterable[object] | None = None
    ) -> nn.Module:
        if not self._validated:
            first = next(iter(train_dataloader), None)
            if first is None:
                raise ValueError("the training loader yielded no batches")
            batch = {k: v.to(self.device) for k, v in self.to_batch(first).items()}
            self.validate(batch)
            self._validated = True
        return super().fit(train_dataloader, val_dataloader)

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, data_loader: Iterable[object]) -> dict[str, float]:
        """Full-ranking metrics through ``evaluator`` (or the mean loss without one)."""
        if self.evaluator is None:
            return super().evaluate(model, data_loader)
        return self.evaluator.evaluate(model, (split_batch(b) for b in data_loader), self.device)  # type: ignore[arg-type]

    def inference_embedding(
        self,
        model: nn.Module,
        mode: str,
        data_loader: Iterable[object],
        model_path: str | os.PathLike[str] | None = None,
    ) -> Tensor:
        """Torch-RecHub's call: ``mode="user"`` -> user vectors of every row, ``"item"`` -> item
        vectors. With ``model_path``, the weights ``fit`` saved there (``model.pth``) are loaded
        first (weights-only), as Torch-RecHub does."""
        if model_path is not None:
            saved = Path(model_path) / TORCH_RECHUB_WEIGHTS
            if not saved.exists():
                raise FileNotFoundError(
                    f"inference_embedding: no {TORCH_RECHUB_WEIGHTS} in {str(model_path)!r}; fit first"
                )
            model.load_state_dict(torch.load(saved, map_location=self.device, weights_only=True))
        return tower_vectors(model, data_loader, self.device, user=_parse_side(mode))

    def predict(self, model: nn.Module, data_loader: Iterable[object]) -> np.ndarray:
        """User vectors of every row (``(N, D)`` or ``(N, K, D)``)."""
        return tower_vectors(model, data_loader, self.device, user=True).numpy()


def _parse_side(mode: str) -> bool:
    if mode not in ("user", "item"):
        raise ValueError(f"mode must be 'user' or 'item', got {mode!r}")
    return mode == "user"


@torch.no_grad()
def tower_vectors(
    model: nn.Module, data_loader: Iterable[object], device: torch.device, *, user: bool
) -> Tensor:
    """User-tower (``user=True``) or item-tower vectors of every row of ``data_loader``, in eval mode."""
    was = model.training
    model.eval()
    try:
        tower: Callable[[Batch], Tensor] = model.user_tower if user else model.item_tower  # type: ignore[assignment]
        out = [tower({k: v.to(device) for k, v in split_batch(b).items()}) for b in data_loader]
    finally:
        model.train(was)
    return torch.cat(out).cpu()


__all__ = ["MatchMode", "MatchObjective", "MatchTrainer", "NegativeSource", "PairLoss", "tower_vectors"]
