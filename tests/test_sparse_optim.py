"""Row-wise Adagrad and lazy Adam on sparse gradients, against dense reference implementations
restricted to the rows each batch touches."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from recforge.optim import LazyAdam, RowWiseAdagrad, SparseOptimizer, sparse_optimizer
from recforge.trainers.optim import build_optimizer

V, D, STEPS = 40, 6, 5


def batches(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Id batches with duplicates, and a target per lookup."""
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randint(0, V // 2, (16,), generator=g) * 2, torch.randn(16, D, generator=g))
        for _ in range(STEPS)
    ]


def dense_grad(w: torch.Tensor, ids: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The dense gradient of the test loss (with duplicate ids summed), by autograd on a copy."""
    w = w.detach().clone().requires_grad_(True)
    ((w[ids] - target) ** 2).sum().backward()
    assert w.grad is not None
    return w.grad


def run(opt_cls, sparse: bool, **kw) -> torch.Tensor:
    torch.manual_seed(0)
    emb = nn.Embedding(V, D, sparse=sparse)
    opt = opt_cls(emb.parameters(), **kw)
    for ids, target in batches():
        opt.zero_grad()
        ((emb(ids) - target) ** 2).sum().backward()
        opt.step()
    return emb.weight.detach()


def initial() -> torch.Tensor:
    torch.manual_seed(0)
    return nn.Embedding(V, D).weight.detach().clone().double()


def test_rowwise_adagrad_matches_dense_reference() -> None:
    lr, eps, wd = 0.1, 1e-8, 0.01
    w = initial()
    acc = torch.zeros(V, dtype=torch.float64)
    for ids, target in batches():
        g = dense_grad(w, ids, target.double())
        for r in ids.unique().tolist():  # the reference: plain loops over touched rows
            gr = g[r] + wd * w[r]
            acc[r] += (gr**2).mean()
            w[r] = w[r] - lr * gr / (acc[r].sqrt() + eps)
    got = run(RowWiseAdagrad, True, lr=lr, eps=eps, weight_decay=wd)
    torch.testing.assert_close(got.double(), w, rtol=1e-5, atol=1e-6)
    # without weight decay, a dense gradient (zero on untouched rows) gives the same result
    torch.testing.assert_close(run(RowWiseAdagrad, False, lr=lr), run(RowWiseAdagrad, True, lr=lr))
    untouched = torch.ones(V, dtype=torch.bool)
    untouched[torch.cat([ids for ids, _ in batches()])] = False
    assert torch.equal(got[untouched].double(), initial()[untouched])


def test_rowwise_adagrad_column_blocks_equal_separate_column_shards() -> None:
    """``column_blocks=k`` is row-wise Adagrad run on each block of D/k columns on its own (what
    TorchRec does to a table sharded column-wise over k ranks)."""
    got = run(RowWiseAdagrad, True, lr=0.1, column_blocks=3)
    torch.testing.assert_close(run(RowWiseAdagrad, False, lr=0.1, column_blocks=3), got)
    start = initial().float()
    blocks = [nn.Parameter(start[:, i : i + 2].clone()) for i in range(0, D, 2)]  # 3 blocks of 2
    opt = RowWiseAdagrad(blocks, lr=0.1)
    for ids, target in batches():
        opt.zero_grad()
        ((torch.cat([b[ids] for b in blocks], 1) - target) ** 2).sum().backward()
        opt.step()
    torch.testing.assert_close(got, torch.cat([b.detach() for b in blocks], 1))
    assert not torch.allclose(got, run(RowWiseAdagrad, True, lr=0.1))  # one accumulator differs
    with pytest.raises(ValueError, match="column_blocks"):
        RowWiseAdagrad([nn.Parameter(torch.zeros(3, 4))], column_blocks=3)


def test_lazy_adam_matches_dense_reference_and_sparse_adam() -> None:
    lr, (b1, b2), eps = 0.05, (0.9, 0.99), 1e-8
    w = initial()
    m = torch.zeros_like(w)
    v = torch.zeros_like(w)
    for t, (ids, target) in enumerate(batches(), start=1):
        g = dense_grad(w, ids, target.double())
        for r in ids.unique().tolist():
            m[r] = b1 * m[r] + (1 - b1) * g[r]
            v[r] = b2 * v[r] + (1 - b2) * g[r] ** 2
            w[r] = w[r] - lr * (m[r] / (1 - b1**t)) / ((v[r] / (1 - b2**t)).sqrt() + eps)
    got = run(LazyAdam, True, lr=lr, betas=(b1, b2), eps=eps)
    torch.testing.assert_close(got.double(), w, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got, run(torch.optim.SparseAdam, True, lr=lr, betas=(b1, b2), eps=eps))


def test_lazy_adam_equals_adam_when_every_row_is_touched() -> None:
    kw = {"lr": 0.05, "betas": (0.9, 0.99), "eps": 1e-8}
    torch.testing.assert_close(run(LazyAdam, False, **kw), run(torch.optim.Adam, False, **kw))


def test_lazy_adam_weight_decay_only_on_touched_rows() -> None:
    got = run(LazyAdam, True, lr=0.05, weight_decay=0.1)
    untouched = torch.ones(V, dtype=torch.bool)
    untouched[torch.cat([ids for ids, _ in batches()])] = False
    assert untouched.any() and torch.equal(got[untouched].double(), initial()[untouched])
    assert not torch.allclose(got, run(LazyAdam, True, lr=0.05))


def test_names_select_optimizers_in_build_optimizer() -> None:
    assert sparse_optimizer("rowwise_adagrad") is RowWiseAdagrad
    assert sparse_optimizer(SparseOptimizer.LAZY_ADAM) is LazyAdam
    with pytest.raises(ValueError, match="rowwise_adagrad"):
        sparse_optimizer("adagradd")
    model = nn.Sequential(nn.Embedding(10, 4, sparse=True), nn.Linear(4, 1))
    opt = build_optimizer(model, torch.optim.Adam, {"lr": 0.01}, "rowwise_adagrad")
    assert [type(o) for o in opt.optimizers] == [torch.optim.Adam, RowWiseAdagrad]
    with pytest.raises(ValueError, match="2-D"):
        RowWiseAdagrad([nn.Parameter(torch.zeros(3))])
