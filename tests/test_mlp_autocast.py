"""MLP under bf16 autocast: a Linear followed by a batch norm runs as one low-precision block with
the bias folded into the running mean, and keeps the state that ``bn(linear(x))`` keeps."""

from __future__ import annotations

import copy

import pytest
import torch

from native import needs_cc
from recforge.layers import MLP
from recforge.layers.mlp import linear_batch_norm


@pytest.mark.parametrize("training", [True, False])
def test_linear_batch_norm_equals_the_two_layers(training: bool) -> None:
    torch.manual_seed(0)
    mlp = MLP(12, {"dims": [16], "batch_norm": True}, output_layer=False)
    lin, bn = mlp.net[0], mlp.net[1]
    with torch.no_grad():
        lin.bias.uniform_(-3.0, 3.0)  # a bias far from zero: the fold must carry it
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    ref_lin, ref_bn = copy.deepcopy(lin), copy.deepcopy(bn)
    mlp.train(training)
    ref_bn.train(training)
    x = torch.randn(64, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = linear_batch_norm(lin, bn, x)
        want = ref_bn(ref_lin(x).float())
    assert got.dtype == torch.bfloat16  # no float32 round trip between the layers
    torch.testing.assert_close(got.float(), want, atol=0.05, rtol=0.02)
    torch.testing.assert_close(bn.running_mean, ref_bn.running_mean, atol=0.02, rtol=0.01)
    torch.testing.assert_close(bn.running_var, ref_bn.running_var, atol=0.05, rtol=0.02)
    assert int(bn.num_batches_tracked) == int(ref_bn.num_batches_tracked)


def test_mlp_under_autocast_trains_with_the_folded_block() -> None:
    torch.manual_seed(0)
    mlp = MLP(8, {"dims": [32, 16], "batch_norm": True, "dropout": 0.1})
    opt = torch.optim.Adam(mlp.parameters(), lr=0.01)
    x, y = torch.randn(256, 8), torch.randn(256, 1)
    first = None
    for _ in range(30):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = (mlp(x).float() - y).pow(2).mean()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.7 * first
    assert mlp.net[0].bias.grad is None  # its gradient through a batch norm is zero: not computed
    mlp.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        folded = mlp(x).float()
    torch.testing.assert_close(folded, mlp.net(x), atol=0.1, rtol=0.05)  # eval, float32 reference


@needs_cc
@pytest.mark.parametrize("dims", [[24], [40, 17]], ids=str)
@pytest.mark.parametrize("rows", [300, 513], ids=str)
def test_bn_relu_dropout_kernel_matches_the_modules_one_by_one(
    dims: list[int], rows: int, monkeypatch
) -> None:
    """Training under bf16 autocast, ``Linear - BatchNorm1d - ReLU - Dropout`` runs as the fused C
    block. Against the same MLP run layer by layer under autocast and in float32 (the C dropout in
    all three, so one seed draws the same masks): the outputs agree within bf16 rounding, every
    gradient is as close to the float32 one as the layer-by-layer bf16 run's, and the running
    statistics (unbiased variance) and batch count are those of the modules. 513 rows span three of
    the kernel's 256-row blocks, the last one partial."""
    import recforge.layers.mlp as mlp_module

    torch.manual_seed(0)
    mlp = MLP(12, {"dims": dims, "batch_norm": True, "dropout": 0.3})
    with torch.no_grad():
        for m in mlp.net:
            if isinstance(m, torch.nn.BatchNorm1d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
            if isinstance(m, torch.nn.Linear):
                m.bias.uniform_(-2.0, 2.0)
    x = torch.randn(rows, 12) + 3.0  # a mean far from zero: the variance must not cancel
    real = mlp_module.linear_bn_relu_dropout

    def run(mode: str) -> tuple[MLP, torch.Tensor, dict[str, torch.Tensor]]:
        model, called = copy.deepcopy(mlp), []
        monkeypatch.setattr(mlp_module, "linear_bn_relu_dropout", lambda *a: called.append(1) or real(*a))
        if mode != "fused":
            monkeypatch.setattr(mlp_module, "_bn_relu_dropout_at", lambda *a: False)
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode != "fp32"):
            out = model(x).float()
        out.pow(2).sum().backward()
        monkeypatch.undo()
        assert bool(called) == (mode == "fused")
        return model, out, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    (fused, got, got_grads), (plain, want, want_grads), (_, _, exact) = (
        run("fused"),
        run("plain"),
        run("fp32"),
    )
    torch.testing.assert_close(got, want, atol=0.03, rtol=0.02)
    assert got_grads.keys() == want_grads.keys()
    for name, g in got_grads.items():

        def error(grad: torch.Tensor, name: str = name) -> float:
            return float((grad - exact[name]).norm() / exact[name].norm())

        assert error(g) <= 1.25 * error(want_grads[name]) + 0.01, name
    for m, r in zip(fused.net, plain.net, strict=True):
        if isinstance(m, torch.nn.BatchNorm1d):
            torch.testing.assert_close(m.running_mean, r.running_mean, atol=0.01, rtol=0.01)
            torch.testing.assert_close(m.running_var, r.running_var, atol=0.01, rtol=0.02)
            assert int(m.num_batches_tracked) == int(r.num_batches_tracked) == 1
