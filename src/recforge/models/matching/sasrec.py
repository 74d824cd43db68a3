"""SASRec: Self-Attentive Sequential Recommendation (Kang & McAuley, ICDM 2018, arXiv 1808.09781).

Item embeddings (scaled by sqrt(D)) plus learned positions go through causal pre-norm transformer
blocks (``TransformerEncoder(causal=True)``); the state at every position predicts the next item
against the shared item embeddings.

Deviations: positions are counted from the most recent item (identical to the paper's for a full
``max_len`` window, and left padding never shifts them); the feed-forward uses GELU (the shared
block's) instead of ReLU; losses (the paper's BCE with one negative, or full/sampled softmax) live
in the objectives.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from recforge.features import Feature
from recforge.layers import TransformerEncoder
from recforge.layers.dropout import Dropout
from recforge.models.matching.sequential import SequentialModel
from recforge.models.matching.towers import positions_from_end


class SASRec(SequentialModel):
    """SASRec. ``sequence_tower -> (B, L, D)``, ``user_tower -> (B, D)``.

    Args:
        history_features, item_features, temperature, normalize: as ``SequentialModel``.
        max_len: longest history L.
        dropout_rate: embedding, attention and feed-forward dropout.
        num_blocks: transformer blocks.
        num_heads: attention heads.
    """

    def __init__(
        self,
        history_features: Sequence[Feature],
        item_features: Sequence[Feature],
        *,
        max_len: int = 50,
        dropout_rate: float = 0.2,
        num_blocks: int = 2,
        num_heads: int = 1,
        temperature: float = 1.0,
        normalize: bool = False,
    ) -> None:
        super().__init__(history_features, item_features, temperature=temperature, normalize=normalize)
        self.positions = nn.Parameter(torch.randn(max_len, self.dim) * 0.02)
        self.emb_dropout = Dropout(dropout_rate)
        self.encoder = TransformerEncoder(
            self.dim,
            num_blocks,
            num_heads,
            ffn_dim=self.dim,
            dropout=dropout_rate,
            pre_norm=True,
            causal=True,
        )

    def encode(self, seq: Tensor, mask: Tensor, last_only: bool) -> Tensor:
        """``(B, L, D)`` -> ``(B, L, D)``, or ``(B, 1, D)`` with ``last_only`` (the last block then
        runs for the last position alone)."""
        x = seq * self.dim**0.5 + positions_from_end(self.positions, seq.shape[1], "SASRec")  # (B, L, D)
        x = self.emb_dropout(x) * mask.unsqueeze(-1).to(x.dtype)  # (B, L, D)
        return self.encoder(x, key_mask=mask, last_only=last_only)  # (B, L, D) or (B, 1, D)
