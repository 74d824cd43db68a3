"""Neural Factorization Machine (He & Chua 2017, arXiv 1708.05027).

Linear term + an MLP over the Bi-Interaction pooling ``Σ_{i<j} v_i ⊙ v_j`` (computed in O(F·D)
by ``FM(reduce_sum=False)``), summed into one logit.

Deviations: dense values enter the linear term and are concatenated to the Bi-Interaction vector
before the MLP; optional batch normalisation/dropout on the Bi-Interaction vector follow the paper
(``bi_dropout``, ``mlp_params["batch_norm"]``). Every sparse/sequence feature must share one
``embed_dim`` (checked at construction).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from recforge.features import Feature, dedup, dense_of, embedded_of
from recforge.layers import FM, LR, MLP, EmbeddingLayer, MLPConfig, dense_column, field_dim, output_dim
from recforge.layers.dropout import Dropout


class NFM(nn.Module):
    """NFM. ``forward(batch) -> logits (B,)``.

    Args:
        features: the fields (sparse, pooled sequence) and dense values.
        mlp_params: the MLP over the Bi-Interaction vector.
        bi_dropout: dropout on the Bi-Interaction vector.
        sparse, fused: passed to ``EmbeddingLayer``.
    """

    def __init__(
        self,
        features: Sequence[Feature],
        *,
        mlp_params: MLPConfig | Mapping[str, object] | None = None,
        bi_dropout: float = 0.0,
        sparse: bool = False,
        fused: bool = True,
    ) -> None:
        super().__init__()
        self.features = dedup(features)
        self.fields = embedded_of(self.features)
        self.dense = dense_of(self.features)
        d = field_dim("NFM", self.features)
        self.embedding = EmbeddingLayer(self.features, sparse=sparse, fused=fused)
        self.linear = LR(output_dim(self.features))
        self.bi_pooling = FM(reduce_sum=False)
        self.bi_dropout = Dropout(bi_dropout)
        self.mlp = MLP(
            d + sum(f.embed_dim for f in self.dense), MLPConfig.parse(mlp_params), output_layer=True
        )

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """``batch`` columns -> logits ``(B,)``."""
        fields = self.embedding.stack(batch, self.fields)  # (B, F, D)
        first = self.linear(self.embedding.flatten(batch, self.features))  # (B, 1)
        bi = self.bi_dropout(self.bi_pooling(fields))  # (B, D)
        deep_in = torch.cat([bi, *(dense_column(batch, f) for f in self.dense)], 1)  # (B, D + Σd)
        return (first + self.mlp(deep_in)).squeeze(1)  # (B,)
