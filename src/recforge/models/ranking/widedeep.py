"""Wide & Deep (Cheng et al. 2016, arXiv 1606.07792).

A linear ("wide") model over the wide features plus an MLP ("deep") over the embeddings and dense
values of the deep features, summed into one logit and trained jointly.

Deviation: the wide part is a linear layer over the wide features' embeddings, which equals
per-id scalar weights (the paper's one-hot linear model); cross-product transformations are
expressed by adding crossed columns in preprocessing rather than inside the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from recforge.features import Feature, dedup
from recforge.layers import LR, MLP, EmbeddingLayer, MLPConfig, output_dim
from recforge.models._rechub import rechub_order


@rechub_order("mlp_params")
class WideDeep(nn.Module):
    """Wide & Deep. ``forward(batch) -> logits (B,)``."""

    def __init__(
        self,
        wide_features: Sequence[Feature],
        deep_features: Sequence[Feature],
        *,
        mlp_params: MLPConfig | Mapping[str, object] | None = None,
        sparse: bool = False,
        fused: bool = True,
    ) -> None:
        super().__init__()
        self.wide_features = list(wide_features)
        self.deep_features = list(deep_features)
        self.features = dedup([*self.wide_features, *self.deep_features])
        self.embedding = EmbeddingLayer(self.features, sparse=sparse, fused=fused)
        self.wide = LR(output_dim(self.wide_features))
        self.deep = MLP(output_dim(self.deep_features), MLPConfig.parse(mlp_params), output_layer=True)

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """``batch`` columns -> logits ``(B,)``."""
        wide = self.embedding.flatten(batch, self.wide_features)  # (B, Σd_wide)
        deep = self.embedding.flatten(batch, self.deep_features)  # (B, Σd_deep)
        return (self.wide(wide) + self.deep(deep)).squeeze(1)  # (B,)
