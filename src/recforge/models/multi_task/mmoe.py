"""MMoE: Multi-gate Mixture-of-Experts (Ma et al. 2018, KDD, doi 10.1145/3219819.3220007).

Shared experts over the shared embeddings; each task mixes them with its own softmax gate and
feeds the mixture to its tower. No deviation from the paper.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from recforge.features import Feature, dedup
from recforge.layers import EmbeddingLayer, MixtureOfExperts, MLPConfig, output_dim
from recforge.models._rechub import rechub_order
from recforge.models.multi_task._common import TowerParams, apply_towers, build_towers, parse_task_types
from recforge.outputs import TaskType


@rechub_order("task_types", "n_expert", "expert_params", "tower_params_list")
class MMOE(nn.Module):
    """MMoE. ``forward(batch) -> (B, T)`` logits in ``task_types`` order.

    Args:
        features: inputs shared by every task.
        task_types: ``"classification"`` or ``"regression"`` per task.
        n_expert: number of shared experts.
        expert_params: MLP settings of every expert (no output layer).
        tower_params_list: one MLP setting per task tower.
    """

    def __init__(
        self,
        features: Sequence[Feature],
        *,
        task_types: Sequence[TaskType | str],
        n_expert: int = 4,
        expert_params: MLPConfig | Mapping[str, object] | None = None,
        tower_params_list: TowerParams = None,
        sparse: bool = False,
        fused: bool = True,
    ) -> None:
        super().__init__()
        self.features = dedup(features)
        self.task_types = parse_task_types("MMOE", task_types)
        self.embedding = EmbeddingLayer(self.features, sparse=sparse, fused=fused)
        n_task = len(self.task_types)
        self.moe = MixtureOfExperts(
            output_dim(self.features), n_task, n_expert, MLPConfig.parse(expert_params)
        )
        self.towers = build_towers("MMOE", self.moe.output_dim, n_task, tower_params_list)

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """``batch`` columns -> logits ``(B, T)``."""
        x = self.embedding.flatten(batch, self.features)  # (B, Σd)
        return apply_towers(self.towers, self.moe(x))  # (B, T)

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """Every expert's last linear layer."""
        return self.moe.experts.last_layer_parameters()
