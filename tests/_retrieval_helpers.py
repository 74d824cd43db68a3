"""Shared test helpers for the retrieval slice: an id-only two-tower model and a learnable log."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from recforge.features import SequenceFeature, SparseFeature
from recforge.layers import EmbeddingLayer
from recforge.models.matching.base import TwoTowerModel


class IdTwoTower(TwoTowerModel):
    """User id embedding vs item id embedding (a matrix-factorisation two-tower)."""

    def __init__(self, num_users: int, num_items: int, *, dim: int = 16, temperature: float = 1.0) -> None:
        super().__init__()
        self.user_features = [SparseFeature("user_id", num_users, embed_dim=dim)]
        self.item_features = [SparseFeature("item_id", num_items, embed_dim=dim)]
        self.temperature = temperature
        self.embedding = EmbeddingLayer(self.features)
        with torch.no_grad():
            for emb in self.embedding.embeddings.values():
                emb.weight.normal_(0, 0.1)

    def user_tower(self, batch) -> Tensor:
        return self.embedding.lookup("user_id", batch["user_id"])  # (B, D)

    def item_tower(self, batch) -> Tensor:
        return self.embedding.lookup("item_id", batch["item_id"])  # (B, D) / (B, N, D) / (N, D)


class MeanPoolSeq(TwoTowerModel):
    """History mean-pool user tower with a per-position (causal, cumulative mean) sequence tower."""

    def __init__(self, num_items: int, *, dim: int = 16, max_len: int = 8) -> None:
        super().__init__()
        self.user_features = [
            SequenceFeature("hist_item_id", num_items, embed_dim=dim, shared_with="item_id", max_len=max_len)
        ]
        self.item_features = [SparseFeature("item_id", num_items, embed_dim=dim)]
        self.embedding = EmbeddingLayer(self.features)
        self.proj = nn.Linear(dim, dim)
        with torch.no_grad():
            for emb in self.embedding.embeddings.values():
                emb.weight.normal_(0, 0.1)

    def sequence_tower(self, batch) -> Tensor:
        emb, mask = self.embedding.sequence(batch, "hist_item_id")  # (B, L, D), (B, L)
        m = mask.unsqueeze(-1).float()
        csum = (emb * m).cumsum(1) / m.cumsum(1).clamp_min(1.0)  # (B, L, D)
        return self.proj(csum)

    def user_tower(self, batch) -> Tensor:
        return self.sequence_tower(batch)[:, -1]  # (B, D)

    def item_tower(self, batch) -> Tensor:
        return self.embedding.lookup("item_id", batch["item_id"])


def clustered_log(
    num_users: int = 120, num_items: int = 60, per_user: int = 12, clusters: int = 4, seed: int = 0
) -> pd.DataFrame:
    """Users interact with items of their own cluster: a learnable signal (ids start at 1)."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(1, num_users + 1), per_user)
    cluster = users % clusters
    size = num_items // clusters
    items = 1 + cluster * size + rng.integers(0, size, len(users))
    times = np.tile(np.arange(per_user), num_users) + rng.random(len(users)) * 0.1
    return pd.DataFrame({"user_id": users, "item_id": items, "time": times})


def cyclic_log(num_users: int = 80, num_items: int = 30, per_user: int = 10, seed: int = 0) -> pd.DataFrame:
    """Each user walks item ids cyclically (next item = current + 1): learnable next-item signal."""
    rng = np.random.default_rng(seed)
    start = rng.integers(1, num_items, num_users)
    rows = []
    for u in range(num_users):
        for t in range(per_user):
            rows.append((u + 1, 1 + (start[u] - 1 + t) % (num_items - 1), float(t)))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "time"])
