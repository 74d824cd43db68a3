"""Named model outputs shared by models, objectives and trainers (pure data types, no modules)."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class RankingOutput(NamedTuple):
    """A ranking model that also trains an auxiliary loss (e.g. DIEN's interest extractor)."""

    logits: Tensor  # (B,)
    aux_loss: Tensor  # scalar, already weighted by the model's configured coefficient


class TowerOutput(NamedTuple):
    """A retrieval model's two towers for one batch.

    ``user`` is ``(B, D)`` or ``(B, K, D)`` for multi-interest models; ``item`` is ``(B, D)`` for the
    batch's target items or ``(B, N, D)`` when the batch carries N candidates per row.
    """

    user: Tensor
    item: Tensor


def logits_of(outputs: Tensor | RankingOutput) -> Tensor:
    """The logits of a ranking model's output, with or without an auxiliary loss."""
    return outputs.logits if isinstance(outputs, RankingOutput) else outputs
