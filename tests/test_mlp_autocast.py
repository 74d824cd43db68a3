"""MLP under bf16 autocast: a Linear followed by a batch norm runs as one low-precision block with
the bias folded into the running mean, and keeps the state that ``bn(linear(x))`` keeps."""

from __future__ import annotations

import copy

import pytest
import torch

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
