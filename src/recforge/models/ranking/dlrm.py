"""DLRM (Naumov et al. 2019, arXiv 1906.00091).

A bottom MLP maps the dense values to one D-wide vector; it and the sparse embeddings interact by
all pairwise dot products (``dot``) or are simply concatenated (``cat``); the top MLP maps the
bottom output together with the interactions to one logit.

Deviations: none in structure (the bottom vector is concatenated to the dot products, as in the
reference implementation; no self-interaction terms). Every sparse/sequence feature must share one
``embed_dim`` D, and the bottom MLP must end at width D (both checked at construction).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from recforge.choices import Choice
from recforge.features import DenseFeature, Feature, dedup, embedded_of
from recforge.layers import MLP, EmbeddingLayer, InnerProduct, MLPConfig, dense_column, field_dim


class InteractionType(Choice):
    DOT = "dot"
    CAT = "cat"


class DLRM(nn.Module):
    """DLRM. ``forward(batch) -> logits (B,)``.

    Args:
        dense_features: inputs of the bottom MLP (may be empty).
        sparse_features: the embedded fields (sparse or pooled sequence).
        bottom_params: the bottom MLP; its last width must be D (``output_layer`` forced off).
        top_params: the top MLP.
        interaction: ``dot`` or ``cat``.
        sparse, fused: passed to ``EmbeddingLayer``.
    """

    def __init__(
        self,
        dense_features: Sequence[DenseFeature],
        sparse_features: Sequence[Feature],
        *,
        bottom_params: MLPConfig | Mapping[str, object] | None = None,
        top_params: MLPConfig | Mapping[str, object] | None = None,
        interaction: InteractionType | str = InteractionType.DOT,
        sparse: bool = False,
        fused: bool = True,
    ) -> None:
        super().__init__()
        self.interaction = InteractionType.parse(interaction)
        self.dense = list(dense_features)
        bad = [f.name for f in self.dense if not isinstance(f, DenseFeature)]
        if bad:
            raise TypeError(f"DLRM: dense_features must be DenseFeature specs: {bad}")
        self.fields = embedded_of(dedup(sparse_features))
        d = field_dim("DLRM", self.fields)
        self.features = dedup([*self.dense, *self.fields])
        self.embedding = EmbeddingLayer(self.fields, sparse=sparse, fused=fused)
        self.bottom: MLP | None = None
        if self.dense:
            cfg = MLPConfig.parse(bottom_params, dims=(d,))
            self.bottom = MLP(sum(f.embed_dim for f in self.dense), cfg, output_layer=False)
            if self.bottom.output_dim != d:
                raise ValueError(
                    f"DLRM: the bottom MLP must end at the embedding width D={d} "
                    f"to interact with the sparse fields; its dims are {list(cfg.dims)}"
                )
        f = len(self.fields) + (1 if self.bottom is not None else 0)
        pairs = f * (f - 1) // 2
        width = (d if self.bottom is not None else 0) + (
            pairs if self.interaction is InteractionType.DOT else f * d
        )
        self.dot = InnerProduct()
        self.top = MLP(width, MLPConfig.parse(top_params), output_layer=True)

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """``batch`` columns -> logits ``(B,)``."""
        e = self.embedding.stack(batch, self.fields)  # (B, Fs, D)
        parts: list[Tensor] = []
        if self.bottom is not None:
            z = self.bottom(torch.cat([dense_column(batch, f) for f in self.dense], 1))  # (B, D)
            parts.append(z)
            e = torch.cat([z.unsqueeze(1), e], 1)  # (B, F, D)
        parts.append(
            self.dot(e) if self.interaction is InteractionType.DOT else e.flatten(1)
        )  # (B, P) | (B, F*D)
        return self.top(torch.cat(parts, 1)).squeeze(1)  # (B,)
