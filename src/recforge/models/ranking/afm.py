"""Attentional Factorization Machine (Xiao et al. 2017, arXiv 1708.04617).

``y = w0 + Σ w_i x_i + p^T Σ_{i<j} a_ij (v_i ⊙ v_j)`` with ``a_ij`` a softmax over pairs of a
one-hidden-layer attention network on each pair's element-wise product.

Deviations: the first-order term is a linear layer over the flattened embeddings and dense values
(equal to per-id scalar weights); dense features enter only that term, as in the paper's sparse
setting. Every sparse/sequence feature must share one ``embed_dim`` (checked at construction).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from recforge.features import Feature, dedup, embedded_of
from recforge.layers import LR, AFMAttention, EmbeddingLayer, field_dim, output_dim
from recforge.models._rechub import rechub_order


@rechub_order("embed_dim", "t")
class AFM(nn.Module):
    """AFM. ``forward(batch) -> logits (B,)``.

    Args:
        fm_features: the fields (sparse, pooled sequence) and dense values of the linear term.
        embed_dim: optional check of the fields' shared width (Torch-RecHub passes it).
        t: hidden width of the attention network.
        dropout: dropout on the attention weights.
        sparse, fused: passed to ``EmbeddingLayer``.
    """

    def __init__(
        self,
        fm_features: Sequence[Feature],
        *,
        embed_dim: int | None = None,
        t: int = 64,
        dropout: float = 0.0,
        sparse: bool = False,
        fused: bool = True,
    ) -> None:
        super().__init__()
        self.features = dedup(fm_features)
        self.fields = embedded_of(self.features)
        d = field_dim("AFM", self.features)
        if embed_dim is not None and embed_dim != d:
            raise ValueError(f"AFM: embed_dim={embed_dim} but the features' embed_dim is {d}")
        self.embedding = EmbeddingLayer(self.features, sparse=sparse, fused=fused)
        self.linear = LR(output_dim(self.features))
        self.attention = AFMAttention(d, t, dropout=dropout)
        self.p = nn.Linear(d, 1, bias=False)

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """``batch`` columns -> logits ``(B,)``."""
        fields = self.embedding.stack(batch, self.fields)  # (B, F, D)
        first = self.linear(self.embedding.flatten(batch, self.features))  # (B, 1)
        return (first + self.p(self.attention(fields))).squeeze(1)  # (B,)
