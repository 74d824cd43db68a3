"""Shared frame of the multi-interest models (MIND, ComiRec-DR, ComiRec-SA).

A history of item embeddings becomes K interest vectors (the subclass's extractor); optional user
profile features are concatenated to every interest and mapped back to D (MIND's "H" layers,
Torch-RecHub's ``convert_user_weight``); the item tower is the item-id embedding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from recforge.features import Feature, SequenceFeature
from recforge.ints import as_int
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
)


def history_length(model: str, history: SequenceFeature, max_length: object, arg: str = "max_length") -> int:
    """``max_length`` (the argument ``arg``) as an int, defaulting to the history feature's ``max_len``."""
    if max_length is None:
        max_length = history.max_len
    if max_length is None:
        raise TypeError(f"{model}: pass {arg} (the longest history), or give {history.name!r} a max_len")
    return as_int(max_length, f"{model}: {arg}", minimum=1)


class MultiInterestModel(TwoTowerModel):
    """Base of the K-interest user towers: ``user_tower -> (B, K, D)``, ``item_tower -> S + (D,)``.

    Args:
        user_features: profile features fused into every interest (may be empty).
        history_features: exactly one ``SequenceFeature`` sharing the item-id table.
        item_features: exactly the item-id feature; its ``embed_dim`` is D.
        interest_num: K.
        temperature: divides every score.
        normalize: L2-normalise interests and items (cosine scores, as Torch-RecHub does); ``None``:
            only when called Torch-RecHub's way, with ``neg_item_feature``.
        user_params: MLP that fuses profile and interest (last width D); unused without profile.
        neg_item_feature: Torch-RecHub's negatives column (``TwoTowerModel.negative_batch``).
    """

    def __init__(
        self,
        user_features: Sequence[Feature],
        history_features: Sequence[Feature],
        item_features: Sequence[Feature],
        *,
        interest_num: int,
        temperature: float,
        normalize: bool | None,
        user_params: MLPConfig | Mapping[str, object] | None,
        neg_item_feature: Sequence[Feature] | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.history = history_feature(history_features, item_features, name)
        item = id_only(item_features, name)
        self.neg_item_features = check_negatives(name, list(neg_item_feature or []), [item])
        if normalize is None:
            normalize = bool(self.neg_item_features)
        interest_num = as_int(interest_num, f"{name}: interest_num")
        if interest_num < 1:
            raise ValueError(f"{name}: interest_num must be >= 1, got {interest_num}")
        self.profile_features = list(user_features)
        self.user_features = [*self.profile_features, self.history]
        self.item_features = [item]
        self.dim, self.interest_num = item.dim, interest_num
        self.temperature, self.normalize = float(temperature), normalize
        self.embedding = EmbeddingLayer([*self.user_features, item])
        self.fuse = (
            TowerMLP(self.dim + tower_dim(self.profile_features), user_params, default_dims=(self.dim,))
            if self.profile_features
            else None
        )
        if self.fuse is not None and self.fuse.output_dim != self.dim:
            raise ValueError(f"{name}: user_params dims must end at the item embed_dim {self.dim}")

    def interests(self, seq: Tensor, mask: Tensor) -> Tensor:
        """``seq (B, L, D)``, ``mask (B, L)`` -> ``(B, K, D)``."""
        raise NotImplementedError

    def user_tower(self, batch: Mapping[str, Tensor]) -> Tensor:
        """History (and profile) columns -> interests ``(B, K, D)``; a history padded at the end is
        re-aligned first (``towers.left_aligned``)."""
        batch = left_aligned(batch, self.history.name)
        seq, mask = self.embedding.sequence(batch, self.history.name)  # (B, L, D), (B, L)
        v = self.interests(seq, mask)  # (B, K, D)
        if self.fuse is not None:
            profile = self.embedding.flatten(batch, self.profile_features)  # (B, P)
            profile = profile.unsqueeze(1).expand(-1, v.shape[1], -1)  # (B, K, P)
            v = self.fuse(torch.cat([v, profile], -1))  # (B, K, D)
        return l2(v, self.normalize)

    def item_tower(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Item ids ``S`` -> ``S + (D,)``."""
        ids = item_ids(batch, self.item_features[0])
        return l2(self.embedding.lookup(self.item_id, ids), self.normalize)
