"""PLE: Progressive Layered Extraction (Tang et al. 2020, RecSys, doi 10.1145/3383313.3412236).

``n_level`` customized-gate-control (CGC) levels, each with ``n_expert_specific`` experts per
task and ``n_expert_shared`` shared experts; every level but the last also routes a shared
gate's mixture of all its experts to the next level's shared experts. Towers sit on the last
level's per-task outputs. No deviation from the paper. With one level and no shared experts the
tasks share only the embeddings (each task is its own experts + tower).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from recforge.features import Feature, dedup
from recforge.layers import EmbeddingLayer, Experts, ExtractionLayer, MLPConfig, output_dim
from recforge.models._rechub import rechub_order
from recforge.models.multi_task._common import TowerParams, apply_towers, build_towers, parse_task_types
from recforge.outputs import TaskType


@rechub_order(
    "task_types", "n_level", "n_expert_specific", "n_expert_shared", "expert_params", "tower_params_list"
)
class PLE(nn.Module):
    """PLE. ``forward(batch) -> (B, T)`` logits in ``task_types`` order.

    Args:
        features: inputs shared by every task.
        task_types: ``"classification"`` or ``"regression"`` per task.
        n_level: number of CGC levels.
        n_expert_specific: experts per task and level.
        n_expert_shared: shared experts per level.
        expert_params: MLP settings of every expert (no output layer).
        tower_params_list: one MLP setting per task tower.
    """

    def __init__(
        self,
        features: Sequence[Feature],
        *,
        task_types: Sequence[TaskType | str],
        n_level: int = 1,
        n_expert_specific: int = 2,
        n_expert_shared: int = 1,
        expert_params: MLPConfig | Mapping[str, object] | None = None,
        tower_params_list: TowerParams = None,
        sparse: bool = False,
        fused: bool = True,
    ) -> None:
        super().__init__()
        if n_level < 1:
            raise ValueError(f"PLE: n_level must be >= 1, got {n_level}")
        self.features = dedup(features)
        self.task_types = parse_task_types("PLE", task_types)
        self.embedding = EmbeddingLayer(self.features, sparse=sparse, fused=fused)
        cfg = MLPConfig.parse(expert_params)
        n_task = len(self.task_types)
        width = output_dim(self.features)
        levels = []
        for level in range(n_level):
            levels.append(
                ExtractionLayer(
                    width,
                    n_task,
                    n_expert_specific,
                    n_expert_shared,
                    cfg,
                    shared_output=level < n_level - 1,
                )
            )
            width = cfg.dims[-1]
        self.levels = nn.ModuleList(levels)
        self.towers = build_towers("PLE", width, n_task, tower_params_list)

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """``batch`` columns -> logits ``(B, T)``."""
        shared = self.embedding.flatten(batch, self.features)  # (B, Σd)
        tasks = shared.unsqueeze(1).expand(-1, len(self.task_types), -1)  # (B, T, Σd)
        for level in self.levels:
            tasks, next_shared = level(tasks, shared)  # (B, T, D), (B, D) | None
            shared = next_shared if next_shared is not None else shared
        return apply_towers(self.towers, tasks)  # (B, T)

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The last level with shared experts: their last linear layers; with no shared experts at
        all, the embedding tables (the only parameters the tasks share)."""
        for level in reversed(self.levels):
            if isinstance(level.shared, Experts):
                return level.shared.last_layer_parameters()
        return list(self.embedding.parameters())
