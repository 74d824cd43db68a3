"""Shared-Bottom multi-task network (Caruana 1997, "Multitask Learning", Machine Learning 28).

One bottom MLP over the shared embeddings feeds one tower per task. No deviation from the
classic architecture; a single task gives a plain DNN (used as the single-task baseline).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from recforge.features import Feature, dedup
from recforge.layers import MLP, EmbeddingLayer, MLPConfig, output_dim
from recforge.models._rechub import rechub_order
from recforge.models.multi_task._common import TowerParams, build_towers, last_linear, parse_task_types
from recforge.outputs import TaskType


@rechub_order("task_types", "bottom_params", "tower_params_list")
class SharedBottom(nn.Module):
    """Shared bottom + per-task towers. ``forward(batch) -> (B, T)`` logits in ``task_types`` order.

    Args:
        features: inputs shared by every task.
        task_types: ``"classification"`` (logit) or ``"regression"`` (raw value) per task.
        bottom_params: MLP settings of the shared bottom (no output layer).
        tower_params_list: one MLP setting per task tower (each ends in ``Linear(., 1)``).
    """

    def __init__(
        self,
        features: Sequence[Feature],
        *,
        task_types: Sequence[TaskType | str],
        bottom_params: MLPConfig | Mapping[str, object] | None = None,
        tower_params_list: TowerParams = None,
        sparse: bool = False,
        fused: bool = True,
    ) -> None:
        super().__init__()
        self.features = dedup(features)
        self.task_types = parse_task_types("SharedBottom", task_types)
        self.embedding = EmbeddingLayer(self.features, sparse=sparse, fused=fused)
        self.bottom = MLP(output_dim(self.features), MLPConfig.parse(bottom_params), output_layer=False)
        self.towers = build_towers(
            "SharedBottom", self.bottom.output_dim, len(self.task_types), tower_params_list
        )

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """``batch`` columns -> logits ``(B, T)``."""
        h = self.bottom(self.embedding.flatten(batch, self.features))  # (B, D)
        return torch.cat([tower(h) for tower in self.towers], 1)  # (B, T)

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The bottom's last linear layer (where GradNorm measures per-task gradient norms)."""
        return last_linear(self.bottom)
