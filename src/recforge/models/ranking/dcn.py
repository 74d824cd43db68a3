"""Deep & Cross Network (Wang et al. 2017, arXiv 1708.05123).

The flat input ``x0`` (all embeddings and dense values) feeds a cross network of
``x_{l+1} = x0 (x_l · w_l) + b_l + x_l`` layers and, in parallel, an MLP; their outputs are
concatenated and mapped to one logit.

Deviations: none in structure. Features may have different embedding widths (the cross network
works on the flat input). Torch-RecHub's ``mlp_params`` apply with ``output_layer`` forced off (the
combination layer is the output).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from recforge.features import Feature, dedup
from recforge.layers import MLP, CrossNet, EmbeddingLayer, MLPConfig, output_dim
from recforge.models._rechub import rechub_order


@rechub_order("n_cross_layers", "mlp_params")
class DCN(nn.Module):
    """Deep & Cross Network. ``forward(batch) -> logits (B,)``.

    Args:
        features: every input feature (sparse, pooled sequence, dense).
        n_cross_layers: depth of the cross network.
        mlp_params: the deep part (``MLPConfig`` or Torch-RecHub dict).
        sparse, fused: passed to ``EmbeddingLayer``.
    """

    def __init__(
        self,
        features: Sequence[Feature],
        *,
        n_cross_layers: int = 3,
        mlp_params: MLPConfig | Mapping[str, object] | None = None,
        sparse: bool = False,
        fused: bool = True,
    ) -> None:
        super().__init__()
        self.features = dedup(features)
        self.embedding = EmbeddingLayer(self.features, sparse=sparse, fused=fused)
        n = output_dim(self.features)
        self.cross = CrossNet(n, n_cross_layers)
        self.mlp = MLP(n, MLPConfig.parse(mlp_params), output_layer=False)
        self.head = nn.Linear(n + self.mlp.output_dim, 1)

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """``batch`` columns -> logits ``(B,)``."""
        x0 = self.embedding.flatten(batch, self.features)  # (B, N)
        return self.head(torch.cat([self.cross(x0), self.mlp(x0)], 1)).squeeze(1)  # (B,)
