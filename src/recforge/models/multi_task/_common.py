"""Pieces every multi-task model shares: task types and per-task towers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from recforge.layers import MLP, MLPConfig
from recforge.outputs import TaskType

TowerParams = Sequence[MLPConfig | Mapping[str, object]] | None
DEFAULT_TOWER = MLPConfig(dims=(32,))


def build_towers(model: str, input_dim: int, n_task: int, tower_params_list: TowerParams) -> nn.ModuleList:
    """One MLP tower (with its ``Linear(., 1)`` head) per task; ``None`` gives a default per task."""
    params = list(tower_params_list) if tower_params_list is not None else [DEFAULT_TOWER] * n_task
    if len(params) != n_task:
        raise ValueError(f"{model}: tower_params_list has {len(params)} entries for {n_task} tasks")
    return nn.ModuleList(MLP(input_dim, p, output_layer=True) for p in params)


def apply_towers(towers: nn.ModuleList, per_task: Tensor) -> Tensor:
    """Tower t applied to ``per_task[:, t]``: ``(B, T, D) -> (B, T)`` logits."""
    return torch.cat([tower(per_task[:, t]) for t, tower in enumerate(towers)], 1)  # (B, T)


def parse_task_types(model: str, task_types: Sequence[TaskType | str]) -> tuple[TaskType, ...]:
    try:
        return TaskType.parse_all(task_types)
    except ValueError as e:
        raise ValueError(f"{model}: {e}") from None


def last_linear(module: nn.Module) -> list[nn.Parameter]:
    """Parameters of the last ``nn.Linear`` inside ``module``."""
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(module).__name__} has no linear layer")
    return list(linears[-1].parameters())
