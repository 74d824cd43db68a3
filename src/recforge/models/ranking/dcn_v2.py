"""DCN-V2 (Wang et al. 2021, arXiv 2008.13535).

Cross layers ``x_{l+1} = x0 ⊙ (W_l x_l + b_l) + x_l`` over the flat input, with W full-rank,
low-rank (``U V^T``) or a gated mixture of low-rank experts (DCN-Mix). The deep part sits either
next to the cross network (``parallel``: outputs concatenated) or on top of it (``stacked``);
``crossnet_only`` drops it.

Deviations: Torch-RecHub's switch ``use_low_rank_mixture`` (True: mixture, False: full rank) is kept;
``cross_type`` names the choice explicitly and adds plain low rank. Features may have different
embedding widths.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from recforge.choices import Choice
from recforge.features import Feature, dedup
from recforge.layers import MLP, CrossNetMix, CrossNetV2, EmbeddingLayer, MLPConfig, output_dim
from recforge.models._rechub import rechub_order


class ModelStructure(Choice):
    PARALLEL = "parallel"
    STACKED = "stacked"
    CROSSNET_ONLY = "crossnet_only"


class CrossType(Choice):
    FULL_RANK = "full_rank"
    LOW_RANK = "low_rank"
    MIXTURE = "mixture"


@rechub_order(
    "n_cross_layers", "mlp_params", "model_structure", "use_low_rank_mixture", "low_rank", "num_experts"
)
class DCNv2(nn.Module):
    """DCN-V2. ``forward(batch) -> logits (B,)``.

    Args:
        features: every input feature.
        n_cross_layers: depth of the cross network.
        mlp_params: the deep part (``output_layer`` is forced off).
        model_structure: ``parallel``, ``stacked`` or ``crossnet_only``.
        use_low_rank_mixture: Torch-RecHub's switch, used when ``cross_type`` is None.
        low_rank: rank r of the low-rank and mixture crosses.
        num_experts: experts of the mixture.
        cross_type: ``full_rank``, ``low_rank`` or ``mixture``.
        sparse, fused: passed to ``EmbeddingLayer``.
    """

    def __init__(
        self,
        features: Sequence[Feature],
        *,
        n_cross_layers: int = 3,
        mlp_params: MLPConfig | Mapping[str, object] | None = None,
        model_structure: ModelStructure | str = ModelStructure.PARALLEL,
        use_low_rank_mixture: bool = True,
        low_rank: int = 32,
        num_experts: int = 4,
        cross_type: CrossType | str | None = None,
        sparse: bool = False,
        fused: bool = True,
    ) -> None:
        super().__init__()
        self.structure = ModelStructure.parse(model_structure, where="DCNv2: model_structure")
        if cross_type is None:
            cross_type = CrossType.MIXTURE if use_low_rank_mixture else CrossType.FULL_RANK
        self.cross_type = CrossType.parse(cross_type, where="DCNv2: cross_type")
        self.features = dedup(features)
        self.embedding = EmbeddingLayer(self.features, sparse=sparse, fused=fused)
        n = output_dim(self.features)
        if self.cross_type is CrossType.MIXTURE:
            self.cross: nn.Module = CrossNetMix(n, n_cross_layers, low_rank=low_rank, num_experts=num_experts)
        else:
            rank = low_rank if self.cross_type is CrossType.LOW_RANK else None
            self.cross = CrossNetV2(n, n_cross_layers, low_rank=rank)
        self.mlp: MLP | None = None
        head_in = n
        if self.structure is not ModelStructure.CROSSNET_ONLY:
            self.mlp = MLP(n, MLPConfig.parse(mlp_params), output_layer=False)
            head_in = self.mlp.output_dim + (n if self.structure is ModelStructure.PARALLEL else 0)
        self.head = nn.Linear(head_in, 1)

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """``batch`` columns -> logits ``(B,)``."""
        x0 = self.embedding.flatten(batch, self.features)  # (B, N)
        cross = self.cross(x0)  # (B, N)
        if self.mlp is None:
            out = cross
        elif self.structure is ModelStructure.STACKED:
            out = self.mlp(cross)  # (B, H)
        else:
            out = torch.cat([cross, self.mlp(x0)], 1)  # (B, N + H)
        return self.head(out).squeeze(1)  # (B,)
