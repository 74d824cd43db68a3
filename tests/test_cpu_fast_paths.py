"""Issue 21's fast paths against their plain references: bf16 precision selection, the cheap
dropout mask, the fused sparse optimizer updates, coalescing, and the full-softmax losses."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
import torch.nn.functional as F

from native import paths
from recforge.layers import Dropout
from recforge.layers.dropout import dropout, dropout_reference, keep_mask, relu_dropout
from recforge.objectives.matching import (
    full_softmax_loss,
    full_softmax_loss_reference,
    linear_full_softmax_loss,
    linear_full_softmax_loss_reference,
)
from recforge.optim import LazyAdam, RowWiseAdagrad
from recforge.optim.sparse import (
    coalesce_rows,
    coalesce_rows_reference,
    lazy_adam_rows,
    lazy_adam_rows_reference,
    rowwise_adagrad_rows,
    rowwise_adagrad_rows_reference,
)
from recforge.precision import CPUInfo, Precision, autocast, cpu_info, resolve_precision, to_float32

# -- precision ---------------------------------------------------------------------------------


def test_cpu_info_reads_the_machine() -> None:
    info = cpu_info()
    assert info.cores >= 1 and info.model
    assert info.capability == torch.backends.cpu.get_cpu_capability()
    assert info.native_bf16 == any(f in info.flags for f in ("avx512_bf16", "amx_bf16", "bf16"))
    assert info.model in info.describe() and info.capability in info.describe()


def test_resolve_precision(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    cpu = torch.device("cpu")
    assert resolve_precision(None, False, cpu) is Precision.FP32
    assert resolve_precision("fp32", True, cpu) is Precision.FP32  # explicit precision wins
    with pytest.raises(ValueError, match="precision must be one of 'fp32', 'bf16'"):
        resolve_precision("fp16", False, cpu)
    no_bf16 = CPUInfo(model="test CPU", cores=2, flags=frozenset({"avx2"}), capability="AVX2")
    with_bf16 = CPUInfo(model="test CPU", cores=2, flags=frozenset({"avx512_bf16"}), capability="AVX512")
    monkeypatch.setattr("recforge.precision.cpu_info", lambda: with_bf16)
    assert resolve_precision(None, True, cpu) is Precision.BF16
    monkeypatch.setattr("recforge.precision.cpu_info", lambda: no_bf16)
    with caplog.at_level(logging.WARNING, logger="recforge"):
        assert resolve_precision(None, True, cpu) is Precision.FP32
        assert "avx512_bf16" in caplog.text and "float32" in caplog.text
        caplog.clear()
        assert resolve_precision("bf16", False, cpu) is Precision.BF16  # asked for: runs, warns
        assert "emulated" in caplog.text


def test_autocast_and_float32_outputs() -> None:
    lin = torch.nn.Linear(4, 3)
    x = torch.randn(5, 4)
    with autocast(torch.device("cpu"), Precision.BF16):
        y = lin(x)
    assert y.dtype == torch.bfloat16
    with autocast(torch.device("cpu"), Precision.FP32):
        assert lin(x).dtype == torch.float32
    out = to_float32({"a": y, "b": (y, 1), "c": [x.long()]})
    assert out["a"].dtype == torch.float32 and out["b"][0].dtype == torch.float32 and out["b"][1] == 1
    assert out["c"][0].dtype == torch.int64


def test_trainer_bf16_keeps_parameters_states_and_loss_in_float32(tmp_path) -> None:
    from recforge.data import BatchLoader, ColumnarDataset
    from recforge.features import DenseFeature, SparseFeature
    from recforge.models.ranking import DeepFM
    from recforge.trainers import CTRTrainer

    torch.manual_seed(0)  # the model's init and dropout: the loss check below must not hang on luck
    g = torch.Generator().manual_seed(0)
    n = 256
    cols = {"d": torch.randn(n, generator=g), "s0": torch.randint(1, 20, (n,), generator=g)}
    cols["s1"] = torch.randint(1, 20, (n,), generator=g)
    y = (cols["s0"] % 2).float()
    sparse = [SparseFeature(f"s{i}", 20, 8) for i in range(2)]
    model = DeepFM([DenseFeature("d"), *sparse], sparse, {"dims": [16], "dropout": 0.1}, sparse=True)
    trainer = CTRTrainer(model, n_epoch=4, model_path=tmp_path, progress=False, plot=False, precision="bf16")
    assert trainer.precision is Precision.BF16
    trainer.fit(BatchLoader(ColumnarDataset(cols, y), 64, shuffle=True))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    for opt in trainer.optimizer.optimizers:
        for state in opt.state.values():
            assert all(
                v.dtype == torch.float32 for v in state.values() if isinstance(v, torch.Tensor) and v.dim()
            )
    assert trainer.history[-1]["train_loss"] < trainer.history[0]["train_loss"]
    assert trainer.predict(model, BatchLoader(ColumnarDataset(cols, y), 64)).dtype.name == "float32"


# -- dropout -----------------------------------------------------------------------------------


def test_keep_mask_rate_and_independence() -> None:
    torch.manual_seed(0)
    for p in (0.1, 0.5, 0.9):
        m = keep_mask((1000, 1001), p)
        assert m.shape == (1000, 1001) and m.dtype == torch.bool
        assert abs(m.float().mean().item() - (1 - p)) < 3e-3
    m = keep_mask((400_000,), 0.5).float()
    # the two halves of each 64-bit draw are independent: neighbours' correlation ~ 0
    assert abs(torch.corrcoef(torch.stack([m[:-1], m[1:]]))[0, 1].item()) < 0.01
    torch.manual_seed(3)
    a = keep_mask((7, 9), 0.3)
    torch.manual_seed(3)
    assert torch.equal(a, keep_mask((7, 9), 0.3))  # seeded like every torch op


def test_dropout_matches_reference_given_the_same_mask(monkeypatch) -> None:
    """The torch path: forward is ``x * mask / (1 - p)`` and backward ``grad * mask / (1 - p)``, the
    reference's rule (F.dropout draws its own mask, so the two are compared on this one)."""
    monkeypatch.setenv("RECFORGE_KERNELS", "torch")
    torch.manual_seed(1)
    p = 0.3
    x = torch.randn(64, 33, requires_grad=True)
    torch.manual_seed(5)
    y = dropout(x, p)
    torch.manual_seed(5)
    mask = keep_mask(x.shape, p)
    torch.testing.assert_close(y, x * mask / (1 - p))
    g = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, g)
    torch.testing.assert_close(gx, g * mask / (1 - p))


@pytest.mark.parametrize("path", paths())
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_rule_rate_and_seeding_on_both_paths(monkeypatch, path: str, dtype: torch.dtype) -> None:
    """Either path (the C kernel or torch ops), float32 or bfloat16: kept elements are scaled by
    ``1 / (1 - p)``, the rest are zero, the gradient follows the same mask, the drop rate is p with
    neighbours independent, and ``torch.manual_seed`` fixes the mask."""
    monkeypatch.setenv("RECFORGE_KERNELS", "torch" if path == "torch" else "")
    p = 0.3
    torch.manual_seed(1)
    x = (torch.rand(500, 401) + 0.5).to(dtype).requires_grad_(True)  # no zeros: a zero output = dropped
    torch.manual_seed(5)
    y = dropout(x, p)
    assert y.dtype == dtype
    kept = y != 0
    torch.testing.assert_close(y, (x * kept / (1 - p)).to(dtype))
    g = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, g)
    torch.testing.assert_close(gx, (g * kept / (1 - p)).to(dtype))
    rate = 1 - kept.float().mean().item()
    assert abs(rate - p) < 3e-3
    flat = kept.flatten().float()
    assert abs(torch.corrcoef(torch.stack([flat[:-1], flat[1:]]))[0, 1].item()) < 0.01
    torch.manual_seed(5)
    assert torch.equal(dropout(x, p), y)
    assert not torch.equal(dropout(x, p), y)  # the generator moved on
    x0 = x.detach()
    assert dropout(x0, p, training=False) is x0 and dropout(x0, 0.0) is x0
    assert torch.equal(dropout(x0, 1.0), torch.zeros_like(x0))
    # against the reference's distribution: zero rate and mean
    big = torch.ones(2000, 500, dtype=dtype)
    ours, ref = dropout(big, p), dropout_reference(big, p)
    assert abs((ours == 0).float().mean().item() - (ref == 0).float().mean().item()) < 3e-3
    assert abs(ours.float().mean().item() - 1.0) < 5e-3


@pytest.mark.parametrize("path", paths())
def test_relu_dropout_is_dropout_of_relu(monkeypatch, path: str) -> None:
    monkeypatch.setenv("RECFORGE_KERNELS", "torch" if path == "torch" else "")
    torch.manual_seed(2)
    x = torch.randn(300, 77, requires_grad=True)
    y = relu_dropout(x, 0.2)
    kept = y != 0
    assert not bool((kept & (x <= 0)).any())  # nothing at or below zero survives the ReLU
    torch.testing.assert_close(y, torch.relu(x) * kept / 0.8)
    rate = kept[x > 0].float().mean().item()
    assert abs(rate - 0.8) < 0.02
    g = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, g)
    torch.testing.assert_close(gx, g * kept / 0.8)
    assert torch.equal(relu_dropout(x.detach(), 0.2, training=False), torch.relu(x.detach()))


def test_dropout_module_is_a_drop_in_for_nn_dropout() -> None:
    d = Dropout(0.25)
    assert "p=0.25" in repr(d)
    x = torch.randn(8, 4, dtype=torch.bfloat16)
    assert d(x).dtype == torch.bfloat16
    d.eval()
    assert d(x) is x
    with pytest.raises(ValueError):
        Dropout(1.5)


# -- sparse optimizers -------------------------------------------------------------------------


def _sparse_grad(num_rows: int, dim: int, seed: int, *, nnz: int = 300) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, num_rows, (nnz,), generator=g)
    return torch.sparse_coo_tensor(
        ids[None], torch.randn(nnz, dim, generator=g), (num_rows, dim), check_invariants=True
    )


@pytest.mark.parametrize("case", ["shuffled", "sorted_with_duplicates", "strictly_increasing", "one"])
def test_coalesce_rows_matches_torch_coalesce(case: str) -> None:
    grad = _sparse_grad(80, 5, 0)
    ids, vals = grad._indices()[0], grad._values()
    if case == "sorted_with_duplicates":
        order = ids.argsort(stable=True)
        grad = torch.sparse_coo_tensor(ids[order][None], vals[order], grad.shape, check_invariants=True)
    elif case == "strictly_increasing":
        grad = torch.sparse_coo_tensor(
            torch.arange(0, 80, 3)[None], torch.randn(27, 5), grad.shape, check_invariants=True
        )
    elif case == "one":
        grad = torch.sparse_coo_tensor(
            torch.tensor([[7]]), torch.randn(1, 5), grad.shape, check_invariants=True
        )
    rows, summed = coalesce_rows(grad)
    ref_rows, ref_summed = coalesce_rows_reference(grad)
    torch.testing.assert_close(rows, ref_rows)
    torch.testing.assert_close(summed, ref_summed)


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_lazy_adam_rows_matches_reference(weight_decay: float) -> None:
    g = torch.Generator().manual_seed(0)
    w0, mom0 = torch.randn(50, 6, generator=g), torch.rand(50, 2, 6, generator=g)
    outs = []
    for fn in (lazy_adam_rows, lazy_adam_rows_reference):
        w, mom = w0.clone(), mom0.clone()
        for step in range(1, 4):
            rows, grad = coalesce_rows(_sparse_grad(50, 6, step, nnz=40))
            fn(
                w,
                mom,
                rows,
                grad,
                lr=0.01,
                beta1=0.9,
                beta2=0.99,
                eps=1e-8,
                weight_decay=weight_decay,
                step=step,
            )
        outs.append((w, mom))
    torch.testing.assert_close(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[0][1], outs[1][1])


@pytest.mark.parametrize("blocks", [1, 2])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_rowwise_adagrad_rows_matches_reference(blocks: int, weight_decay: float) -> None:
    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(50, 6, generator=g)
    acc0 = torch.rand((50,) if blocks == 1 else (50, blocks), generator=g)
    outs = []
    for fn in (rowwise_adagrad_rows, rowwise_adagrad_rows_reference):
        w, acc = w0.clone(), acc0.clone()
        for step in range(3):
            rows, grad = coalesce_rows(_sparse_grad(50, 6, step, nnz=40))
            fn(w, acc, rows, grad, lr=0.1, eps=1e-8, weight_decay=weight_decay)
        outs.append((w, acc))
    torch.testing.assert_close(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[0][1], outs[1][1])


@pytest.mark.parametrize("cls", [LazyAdam, RowWiseAdagrad])
def test_fused_and_reference_optimizers_train_alike(cls: type[torch.optim.Optimizer]) -> None:
    torch.manual_seed(0)
    emb = torch.nn.Embedding(60, 4, sparse=True)
    ref = copy.deepcopy(emb)
    opts = [cls(emb.parameters(), lr=0.05), cls(ref.parameters(), lr=0.05, fused=False)]  # type: ignore[call-arg]
    for step in range(5):
        ids = torch.randint(0, 60, (32, 3), generator=torch.Generator().manual_seed(step))
        for table, opt in zip((emb, ref), opts):
            opt.zero_grad()
            table(ids).pow(2).sum().backward()
            opt.step()
    torch.testing.assert_close(emb.weight, ref.weight)


def test_lazy_adam_loads_checkpoints_with_separate_moments() -> None:
    torch.manual_seed(0)
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = LazyAdam(emb.parameters(), lr=0.1)
    emb(torch.tensor([1, 2, 2])).sum().backward()
    opt.step()
    state = opt.state_dict()
    moments = state["state"][0].pop("moments")
    state["state"][0]["exp_avg"], state["state"][0]["exp_avg_sq"] = (
        moments[:, 0].clone(),
        moments[:, 1].clone(),
    )
    fresh = LazyAdam(emb.parameters(), lr=0.1)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.state[emb.weight]["moments"], moments)
    assert "exp_avg" not in fresh.state[emb.weight]


# -- losses ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_full_softmax_loss_matches_reference(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(40, 30, generator=g) * 4
    z[:4, 0] = 30.0  # the padding column dominates these rows: the exact recomputation path
    z[4:8, 0] = 1.0
    t = torch.randint(0, 30, (40,), generator=g)
    t[:2] = 0
    a = z.to(dtype).requires_grad_()
    b = z.to(dtype).requires_grad_()
    la, lb = full_softmax_loss(a, t), full_softmax_loss_reference(b, t)
    la.backward()
    lb.backward()
    torch.testing.assert_close(la, lb)
    assert a.grad is not None and b.grad is not None
    torch.testing.assert_close(a.grad.float(), b.grad.float(), atol=1e-6, rtol=1e-4)
    assert a.grad[:, 0].abs().max() < 1e-6  # column 0 is never a candidate


@pytest.mark.parametrize("block", [None, 7, 64])
@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_linear_full_softmax_loss_matches_reference(block: int | None, temperature: float) -> None:
    g = torch.Generator().manual_seed(0)
    h0, e0 = torch.randn(37, 8, generator=g), torch.randn(300, 8, generator=g)
    t = torch.randint(0, 300, (37,), generator=g)
    t[:3] = 0
    grads = []
    for fn in (linear_full_softmax_loss, linear_full_softmax_loss_reference):
        h, e = h0.clone().requires_grad_(), e0.clone().requires_grad_()
        loss = fn(h, e, t, temperature=temperature, block_items=block)
        loss.backward()
        grads.append((loss.detach(), h.grad, e.grad))
    for ours, ref in zip(grads[0], grads[1]):
        torch.testing.assert_close(ours, ref, atol=2e-6, rtol=1e-5)


def test_linear_full_softmax_loss_under_bf16_autocast() -> None:
    g = torch.Generator().manual_seed(1)
    h0, e0 = torch.randn(20, 16, generator=g), torch.randn(200, 16, generator=g) * 0.3
    t = torch.randint(1, 200, (20,), generator=g)
    h, e = h0.clone().requires_grad_(), e0.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = linear_full_softmax_loss(h, e, t, block_items=50)
    loss.backward()
    assert loss.dtype == torch.float32 and h.grad is not None and h.grad.dtype == torch.float32
    ref = F.cross_entropy((h0 @ e0.T)[:, 1:], t - 1)
    assert abs(loss.item() - ref.item()) < 0.05  # bfloat16 products: close, not equal


def test_mlp_linear_keeps_small_signals_under_bf16_autocast() -> None:
    """The MLP's Linear adds its bias in float32: an input 1e-4 the size of the bias survives
    bfloat16 autocast (a plain nn.Linear rounds it away), and outside autocast it is nn.Linear."""
    from recforge.layers.mlp import Linear

    torch.manual_seed(0)
    ours = Linear(16, 8)
    plain = torch.nn.Linear(16, 8)
    plain.load_state_dict(ours.state_dict())
    with torch.no_grad():
        ours.bias.fill_(1.0)
        plain.bias.fill_(1.0)
    x = torch.randn(64, 16) * 1e-4
    exact = x @ ours.weight.T  # the signal, without the bias
    torch.testing.assert_close(ours(x), plain(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_ours, y_plain = ours(x), plain(x)
    assert y_ours.dtype == torch.float32
    err_ours = (y_ours - 1.0 - exact).abs().max() / exact.abs().max()
    err_plain = (y_plain.float() - 1.0 - exact).abs().max() / exact.abs().max()
    assert err_ours < 0.02 < err_plain


@pytest.mark.parametrize("family", ["multi_task", "match", "sequence"])
def test_every_family_trains_under_bf16(family: str, tmp_path) -> None:
    """``precision="bf16"`` (and ``amp=True`` for the multi-task preset, whose signature lists its
    arguments) trains each family: finite, falling loss; float32 parameters."""
    from contract import synthetic_batch
    from recforge.data import BatchLoader, ColumnarDataset
    from recforge.trainers import MatchTrainer, MTLTrainer, SeqTrainer
    from test_contract_matching import BUILDERS, V, make_batch

    torch.manual_seed(0)
    if family == "multi_task":
        from test_contract_multi_task import CASES, DENSE, FEATS

        batch = synthetic_batch([*FEATS, DENSE], 512, seed=0, labels=("click", "buy"))
        model = CASES["MMOE"]()
        trainer = MTLTrainer(
            model, None, n_epoch=3, progress=False, plot=False, model_path=tmp_path, amp=True
        )
        assert trainer.precision is resolve_precision(None, True, torch.device("cpu"))
        loader = BatchLoader(ColumnarDataset(batch), 64, shuffle=True)
    elif family == "match":
        model = BUILDERS["YoutubeDNN"]()
        trainer = MatchTrainer(model, n_epoch=3, negatives="in_batch", progress=False, plot=False,
                               model_path=tmp_path, precision="bf16")  # fmt: skip
        loader = BatchLoader(ColumnarDataset(make_batch(512, 0)), 64, shuffle=True)
    else:
        model = BUILDERS["SASRec"]()
        hist = make_batch(256, 0)["hist_item_id"]
        target = torch.roll(hist, -1, 1)
        target[:, -1] = (hist[:, -1] % (V - 1)) + 1
        target[hist == 0] = 0
        data = ColumnarDataset({"hist_item_id": hist, "target_item_id": target})
        trainer = SeqTrainer(model, num_items=V, loss="full", n_epoch=3, progress=False, plot=False,
                             model_path=tmp_path, precision="bf16")  # fmt: skip
        loader = BatchLoader(data, 64, shuffle=True)
    trainer.fit(loader)
    losses = [r["train_loss"] for r in trainer.history]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("name", ["SASRec", "GRU4Rec"])
def test_full_sequence_loss_streams_items_for_dot_product_models(name: str) -> None:
    """SequenceObjective's FULL loss takes the blocked path for a plain dot-product score and gives
    the loss and gradients of the logits path."""
    from recforge.data.sampling import NegativeSampler
    from recforge.objectives.matching import full_softmax_loss_reference
    from recforge.objectives.sequence import SeqLoss, SequenceObjective
    from test_contract_matching import BUILDERS, V, make_batch

    torch.manual_seed(0)
    model = BUILDERS[name]()
    model.temperature = 0.5
    assert model.scores_by_dot_product
    hist = make_batch(16, 0)["hist_item_id"]
    target = torch.roll(hist, -1, 1)
    target[hist == 0] = 0
    batch = {"hist_item_id": hist, "target_item_id": target}
    objective = SequenceObjective(
        model, loss=SeqLoss.FULL, sampler=NegativeSampler(V), catalog=None, num_negatives=4,
        temperature=2.0, l2_normalize=False, logq=False, target_column="target_item_id",
    )  # fmt: skip
    hidden = model.sequence_tower(batch)
    loss = objective(hidden, batch)
    (g_fast,) = torch.autograd.grad(loss, hidden)
    valid = target > 0
    items = model.item_tower({"item_id": torch.arange(V)})
    ref = full_softmax_loss_reference(model.score(hidden[valid], items) / 2.0, target[valid])
    (g_ref,) = torch.autograd.grad(ref, hidden)
    assert torch.allclose(loss, ref, atol=1e-5)
    assert torch.allclose(g_fast, g_ref, atol=1e-6)


# -- embedding lookup and the low-precision join ----------------------------------------------


@pytest.mark.parametrize("path", paths())
def test_sparse_lookup_equals_torch_embedding(monkeypatch, path: str) -> None:
    """The C lookup of a sparse table: the same rows and the same row-sparse gradient as
    ``nn.Embedding(sparse=True)``; an out-of-range id is an error naming it."""
    from recforge.features import SparseFeature
    from recforge.layers import EmbeddingLayer

    monkeypatch.setenv("RECFORGE_KERNELS", "torch" if path == "torch" else "")
    torch.manual_seed(0)
    feats = [SparseFeature("a", 50, 4), SparseFeature("b", 30, 4)]
    layer = EmbeddingLayer(feats, sparse=True, fused=True)
    batch = {"a": torch.randint(0, 50, (64,)), "b": torch.randint(0, 30, (64,))}
    fields = layer.stack(batch, feats)  # (64, 2, 4)
    weight = next(layer.parameters())
    ref_w = weight.detach().clone().requires_grad_(True)
    ids = torch.stack([batch["a"], batch["b"] + 50], 1)
    ref = torch.nn.functional.embedding(ids, ref_w, sparse=True)
    torch.testing.assert_close(fields, ref)
    g = torch.randn_like(ref)
    fields.backward(g)
    ref.backward(g)
    assert weight.grad is not None and weight.grad.is_sparse
    torch.testing.assert_close(weight.grad.coalesce().to_dense(), ref_w.grad.coalesce().to_dense())
    with pytest.raises(IndexError, match=r"feature 'a'"):
        layer.stack({"a": torch.tensor([50]), "b": torch.tensor([0])}, feats)


def test_join_for_matmul_writes_the_autocast_dtype_once() -> None:
    from recforge.layers.embedding import join_flat

    a = torch.randn(6, 5, requires_grad=True)
    b = torch.randn(6, 1, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = join_flat([a, b], for_matmul=True)
        plain = join_flat([a, b])
    assert y.dtype == torch.bfloat16 and plain.dtype == torch.float32
    torch.testing.assert_close(y.float(), torch.cat([a, b], 1), atol=1e-2, rtol=1e-2)
    g = torch.randn(6, 6, dtype=torch.bfloat16)
    y.backward(g)
    assert a.grad is not None and b.grad is not None and a.grad.dtype == torch.float32
    torch.testing.assert_close(a.grad, g[:, :5].float())
    torch.testing.assert_close(b.grad, g[:, 5:].float())
    assert join_flat([a, b], for_matmul=True).dtype == torch.float32  # no autocast: a plain cat


@pytest.mark.parametrize("path", paths())
def test_batch_gather_equals_index_select_per_column(monkeypatch, path: str) -> None:
    from recforge.data import ColumnarDataset

    monkeypatch.setenv("RECFORGE_KERNELS", "torch" if path == "torch" else "")
    g = torch.Generator().manual_seed(0)
    cols = {
        "id": torch.randint(0, 100, (500,), generator=g),
        "x": torch.randn(500, generator=g),
        "hist": torch.randint(0, 9, (500, 7), generator=g),
        "small": torch.randint(0, 9, (500,), generator=g).to(torch.int32),
        "flag": torch.rand(500, generator=g) > 0.5,
    }
    ds = ColumnarDataset(cols, torch.rand(500, generator=g))
    index = torch.randperm(500, generator=g)[:64]
    got = ds.take(index)
    for name, col in ds.columns.items():
        assert got[name].dtype == col.dtype and torch.equal(got[name], col.index_select(0, index)), name
    if path == "kernel":
        with pytest.raises(IndexError, match="row 500 is outside the 500 rows"):
            ds.take(torch.tensor([3, 500]))
