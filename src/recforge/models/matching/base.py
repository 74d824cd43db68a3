"""The contract every retrieval (matching) model follows.

A retrieval model has a user (query) tower and an item tower, so item vectors can be computed once
and put in a vector index. Scores are logits: the dot product divided by ``temperature`` (or, for
multi-interest users, the best-matching interest). Objectives (point-, pair-, list-wise, in-batch,
sampled softmax) are built on ``score`` and live in ``recforge.objectives``, never in the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from recforge.features import Feature
from recforge.outputs import TowerOutput


class TwoTowerModel(nn.Module):
    """Base class: subclasses set the attributes and implement the two towers.

    Attributes:
        user_features: features the user tower reads (ids, histories, dense values).
        item_features: features the item tower reads; the first is the item id.
        temperature: divides every score (a softmax temperature).
    """

    user_features: list[Feature]
    item_features: list[Feature]
    temperature: float = 1.0

    @property
    def features(self) -> list[Feature]:
        seen: dict[str, Feature] = {}
        for f in [*self.user_features, *self.item_features]:
            seen.setdefault(f.name, f)
        return list(seen.values())

    @property
    def item_id(self) -> str:
        """Name of the item-id feature (candidates, negatives and indexes are keyed by it)."""
        return self.item_features[0].name

    def user_tower(self, batch: Mapping[str, Tensor]) -> Tensor:
        """User vectors ``(B, D)``, or ``(B, K, D)`` for multi-interest models."""
        raise NotImplementedError

    def item_tower(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Item vectors for the item columns in ``batch``: ids ``(B,)`` -> ``(B, D)``, ``(B, N)`` ->
        ``(B, N, D)``; a catalog batch of all items gives ``(N, D)``."""
        raise NotImplementedError

    def score(self, user: Tensor, items: Tensor) -> Tensor:
        """Logits of ``items (B, N, D)`` (or ``(N, D)`` shared by all users) for ``user (B, D)``/
        ``(B, K, D)`` -> ``(B, N)``. Multi-interest users take the best interest per item."""
        if items.dim() == 2:
            s = user @ items.T  # (B, N) or (B, K, N)
        else:
            s = (
                (user.unsqueeze(-2) @ items.transpose(1, 2)).squeeze(-2)
                if user.dim() == 2
                else user @ items.transpose(1, 2)
            )  # (B, N) or (B, K, N)
        if user.dim() == 3:
            s = s.amax(1)  # (B, N)
        return s / self.temperature

    def item_log_q(self, ids: Tensor) -> Tensor | None:
        """The model's own estimate of ``log Q`` (log batch frequency) of item ``ids``, or ``None``.

        Models that track item frequencies while training (``YoutubeSBC``) return it, and the
        in-batch softmax subtracts it (logQ correction) when no ``item_counts`` are given.
        """
        return None

    def forward(self, batch: Mapping[str, Tensor]) -> TowerOutput:
        return TowerOutput(self.user_tower(batch), self.item_tower(batch))


def feature_names(features: Sequence[Feature]) -> list[str]:
    return [f.name for f in features]
