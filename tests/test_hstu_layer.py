"""HSTU layer: the jagged (length-bucketed) kernel equals the padded reference forward and backward;
jagged helpers round-trip; causality; the padded entry point with a causal mask matches."""

from __future__ import annotations

import pytest
import torch

from recforge.jagged import jagged_to_padded, offsets_from_lengths, padded_to_jagged, padding_mask
from recforge.layers.hstu import HSTUKernel, HSTULayer


def _inputs(lengths, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    offsets = offsets_from_lengths(lengths)
    total = int(offsets[-1])
    x = torch.randn(total, dim, generator=g)
    ts = torch.cumsum(torch.randint(0, 5000, (total,), generator=g), 0)
    return x, offsets, ts


def test_jagged_helpers_round_trip() -> None:
    lengths = torch.tensor([3, 0, 5, 1])
    mask = padding_mask(lengths, 6)
    x = torch.randn(4, 6, 2) * mask.unsqueeze(-1)
    values, offsets = padded_to_jagged(x, mask)
    assert values.shape == (9, 2) and offsets.tolist() == [0, 3, 3, 8, 9]
    assert torch.equal(jagged_to_padded(values, offsets, 6), x)
    right = jagged_to_padded(values, offsets, left=False)
    assert right.shape == (4, 5, 2) and torch.equal(right[2], values[3:8])


@pytest.mark.parametrize("time_buckets", [0, 16])
def test_jagged_equals_padded_forward_and_backward(time_buckets) -> None:
    lengths = [1, 7, 2, 16, 3, 0, 9, 4, 33, 5]
    x, offsets, ts = _inputs(lengths, dim=8)
    torch.manual_seed(0)
    jagged = HSTULayer(8, 2, max_len=40, num_time_buckets=time_buckets, kernel="jagged")
    padded = HSTULayer(8, 2, max_len=40, num_time_buckets=time_buckets, kernel=HSTUKernel.PADDED)
    padded.load_state_dict(jagged.state_dict())
    outs, grads = [], []
    for layer in (jagged, padded):
        xi = x.clone().requires_grad_(True)
        y = layer(xi, offsets, ts if time_buckets else None)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        outs.append(y.detach())
        grads.append([xi.grad, *(p.grad for p in layer.parameters())])
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-5)
    assert grads[0][0].abs().sum() > 0


def test_causal_and_rows_independent() -> None:
    x, offsets, _ = _inputs([4, 6])
    layer = HSTULayer(8, 1, max_len=8).eval()
    y = layer(x, offsets)
    x2 = x.clone()
    x2[9] += 1.0  # last item of row 1
    y2 = layer(x2, offsets)
    assert torch.allclose(y[:9], y2[:9], atol=1e-6)  # row 0 and earlier positions of row 1 unchanged
    assert not torch.allclose(y[9], y2[9])


def test_forward_padded_with_causal_mask_matches_jagged() -> None:
    x, offsets, ts = _inputs([3, 5], dim=8)
    layer = HSTULayer(8, 2, max_len=8, num_time_buckets=8).eval()
    want = layer(x, offsets, ts)
    lengths = offsets.diff()
    mask = padding_mask(lengths, 5)
    xp = jagged_to_padded(x, offsets, 5)  # (B, L, D) left-padded
    tp = jagged_to_padded(ts, offsets, 5)
    pos = torch.arange(5) - (5 - lengths)[:, None]  # (B, L)
    allowed = torch.ones(5, 5, dtype=torch.bool).tril() & mask[:, None, :] & mask[:, :, None]
    got = layer.forward_padded(xp, pos, allowed, tp)[mask]
    assert torch.allclose(got, want, atol=1e-5)


def test_bad_kernel_names_valid_values() -> None:
    with pytest.raises(ValueError, match="jagged"):
        HSTULayer(8, kernel="flash")
