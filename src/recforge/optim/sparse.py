"""Row-wise Adagrad and lazy Adam for embedding tables trained with sparse gradients.

A batch touches a few thousand rows of tables with millions; these optimizers read and write only
the touched rows (``index_select``/``index_put``), where a dense optimizer updates every row each
step. Both also accept dense gradients (then every row counts as touched).

* ``RowWiseAdagrad`` (the optimizer of DLRM/TorchRec's fused tables): one accumulator per *row*,
  ``G_r += mean_d(g_{r,d}²)``, ``w_r -= lr · g_r / (sqrt(G_r) + eps)``: ``1/D`` of Adagrad's state.
  With ``column_blocks=k`` each row keeps ``k`` accumulators, one per block of ``D/k`` columns: the
  rule TorchRec applies to a table sharded column-wise in ``k`` shards.
* ``LazyAdam``: Adam's moments kept per element but updated only on touched rows, bias-corrected
  with the optimizer's global step (the semantics of ``torch.optim.SparseAdam`` and TF's
  LazyAdam), plus optional decoupled weight decay applied to touched rows.

Duplicate ids in a batch are summed first (``coalesce``), as a dense gradient would sum them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from recforge.choices import Choice


def coalesce_rows(grad: Tensor) -> tuple[Tensor, Tensor]:
    """A sparse row gradient ``(V, D)`` as ``(rows (U,), values (U, D))`` with each row once.

    Equals ``grad.coalesce()`` (rows sorted, duplicates summed) via ``unique`` + ``index_add_``,
    several times faster on CPU than the generic COO coalesce.
    """
    if grad.is_coalesced():
        return grad._indices()[0], grad._values()
    rows, inverse = torch.unique(grad._indices()[0], return_inverse=True)
    values = grad._values()
    summed = values.new_zeros((rows.numel(), *values.shape[1:])).index_add_(0, inverse, values)
    return rows, summed


def _rows_and_grads(p: Tensor) -> tuple[Tensor | None, Tensor]:
    """``(row ids (n,) or None for all rows, gradient rows (n, D))``."""
    g = p.grad
    assert g is not None
    if g.is_sparse:
        if g.sparse_dim() != 1:
            raise TypeError("sparse gradients must be row-sparse (embeddings built with sparse=True)")
        return coalesce_rows(g)
    return None, g


def _check(lr: float, eps: float, weight_decay: float) -> None:
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")


class RowWiseAdagrad(torch.optim.Optimizer):
    """Adagrad with one accumulator per row of each 2-D parameter ``(V, D)``.

    Args:
        params: embedding weights.
        lr: learning rate.
        eps: added to the root of the accumulator.
        weight_decay: L2 penalty added to the touched rows' gradients.
        initial_accumulator_value: starting value of every row's accumulator.
        column_blocks: accumulators per row, each over ``D / column_blocks`` consecutive columns.
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 0.01,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        column_blocks: int = 1,
    ) -> None:
        _check(lr, eps, weight_decay)
        if column_blocks < 1:
            raise ValueError(f"column_blocks must be >= 1, got {column_blocks}")
        defaults = {
            "lr": lr,
            "eps": eps,
            "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "column_blocks": column_blocks,
        }
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ValueError(
                        f"RowWiseAdagrad needs 2-D (V, D) parameters, got shape {tuple(p.shape)}"
                    )
                if p.shape[1] % column_blocks:
                    raise ValueError(
                        f"RowWiseAdagrad: width {p.shape[1]} does not split into column_blocks={column_blocks}"
                    )
                shape = (p.shape[0],) if column_blocks == 1 else (p.shape[0], column_blocks)
                self.state[p]["sum"] = torch.full(
                    shape, float(initial_accumulator_value), dtype=torch.float32, device=p.device
                )

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            k = group.get("column_blocks", 1)
            for p in group["params"]:
                if p.grad is None:
                    continue
                acc = self.state[p]["sum"]
                rows, g = _rows_and_grads(p)
                if rows is None:
                    if wd:
                        g = g + wd * p
                    acc.add_(_mean_square(g, k))  # (V,) | (V, k)
                    p.addcdiv_(g, _per_column(acc.sqrt() + eps, k, p), value=-lr)
                    continue
                if wd:
                    g = g + wd * p.index_select(0, rows)
                acc_rows = acc.index_select(0, rows) + _mean_square(g, k)  # (n,) | (n, k)
                acc.index_copy_(0, rows, acc_rows)
                step = g / _per_column(acc_rows.sqrt() + eps, k, p)  # (n, D)
                p.index_add_(0, rows, step, alpha=-lr)
        return loss


def _mean_square(g: Tensor, blocks: int) -> Tensor:
    """Mean of ``g (n, D)`` squared per row ``(n,)``, or per row and column block ``(n, blocks)``."""
    sq = g.float().pow(2)  # (n, D)
    return sq.mean(1) if blocks == 1 else sq.view(sq.shape[0], blocks, -1).mean(2)


def _per_column(denom: Tensor, blocks: int, p: Tensor) -> Tensor:
    """A row's ``(n,)`` or blocks' ``(n, blocks)`` denominators spread over the ``D`` columns."""
    if blocks == 1:
        return denom.unsqueeze(1).to(p.dtype)  # (n, 1)
    return denom.repeat_interleave(p.shape[1] // blocks, dim=1).to(p.dtype)  # (n, D)


class LazyAdam(torch.optim.Optimizer):
    """Adam that updates moments and weights only on the rows a gradient touches.

    Args:
        params: embedding weights ``(V, D)`` (any shape for dense gradients).
        lr, betas, eps: as in ``torch.optim.Adam``.
        weight_decay: decoupled (AdamW) decay of the touched rows.
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        _check(lr, eps, weight_decay)
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                bc1 = 1 - b1 ** state["step"]
                bc2 = 1 - b2 ** state["step"]
                rows, g = _rows_and_grads(p)
                m_all, v_all = state["exp_avg"], state["exp_avg_sq"]
                if rows is None:
                    m, v, w = m_all, v_all, p
                    m.mul_(b1).add_(g, alpha=1 - b1)
                    v.mul_(b2).addcmul_(g, g, value=1 - b2)
                    if wd:
                        p.mul_(1 - lr * wd)
                    p.addcdiv_(m, (v / bc2).sqrt_().add_(eps), value=-lr / bc1)
                    continue
                m = m_all.index_select(0, rows).mul_(b1).add_(g, alpha=1 - b1)  # (n, D)
                v = v_all.index_select(0, rows).mul_(b2).addcmul_(g, g, value=1 - b2)  # (n, D)
                m_all.index_copy_(0, rows, m)
                v_all.index_copy_(0, rows, v)
                w = p.index_select(0, rows)  # (n, D)
                if wd:
                    w.mul_(1 - lr * wd)
                w.addcdiv_(m, (v / bc2).sqrt_().add_(eps), value=-lr / bc1)
                p.index_copy_(0, rows, w)
        return loss


class SparseOptimizer(Choice):
    """Names of the sparse-embedding optimizers, for configs and the CLI."""

    ROWWISE_ADAGRAD = "rowwise_adagrad"
    LAZY_ADAM = "lazy_adam"
    SPARSE_ADAM = "sparse_adam"


_CLASSES: dict[SparseOptimizer, type[torch.optim.Optimizer]] = {
    SparseOptimizer.ROWWISE_ADAGRAD: RowWiseAdagrad,
    SparseOptimizer.LAZY_ADAM: LazyAdam,
    SparseOptimizer.SPARSE_ADAM: torch.optim.SparseAdam,
}


def sparse_optimizer(name: SparseOptimizer | str) -> type[torch.optim.Optimizer]:
    """The optimizer class called ``name`` (``rowwise_adagrad``, ``lazy_adam``, ``sparse_adam``)."""
    return _CLASSES[SparseOptimizer.parse(name)]
