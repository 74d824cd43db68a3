"""FinalMLP (Mao et al. 2023, arXiv 2304.00902).

Two MLP streams over the same flat input, each behind its own feature-selection gate
(``x ⊙ 2σ(MLP(context))``), fused into one logit by multi-head bilinear fusion
``b + w_1^T o_1 + w_2^T o_2 + Σ_h o_{1,h}^T W_h o_{2,h}``.

Deviations: a stream's gate context is the flattened embeddings of the features named in
``fs1_context``/``fs2_context``, or a learned vector when none are named (the paper's default).
Features may have different embedding widths.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from recforge.features import Feature, dedup
from recforge.layers import MLP, BilinearFusion, EmbeddingLayer, FeatureGating, MLPConfig, output_dim


class FinalMLP(nn.Module):
    """FinalMLP. ``forward(batch) -> logits (B,)``.

    Args:
        features: every input feature.
        mlp1_params, mlp2_params: the two streams (``output_layer`` is forced off).
        use_fs: stream-specific feature gating.
        fs_hidden_dim: hidden width of the gate MLPs.
        fs1_context, fs2_context: names of features whose embeddings condition each gate.
        num_heads: heads of the bilinear fusion (must divide both streams' output widths).
        sparse, fused: passed to ``EmbeddingLayer``.
    """

    def __init__(
        self,
        features: Sequence[Feature],
        *,
        mlp1_params: MLPConfig | Mapping[str, object] | None = None,
        mlp2_params: MLPConfig | Mapping[str, object] | None = None,
        use_fs: bool = True,
        fs_hidden_dim: int = 64,
        fs1_context: Sequence[str] = (),
        fs2_context: Sequence[str] = (),
        num_heads: int = 1,
        sparse: bool = False,
        fused: bool = True,
    ) -> None:
        super().__init__()
        self.features = dedup(features)
        by_name = {f.name: f for f in self.features}
        for arg, names in (("fs1_context", fs1_context), ("fs2_context", fs2_context)):
            unknown = [n for n in names if n not in by_name]
            if unknown:
                raise KeyError(f"FinalMLP: {arg} names unknown features {unknown}; known: {sorted(by_name)}")
        self.context1 = [by_name[n] for n in fs1_context]
        self.context2 = [by_name[n] for n in fs2_context]
        self.embedding = EmbeddingLayer(self.features, sparse=sparse, fused=fused)
        n = output_dim(self.features)
        self.gate1 = self.gate2 = None
        if use_fs:
            self.gate1 = FeatureGating(
                n, fs_hidden_dim, context_dim=output_dim(self.context1) if self.context1 else None
            )
            self.gate2 = FeatureGating(
                n, fs_hidden_dim, context_dim=output_dim(self.context2) if self.context2 else None
            )
        self.mlp1 = MLP(n, MLPConfig.parse(mlp1_params), output_layer=False)
        self.mlp2 = MLP(n, MLPConfig.parse(mlp2_params), output_layer=False)
        self.fusion = BilinearFusion(self.mlp1.output_dim, self.mlp2.output_dim, num_heads)

    def _gated(
        self, gate: FeatureGating | None, context: list[Feature], x: Tensor, batch: Mapping[str, Tensor]
    ) -> Tensor:
        if gate is None:
            return x
        c = self.embedding.flatten(batch, context) if context else None  # (B, C)
        return gate(x, c)  # (B, N)

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """``batch`` columns -> logits ``(B,)``."""
        x = self.embedding.flatten(batch, self.features)  # (B, N)
        o1 = self.mlp1(self._gated(self.gate1, self.context1, x, batch))  # (B, H1)
        o2 = self.mlp2(self._gated(self.gate2, self.context2, x, batch))  # (B, H2)
        return self.fusion(o1, o2).squeeze(1)  # (B,)
