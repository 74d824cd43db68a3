"""Optimizers that route sparse-gradient embeddings and dense parameters to the right algorithm."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from recforge.optim.sparse import sparse_optimizer


def coalesce_rows(grad: Tensor) -> tuple[Tensor, Tensor]:
    """A sparse row gradient ``(V, D)`` as ``(rows (U,), values (U, D))`` with each row once.

    Equals ``grad.coalesce()`` (rows sorted, duplicates summed), via ``unique`` + ``index_add_``,
    which is several times faster on CPU than the generic COO coalesce.
    """
    if grad.is_coalesced():
        return grad._indices()[0], grad._values()
    rows, inverse = torch.unique(grad._indices()[0], return_inverse=True)
    values = grad._values()
    summed = values.new_zeros((rows.numel(), *values.shape[1:])).index_add_(0, inverse, values)
    return rows, summed


class RowSparseAdam(torch.optim.Optimizer):
    """Lazy Adam for sparse row gradients: ``torch.optim.SparseAdam``'s update, computed on rows.

    Only the rows present in a step's gradient move, and only their moments are updated; the bias
    correction uses the parameter's step count, exactly as ``SparseAdam``. The difference is the
    implementation: the gradient is coalesced with ``unique`` + ``index_add_`` and the moments are
    read and written with ``index_select``/``index_copy_``, where ``SparseAdam`` goes through
    generic sparse-tensor arithmetic that touches the whole table. ``tests/test_fast_paths.py``
    checks it against ``SparseAdam``.
    """

    def __init__(
        self,
        params: list[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if lr <= 0 or eps <= 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"RowSparseAdam: invalid lr={lr}, betas={betas} or eps={eps}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if not p.grad.is_sparse or p.grad.sparse_dim() != 1:
                    raise TypeError(
                        "RowSparseAdam needs sparse row gradients (embeddings built with sparse=True); "
                        "use torch.optim.Adam for dense parameters"
                    )
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                rows, g = coalesce_rows(p.grad)
                m = state["exp_avg"].index_select(0, rows).lerp_(g, 1 - beta1)  # (U, D)
                v = state["exp_avg_sq"].index_select(0, rows).mul_(beta2).addcmul_(g, g, value=1 - beta2)
                state["exp_avg"].index_copy_(0, rows, m)
                state["exp_avg_sq"].index_copy_(0, rows, v)
                step = state["step"]
                step_size = group["lr"] * math.sqrt(1 - beta2**step) / (1 - beta1**step)
                p.index_add_(0, rows, m.div_(v.sqrt_().add_(group["eps"])), alpha=-step_size)
        return loss


def sparse_parameters(model: nn.Module) -> list[Tensor]:
    """Weights of embeddings built with ``sparse=True`` (their gradients are sparse tensors)."""
    out: list[Tensor] = []
    seen: set[int] = set()
    for m in model.modules():
        if isinstance(m, nn.Embedding | nn.EmbeddingBag) and m.sparse and id(m.weight) not in seen:
            out.append(m.weight)
            seen.add(id(m.weight))
    return out


class SparseAwareOptimizer:
    """One optimizer for dense parameters plus, when the model has sparse embeddings, one for those.

    Behaves like a single ``torch.optim.Optimizer`` for the training loop (``zero_grad``, ``step``,
    ``state_dict``); ``optimizers`` lists the parts so a scheduler can be attached to each.
    """

    def __init__(
        self,
        dense: torch.optim.Optimizer | None,
        sparse: torch.optim.Optimizer | None,
        dense_params: list[Tensor],
    ) -> None:
        self.optimizers = [o for o in (dense, sparse) if o is not None]
        self.dense_params = dense_params

    def zero_grad(self) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=True)

    def step(self) -> None:
        for o in self.optimizers:
            o.step()

    @property
    def lr(self) -> float:
        return float(self.optimizers[0].param_groups[0]["lr"])

    def state_dict(self) -> list[dict[str, Any]]:
        return [o.state_dict() for o in self.optimizers]

    def load_state_dict(self, states: list[dict[str, Any]]) -> None:
        if len(states) != len(self.optimizers):
            raise ValueError(
                f"checkpoint has {len(states)} optimizer states, this model needs {len(self.optimizers)}"
            )
        for o, s in zip(self.optimizers, states):
            o.load_state_dict(s)

    def __iter__(self) -> Iterator[torch.optim.Optimizer]:
        return iter(self.optimizers)


def build_optimizer(
    model: nn.Module,
    optimizer_fn: Callable[..., torch.optim.Optimizer],
    params: dict[str, Any],
    sparse_optimizer_fn: Callable[..., torch.optim.Optimizer] | str | None = None,
) -> SparseAwareOptimizer:
    """Dense parameters get ``optimizer_fn(**params)``; sparse embeddings get ``sparse_optimizer_fn``
    (by default ``RowSparseAdam``, SparseAdam's update, with the same ``lr``, betas and eps).
    ``sparse_optimizer_fn`` may be a class/factory or a name from ``recforge.optim.SparseOptimizer``
    (``"rowwise_adagrad"``, ``"lazy_adam"``, ``"sparse_adam"``)."""
    if isinstance(sparse_optimizer_fn, str):
        sparse_optimizer_fn = sparse_optimizer(sparse_optimizer_fn)
    sparse = sparse_parameters(model)
    sparse_ids = {id(p) for p in sparse}
    dense = [p for p in model.parameters() if p.requires_grad and id(p) not in sparse_ids]
    dense_opt = optimizer_fn(dense, **params) if dense else None
    sparse_opt: torch.optim.Optimizer | None = None
    if sparse:
        if sparse_optimizer_fn is None:
            kw = {k: params[k] for k in ("lr", "betas", "eps") if k in params}
            sparse_opt = RowSparseAdam(sparse, **kw)
        else:
            sparse_opt = sparse_optimizer_fn(sparse, **{k: params[k] for k in ("lr",) if k in params})
    if dense_opt is None and sparse_opt is None:
        raise ValueError("the model has no trainable parameters")
    return SparseAwareOptimizer(dense_opt, sparse_opt, dense)
