"""Experts, gates and task-to-task transfer: the building blocks of multi-task models.

- ``Experts``: E parallel MLPs over one input, ``(B, I) -> (B, E, D)``.
- ``Gate``: a softmax over experts computed from an input, ``(B, I) -> (B, E)``; ``mix`` applies it.
- ``MixtureOfExperts``: MMoE's shared experts with one gate per task (Ma et al. 2018, KDD).
- ``ExtractionLayer``: PLE's customized gate control (CGC) level with task-specific and shared
  experts (Tang et al. 2020, RecSys); stacking levels gives PLE's progressive layered extraction.
- ``InformationTransfer`` and ``behavioral_calibration``: AITM's adaptive information transfer
  attention and its behavioural expectation calibrator (Xi et al. 2021, arXiv 2105.08489).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor, nn

from recforge.layers.mlp import MLP, MLPConfig


def mix(weights: Tensor, experts: Tensor) -> Tensor:
    """Gate-weighted sum of expert outputs: ``(B, E)`` and ``(B, E, D)`` -> ``(B, D)``."""
    return torch.bmm(weights.unsqueeze(1), experts).squeeze(1)  # (B, D)


class Experts(nn.Module):
    """``n_expert`` MLPs (no output layer) applied to the same input.

    Shapes: ``(B, input_dim) -> (B, E, D)`` with ``D = config.dims[-1]``.
    """

    def __init__(self, input_dim: int, n_expert: int, config: MLPConfig | Mapping[str, object]) -> None:
        super().__init__()
        if n_expert < 1:
            raise ValueError(f"Experts: n_expert must be >= 1, got {n_expert}")
        cfg = MLPConfig.parse(config)
        self.experts = nn.ModuleList(MLP(input_dim, cfg, output_layer=False) for _ in range(n_expert))
        self.output_dim = cfg.dims[-1]

    def forward(self, x: Tensor) -> Tensor:
        """``(B, I) -> (B, E, D)``."""
        return torch.stack([e(x) for e in self.experts], 1)  # (B, E, D)

    def last_layer_parameters(self) -> list[nn.Parameter]:
        """Parameters of every expert's last linear layer (GradNorm's "last shared layer")."""
        out: list[nn.Parameter] = []
        for e in self.experts:
            last = [m for m in e.modules() if isinstance(m, nn.Linear)][-1]
            out.extend(last.parameters())
        return out


class Gate(nn.Module):
    """Softmax gate over ``n_expert`` experts: ``(B, I) -> (B, E)``; rows sum to 1."""

    def __init__(self, input_dim: int, n_expert: int) -> None:
        super().__init__()
        self.linear = nn.Linear(input_dim, n_expert)

    def forward(self, x: Tensor) -> Tensor:
        return torch.softmax(self.linear(x), dim=-1)  # (B, E)


class MixtureOfExperts(nn.Module):
    """MMoE: ``n_expert`` shared experts mixed by one gate per task.

    Shapes: ``(B, I) -> (B, T, D)``.
    """

    def __init__(
        self, input_dim: int, n_task: int, n_expert: int, expert_params: MLPConfig | Mapping[str, object]
    ) -> None:
        super().__init__()
        self.experts = Experts(input_dim, n_expert, expert_params)
        self.gates = nn.ModuleList(Gate(input_dim, n_expert) for _ in range(n_task))
        self.output_dim = self.experts.output_dim

    def forward(self, x: Tensor) -> Tensor:
        e = self.experts(x)  # (B, E, D)
        return torch.stack([mix(g(x), e) for g in self.gates], 1)  # (B, T, D)


class ExtractionOutput(NamedTuple):
    tasks: Tensor  # (B, T, D): one representation per task
    shared: Tensor | None  # (B, D): input of the next level's shared experts; None on the last level


class ExtractionLayer(nn.Module):
    """One CGC level of PLE: per-task experts plus shared experts, fused by per-task gates.

    Task t's gate mixes task t's ``n_expert_specific`` experts and the ``n_expert_shared`` shared
    ones. With ``shared_output`` (every level but the last) a shared gate over all experts feeds
    the next level's shared experts.

    Args:
        input_dim: width of every input.
        n_task: number of tasks T.
        n_expert_specific: experts per task (may be 0 when there are shared experts).
        n_expert_shared: shared experts (may be 0: then tasks share nothing at this level).
        expert_params: MLP settings of every expert.
        shared_output: also produce the shared representation for a next level.
    """

    def __init__(
        self,
        input_dim: int,
        n_task: int,
        n_expert_specific: int,
        n_expert_shared: int,
        expert_params: MLPConfig | Mapping[str, object],
        *,
        shared_output: bool,
    ) -> None:
        super().__init__()
        if n_expert_specific < 0 or n_expert_shared < 0 or n_expert_specific + n_expert_shared == 0:
            raise ValueError(
                "ExtractionLayer: need n_expert_specific >= 0, n_expert_shared >= 0 and at least one "
                f"expert, got {n_expert_specific} and {n_expert_shared}"
            )
        cfg = MLPConfig.parse(expert_params)
        self.n_task = n_task
        self.specific = nn.ModuleList(
            Experts(input_dim, n_expert_specific, cfg) for _ in range(n_task if n_expert_specific else 0)
        )
        self.shared = Experts(input_dim, n_expert_shared, cfg) if n_expert_shared else None
        n_gated = n_expert_specific + n_expert_shared
        self.task_gates = nn.ModuleList(Gate(input_dim, n_gated) for _ in range(n_task))
        total = n_task * n_expert_specific + n_expert_shared
        self.shared_gate = Gate(input_dim, total) if shared_output else None
        self.output_dim = cfg.dims[-1]

    def forward(self, task_inputs: Tensor, shared_input: Tensor) -> ExtractionOutput:
        """``task_inputs (B, T, I)``, ``shared_input (B, I)`` -> ``ExtractionOutput``."""
        spec = [ex(task_inputs[:, t]) for t, ex in enumerate(self.specific)]  # T x (B, Es, D)
        shared = self.shared(shared_input) if self.shared is not None else None  # (B, Eh, D)
        tasks = []
        for t, gate in enumerate(self.task_gates):
            parts = ([spec[t]] if spec else []) + ([shared] if shared is not None else [])
            experts = torch.cat(parts, 1)  # (B, Es+Eh, D)
            tasks.append(mix(gate(task_inputs[:, t]), experts))  # (B, D)
        out_shared = None
        if self.shared_gate is not None:
            every = torch.cat(spec + ([shared] if shared is not None else []), 1)  # (B, T*Es+Eh, D)
            out_shared = mix(self.shared_gate(shared_input), every)  # (B, D)
        return ExtractionOutput(torch.stack(tasks, 1), out_shared)  # (B, T, D)


class InformationTransfer(nn.Module):
    """AITM's adaptive information transfer (AIT) attention.

    Attends over the two candidates ``{p, q}``: ``p`` is the information transferred from the
    previous task and ``q`` the current task's own representation. Weights are the softmax of
    ``<h2(u), h3(u)> / sqrt(D)`` and the output is ``sum_u w_u h1(u)``.

    Shapes: ``(B, D), (B, D) -> (B, D)``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.value = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.query = nn.Linear(dim, dim)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, transferred: Tensor, current: Tensor) -> Tensor:
        u = torch.stack([transferred, current], 1)  # (B, 2, D)
        scores = (self.key(u) * self.query(u)).sum(-1) * self.scale  # (B, 2)
        w = torch.softmax(scores, dim=1).unsqueeze(-1)  # (B, 2, 1)
        return (w * self.value(u)).sum(1)  # (B, D)


def behavioral_calibration(logits: Tensor) -> Tensor:
    """AITM's behavioural expectation calibrator on a conversion funnel.

    A later step of the funnel (e.g. purchase) cannot be likelier than an earlier one (click), so
    ``max(p_t - p_{t-1}, 0)`` is penalised for each consecutive pair; summed over pairs, averaged
    over the batch. ``logits (B, T)`` -> scalar.
    """
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ValueError(f"behavioral_calibration needs (B, T>=2) logits, got {tuple(logits.shape)}")
    p = torch.sigmoid(logits)  # (B, T)
    return torch.relu(p[:, 1:] - p[:, :-1]).sum(1).mean()
