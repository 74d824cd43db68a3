"""Shared frame of the next-item models (GRU4Rec, NARM, STAMP, SASRec).

The history (left-padded, most recent last) is encoded into a hidden state at every position,
``sequence_tower -> (B, L, D)``, so a trainer can predict the next item at every position; the
user tower is the state at the last position; the item tower is the item-id embedding (shared with
the history). Padded positions output 0. Histories padded at the end are re-aligned first
(``towers.left_aligned``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from recforge.features import Feature
from recforge.layers import EmbeddingLayer, MLPConfig
from recforge.models.matching._rechub import check_negatives
from recforge.models.matching.base import TwoTowerModel
from recforge.models.matching.towers import (
    TowerMLP,
    history_feature,
    id_only,
    item_ids,
    l2,
    left_aligned,
    tower_dim,
    without_leading_padding,
)
from recforge.outputs import TowerOutput


class SequentialModel(TwoTowerModel):
    """Base of the next-item models: subclasses implement ``encode(seq, mask, last_only)``.

    Args:
        history_features: exactly one ``SequenceFeature`` sharing the item-id table.
        item_features: exactly the item-id feature; its ``embed_dim`` is D.
        temperature: divides every score.
        user_features: profile features fused with the state (may be empty).
        user_params: the fusing MLP (last width D; default ``{"dims": [D]}``); needs ``user_features``.
        normalize: L2-normalise the states and the item vectors (cosine similarity; train with a
            small temperature such as 0.05); serving and evaluation then rank the same way.
        neg_item_feature: Torch-RecHub's negatives column (``TwoTowerModel.negative_batch``).
    """

    def __init__(
        self,
        history_features: Sequence[Feature],
        item_features: Sequence[Feature],
        *,
        temperature: float,
        user_features: Sequence[Feature] = (),
        user_params: MLPConfig | Mapping[str, object] | None = None,
        normalize: bool = False,
        neg_item_feature: Sequence[Feature] | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.history = history_feature(history_features, item_features, name)
        item = id_only(item_features, name)
        self.profile_features = list(user_features)
        self.user_features, self.item_features = [*self.profile_features, self.history], [item]
        self.dim, self.temperature, self.normalize = item.dim, float(temperature), normalize
        self.neg_item_features = check_negatives(name, list(neg_item_feature or []), [item])
        self.embedding = EmbeddingLayer([*self.profile_features, self.history, item])
        self.fuse: TowerMLP | None = None
        if self.profile_features:
            self.fuse = TowerMLP(
                self.dim + tower_dim(self.profile_features), user_params, default_dims=(self.dim,)
            )
            if self.fuse.output_dim != self.dim:
                raise ValueError(f"{name}: user_params dims must end at the item embed_dim {self.dim}")
        elif user_params is not None:
            raise ValueError(f"{name}: user_params fuse user_features with the state; pass user_features too")

    catalog_logits: bool = False

    def forward(self, batch: Mapping[str, Tensor]) -> TowerOutput | Tensor:  # type: ignore[override]
        """``TowerOutput(user (B, D), item (B, D))``, or with ``catalog_logits`` the logits of every
        item id ``(B, V)`` (column 0 is padding)."""
        if not self.catalog_logits:
            return super().forward(batch)
        items = l2(self.embedding.table_weight(self.item_id), self.normalize)  # (V, D)
        return self.score(self.user_tower(batch), items)  # (B, V)

    def _finish(self, states: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        """Profile fusion and normalisation of states ``(B, Lq, D)``."""
        if self.fuse is not None:
            profile = self.embedding.flatten(batch, self.profile_features)  # (B, P)
            profile = profile.unsqueeze(1).expand(-1, states.shape[1], -1)  # (B, Lq, P)
            states = self.fuse(torch.cat([states, profile], -1))  # (B, Lq, D)
        return l2(states, self.normalize)

    def encode(self, seq: Tensor, mask: Tensor, last_only: bool) -> Tensor:
        """``seq (B, L, D)``, ``mask (B, L)`` -> ``(B, L, D)``, or ``(B, 1, D)`` for the last
        position only (models whose cost grows with the number of query positions use it)."""
        raise NotImplementedError

    def sequence_tower(self, batch: Mapping[str, Tensor]) -> Tensor:
        """History ``(B, L)`` -> hidden state after every position ``(B, L, D)`` (0 at padding)."""
        batch = left_aligned(batch, self.history.name)
        seq, mask = self.embedding.sequence(batch, self.history.name)  # (B, L, D), (B, L)
        states = self._finish(self.encode(seq, mask, last_only=False), batch)  # (B, L, D)
        return states * mask.unsqueeze(-1).to(seq.dtype)  # (B, L, D)

    def user_tower(self, batch: Mapping[str, Tensor]) -> Tensor:
        """History ``(B, L)`` -> state after the most recent item ``(B, D)``."""
        batch = without_leading_padding(left_aligned(batch, self.history.name), self.history.name)
        seq, mask = self.embedding.sequence(batch, self.history.name)  # (B, L, D), (B, L)
        out = self._finish(self.encode(seq, mask, last_only=True)[:, -1:], batch)[:, 0]  # (B, D)
        return out * mask[:, -1:].to(out.dtype)  # (B, D)

    def item_tower(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Item ids ``S`` -> ``S + (D,)``."""
        return l2(self.embedding.lookup(self.item_id, item_ids(batch, self.item_features[0])), self.normalize)
