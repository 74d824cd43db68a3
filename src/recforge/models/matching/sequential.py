"""Shared frame of the next-item models (GRU4Rec, NARM, STAMP, SASRec).

The history (left-padded, most recent last) is encoded into a hidden state at every position,
``sequence_tower -> (B, L, D)``, so a trainer can predict the next item at every position; the
user tower is the state at the last position; the item tower is the item-id embedding (shared with
the history). Padded positions output 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from recforge.features import Feature
from recforge.layers import EmbeddingLayer
from recforge.models.matching.base import TwoTowerModel
from recforge.models.matching.towers import history_feature, id_only, item_ids, l2


class SequentialModel(TwoTowerModel):
    """Base of the next-item models: subclasses implement ``encode(seq, mask, last_only)``.

    Args:
        history_features: exactly one ``SequenceFeature`` sharing the item-id table.
        item_features: exactly the item-id feature; its ``embed_dim`` is D.
        temperature: divides every score.
        normalize: L2-normalise the states and the item vectors (cosine similarity; train with a
            small temperature such as 0.05); serving and evaluation then rank the same way.
    """

    def __init__(
        self,
        history_features: Sequence[Feature],
        item_features: Sequence[Feature],
        *,
        temperature: float,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.history = history_feature(history_features, item_features, name)
        item = id_only(item_features, name)
        self.user_features, self.item_features = [self.history], [item]
        self.dim, self.temperature, self.normalize = item.dim, float(temperature), normalize
        self.embedding = EmbeddingLayer([self.history, item])

    def encode(self, seq: Tensor, mask: Tensor, last_only: bool) -> Tensor:
        """``seq (B, L, D)``, ``mask (B, L)`` -> ``(B, L, D)``, or ``(B, 1, D)`` for the last
        position only (models whose cost grows with the number of query positions use it)."""
        raise NotImplementedError

    def sequence_tower(self, batch: Mapping[str, Tensor]) -> Tensor:
        """History ``(B, L)`` -> hidden state after every position ``(B, L, D)`` (0 at padding)."""
        seq, mask = self.embedding.sequence(batch, self.history.name)  # (B, L, D), (B, L)
        out = l2(self.encode(seq, mask, last_only=False), self.normalize)
        return out * mask.unsqueeze(-1).to(seq.dtype)  # (B, L, D)

    def user_tower(self, batch: Mapping[str, Tensor]) -> Tensor:
        """History ``(B, L)`` -> state after the most recent item ``(B, D)``."""
        seq, mask = self.embedding.sequence(batch, self.history.name)  # (B, L, D), (B, L)
        out = l2(self.encode(seq, mask, last_only=True)[:, -1], self.normalize)  # (B, D)
        return out * mask[:, -1:].to(out.dtype)  # (B, D)

    def item_tower(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Item ids ``S`` -> ``S + (D,)``."""
        return l2(self.embedding.lookup(self.item_id, item_ids(batch, self.item_features[0])), self.normalize)
