"""xDeepFM (Lian et al. 2018, arXiv 1803.05170).

Linear term + Compressed Interaction Network (explicit vector-wise crosses of bounded degree) +
MLP (implicit crosses), summed into one logit.

Deviations: the linear term is a linear layer over the flattened embeddings and dense values; dense
features reach the linear term and the MLP, not the CIN. Every sparse/sequence feature must share
one ``embed_dim`` (checked at construction).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from recforge.features import Feature, dedup, embedded_of
from recforge.layers import CIN, LR, MLP, EmbeddingLayer, MLPConfig, field_dim, output_dim


class xDeepFM(nn.Module):
    """xDeepFM. ``forward(batch) -> logits (B,)``.

    Args:
        features: the fields (sparse, pooled sequence) and dense values.
        cin_layer_sizes: feature maps per CIN layer.
        mlp_params: the deep part.
        split_half: CIN passes half of each layer's maps on (the paper's implementation).
        sparse, fused: passed to ``EmbeddingLayer``.
    """

    def __init__(
        self,
        features: Sequence[Feature],
        *,
        cin_layer_sizes: Sequence[int] = (64, 64),
        mlp_params: MLPConfig | Mapping[str, object] | None = None,
        split_half: bool = True,
        sparse: bool = False,
        fused: bool = True,
    ) -> None:
        super().__init__()
        self.features = dedup(features)
        self.fields = embedded_of(self.features)
        field_dim("xDeepFM", self.features)
        self.embedding = EmbeddingLayer(self.features, sparse=sparse, fused=fused)
        n = output_dim(self.features)
        self.linear = LR(n)
        self.cin = CIN(len(self.fields), cin_layer_sizes, split_half=split_half)
        self.cin_head = nn.Linear(self.cin.output_dim, 1, bias=False)
        self.mlp = MLP(n, MLPConfig.parse(mlp_params), output_layer=True)

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """``batch`` columns -> logits ``(B,)``."""
        fields = self.embedding.stack(batch, self.fields)  # (B, F, D)
        flat = self.embedding.flatten(batch, self.features)  # (B, N)
        return (self.linear(flat) + self.cin_head(self.cin(fields)) + self.mlp(flat)).squeeze(1)  # (B,)
