"""FiBiNET (Huang et al. 2019, arXiv 1905.09433).

A SENET layer reweights the field embeddings; bilinear interactions (``field_all``, ``field_each``
or ``field_interaction`` weight sharing) are taken on both the original and the reweighted
embeddings; the two sets of pair vectors (and any dense values) feed an MLP.

Deviations: the two bilinear layers have separate weights; dense features are concatenated to the
MLP input. Every sparse/sequence feature must share one ``embed_dim`` (checked at construction).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from recforge.features import Feature, dedup, dense_of, embedded_of
from recforge.layers import (
    MLP,
    SENET,
    BilinearInteraction,
    BilinearType,
    EmbeddingLayer,
    MLPConfig,
    dense_column,
    field_dim,
)
from recforge.models._rechub import rechub_order


@rechub_order("mlp_params", "reduction_ratio", "bilinear_type")
class FiBiNet(nn.Module):
    """FiBiNET. ``forward(batch) -> logits (B,)``.

    Args:
        features: the fields (sparse, pooled sequence) and dense values.
        mlp_params: the deep part.
        reduction_ratio: SENET's reduction ratio.
        bilinear_type: ``field_all``, ``field_each`` or ``field_interaction``.
        sparse, fused: passed to ``EmbeddingLayer``.
    """

    def __init__(
        self,
        features: Sequence[Feature],
        *,
        mlp_params: MLPConfig | Mapping[str, object] | None = None,
        reduction_ratio: float = 3,
        bilinear_type: BilinearType | str = BilinearType.FIELD_INTERACTION,
        sparse: bool = False,
        fused: bool = True,
    ) -> None:
        super().__init__()
        self.features = dedup(features)
        self.fields = embedded_of(self.features)
        self.dense = dense_of(self.features)
        d = field_dim("FiBiNet", self.features)
        f = len(self.fields)
        if f < 2:
            raise ValueError(
                f"FiBiNet needs at least two sparse/sequence fields, got {[x.name for x in self.fields]}"
            )
        self.embedding = EmbeddingLayer(self.features, sparse=sparse, fused=fused)
        self.senet = SENET(f, reduction_ratio)
        self.bilinear = BilinearInteraction(f, d, bilinear_type)
        self.bilinear_senet = BilinearInteraction(f, d, bilinear_type)
        pairs = f * (f - 1) // 2
        dense_dim = sum(x.embed_dim for x in self.dense)
        self.mlp = MLP(2 * pairs * d + dense_dim, MLPConfig.parse(mlp_params), output_layer=True)

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """``batch`` columns -> logits ``(B,)``."""
        e = self.embedding.stack(batch, self.fields)  # (B, F, D)
        p = self.bilinear(e).flatten(1)  # (B, P*D)
        q = self.bilinear_senet(self.senet(e)).flatten(1)  # (B, P*D)
        x = torch.cat([p, q, *(dense_column(batch, f) for f in self.dense)], 1)  # (B, 2*P*D + Σd)
        return self.mlp(x).squeeze(1)  # (B,)
