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
        neg_item_features: Torch-RecHub's ``neg_item_feature``: batch columns holding negatives
            ``(B,)`` or ``(B, K)``, one per item feature (see ``negative_batch``); empty by default.
    """

    user_features: list[Feature]
    item_features: list[Feature]
    temperature: float = 1.0
    neg_item_features: tuple[Feature, ...] = ()

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

    @property
    def scores_by_dot_product(self) -> bool:
        """``score`` is this base class's ``user @ items.T / temperature`` (no subclass override):
        losses over every item may then stream the items in blocks instead of building the logits."""
        return type(self).score is TwoTowerModel.score

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
        return s if self.temperature == 1.0 else s / self.temperature  # no pass over (B, N) for 1.0

    def negative_batch(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor] | None:
        """The item-tower inputs of the negatives a batch carries in ``neg_item_features`` columns,
        keyed by the item features they stand for (``None`` without such features): feed them to
        ``item_tower`` like any ``(B, K)`` item columns."""
        if not self.neg_item_features:
            return None
        pairs = zip(self.neg_item_features, negative_targets(self.neg_item_features, self.item_features))
        return {item.name: batch[neg.name] for neg, item in pairs}

    def negative_batch_in(self, batch: Mapping[str, Tensor]) -> bool:
        """Whether ``batch`` carries this model's ``neg_item_features`` columns."""
        return bool(self.neg_item_features) and all(f.name in batch for f in self.neg_item_features)

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


def negative_targets(neg_features: Sequence[Feature], item_features: Sequence[Feature]) -> list[Feature]:
    """The item feature each negative column stands for: the one whose table it shares
    (``shared_with``), else the item feature at the same position. Every item feature must be
    covered exactly once, so the item tower gets all its inputs for the negatives."""
    by_table = {f.name: f for f in item_features}
    out: list[Feature] = []
    for i, neg in enumerate(neg_features):
        shared = getattr(neg, "shared_with", None)
        target = by_table.get(shared) if shared is not None else None
        if target is None:
            if i >= len(item_features):
                raise ValueError(
                    f"neg_item_feature {neg.name!r} stands for no item feature: give one negative column per "
                    f"item feature {[f.name for f in item_features]} (or shared_with naming one)"
                )
            target = item_features[i]
        out.append(target)
    names = [f.name for f in out]
    if sorted(names) != sorted(f.name for f in item_features):
        raise ValueError(
            f"neg_item_feature {[f.name for f in neg_features]} must cover each item feature "
            f"{[f.name for f in item_features]} once (by shared_with or by position), got {names}"
        )
    return out
