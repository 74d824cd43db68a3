"""Product-based Neural Network (Qu et al. 2016, arXiv 1611.00144): IPNN, OPNN and PNN*.

The product layer concatenates the linear signal (the field embeddings, flattened) with a
quadratic signal, then an MLP maps it to a logit. ``inner``: all pairwise inner products
``<v_i, v_j>``; ``outer``: the outer product of the summed embeddings ``f_Σ f_Σ^T`` (the paper's
superposition approximation, §3.3); ``both``: the two (PNN*).

Deviations: the paper's first hidden layer multiplies each signal by its own weight matrix and
adds them; here the signals are concatenated and the MLP's first layer does the same sum. Dense
values are concatenated to the linear signal. Every sparse/sequence feature must share one
``embed_dim`` (checked at construction).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from recforge.choices import Choice
from recforge.features import Feature, dedup, embedded_of
from recforge.layers import MLP, EmbeddingLayer, InnerProduct, MLPConfig, OuterProduct, field_dim, output_dim


class ProductType(Choice):
    INNER = "inner"
    OUTER = "outer"
    BOTH = "both"


class PNN(nn.Module):
    """PNN. ``forward(batch) -> logits (B,)``.

    Args:
        features: the fields (sparse, pooled sequence) and dense values.
        mlp_params: the MLP over the product layer.
        product_type: ``inner`` (IPNN), ``outer`` (OPNN) or ``both`` (PNN*).
        sparse, fused: passed to ``EmbeddingLayer``.
    """

    def __init__(
        self,
        features: Sequence[Feature],
        *,
        mlp_params: MLPConfig | Mapping[str, object] | None = None,
        product_type: ProductType | str = ProductType.INNER,
        sparse: bool = False,
        fused: bool = True,
    ) -> None:
        super().__init__()
        self.product_type = ProductType.parse(product_type)
        self.features = dedup(features)
        self.fields = embedded_of(self.features)
        d = field_dim("PNN", self.features)
        f = len(self.fields)
        self.embedding = EmbeddingLayer(self.features, sparse=sparse, fused=fused)
        self.inner = InnerProduct() if self.product_type is not ProductType.OUTER else None
        self.outer = OuterProduct() if self.product_type is not ProductType.INNER else None
        width = output_dim(self.features)
        width += f * (f - 1) // 2 if self.inner is not None else 0
        width += d * d if self.outer is not None else 0
        self.mlp = MLP(width, MLPConfig.parse(mlp_params), output_layer=True)

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """``batch`` columns -> logits ``(B,)``."""
        fields = self.embedding.stack(batch, self.fields)  # (B, F, D)
        parts = [self.embedding.flatten(batch, self.features)]  # (B, N)
        if self.inner is not None:
            parts.append(self.inner(fields))  # (B, P)
        if self.outer is not None:
            parts.append(self.outer(fields))  # (B, D*D)
        return self.mlp(torch.cat(parts, 1)).squeeze(1)  # (B,)
