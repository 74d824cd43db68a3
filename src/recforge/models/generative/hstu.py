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

from collections.abc import Mapping, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recforge.features import Feature, SequenceFeature
from recforge.jagged import jagged_to_padded, padded_to_jagged
from recforge.layers import EmbeddingLayer
from recforge.layers.dropout import Dropout
from recforge.layers.hstu import HSTUKernel, HSTULayer
from recforge.models.matching.base import TwoTowerModel
from recforge.models.matching.towers import history_feature, id_only


def history_positions(ids: Tensor) -> Tensor:
    """Each slot's position from the oldest item of its left-padded row ``ids (B, L)``: 0, 1, ...
    on the items, negative on the padding."""
    lengths = (ids != 0).sum(1, keepdim=True)  # (B, 1)
    return torch.arange(ids.shape[1], device=ids.device) - (ids.shape[1] - lengths)  # (B, L)


class HSTU(TwoTowerModel):
    """Stacked HSTU layers over item (and action) histories.

    Args:
        history_features: the item history (a ``SequenceFeature`` sharing the item table; its
            ``max_len`` is the longest history), optionally followed by an action-type history
            (a ``SequenceFeature`` of its own vocabulary, aligned with the items).
        item_features: exactly the item-id feature; its ``embed_dim`` is D.
        num_layers, num_heads: the stack's depth and heads.
        max_len: attention normaliser and relative-position range (default: the history's).
        num_time_buckets: log2 time-gap buckets (0: no time bias; else ``time_column`` is read).
        dropout: input and layer dropout. normalize: unit-norm user/sequence and item vectors.
        position_embedding: add a learned absolute-position embedding (position from the oldest
            history item; a candidate of ``candidate_states`` takes the next position) to the input.
        temperature: divides scores. kernel: ``"jagged"`` or ``"padded"`` attention.
        time_column: the ``(B, L)`` timestamps aligned with the history.
    """

    def __init__(
        self,
        history_features: Sequence[Feature],
        item_features: Sequence[Feature],
        *,
        num_layers: int = 2,
        num_heads: int = 1,
        max_len: int | None = None,
        num_time_buckets: int = 0,
        dropout: float = 0.2,
        normalize: bool = False,
        position_embedding: bool = False,
        temperature: float = 1.0,
        kernel: HSTUKernel | str = HSTUKernel.JAGGED,
        time_column: str = "hist_time",
    ) -> None:
        super().__init__()
        hist = history_feature(history_features[:1], item_features, "HSTU")
        item = id_only(item_features, "HSTU")
        actions = list(history_features[1:])
        if len(actions) > 1 or (actions and not isinstance(actions[0], SequenceFeature)):
            raise ValueError(
                f"HSTU: history_features are the item history and at most one action history, got {history_features}"
            )
        max_len = max_len or hist.max_len
        if max_len is None:
            raise ValueError(f"HSTU: give max_len or a max_len on the history feature {hist.name!r}")
        embed_dim = item.dim
        self.history_column, self.time_column = hist.name, time_column
        self.action_column = actions[0].name if actions else None
        self.use_time = num_time_buckets > 0
        self.user_features, self.item_features = [hist, *actions], [item]
        self.temperature, self.normalize, self.scale = temperature, normalize, embed_dim**0.5
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
        return F.normalize(h, dim=-1) if self.normalize else h

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
        return F.normalize(v, dim=-1) if self.normalize else v

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


# Torch-RecHub's name and call shape (torch_rechub.models.generative.hstu.HSTUModel); it subclasses
# HSTU, so it is imported after the class exists.
from recforge.models.generative._rechub import HSTUModel  # noqa: E402, F401
