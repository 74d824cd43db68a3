"""FAT-DeepFFM (Zhang et al. 2019, arXiv 1905.06336).

DeepFFM whose field-aware cross vectors are reweighted by a Compose-Excitation network (CENet)
before the MLP: each cross vector is composed to a scalar by a learned per-pair weighting of its D
values, an ``P -> P/r -> P`` excitation gives one weight per pair.

Deviations: as ``DeepFFM``; CENet is ``recforge.layers.SENET`` with ``compose_dim`` (its compose
step is a learned weighted sum rather than the paper's 1-D convolution of kernel D, which is the
same linear map per vector).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from recforge.features import Feature
from recforge.layers import MLPConfig
from recforge.models._rechub import rechub_order
from recforge.models.ranking.deepffm import DeepFFM


@rechub_order("embed_dim", "reduction_ratio", "mlp_params")
class FatDeepFFM(DeepFFM):
    """FAT-DeepFFM. ``forward(batch) -> logits (B,)``; arguments as ``DeepFFM`` plus
    ``reduction_ratio`` of the CENet."""

    def __init__(
        self,
        linear_features: Sequence[Feature],
        cross_features: Sequence[Feature],
        *,
        embed_dim: int | None = None,
        reduction_ratio: float = 1,
        mlp_params: MLPConfig | Mapping[str, object] | None = None,
        sparse: bool = False,
        fused: bool = True,
    ) -> None:
        super().__init__(
            linear_features,
            cross_features,
            embed_dim=embed_dim,
            mlp_params=mlp_params,
            reduction_ratio=reduction_ratio,
            sparse=sparse,
            fused=fused,
        )
