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

The row updates are fused: a table's rows live in memory far larger than the caches, so each random
pass over the touched rows costs about a main-memory latency per row, whatever the row's width.
``LazyAdam`` keeps both moments of a row side by side (``moments (V, 2, D)``), so one gather and one
scatter move them, and the weight takes one ``index_add_`` of the finished step: three passes over
the touched rows where the plain update made six. Both optimizers scale the step before
``index_add_`` (whose ``alpha != 1`` path is a slow per-row loop on CPU). ``lazy_adam_rows`` /
``rowwise_adagrad_rows`` are the fused updates; ``*_reference`` are the plain ones with the same
signatures, and the tests hold them equal.

On CPU the optimizers go one step further by default (``kernel="auto"``): ``recforge.kernels``
compiles a small C kernel that groups the looked-up rows without sorting and updates each distinct
row once, in place, prefetching the rows ahead (DeepFM's embedding part, lookup + backward + update:
4.1 ms per batch against 10.2 ms with the fused torch update; ``benchmarks/results/throughput_floor.md``). It takes float32 CPU tables
with row-sparse gradients; other tables (CUDA, bf16, dense gradients) take the torch update.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

from recforge import kernels
from recforge.choices import Choice


class RowKernel(Choice):
    """Which implementation updates the rows of a sparse gradient.

    ``auto``: the C kernel where it builds, else the torch update with one warning that gives the
    reason; ``native``: the C kernel, an error where it cannot be built; ``torch``: the torch update.
    """

    AUTO = "auto"
    NATIVE = "native"
    TORCH = "torch"


def _native_for(kernel: RowKernel | str, fused: bool) -> kernels.Kernels | None:
    """The C kernels an optimizer built with ``kernel`` uses (None: the torch update)."""
    kernel = RowKernel.parse(kernel, where="kernel")
    if kernel is RowKernel.TORCH or not fused:
        return None
    return kernels.require() if kernel is RowKernel.NATIVE else kernels.get()


def _scratch(store: dict[Tensor, kernels.RowScratch], p: Tensor) -> kernels.RowScratch:
    """The C kernels' scratch for table ``p``, made on its first step (not optimizer state: it is
    not saved, and holds nothing between steps)."""
    found = store.get(p)
    if found is None:
        found = store[p] = kernels.RowScratch.for_table(p)
    return found


def coalesce_rows(grad: Tensor) -> tuple[Tensor, Tensor]:
    """A sparse row gradient ``(V, D)`` as ``(rows (U,), values (U, D))`` with each row once.

    Equals ``grad.coalesce()`` (rows sorted, duplicates summed), about three times faster on CPU
    than the generic COO coalesce: ids already strictly increasing are taken as they are; ids
    already grouped (non-decreasing) skip the sort; otherwise one sort groups them, and one
    ``embedding_bag`` (a vectorised segment sum) adds each row's duplicates.
    """
    ids, values = grad._indices()[0], grad._values()
    if grad.is_coalesced() or ids.numel() <= 1:
        return ids, values
    step_up = ids[1:] > ids[:-1]  # (nnz - 1,)
    if bool(step_up.all()):
        return ids, values
    if bool((ids[1:] >= ids[:-1]).all()):
        sorted_ids, order = ids, torch.arange(ids.numel(), device=ids.device)
        new = torch.cat([step_up.new_ones(1), step_up])  # (nnz,) first of each group
    else:
        sorted_ids, order = ids.sort()
        new = torch.ones_like(sorted_ids, dtype=torch.bool)
        torch.ne(sorted_ids[1:], sorted_ids[:-1], out=new[1:])
    starts = new.nonzero().squeeze(1)  # (U,)
    rows = sorted_ids.index_select(0, starts)  # (U,)
    flat = values.reshape(values.shape[0], -1)  # (nnz, D)
    summed = F.embedding_bag(order, flat, starts, mode="sum")  # (U, D)
    return rows, summed.view(rows.numel(), *values.shape[1:])


def coalesce_rows_reference(grad: Tensor) -> tuple[Tensor, Tensor]:
    """The plain reference of ``coalesce_rows``: torch's COO ``coalesce``."""
    c = grad.coalesce()
    return c.indices()[0], c.values()


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
        fused: the fused row update (``rowwise_adagrad_rows``); False runs the plain reference.
        kernel: ``RowKernel``: the C kernel on CPU (``auto``, the default, or ``native``) or the
            torch update (``torch``).
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 0.01,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        column_blocks: int = 1,
        *,
        fused: bool = True,
        kernel: RowKernel | str = RowKernel.AUTO,
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
        self.fused = fused
        self._native = _native_for(kernel, fused)
        self._scratch: dict[Tensor, kernels.RowScratch] = {}
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
                if self._native is not None and kernels.can_run(p, acc, p.grad):
                    scratch = _scratch(self._scratch, p)
                    self._native.rowwise_adagrad(p, acc, p.grad, scratch, lr=lr, eps=eps, weight_decay=wd)
                    continue
                rows, g = _rows_and_grads(p)
                if rows is None:
                    if wd:
                        g = g + wd * p
                    acc.add_(_mean_square(g, k))  # (V,) | (V, k)
                    p.addcdiv_(g, _per_column(acc.sqrt() + eps, k, p), value=-lr)
                    continue
                update = rowwise_adagrad_rows if self.fused else rowwise_adagrad_rows_reference
                update(p, acc, rows, g, lr=lr, eps=eps, weight_decay=wd)
        return loss


def rowwise_adagrad_rows(
    weight: Tensor, acc: Tensor, rows: Tensor, grad: Tensor, *, lr: float, eps: float, weight_decay: float
) -> None:
    """Row-wise Adagrad on the distinct ``rows (n,)`` of ``weight (V, D)`` with gradient rows
    ``grad (n, D)``; ``acc`` is ``(V,)`` or ``(V, k)`` (k column blocks). In place: one gather and
    one scatter of the accumulators, one ``index_add_`` of the scaled step into the weight."""
    k = 1 if acc.dim() == 1 else acc.shape[1]
    if weight_decay:
        grad = grad + weight_decay * weight.index_select(0, rows)
    acc_rows = acc.index_select(0, rows).add_(_mean_square(grad, k))  # (n,) | (n, k)
    acc.index_copy_(0, rows, acc_rows)
    inv = acc_rows.sqrt_().add_(eps).reciprocal_().mul_(-lr)  # (n,) | (n, k): -lr / (sqrt(G) + eps)
    step = grad * _per_column(inv, k, weight)  # (n, D)
    weight.index_add_(0, rows, step)


def rowwise_adagrad_rows_reference(
    weight: Tensor, acc: Tensor, rows: Tensor, grad: Tensor, *, lr: float, eps: float, weight_decay: float
) -> None:
    """The plain reference of ``rowwise_adagrad_rows`` (same signature and result)."""
    k = 1 if acc.dim() == 1 else acc.shape[1]
    if weight_decay:
        grad = grad + weight_decay * weight.index_select(0, rows)
    acc_rows = acc.index_select(0, rows) + _mean_square(grad, k)
    acc.index_copy_(0, rows, acc_rows)
    w = weight.index_select(0, rows)
    w.addcdiv_(grad, _per_column(acc_rows.sqrt() + eps, k, weight), value=-lr)
    weight.index_copy_(0, rows, w)


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

    State per parameter: ``step`` and ``moments (*shape[:1], 2, *shape[1:])``, the first and second
    moments of each row side by side (``moments[:, 0]`` is Adam's ``exp_avg``, ``moments[:, 1]``
    its ``exp_avg_sq``). Checkpoints holding separate ``exp_avg``/``exp_avg_sq`` load too.

    Args:
        params: embedding weights ``(V, D)`` (any shape with at least one dim for dense gradients).
        lr, betas, eps: as in ``torch.optim.Adam``.
        weight_decay: decoupled (AdamW) decay of the touched rows.
        fused: the fused row update (``lazy_adam_rows``); False runs the plain reference.
        kernel: ``RowKernel``: the C kernel on CPU (``auto``, the default, or ``native``) or the
            torch update (``torch``).
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        fused: bool = True,
        kernel: RowKernel | str = RowKernel.AUTO,
    ) -> None:
        _check(lr, eps, weight_decay)
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})
        self.fused = fused
        self._native = _native_for(kernel, fused)
        self._scratch: dict[Tensor, kernels.RowScratch] = {}
        self.register_load_state_dict_post_hook(_merge_moments)

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
                if p.dim() == 0:
                    raise ValueError("LazyAdam needs parameters with at least one dimension")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["moments"] = p.new_zeros((p.shape[0], 2, *p.shape[1:]))
                state["step"] += 1
                moments = state["moments"]
                kw = {
                    "lr": lr,
                    "beta1": b1,
                    "beta2": b2,
                    "eps": eps,
                    "weight_decay": wd,
                    "step": state["step"],
                }
                if self._native is not None and kernels.can_run(p, moments, p.grad):
                    self._native.lazy_adam(p, moments, p.grad, _scratch(self._scratch, p), **kw)
                    continue
                rows, g = _rows_and_grads(p)
                if rows is None:  # dense gradient: every row
                    _lazy_adam_dense(p, moments, g, **kw)
                else:
                    (lazy_adam_rows if self.fused else lazy_adam_rows_reference)(p, moments, rows, g, **kw)
        return loss


def _merge_moments(optimizer: torch.optim.Optimizer) -> None:
    """Old checkpoints kept ``exp_avg`` and ``exp_avg_sq`` apart: stack them into ``moments``."""
    for state in optimizer.state.values():
        if "exp_avg" in state and "moments" not in state:
            state["moments"] = torch.stack([state.pop("exp_avg"), state.pop("exp_avg_sq")], 1)


def _lazy_adam_dense(
    p: Tensor, moments: Tensor, g: Tensor, *, lr: float, beta1: float, beta2: float, eps: float,
    weight_decay: float, step: int,
) -> None:  # fmt: skip
    m, v = moments[:, 0], moments[:, 1]
    m.mul_(beta1).add_(g, alpha=1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    if weight_decay:
        p.mul_(1 - lr * weight_decay)
    p.addcdiv_(m, (v / (1 - beta2**step)).sqrt_().add_(eps), value=-lr / (1 - beta1**step))


def lazy_adam_rows(
    weight: Tensor, moments: Tensor, rows: Tensor, grad: Tensor, *, lr: float, beta1: float, beta2: float,
    eps: float, weight_decay: float, step: int,
) -> None:  # fmt: skip
    """Adam on the distinct ``rows (n,)`` of ``weight (V, D)`` with gradient rows ``grad (n, D)``,
    bias-corrected for ``step``; ``moments (V, 2, D)``. In place, fused: one gather and one scatter
    of both moments, one ``index_add_`` of the finished step into the weight."""
    s = moments.index_select(0, rows)  # (n, 2, D)
    m, v = s[:, 0], s[:, 1]  # (n, D) views
    m.lerp_(grad, 1 - beta1)
    v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    moments.index_copy_(0, rows, s)
    delta = m / (v * (1 / (1 - beta2**step))).sqrt_().add_(eps)  # (n, D)
    delta.mul_(-lr / (1 - beta1**step))
    if weight_decay:
        delta.sub_(weight.index_select(0, rows), alpha=lr * weight_decay)
    weight.index_add_(0, rows, delta)


def lazy_adam_rows_reference(
    weight: Tensor, moments: Tensor, rows: Tensor, grad: Tensor, *, lr: float, beta1: float, beta2: float,
    eps: float, weight_decay: float, step: int,
) -> None:  # fmt: skip
    """The plain reference of ``lazy_adam_rows`` (same signature and result): gather, update and
    scatter each of the two moments and the weight on its own."""
    m_all, v_all = moments[:, 0], moments[:, 1]
    m = m_all.index_select(0, rows).mul_(beta1).add_(grad, alpha=1 - beta1)  # (n, D)
    v = v_all.index_select(0, rows).mul_(beta2).addcmul_(grad, grad, value=1 - beta2)  # (n, D)
    m_all.index_copy_(0, rows, m)
    v_all.index_copy_(0, rows, v)
    w = weight.index_select(0, rows)  # (n, D)
    if weight_decay:
        w.mul_(1 - lr * weight_decay)
    w.addcdiv_(m, (v / (1 - beta2**step)).sqrt_().add_(eps), value=-lr / (1 - beta1**step))
    weight.index_copy_(0, rows, w)


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
