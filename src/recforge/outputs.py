"""Named model outputs shared by models, objectives and trainers (pure data types, no modules)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol

from torch import Tensor

from recforge.choices import Choice


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


class TowerModel(Protocol):
    """What objectives, metrics and indexes need of a retrieval model
    (``recforge.models.matching.TwoTowerModel`` has it)."""

    item_id: str

    def user_tower(self, batch: Mapping[str, Tensor]) -> Tensor: ...

    def item_tower(self, batch: Mapping[str, Tensor]) -> Tensor: ...

    def score(self, user: Tensor, items: Tensor) -> Tensor: ...

    def item_log_q(self, ids: Tensor) -> Tensor | None: ...


def logits_of(outputs: Tensor | RankingOutput) -> Tensor:
    """The logits of a ranking model's output, with or without an auxiliary loss."""
    return outputs.logits if isinstance(outputs, RankingOutput) else outputs


class TaskType(Choice):
    """Head of one task of a multi-task model: a logit (classification) or a raw value (regression)."""

    CLASSIFICATION = "classification"
    REGRESSION = "regression"

    @classmethod
    def parse_all(cls, values: Sequence[TaskType | str]) -> tuple[TaskType, ...]:
        if isinstance(values, str) or not values:
            raise ValueError(f"task_types must be a non-empty list of task types, got {values!r}")
        return tuple(cls.parse(v) for v in values)


class MultiTaskOutput(NamedTuple):
    """A multi-task model whose training adds an auxiliary loss (e.g. AITM's behavioural calibrator)."""

    logits: Tensor  # (B, T): one logit (or regression value) per task, in task order
    aux_loss: Tensor  # scalar, already weighted by the model's configured coefficient


class ESMMOutput(NamedTuple):
    """ESMM's outputs: the two entire-space tasks plus the CVR logit they imply.

    ``logits[:, 0]`` is the CTR logit and ``logits[:, 1]`` the CTCVR logit, defined so that
    ``sigmoid(logits[:, 1]) == sigmoid(logits[:, 0]) * sigmoid(cvr_logits)`` exactly; both are
    trained with log loss on all impressions. ``cvr_logits`` is never trained on its own.
    """

    logits: Tensor  # (B, 2): CTR, CTCVR
    cvr_logits: Tensor  # (B,)


def task_logits(outputs: Tensor | MultiTaskOutput | ESMMOutput) -> Tensor:
    """The ``(B, T)`` per-task logits of a multi-task model's output."""
    if isinstance(outputs, MultiTaskOutput | ESMMOutput):
        return outputs.logits
    return outputs


class RQVAEOutput(NamedTuple):
    """An RQ-VAE's pass over item content vectors (the losses live in ``recforge.objectives``)."""

    reconstruction: Tensor  # (B, D_in) decoder output
    input: Tensor  # (B, D_in) the content vectors that were encoded
    residuals: Tensor  # (B, L, D_z) input of each quantiser level
    codewords: Tensor  # (B, L, D_z) chosen code vector of each level
    codes: Tensor  # (B, L) int64


class SemanticIDOutput(NamedTuple):
    """A generative retriever's next-item logits under teacher forcing.

    ``logits[:, c]`` scores the c-th code of the target's semantic ID given the earlier ones
    (``-inf`` beyond that position's codebook); ``codes`` are the target codes, -1 where a row has
    no target.
    """

    logits: Tensor  # (B, C, V)
    codes: Tensor  # (B, C) int64
