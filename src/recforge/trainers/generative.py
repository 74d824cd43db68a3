"""Generative-retrieval preset (TIGER, Rajput et al. 2023, arXiv 2305.05065) over the one loop.

``GenerativeTrainer`` trains a model that generates items (``model(batch) -> SemanticIDOutput``)
with the next-ID cross-entropy under teacher forcing (``semantic_id_loss``) and validates with a
``ListRankingEvaluator`` (the model's own ranked lists, e.g. beam search), so the best epoch is
chosen on validation NDCG@K. ``train_rqvae`` fits the RQ-VAE tokenizer that makes the semantic IDs
through the same loop (``RQVAELoss``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from recforge.data import BatchLoader, ColumnarDataset
from recforge.data.dataset import split_batch
from recforge.metrics.ranking import ListModel, ListRankingEvaluator
from recforge.models.generative import RQVAE
from recforge.objectives.generative import RQVAELoss, semantic_id_loss
from recforge.trainers.loop import Trainer
from recforge.trainers.options import TrainOptions


class GenerativeTrainer(Trainer):
    """Teacher-forced training of a generative retriever, validated on its generated lists.

    Args:
        model: a ``ListModel`` (``generate(batch, k, exclude=...)``) whose ``forward`` gives a
            ``SemanticIDOutput``.
        *args, **kwargs: ``TrainOptions`` fields (as ``Trainer``).
        evaluator: list evaluation of the validation rows (validation metric: ``ndcg@10``, or
            NDCG at the evaluator's first cut-off); without one, the mean loss.
        options: the ``TrainOptions`` as one object.
    """

    def __init__(
        self,
        model: nn.Module,
        *args: Any,
        evaluator: ListRankingEvaluator | None = None,
        options: TrainOptions | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(model, ListModel):
            raise TypeError(
                f"GenerativeTrainer needs a model with generate(batch, k); got {type(model).__name__}"
            )
        self.evaluator = evaluator
        if evaluator is not None:
            self.default_metric = f"ndcg@{10 if 10 in evaluator.ks else evaluator.ks[0]}"
        super().__init__(model, *args, objective=semantic_id_loss, options=options, **kwargs)

    def evaluate(self, model: nn.Module, data_loader: Iterable[object]) -> dict[str, float]:
        """List metrics through ``evaluator`` (the mean loss without one)."""
        if self.evaluator is None:
            return super().evaluate(model, data_loader)
        if not isinstance(model, ListModel):
            raise TypeError(f"{type(model).__name__} has no generate(batch, k)")
        return self.evaluator.evaluate(model, (split_batch(b) for b in data_loader), self.device)


def train_rqvae(
    content: Tensor,
    *,
    rqvae: Mapping[str, Any] | None = None,
    beta: float = 0.25,
    n_epoch: int = 150,
    lr: float = 1e-3,
    batch_size: int = 1024,
    seed: int = 0,
    device: str = "cpu",
    exclude_rows: Sequence[int] = (),
) -> RQVAE:
    """An ``RQVAE(content.shape[1], **rqvae)`` fitted on the rows of ``content (N, D)`` (the one
    loop, ``RQVAELoss(beta)``, Adam at ``lr``), returned in eval mode on the CPU.

    Args:
        exclude_rows: rows left out of training (e.g. padding and reserved ids, all-zero rows).
    """
    torch.manual_seed(seed)
    keep = torch.ones(content.shape[0], dtype=torch.bool)
    keep[list(exclude_rows)] = False
    x = content[keep].float()
    if x.shape[0] == 0:
        raise ValueError("train_rqvae: no content rows to train on")
    model = RQVAE(x.shape[1], **dict(rqvae or {}))
    with tempfile.TemporaryDirectory() as tmp:
        options = TrainOptions(
            n_epoch=n_epoch, optimizer_params={"lr": lr}, model_path=tmp, progress=False, plot=False,
            device=device, seed=seed,
        )  # fmt: skip
        trainer = Trainer(model, objective=RQVAELoss(beta), options=options)
        trainer.fit(
            BatchLoader(ColumnarDataset({model.embedding_column: x}), batch_size, shuffle=True, seed=seed)
        )
    return model.cpu().eval()


__all__ = ["GenerativeTrainer", "train_rqvae"]
