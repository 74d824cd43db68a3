"""DeepFM (Guo et al. 2017, arXiv 1703.04247).

First-order linear term + second-order FM over the ``fm_features`` field embeddings + an MLP over
the ``deep_features`` (embeddings and dense values), summed into one logit. As in the paper the FM
and the deep part share the embedding tables when a feature appears in both lists.

Deviation: Torch-RecHub's signature keeps FM and deep inputs as two lists; passing the same
sparse features to both (plus dense features to the deep part) is the paper's model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from recforge.features import Feature, dedup, dense_of, embedded_of
from recforge.layers import (
    FM,
    LR,
    MLP,
    EmbeddingLayer,
    MLPConfig,
    dense_column,
    field_dim,
    output_dim,
    wide_fm_and_deep_input,
)
from recforge.layers.embedding import join_flat
from recforge.models._rechub import rechub_order


@rechub_order("mlp_params")
class DeepFM(nn.Module):
    """DeepFM. ``forward(batch) -> logits (B,)``."""

    def __init__(
        self,
        deep_features: Sequence[Feature],
        fm_features: Sequence[Feature],
        *,
        mlp_params: MLPConfig | Mapping[str, object] | None = None,
        sparse: bool = False,
        fused: bool = True,
    ) -> None:
        super().__init__()
        self.deep_features = list(deep_features)
        self.fm_features = list(fm_features)
        field_dim("DeepFM", self.fm_features)  # the FM stacks fields: one width, or a clear error
        self.features = dedup([*self.deep_features, *self.fm_features])
        self.embedding = EmbeddingLayer(self.features, sparse=sparse, fused=fused)
        self.linear = LR(output_dim(self.fm_features))
        self.fm = FM(reduce_sum=True)
        self.mlp = MLP(output_dim(self.deep_features), MLPConfig.parse(mlp_params), output_layer=True)
        # When both parts see the same embedded fields, look them up once.
        self._shared_fields = [f.name for f in embedded_of(self.deep_features)] == [
            f.name for f in embedded_of(self.fm_features)
        ]

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """``batch`` columns -> logits ``(B,)``."""
        fields = self.embedding.stack(batch, self.fm_features)  # (B, F, D)
        if self._shared_fields and not dense_of(self.fm_features):
            # the paper's model: one pass reads the fields for both parts (on CPU, one C kernel)
            wide, deep_in = wide_fm_and_deep_input(
                fields, self.linear, [dense_column(batch, f) for f in dense_of(self.deep_features)]
            )
            return (wide + self.mlp(deep_in)).squeeze(1)  # (B,)
        flat = fields.flatten(1)  # (B, F*D)
        first = self.linear(join_flat([flat, *(dense_column(batch, f) for f in dense_of(self.fm_features))]))
        if self._shared_fields:
            deep_in = join_flat(
                [flat, *(dense_column(batch, f) for f in dense_of(self.deep_features))], for_matmul=True
            )
        else:
            deep_in = self.embedding.flatten(batch, self.deep_features)  # (B, Σd)
        return (first + self.fm(fields) + self.mlp(deep_in)).squeeze(1)  # (B,)
