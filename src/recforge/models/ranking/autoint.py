"""AutoInt and AutoInt+ (Song et al. 2019, arXiv 1810.11921).

Every feature becomes a field vector of width D (sparse/sequence: its embedding; dense value x_m:
``x_m v_m`` with a learned ``v_m``, as in the paper). Interacting layers of multi-head
self-attention with a residual projection and ReLU, ``ReLU(MHA(E) + W_res E)``, learn high-order
crosses; the flattened result is mapped to one logit. With ``mlp_params`` (AutoInt+) an MLP over
the flattened input embeddings adds its logit.

Deviations: attention uses ``recforge.layers.MultiHeadAttention`` at width D (heads of D/H each)
with an output projection; the paper's per-head width d' is reached with ``attention_dim``, which
projects the fields to d'·H first. Dense features need ``embed_dim == 1``. Every sparse/sequence
feature must share one ``embed_dim`` (checked at construction).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from recforge.features import DenseFeature, Feature, dedup, embedded_of
from recforge.layers import MLP, EmbeddingLayer, InteractingLayer, MLPConfig, dense_column, field_dim
from recforge.models._rechub import rechub_order


@rechub_order("num_layers", "num_heads", "dropout", "mlp_params")
class AutoInt(nn.Module):
    """AutoInt (AutoInt+ when ``mlp_params`` is given). ``forward(batch) -> logits (B,)``.

    Args:
        sparse_features: the embedded fields (sparse or pooled sequence).
        dense_features: scalar dense features, each embedded as ``x_m v_m``.
        num_layers: interacting layers.
        num_heads: attention heads H.
        dropout: attention dropout.
        mlp_params: None for AutoInt; an MLP config for AutoInt+.
        attention_dim: width of the attention layers (default D); must be divisible by H.
        sparse, fused: passed to ``EmbeddingLayer``.
    """

    def __init__(
        self,
        sparse_features: Sequence[Feature],
        dense_features: Sequence[DenseFeature] | None = None,
        *,
        num_layers: int = 3,
        num_heads: int = 2,
        dropout: float = 0.0,
        mlp_params: MLPConfig | Mapping[str, object] | None = None,
        attention_dim: int | None = None,
        sparse: bool = False,
        fused: bool = True,
    ) -> None:
        super().__init__()
        self.fields = embedded_of(dedup(sparse_features))
        self.dense = list(dense_features or [])
        bad = [f.name for f in self.dense if not isinstance(f, DenseFeature) or f.embed_dim != 1]
        if bad:
            raise ValueError(f"AutoInt: dense_features must be scalar DenseFeatures (embed_dim=1): {bad}")
        d = field_dim("AutoInt", self.fields)
        self.features = dedup([*self.fields, *self.dense])
        self.embedding = EmbeddingLayer(self.fields, sparse=sparse, fused=fused)
        self.dense_vectors = nn.Parameter(torch.randn(len(self.dense), d) * 0.01)
        num_fields = len(self.fields) + len(self.dense)
        width = attention_dim or d
        self.project = nn.Linear(d, width, bias=False) if width != d else nn.Identity()
        self.layers = nn.Sequential(
            *(InteractingLayer(width, num_heads, dropout=dropout) for _ in range(num_layers))
        )
        self.head = nn.Linear(num_fields * width, 1)
        self.mlp = (
            MLP(num_fields * d, MLPConfig.parse(mlp_params), output_layer=True)
            if mlp_params is not None
            else None
        )

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """``batch`` columns -> logits ``(B,)``."""
        e = self.embedding.stack(batch, self.fields)  # (B, Fs, D)
        if self.dense:
            x = torch.cat([dense_column(batch, f) for f in self.dense], 1)  # (B, Fd)
            e = torch.cat([e, x.unsqueeze(-1) * self.dense_vectors], 1)  # (B, F, D)
        logit = self.head(self.layers(self.project(e)).flatten(1))  # (B, 1)
        if self.mlp is not None:
            logit = logit + self.mlp(e.flatten(1))
        return logit.squeeze(1)  # (B,)
