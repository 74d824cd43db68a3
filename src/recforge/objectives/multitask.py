"""Multi-task objective: per-task losses combined by a task weighting.

Per-task losses are binary cross-entropy on logits for classification tasks and mean squared
error for regression tasks, against ``batch["label"]`` of shape ``(B, T)``. A model's auxiliary
loss (``MultiTaskOutput.aux_loss``) is added unweighted.

Weightings (``build_weighting`` parses ``adaptive_params`` dicts):

- ``FixedWeights``: ``sum_t w_t L_t``.
- ``UncertaintyWeighting`` (Kendall et al. 2018, arXiv 1705.07115): learnt log-variances
  ``s_t = log sigma_t^2``; a regression task contributes ``0.5 exp(-s_t) L_t + 0.5 s_t``, a
  classification task ``exp(-s_t) L_t + 0.5 s_t``. The ``s_t`` are trained by the model's optimizer.
- ``GradNorm`` (Chen et al. 2018, arXiv 1711.02257): weights ``w_t`` (sum T) applied to the
  task losses; each step, the gradient norm ``G_t = ||grad_W w_t L_t||`` on the model's last shared
  layer ``W`` is pulled toward ``mean(G) * r_t^alpha`` where ``r_t`` is task t's relative inverse
  training rate ``(L_t / L_t(0)) / mean``; the weights take an Adam step on
  ``sum_t |G_t - target_t|`` and are renormalised to sum T.
- ``MetaBalance`` (He et al. 2022, arXiv 2203.06801): on every parameter shared by several tasks,
  each auxiliary task's gradient is rescaled toward the target task's gradient magnitude
  (moving averages of norms, relaxation factor ``r``): ``g_aux <- r g_aux m_tar/m_aux + (1-r) g_aux``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recforge.choices import Choice
from recforge.data.dataset import LABEL
from recforge.outputs import ESMMOutput, MultiTaskOutput, TaskType, task_logits


class WeightingMethod(Choice):
    FIXED = "fixed"
    UWL = "uwl"
    GRADNORM = "gradnorm"
    METABALANCE = "metabalance"


class TaskWeighting(nn.Module):
    """Combines per-task losses ``(T,)`` into the loss to minimise and runs its backward pass.

    ``backward`` is the training loop's gradient hook: the default is ``loss.backward()``;
    gradient-based weightings measure per-task gradients on ``shared`` parameters first.
    """

    def combine(self, task_losses: Tensor) -> Tensor:
        raise NotImplementedError

    def loss_parameters(self) -> list[nn.Parameter]:
        """Parameters trained by the model's optimizer through the combined loss."""
        return []

    def backward(self, loss: Tensor, task_losses: Tensor, shared: Sequence[Tensor]) -> None:
        del task_losses, shared
        loss.backward()


class FixedWeights(TaskWeighting):
    weights: Tensor

    def __init__(self, weights: Sequence[float]) -> None:
        super().__init__()
        w = torch.as_tensor([float(x) for x in weights])
        if w.numel() == 0 or bool((w < 0).any()):
            raise ValueError(
                f"task weights must be a non-empty list of non-negative numbers, got {weights!r}"
            )
        self.register_buffer("weights", w)

    def combine(self, task_losses: Tensor) -> Tensor:
        return (self.weights.to(task_losses.dtype) * task_losses).sum()


class UncertaintyWeighting(TaskWeighting):
    scale: Tensor

    def __init__(self, task_types: Sequence[TaskType]) -> None:
        super().__init__()
        self.log_vars = nn.Parameter(torch.zeros(len(task_types)))
        scale = [1.0 if t is TaskType.CLASSIFICATION else 0.5 for t in task_types]
        self.register_buffer("scale", torch.tensor(scale))

    def combine(self, task_losses: Tensor) -> Tensor:
        s = self.log_vars.to(task_losses.dtype)
        return (self.scale * torch.exp(-s) * task_losses + 0.5 * s).sum()

    def loss_parameters(self) -> list[nn.Parameter]:
        return [self.log_vars]


def _task_grads(task_losses: Tensor, params: Sequence[Tensor]) -> list[list[Tensor | None]]:
    """Per task, the gradient of ``L_t`` on each of ``params`` (None where L_t does not reach it)."""
    return [
        list(torch.autograd.grad(task_losses[t], list(params), retain_graph=True, allow_unused=True))
        for t in range(task_losses.shape[0])
    ]


class GradNorm(TaskWeighting):
    initial_losses: Tensor
    started: Tensor

    def __init__(self, n_task: int, *, alpha: float = 1.5, lr: float = 0.025) -> None:
        super().__init__()
        if alpha < 0 or lr <= 0:
            raise ValueError(f"GradNorm needs alpha >= 0 and lr > 0, got alpha={alpha}, lr={lr}")
        self.alpha = float(alpha)
        self.n_task = n_task
        self.weights = nn.Parameter(torch.ones(n_task))
        self.register_buffer("initial_losses", torch.zeros(n_task))
        self.register_buffer("started", torch.tensor(False))
        self.optimizer = torch.optim.Adam([self.weights], lr=lr)

    def get_extra_state(self) -> dict[str, object]:
        return {"optimizer": self.optimizer.state_dict()}

    def set_extra_state(self, state: dict[str, object]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])  # type: ignore[arg-type]

    def combine(self, task_losses: Tensor) -> Tensor:
        # The weights move only through the GradNorm loss, never through the task loss.
        return (self.weights.detach().to(task_losses.dtype) * task_losses).sum()

    def backward(self, loss: Tensor, task_losses: Tensor, shared: Sequence[Tensor]) -> None:
        if not shared:
            raise ValueError("GradNorm needs the model's last shared parameters; got none")
        grads = _task_grads(task_losses, shared)
        norms = []
        for t, gs in enumerate(grads):
            present = [g.reshape(-1) for g in gs if g is not None]
            if not present:
                raise ValueError(f"GradNorm: task {t}'s loss does not reach the shared layer")
            norms.append(torch.linalg.vector_norm(torch.cat(present).float()))
        g = torch.stack(norms).detach()  # (T,)
        losses = task_losses.detach().float()
        if not bool(self.started):
            self.initial_losses.copy_(losses.clamp_min(1e-12))
            self.started.fill_(True)
        ratio = losses / self.initial_losses
        r = ratio / ratio.mean()
        G = self.weights * g
        target = (G.mean() * r.pow(self.alpha)).detach()
        grad_loss = (G - target).abs().sum()
        weight_grad = torch.autograd.grad(grad_loss, self.weights)[0]
        loss.backward()  # before the weights change in place: the loss graph holds them
        self.optimizer.zero_grad(set_to_none=True)
        self.weights.grad = weight_grad
        self.optimizer.step()
        with torch.no_grad():
            w = self.weights.clamp_min(1e-4)
            self.weights.copy_(w * self.n_task / w.sum())


class BalanceStrategy(Choice):
    """Which auxiliary gradients MetaBalance rescales: larger ones only, smaller ones only, or all."""

    REDUCE = "reduce"
    ENLARGE = "enlarge"
    BOTH = "both"


class MetaBalance(TaskWeighting):
    def __init__(
        self,
        n_task: int,
        *,
        target_task: int = 0,
        relax_factor: float = 0.7,
        beta: float = 0.9,
        strategy: BalanceStrategy | str = BalanceStrategy.BOTH,
    ) -> None:
        super().__init__()
        if not 0 <= target_task < n_task:
            raise ValueError(f"MetaBalance: target_task must lie in [0, {n_task}), got {target_task}")
        if not 0.0 <= relax_factor <= 1.0 or not 0.0 <= beta < 1.0:
            raise ValueError(
                f"MetaBalance needs relax_factor in [0, 1], beta in [0, 1); got {relax_factor}, {beta}"
            )
        self.n_task = n_task
        self.target_task = target_task
        self.relax_factor = float(relax_factor)
        self.beta = float(beta)
        self.strategy = BalanceStrategy.parse(strategy)
        self._norms: dict[int, Tensor] = {}  # parameter position -> (T,) moving average of norms

    def get_extra_state(self) -> dict[str, object]:
        return {"norms": {i: m.cpu() for i, m in self._norms.items()}}

    def set_extra_state(self, state: dict[str, object]) -> None:
        self._norms = dict(state["norms"])  # type: ignore[call-overload]

    def combine(self, task_losses: Tensor) -> Tensor:
        return task_losses.sum()

    def balance(self, index: int, grads: list[Tensor | None]) -> Tensor:
        """The shared parameter ``index``'s combined gradient from its per-task gradients."""
        zero = next(g for g in grads if g is not None)
        norms = torch.stack(
            [torch.linalg.vector_norm(g) if g is not None else zero.new_zeros(()) for g in grads]
        ).detach()  # (T,)
        prev = self._norms.get(index)
        m = norms if prev is None else self.beta * prev + (1 - self.beta) * norms
        self._norms[index] = m
        total = torch.zeros_like(zero)
        tar = self.target_task
        for t, g in enumerate(grads):
            if g is None:
                continue
            if t == tar or grads[tar] is None or float(m[t]) == 0.0:
                total = total + g
                continue
            larger = bool(m[t] > m[tar])
            if (
                self.strategy is BalanceStrategy.BOTH
                or (self.strategy is BalanceStrategy.REDUCE and larger)
                or (self.strategy is BalanceStrategy.ENLARGE and not larger)
            ):
                r = self.relax_factor
                g = g * (m[tar] / m[t]) * r + g * (1 - r)
            total = total + g
        return total

    def backward(self, loss: Tensor, task_losses: Tensor, shared: Sequence[Tensor]) -> None:
        params = [p for p in shared if p.requires_grad]
        grads = _task_grads(task_losses, params)
        loss.backward()
        with torch.no_grad():
            for i, p in enumerate(params):
                per_task = [grads[t][i] for t in range(self.n_task)]
                if sum(g is not None for g in per_task) < 2 or p.grad is None or p.grad.is_sparse:
                    continue  # not shared: its gradient is already the plain one
                plain = torch.stack([g for g in per_task if g is not None]).sum(0)
                p.grad.add_(self.balance(i, per_task) - plain)


def build_weighting(
    task_types: Sequence[TaskType],
    adaptive_params: Mapping[str, object] | None,
    task_weights: Sequence[float] | None = None,
) -> TaskWeighting:
    """Parse Torch-RecHub-style ``adaptive_params`` (``{"method": "uwl" | "gradnorm" |
    "metabalance", ...}``); ``None`` means fixed weights (``task_weights`` or all ones)."""
    n = len(task_types)
    if adaptive_params is None:
        weights = list(task_weights) if task_weights is not None else [1.0] * n
        if len(weights) != n:
            raise ValueError(f"task_weights has {len(weights)} entries for {n} tasks")
        return FixedWeights(weights)
    params = dict(adaptive_params)
    if "method" not in params:
        raise KeyError(f"adaptive_params needs a 'method' key; got {sorted(params)}")
    method = WeightingMethod.parse(str(params.pop("method")))
    allowed: dict[WeightingMethod, set[str]] = {
        WeightingMethod.FIXED: {"weights"},
        WeightingMethod.UWL: set(),
        WeightingMethod.GRADNORM: {"alpha", "lr"},
        WeightingMethod.METABALANCE: {"target_task", "relax_factor", "beta", "strategy"},
    }
    unknown = set(params) - allowed[method]
    if unknown:
        raise ValueError(
            f"unknown adaptive_params {sorted(unknown)} for method {method.value!r}; "
            f"valid: {sorted(allowed[method])}"
        )
    if method is WeightingMethod.FIXED:
        return FixedWeights(params.get("weights", [1.0] * n))  # type: ignore[arg-type]
    if method is WeightingMethod.UWL:
        return UncertaintyWeighting(task_types)
    if method is WeightingMethod.GRADNORM:
        return GradNorm(n, **params)  # type: ignore[arg-type]
    return MetaBalance(n, **params)  # type: ignore[arg-type]


class MultiTaskObjective:
    """``objective(outputs, batch) -> loss``: per-task losses, weighted, plus the model's aux loss."""

    def __init__(
        self,
        task_types: Sequence[TaskType | str],
        weighting: TaskWeighting,
        label: str = LABEL,
        label_columns: Sequence[int] | None = None,
    ) -> None:
        self.task_types = TaskType.parse_all(task_types)
        self.weighting = weighting
        self.label = label
        # the label columns of the model's tasks, when the labels hold more columns than it has
        # tasks (Torch-RecHub's ESMM labels: cvr, ctr, ctcvr; ESMM trains ctr and ctcvr)
        self.label_columns = list(label_columns) if label_columns is not None else None
        self._classification = [t is TaskType.CLASSIFICATION for t in self.task_types]

    def labels(self, batch: Mapping[str, Tensor], like: Tensor) -> Tensor:
        """Targets ``(B, T)`` from ``batch[label]``."""
        try:
            y = batch[self.label]
        except KeyError:
            raise KeyError(f"batch has no target column {self.label!r}; it has {sorted(batch)}") from None
        if y.dim() == 1 and like.shape[1] == 1:
            y = y.unsqueeze(1)  # (B, 1)
        if self.label_columns is not None and y.dim() == 2:
            y = y[:, self.label_columns]  # (B, T)
        if tuple(y.shape) != tuple(like.shape):
            raise ValueError(
                f"labels {self.label!r} have shape {tuple(y.shape)}; the model's {like.shape[1]} tasks need "
                f"{tuple(like.shape)} (one column per task)"
            )
        return y.to(like.dtype)

    def task_losses(
        self, outputs: Tensor | MultiTaskOutput | ESMMOutput, batch: Mapping[str, Tensor]
    ) -> Tensor:
        """Per-task mean losses ``(T,)``."""
        logits = task_logits(outputs).float()  # (B, T)
        if logits.dim() != 2 or logits.shape[1] != len(self.task_types):
            raise ValueError(
                f"multi-task outputs must be (B, T={len(self.task_types)}) logits, got {tuple(logits.shape)}"
            )
        y = self.labels(batch, logits)
        losses = [
            F.binary_cross_entropy_with_logits(logits[:, t], y[:, t])
            if cls
            else F.mse_loss(logits[:, t], y[:, t])
            for t, cls in enumerate(self._classification)
        ]
        return torch.stack(losses)  # (T,)

    def __call__(self, outputs: Tensor | MultiTaskOutput | ESMMOutput, batch: Mapping[str, Tensor]) -> Tensor:
        loss = self.weighting.combine(self.task_losses(outputs, batch))
        if isinstance(outputs, MultiTaskOutput):
            loss = loss + outputs.aux_loss
        return loss
