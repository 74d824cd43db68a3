"""DeepFFM (Yang et al. 2019; described in FAT-DeepFFM, arXiv 1905.06336, Eq. 5).

A linear term over the linear features plus an MLP over the field-aware FM cross vectors
``v_{i,f_j} ⊙ v_{j,f_i}`` of every field pair of the cross features.

Field-aware embeddings: each cross feature of width D gets one table of width ``F * D`` (F = the
number of cross fields), looked up through ``EmbeddingLayer`` and viewed as ``(F, D)``: row j is
the vector it uses with field j. ``model.features`` lists the specs as given (width D).

Deviations: the linear term is a linear layer over the linear features' embeddings and dense
values (Torch-RecHub sums width-1 embeddings); dense features may only be linear features. Every
cross feature must share one ``embed_dim`` (checked at construction).

Torch-RecHub's layout is accepted: it declares each cross feature with ``F`` rows per value
(``vocab_size = V * F``, looked up at ``id * F + field``), the same parameters as recforge's ``V``
rows of width ``F * D``; a cross feature whose ``vocab_size`` is ``F`` times that of the linear
feature of the same name is read that way (``_field_aware_vocab``). A column may be both a linear
and a cross feature with different specs (separate tables).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from recforge.features import DenseFeature, Feature, SparseFeature, dedup, embedded_of
from recforge.layers import FFM, LR, MLP, SENET, EmbeddingLayer, MLPConfig, field_dim, output_dim
from recforge.models._rechub import rechub_order


def _field_aware_vocab(cross: list[Feature], linear: list[Feature], num_fields: int) -> list[Feature]:
    """Cross features with Torch-RecHub's ``vocab_size = V * F`` brought back to ``V`` (see the
    module docstring); other features unchanged."""
    vocab = {f.name: f.vocab_size for f in linear if isinstance(f, SparseFeature)}
    return [
        dataclasses.replace(f, vocab_size=vocab[f.name])
        if isinstance(f, SparseFeature) and f.name in vocab and f.vocab_size == vocab[f.name] * num_fields
        else f
        for f in cross
    ]


@rechub_order("embed_dim", "mlp_params")
class DeepFFM(nn.Module):
    """DeepFFM. ``forward(batch) -> logits (B,)``.

    Args:
        linear_features: features of the first-order term.
        cross_features: the fields of the field-aware crosses (sparse or pooled sequence).
        embed_dim: optional check of the cross fields' shared width D.
        mlp_params: the MLP over the P*D cross values.
        reduction_ratio: when set, a Compose-Excitation network (FAT-DeepFFM's field attention,
            ``SENET`` with a learned compose step) reweights the P cross vectors first.
        sparse, fused: passed to ``EmbeddingLayer``.
    """

    def __init__(
        self,
        linear_features: Sequence[Feature],
        cross_features: Sequence[Feature],
        *,
        embed_dim: int | None = None,
        mlp_params: MLPConfig | Mapping[str, object] | None = None,
        reduction_ratio: float | None = None,
        sparse: bool = False,
        fused: bool = True,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.linear_features = dedup(linear_features)
        self.cross_features = dedup(cross_features)
        self.cross_features = _field_aware_vocab(
            self.cross_features, self.linear_features, len(self.cross_features)
        )
        dense = [f.name for f in self.cross_features if isinstance(f, DenseFeature)]
        if dense:
            raise ValueError(f"{name}: cross_features must be sparse/sequence features; dense: {dense}")
        d = field_dim(name, self.cross_features)
        if embed_dim is not None and embed_dim != d:
            raise ValueError(f"{name}: embed_dim={embed_dim} but the cross features' embed_dim is {d}")
        f = len(self.cross_features)
        if f < 2:
            raise ValueError(
                f"{name} needs at least two cross features, got {[x.name for x in self.cross_features]}"
            )
        self.num_fields, self.dim = f, d
        linear_names = {x.name for x in self.linear_features}
        self.features = [
            *self.linear_features,
            *(x for x in self.cross_features if x.name not in linear_names),
        ]
        self.linear_embedding = EmbeddingLayer(self.linear_features, sparse=sparse, fused=fused)
        self.aware = [dataclasses.replace(x, embed_dim=d * f) for x in embedded_of(self.cross_features)]
        self.ffm_embedding = EmbeddingLayer(self.aware, sparse=sparse, fused=fused)
        self.linear = LR(output_dim(self.linear_features))
        self.ffm = FFM(reduce_sum=False)
        pairs = f * (f - 1) // 2
        self.attention = SENET(pairs, reduction_ratio, compose_dim=d) if reduction_ratio is not None else None
        self.mlp = MLP(pairs * d, MLPConfig.parse(mlp_params), output_layer=True)

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """``batch`` columns -> logits ``(B,)``."""
        first = self.linear(self.linear_embedding.flatten(batch, self.linear_features))  # (B, 1)
        e = self.ffm_embedding.stack(batch, self.aware)  # (B, F, F*D)
        e = e.view(e.shape[0], self.num_fields, self.num_fields, self.dim)  # (B, F, F, D)
        cross = self.ffm(e)  # (B, P, D)
        if self.attention is not None:
            cross = self.attention(cross)  # (B, P, D)
        return (first + self.mlp(cross.flatten(1))).squeeze(1)  # (B,)
