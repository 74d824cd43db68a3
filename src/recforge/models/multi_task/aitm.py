"""AITM: Adaptive Information Transfer Multi-task (Xi et al. 2021, KDD, arXiv 2105.08489).

For a conversion funnel of T steps (impression -> click -> ... -> purchase): each task has its
own bottom MLP over the shared embeddings (``q_t``); from the second task on, the previous
task's representation is transferred (``p_{t-1} = h(z_{t-1})``) and fused with ``q_t`` by the
AIT attention (``z_t``); each ``z_t`` feeds its tower. The behavioural expectation calibrator
penalises a later step predicted likelier than an earlier one; it is returned, weighted by
``calibrator_alpha``, as ``MultiTaskOutput.aux_loss``.

Deviation: none in structure; the transfer ``h`` is one Linear+ReLU as in the authors' setup.
All tasks are classification (the funnel steps are binary events).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from recforge.features import Feature, dedup
from recforge.layers import (
    MLP,
    EmbeddingLayer,
    InformationTransfer,
    MLPConfig,
    behavioral_calibration,
    output_dim,
)
from recforge.models._rechub import rechub_order
from recforge.models.multi_task._common import TowerParams, build_towers
from recforge.outputs import MultiTaskOutput, TaskType


@rechub_order("n_task", "bottom_params", "tower_params_list")
class AITM(nn.Module):
    """AITM. ``forward(batch) -> MultiTaskOutput(logits (B, T), aux_loss)``, tasks in funnel order.

    Args:
        features: inputs shared by every task.
        n_task: funnel steps T (>= 2).
        bottom_params: MLP settings of each task's bottom (no output layer); its last width is D.
        tower_params_list: one MLP setting per task tower.
        calibrator_alpha: weight of the behavioural expectation calibrator (0 disables it).
    """

    def __init__(
        self,
        features: Sequence[Feature],
        *,
        n_task: int,
        bottom_params: MLPConfig | Mapping[str, object] | None = None,
        tower_params_list: TowerParams = None,
        calibrator_alpha: float = 0.6,
        sparse: bool = False,
        fused: bool = True,
    ) -> None:
        super().__init__()
        if n_task < 2:
            raise ValueError(f"AITM: n_task must be >= 2 (a funnel), got {n_task}")
        if calibrator_alpha < 0:
            raise ValueError(f"AITM: calibrator_alpha must be >= 0, got {calibrator_alpha}")
        self.features = dedup(features)
        self.task_types = (TaskType.CLASSIFICATION,) * n_task
        self.calibrator_alpha = float(calibrator_alpha)
        self.embedding = EmbeddingLayer(self.features, sparse=sparse, fused=fused)
        cfg = MLPConfig.parse(bottom_params)
        dim = cfg.dims[-1]
        self.bottoms = nn.ModuleList(
            MLP(output_dim(self.features), cfg, output_layer=False) for _ in range(n_task)
        )
        self.transfers = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, dim), nn.ReLU()) for _ in range(n_task - 1)
        )
        self.attentions = nn.ModuleList(InformationTransfer(dim) for _ in range(n_task - 1))
        self.towers = build_towers("AITM", dim, n_task, tower_params_list)

    def forward(self, batch: Mapping[str, Tensor]) -> MultiTaskOutput:
        """``batch`` columns -> ``MultiTaskOutput(logits (B, T), aux_loss scalar)``."""
        x = self.embedding.flatten(batch, self.features)  # (B, Σd)
        z = self.bottoms[0](x)  # (B, D)
        logits = [self.towers[0](z)]
        for t in range(1, len(self.towers)):
            z = self.attentions[t - 1](self.transfers[t - 1](z), self.bottoms[t](x))  # (B, D)
            logits.append(self.towers[t](z))
        out = torch.cat(logits, 1)  # (B, T)
        aux = (
            self.calibrator_alpha * behavioral_calibration(out)
            if self.calibrator_alpha
            else out.new_zeros(())
        )
        return MultiTaskOutput(out, aux)

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The tasks share the embedding tables (the transfer links are task-to-task)."""
        return list(self.embedding.parameters())
