"""Row-wise Adagrad and lazy Adam on sparse gradients, against dense reference implementations
restricted to the rows each batch touches."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from native import needs_cc
from recforge import kernels
from recforge.optim import LazyAdam, RowKernel, RowWiseAdagrad, SparseOptimizer, sparse_optimizer
from recforge.trainers.optim import build_optimizer

V, D, STEPS = 40, 6, 5
KERNELS = pytest.mark.parametrize("kernel", [pytest.param("native", marks=needs_cc), "torch"])  # C, torch


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


@KERNELS
def test_rowwise_adagrad_matches_dense_reference(kernel: str) -> None:
    lr, eps, wd = 0.1, 1e-8, 0.01
    w = initial()
    acc = torch.zeros(V, dtype=torch.float64)
    for ids, target in batches():
        g = dense_grad(w, ids, target.double())
        for r in ids.unique().tolist():  # the reference: plain loops over touched rows
            gr = g[r] + wd * w[r]
            acc[r] += (gr**2).mean()
            w[r] = w[r] - lr * gr / (acc[r].sqrt() + eps)
    got = run(RowWiseAdagrad, True, lr=lr, eps=eps, weight_decay=wd, kernel=kernel)
    torch.testing.assert_close(got.double(), w, rtol=1e-5, atol=1e-6)
    # without weight decay, a dense gradient (zero on untouched rows) gives the same result
    torch.testing.assert_close(run(RowWiseAdagrad, False, lr=lr), run(RowWiseAdagrad, True, lr=lr))
    untouched = torch.ones(V, dtype=torch.bool)
    untouched[torch.cat([ids for ids, _ in batches()])] = False
    assert torch.equal(got[untouched].double(), initial()[untouched])


@KERNELS
def test_rowwise_adagrad_column_blocks_equal_separate_column_shards(kernel: str) -> None:
    """``column_blocks=k`` is row-wise Adagrad run on each block of D/k columns on its own (what
    TorchRec does to a table sharded column-wise over k ranks)."""
    got = run(RowWiseAdagrad, True, lr=0.1, column_blocks=3, kernel=kernel)
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


@KERNELS
def test_lazy_adam_matches_dense_reference_and_sparse_adam(kernel: str) -> None:
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
    got = run(LazyAdam, True, lr=lr, betas=(b1, b2), eps=eps, kernel=kernel)
    torch.testing.assert_close(got.double(), w, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got, run(torch.optim.SparseAdam, True, lr=lr, betas=(b1, b2), eps=eps))


def test_lazy_adam_equals_adam_when_every_row_is_touched() -> None:
    kw = {"lr": 0.05, "betas": (0.9, 0.99), "eps": 1e-8}
    torch.testing.assert_close(run(LazyAdam, False, **kw), run(torch.optim.Adam, False, **kw))


@KERNELS
def test_lazy_adam_weight_decay_only_on_touched_rows(kernel: str) -> None:
    got = run(LazyAdam, True, lr=0.05, weight_decay=0.1, kernel=kernel)
    untouched = torch.ones(V, dtype=torch.bool)
    untouched[torch.cat([ids for ids, _ in batches()])] = False
    assert untouched.any() and torch.equal(got[untouched].double(), initial()[untouched])
    assert not torch.allclose(got, run(LazyAdam, True, lr=0.05))
    # decoupled decay, the same on both paths
    torch.testing.assert_close(got, run(LazyAdam, True, lr=0.05, weight_decay=0.1, kernel="torch"))


@needs_cc
@pytest.mark.parametrize("opt_cls", [LazyAdam, RowWiseAdagrad])
def test_c_kernel_equals_torch_update_on_a_large_table(opt_cls) -> None:
    """Many duplicates and rows far apart (the prefetching path), with optimizer state and an
    exact resume: the C kernel and the torch update agree row for row."""
    g = torch.Generator().manual_seed(1)
    ids = [torch.randint(0, 5000, (4096,), generator=g) for _ in range(4)]
    out = {}
    for kernel in ("native", "torch"):
        torch.manual_seed(0)
        emb = nn.Embedding(20_000, 16, sparse=True)
        opt = opt_cls(emb.parameters(), lr=0.01, kernel=kernel)
        for i in ids:
            opt.zero_grad()
            emb(i * 4).pow(2).sum().backward()
            opt.step()
        out[kernel] = (emb.weight.detach(), opt.state_dict())
    torch.testing.assert_close(out["native"][0], out["torch"][0], rtol=1e-5, atol=1e-6)
    state = {k: v for k, v in out["native"][1]["state"][0].items() if torch.is_tensor(v) and v.dim()}
    for k, v in state.items():
        torch.testing.assert_close(v, out["torch"][1]["state"][0][k], rtol=1e-4, atol=1e-7)


@needs_cc
def test_c_kernel_refuses_rows_outside_the_table_and_changes_nothing() -> None:
    weight, moments = torch.randn(10, 4), torch.zeros(10, 2, 4)
    before = weight.clone()
    grad = torch.sparse_coo_tensor(
        torch.tensor([[1, 3, 12]]), torch.ones(3, 4), (13, 4), check_invariants=True
    )
    scratch = kernels.RowScratch.for_table(weight)
    kw = {"lr": 0.1, "beta1": 0.9, "beta2": 0.99, "eps": 1e-8, "weight_decay": 0.0, "step": 1}
    with pytest.raises(IndexError, match="row 12 is outside the table's 10 rows"):
        kernels.require().lazy_adam(weight, moments, grad, scratch, **kw)
    assert torch.equal(weight, before) and bool((scratch.slot == -1).all())


def test_kernel_choice_without_a_compiler(monkeypatch, tmp_path) -> None:
    """``native`` names why it cannot build; ``auto`` warns once with that reason and trains on the
    torch update; ``torch`` never compiles."""
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    kernels._load.cache_clear()
    try:
        params = [nn.Parameter(torch.zeros(4, 2))]
        with pytest.raises(kernels.NativeUnavailable, match="no-such-cc"):
            LazyAdam(params, kernel=RowKernel.NATIVE)
        with pytest.warns(RuntimeWarning, match="no C compiler"):
            assert LazyAdam(params, kernel="auto")._native is None
        assert RowWiseAdagrad(params, kernel="torch")._native is None
        with pytest.raises(ValueError, match="kernel must be one of"):
            LazyAdam(params, kernel="cuda")
    finally:
        kernels._load.cache_clear()


@needs_cc
def test_compiled_kernels_leave_nothing_on_disk(monkeypatch, tmp_path) -> None:
    """Each process compiles its own library in a private directory removed once it is loaded:
    nothing compiled stays on disk to be loaded back later."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    kernels._load.cache_clear()
    try:
        assert kernels.require().gather(torch.eye(3), torch.tensor([2])).tolist() == [[0.0, 0.0, 1.0]]
        assert list(tmp_path.iterdir()) == []
    finally:
        kernels._load.cache_clear()


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


def test_dense_adam_is_fused_unless_the_caller_chose() -> None:
    model = nn.Sequential(nn.Embedding(10, 4, sparse=True), nn.Linear(4, 1))
    dense = build_optimizer(model, torch.optim.Adam, {"lr": 0.01}).optimizers[0]
    assert dense.param_groups[0]["fused"] is True
    chosen = build_optimizer(model, torch.optim.AdamW, {"lr": 0.01, "foreach": True}).optimizers[0]
    assert not chosen.param_groups[0]["fused"] and chosen.param_groups[0]["foreach"] is True
    sgd = build_optimizer(model, torch.optim.SGD, {"lr": 0.01}).optimizers[0]
    assert "fused" not in sgd.param_groups[0] or not sgd.param_groups[0]["fused"]
    half = nn.Sequential(nn.Linear(4, 1)).to(torch.float64)
    assert not build_optimizer(half, torch.optim.Adam, {"lr": 0.01}).optimizers[0].param_groups[0]["fused"]


@needs_cc
def test_c_gather_refuses_ids_outside_the_table() -> None:
    with pytest.raises(IndexError, match="id 10 is outside the table's 10 rows"):
        kernels.require().gather(torch.randn(10, 4), torch.tensor([0, 10]))


@needs_cc
def test_c_kernels_give_the_one_thread_result_on_two_threads() -> None:
    """Built with OpenMP, the kernels split their loops over torch's threads; every loop writes
    disjoint elements, the random words are counted by element and sums go by fixed blocks of rows,
    so 2 threads give exactly the 1-thread result."""
    from recforge.data import ColumnarDataset
    from recforge.layers.dropout import relu_dropout

    g = torch.Generator().manual_seed(0)
    ids = [torch.randint(0, 60_000, (40_000,), generator=g) for _ in range(2)]
    x = torch.randn(300, 100, generator=g, requires_grad=True)
    cols = {f"c{i}": torch.randint(0, 9, (50_000,), generator=g) for i in range(8)}
    index = torch.randperm(50_000, generator=g)[:4096]
    block, block_grad = (torch.randn(1000, 64, generator=g).bfloat16() for _ in range(2))
    gamma, beta = torch.rand(64, generator=g) + 0.5, torch.randn(64, generator=g)
    fields, first, g_head = (
        torch.randn(600, 10, 16, generator=g),
        torch.randn(160, generator=g),
        torch.randn(600, 1),
    )
    before = torch.get_num_threads()
    out = {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            torch.manual_seed(0)
            emb = nn.Embedding(60_000, 8, sparse=True)
            ada_emb = nn.Embedding(60_000, 8, sparse=True)
            ada_emb.load_state_dict(emb.state_dict())
            opts = [(emb, LazyAdam(emb.parameters(), lr=0.01, kernel="native")),
                    (ada_emb, RowWiseAdagrad(ada_emb.parameters(), lr=0.1, kernel="native"))]  # fmt: skip
            for i in ids:
                for e, o in opts:
                    o.zero_grad()
                    e(i).pow(2).sum().backward()
                    o.step()
            torch.manual_seed(1)
            y = relu_dropout(x, 0.3)
            (gx,) = torch.autograd.grad(y, x, torch.ones_like(y))
            looked = kernels.require().gather(emb.weight.detach(), ids[0])
            taken = ColumnarDataset(cols).take(index)
            k = kernels.require()
            torch.manual_seed(2)
            bn = k.bn_relu_dropout(block, gamma, beta, 1e-5, 0.2)
            bn_grads = k.bn_relu_dropout_backward(block, block_grad, bn[1], bn[2], bn[4], gamma, 0.2)
            head = [
                k.fm_head(fields, first, 0.5, torch.empty(600, 161)),
                *k.fm_head_backward(fields, first, g_head, None),
            ]
            out[threads] = [emb.weight.detach().clone(), ada_emb.weight.detach().clone(), y, gx, looked,
                            *taken.values(), *bn, *bn_grads, *head]  # fmt: skip
    finally:
        torch.set_num_threads(before)
    for a, b in zip(out[1], out[2], strict=True):
        assert torch.equal(a, b)
