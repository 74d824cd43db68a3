"""HSTU (Zhai et al. 2024, "Actions Speak Louder than Words", arXiv 2402.17152) for next-item
retrieval.

Item embeddings (shared between the history input and the output/candidate side, plus optional
action-type embeddings) run through stacked ``HSTULayer``s over the jagged (unpadded) history; the
state at each position scores the next item by dot product (``SeqTrainer`` trains every position,
sampled softmax as in the paper). ``candidate_states`` is the paper's M-FALCON: many candidates
appended to one history in a single pass, each attending to the history and itself only.

Order reaches the layers through the relative attention bias and, with ``position_embedding``,
a learned embedding of each item's position from the start of the history added to the input (as
in the authors' code). Deviations: attention normalised by ``max_len`` (see
``recforge.layers.hstu``); timestamps are an optional aligned ``(B, L)`` batch column
(``time_column``), not a ``Feature``; a final LayerNorm on the output states.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recforge.features import Initializer, RandomNormal, SequenceFeature, SparseFeature
from recforge.jagged import jagged_to_padded, padded_to_jagged
from recforge.layers import EmbeddingLayer
from recforge.layers.dropout import Dropout
from recforge.layers.hstu import HSTUKernel, HSTULayer
from recforge.models.matching.base import TwoTowerModel


def history_positions(ids: Tensor) -> Tensor:
    """Each slot's position from the oldest item of its left-padded row ``ids (B, L)``: 0, 1, ...
    on the items, negative on the padding."""
    lengths = (ids != 0).sum(1, keepdim=True)  # (B, 1)
    return torch.arange(ids.shape[1], device=ids.device) - (ids.shape[1] - lengths)  # (B, L)


class HSTU(TwoTowerModel):
    """Stacked HSTU layers over item (and action) histories.

    Args:
        num_items: item-id space including padding id 0.
        embed_dim: D. num_layers, num_heads: the stack's depth and heads.
        max_len: longest history (attention normaliser and relative-position range).
        num_actions: action-type vocabulary (0: no action input; else ``action_column`` is read).
        num_time_buckets: log2 time-gap buckets (0: no time bias; else ``time_column`` is read).
        dropout: input and layer dropout. l2_normalize: unit-norm user/sequence and item vectors.
        position_embedding: add a learned absolute-position embedding (position from the oldest
            history item; a candidate of ``candidate_states`` takes the next position) to the input.
        temperature: divides scores. kernel: ``"jagged"`` or ``"padded"`` attention.
        initializer: item (and action) embedding init (default normal, std 0.02, as in the paper).
        history_column, item_column, action_column, time_column: batch column names.
    """

    def __init__(
        self,
        num_items: int,
        *,
        embed_dim: int = 64,
        num_layers: int = 2,
        num_heads: int = 1,
        max_len: int = 50,
        num_actions: int = 0,
        num_time_buckets: int = 0,
        dropout: float = 0.2,
        l2_normalize: bool = False,
        position_embedding: bool = False,
        temperature: float = 1.0,
        kernel: HSTUKernel | str = HSTUKernel.JAGGED,
        initializer: Initializer | None = None,
        history_column: str = "hist_item_id",
        item_column: str = "item_id",
        action_column: str = "hist_action",
        time_column: str = "hist_time",
    ) -> None:
        super().__init__()
        self.history_column, self.time_column = history_column, time_column
        self.action_column = action_column if num_actions else None
        self.use_time = num_time_buckets > 0
        init = initializer or RandomNormal(std=0.02)
        self.user_features = [
            SequenceFeature(
                history_column, num_items, embed_dim=embed_dim, shared_with=item_column, max_len=max_len
            )
        ]
        if num_actions:
            self.user_features.append(
                SequenceFeature(
                    action_column, num_actions, embed_dim=embed_dim, max_len=max_len, initializer=init
                )
            )
        self.item_features = [SparseFeature(item_column, num_items, embed_dim=embed_dim, initializer=init)]
        self.temperature, self.l2_normalize, self.scale = temperature, l2_normalize, embed_dim**0.5
        self.embedding = EmbeddingLayer(self.features)
        self.layers = nn.ModuleList(
            HSTULayer(
                embed_dim,
                num_heads,
                max_len=max_len,
                num_time_buckets=num_time_buckets,
                dropout=dropout,
                kernel=kernel,
            )
            for _ in range(num_layers)
        )
        self.drop = Dropout(dropout)
        self.norm = nn.LayerNorm(embed_dim)
        self.positions = nn.Embedding(max_len + 1, embed_dim) if position_embedding else None
        if self.positions is not None:
            nn.init.normal_(self.positions.weight, std=0.02)

    def _inputs(self, batch: Mapping[str, Tensor], ids: Tensor) -> tuple[Tensor, Tensor | None]:
        x = self.embedding.lookup(self.history_column, ids) * self.scale  # (B, L, D)
        if self.action_column is not None:
            x = x + self.embedding.lookup(self.action_column, batch[self.action_column])
        if self.positions is not None:
            x = x + self.positions(history_positions(ids).clamp_min(0))  # (B, L, D)
        return x, (batch[self.time_column] if self.use_time else None)

    def _out(self, h: Tensor) -> Tensor:
        h = self.norm(h)
        return F.normalize(h, dim=-1) if self.l2_normalize else h

    def sequence_tower(self, batch: Mapping[str, Tensor]) -> Tensor:
        """State after each history position ``(B, L, D)`` (0 at padding)."""
        ids = batch[self.history_column]  # (B, L) left-padded
        mask = ids != 0
        x, times = self._inputs(batch, ids)
        values, offsets = padded_to_jagged(self.drop(x), mask)  # (ΣL, D), (B + 1,)
        t = times[mask] if times is not None else None  # (ΣL,)
        for layer in self.layers:
            values = layer(values, offsets, t)
        return jagged_to_padded(self._out(values), offsets, ids.shape[1])  # (B, L, D)

    def user_tower(self, batch: Mapping[str, Tensor]) -> Tensor:
        """State after the most recent item ``(B, D)``."""
        return self.sequence_tower(batch)[:, -1]

    def item_tower(self, batch: Mapping[str, Tensor]) -> Tensor:
        v = self.embedding.lookup(self.item_features[0].name, batch[self.item_id])  # (..., D)
        return F.normalize(v, dim=-1) if self.l2_normalize else v

    def candidate_states(
        self, batch: Mapping[str, Tensor], candidates: Tensor, candidate_times: Tensor | None = None
    ) -> Tensor:
        """M-FALCON: the state of each candidate appended to its user's history, all in one pass.

        Candidates attend to the whole history and to themselves, never to each other, so each
        ``(b, n)`` output equals appending candidate ``n`` alone as the next item.

        Args:
            batch: the history columns ``(B, L)``.
            candidates: item ids ``(B, N)``.
            candidate_times: ``(B, N)`` timestamps (default: the last history timestamp).

        Returns:
            ``(B, N, D)``: the inputs of a ranking head.
        """
        ids = batch[self.history_column]
        b, length = ids.shape
        n = candidates.shape[1]
        mask = ids != 0
        lengths = mask.sum(1)
        x, times = self._inputs(batch, ids)
        c = self.embedding.lookup(self.history_column, candidates) * self.scale  # (B, N, D)
        if self.action_column is not None:  # a candidate has no action yet: action id 0
            c = c + self.embedding.lookup(self.action_column, torch.zeros_like(candidates))
        if self.positions is not None:  # every candidate takes the next position
            c = c + self.positions(lengths[:, None].clamp_max(self.positions.num_embeddings - 1))
        x = torch.cat([x, c], 1)  # (B, L + N, D)
        pos = torch.cat([history_positions(ids), lengths[:, None].expand(b, n)], 1)  # (B, L + N)
        real = torch.cat([mask, torch.ones_like(candidates, dtype=torch.bool)], 1)  # (B, L + N)
        causal = torch.ones(length + n, length + n, dtype=torch.bool, device=ids.device).tril()
        causal[length:, length:] = torch.eye(n, dtype=torch.bool, device=ids.device)
        allowed = causal & real[:, None, :] & real[:, :, None]  # (B, L + N, L + N)
        if times is not None:
            ct = candidate_times if candidate_times is not None else times[:, -1:].expand(b, n)
            times = torch.cat([times, ct.to(times.dtype)], 1)  # (B, L + N)
        for layer in self.layers:
            x = cast(HSTULayer, layer).forward_padded(x, pos, allowed, times)
        return self._out(x[:, length:])  # (B, N, D)
