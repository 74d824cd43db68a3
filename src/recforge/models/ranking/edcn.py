"""EDCN (Chen et al. 2021, "Enhancing Explicit and Implicit Feature Interactions via Information
Sharing for Parallel Deep CTR Models", DLP-KDD 2021; no arXiv id).

A parallel cross + deep network whose two branches exchange information after every layer: a
*bridge* module fuses the l-th cross and deep outputs, and a *regulation* module (field-wise softmax
gates) splits the fused vector back into the next cross and deep inputs. The last cross, deep and
bridge outputs are concatenated into one logit.

Deviations: the cross layers are DCN's (``x0 (x · w) + b + x``) with ``x0`` the regulated cross
input of the first layer; each deep layer is one hidden layer of the input width N (a bridge needs
equal widths), so ``mlp_params["dims"]`` is ignored while its dropout/activation/batch_norm apply;
regulation gates are multiplied by F so they start at the identity. Features may have different
embedding widths (gates are per field, whatever its width).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from recforge.features import DenseFeature, Feature, dedup
from recforge.layers import (
    MLP,
    BridgeModule,
    BridgeType,
    CrossLayer,
    EmbeddingLayer,
    MLPConfig,
    RegulationModule,
    output_dim,
)
from recforge.layers.cross import RegulatedInputs
from recforge.models._rechub import rechub_order


@rechub_order("n_cross_layers", "mlp_params", "bridge_type", "use_regulation_module", "temperature")
class EDCN(nn.Module):
    """EDCN. ``forward(batch) -> logits (B,)``.

    Args:
        features: every input feature (each embedded or dense feature is one field).
        n_cross_layers: number of cross/deep/bridge layers.
        mlp_params: activation, dropout and batch norm of the deep layers (widths are N).
        bridge_type: ``hadamard_product``, ``pointwise_addition``, ``concatenation`` or
            ``attention_pooling``.
        use_regulation_module: field-wise gates; off: both branches get the bridge output as is.
        temperature: the gates' softmax temperature.
        sparse, fused: passed to ``EmbeddingLayer``.
    """

    def __init__(
        self,
        features: Sequence[Feature],
        *,
        n_cross_layers: int = 3,
        mlp_params: MLPConfig | Mapping[str, object] | None = None,
        bridge_type: BridgeType | str = BridgeType.HADAMARD_PRODUCT,
        use_regulation_module: bool = True,
        temperature: float = 1.0,
        sparse: bool = False,
        fused: bool = True,
    ) -> None:
        super().__init__()
        if n_cross_layers < 1:
            raise ValueError(f"EDCN: n_cross_layers must be >= 1, got {n_cross_layers}")
        self.features = dedup(features)
        self.embedding = EmbeddingLayer(self.features, sparse=sparse, fused=fused)
        n = output_dim(self.features)
        # flatten() puts embedded fields first, dense after: the gate widths follow that order.
        widths = [f.dim for f in self.features if not isinstance(f, DenseFeature)]
        widths += [f.embed_dim for f in self.features if isinstance(f, DenseFeature)]
        cfg = MLPConfig.parse(mlp_params)
        layer_cfg = MLPConfig((n,), cfg.dropout, cfg.activation, cfg.batch_norm, output_layer=False)
        self.cross = nn.ModuleList(CrossLayer(n) for _ in range(n_cross_layers))
        self.deep = nn.ModuleList(MLP(n, layer_cfg) for _ in range(n_cross_layers))
        self.bridges = nn.ModuleList(BridgeModule(n, bridge_type) for _ in range(n_cross_layers))
        self.regulation = (
            nn.ModuleList(RegulationModule(widths, temperature=temperature) for _ in range(n_cross_layers))
            if use_regulation_module
            else None
        )
        self.head = nn.Linear(3 * n, 1)

    def _split(self, layer: int, x: Tensor) -> RegulatedInputs:
        if self.regulation is None:
            return RegulatedInputs(x, x)
        return self.regulation[layer](x)

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """``batch`` columns -> logits ``(B,)``."""
        x = self.embedding.flatten(batch, self.features)  # (B, N)
        cross_in, deep = self._split(0, x)  # (B, N) each
        x0 = cross = bridge = cross_in
        for layer in range(len(self.cross)):
            if layer > 0:
                cross, deep = self._split(layer, bridge)
            cross = self.cross[layer](x0, cross)  # (B, N)
            deep = self.deep[layer](deep)  # (B, N)
            bridge = self.bridges[layer](cross, deep)  # (B, N)
        return self.head(torch.cat([cross, deep, bridge], 1)).squeeze(1)  # (B,)
