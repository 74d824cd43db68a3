"""Interaction and cross layers against plain loop references of the papers' formulas."""

from __future__ import annotations

import pytest
import torch

from native import needs_cc
from recforge.layers import (
    CIN,
    FFM,
    FM,
    SENET,
    AFMAttention,
    BilinearFusion,
    BilinearInteraction,
    CrossNet,
    CrossNetMix,
    CrossNetV2,
    InnerProduct,
    OuterProduct,
    RegulationModule,
)

B, F, D = 3, 4, 5


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(B, F, D, generator=torch.Generator().manual_seed(0))


def pairs() -> list[tuple[int, int]]:
    return [(i, j) for i in range(F) for j in range(i + 1, F)]


def test_inner_outer_products(x: torch.Tensor) -> None:
    ref = torch.stack([(x[:, i] * x[:, j]).sum(-1) for i, j in pairs()], 1)
    torch.testing.assert_close(InnerProduct()(x), ref)
    s = x.sum(1)
    torch.testing.assert_close(OuterProduct()(x), torch.einsum("bi,bj->bij", s, s).flatten(1))


def test_ffm_matches_loop() -> None:
    e = torch.randn(B, F, F, D)
    ref = sum((e[:, i, j] * e[:, j, i]).sum(-1) for i, j in pairs())
    torch.testing.assert_close(FFM()(e).squeeze(1), ref)


@pytest.mark.parametrize("kind", ["field_all", "field_each", "field_interaction"])
def test_bilinear_matches_loop(x: torch.Tensor, kind: str) -> None:
    layer = BilinearInteraction(F, D, kind)
    w = layer.weight
    ref = []
    for p, (i, j) in enumerate(pairs()):
        wij = w[{"field_all": 0, "field_each": i, "field_interaction": p}[kind]]
        ref.append((x[:, i] @ wij) * x[:, j])
    torch.testing.assert_close(layer(x), torch.stack(ref, 1))


def test_afm_attention_is_a_convex_combination_of_pair_products(x: torch.Tensor) -> None:
    layer = AFMAttention(D, 6)
    prods = torch.stack([x[:, i] * x[:, j] for i, j in pairs()], 1)  # (B, P, D)
    scores = layer.att(prods).softmax(1)
    torch.testing.assert_close(layer(x), (scores * prods).sum(1))
    assert torch.allclose(scores.sum(1), torch.ones(B, 1))


def test_senet_scales_each_field(x: torch.Tensor) -> None:
    layer = SENET(F, 2)
    out = layer(x)
    ratio = out / x
    assert torch.allclose(ratio, ratio[..., :1].expand_as(ratio), atol=1e-5)  # one scale per field
    composed = SENET(F, 2, compose_dim=D)
    assert composed(x).shape == x.shape


def test_cross_net_v1_and_v2_formulas() -> None:
    x0 = torch.randn(B, 7)
    net = CrossNet(7, 2)
    h = x0
    for layer in net.layers:
        h = x0 * (h @ layer.w.weight.T) + layer.b + h
    torch.testing.assert_close(net(x0), h)
    full = CrossNetV2(7, 2)
    h = x0
    for layer in full.layers:
        h = x0 * (h @ layer.proj.weight.T + layer.proj.bias) + h
    torch.testing.assert_close(full(x0), h)
    low = CrossNetV2(7, 2, low_rank=2)
    assert low.layers[0].proj[0].weight.shape == (2, 7)
    mix = CrossNetMix(7, 2, low_rank=2, num_experts=3)
    assert mix(x0).shape == (B, 7)


def test_cross_mix_with_one_expert_is_a_low_rank_cross() -> None:
    x0 = torch.randn(B, 6)
    mix = CrossNetMix(6, 1, low_rank=2, num_experts=1)
    v, c, u, b = mix.v[0][0], mix.c[0][0], mix.u[0][0], mix.b[0]
    ref = x0 + x0 * (torch.tanh(torch.tanh(x0 @ v) @ c) @ u + b)
    torch.testing.assert_close(mix(x0), ref)


def test_cin_first_layer_matches_the_paper_sum(x: torch.Tensor) -> None:
    cin = CIN(F, [2], split_half=False)
    w = cin.convs[0].weight.squeeze(-1).view(2, F, F)  # W^{1,h}_{ij}
    ref = torch.stack(
        [sum(w[h, i, j] * x[:, i] * x[:, j] for i in range(F) for j in range(F)) for h in range(2)], 1
    ) + cin.convs[0].bias.view(1, 2, 1)
    torch.testing.assert_close(cin(x), ref.sum(-1))
    assert CIN(F, [4, 4, 3]).output_dim == 2 + 2 + 3


def test_bilinear_fusion_heads() -> None:
    fusion = BilinearFusion(4, 6, num_heads=2)
    o1, o2 = torch.randn(B, 4), torch.randn(B, 6)
    bil = sum(o1[:, 2 * h : 2 * h + 2] @ fusion.w12[h] @ o2[:, 3 * h : 3 * h + 3].T for h in range(2))
    ref = fusion.w1(o1) + fusion.w2(o2) + torch.diagonal(bil).unsqueeze(1)
    torch.testing.assert_close(fusion(o1, o2), ref)
    with pytest.raises(ValueError, match="divisible"):
        BilinearFusion(5, 6, num_heads=2)


def test_regulation_gates_start_at_identity_and_follow_field_widths() -> None:
    reg = RegulationModule([2, 3], temperature=0.5)
    x = torch.randn(B, 5)
    cross, deep = reg(x)
    torch.testing.assert_close(cross, x)
    torch.testing.assert_close(deep, x)
    with torch.no_grad():
        reg.g_cross.copy_(torch.tensor([1.0, 0.0]))
    cross, _ = reg(x)
    ratio = cross / x
    assert torch.allclose(ratio[:, :2], ratio[:, :1].expand(B, 2)) and ratio[0, 0] > ratio[0, 2]


def test_fm_one_pass_logit_equals_the_pairwise_sum_and_its_gradient() -> None:
    """FM's training path (``_FMLogit``) against the definition: the sum over field pairs of their
    dot products, forward and gradient; evaluation (no grad) takes the plain formula."""
    x = torch.randn(5, 4, 3, dtype=torch.float64)
    pairs = sum((x[:, i] * x[:, j]).sum(1) for i in range(4) for j in range(i + 1, 4)).unsqueeze(1)
    fast = x.clone().requires_grad_(True)
    ref = x.clone().requires_grad_(True)
    out = FM()(fast)
    assert out.grad_fn is not None and "FMLogit" in type(out.grad_fn).__name__
    torch.testing.assert_close(out, pairs)
    weights = torch.randn(5, 1, dtype=torch.float64)
    (out * weights).sum().backward()
    plain = (0.5 * (ref.sum(1).pow(2) - ref.pow(2).sum(1))).sum(1, keepdim=True)
    (plain * weights).sum().backward()
    torch.testing.assert_close(fast.grad, ref.grad)
    with torch.no_grad():
        torch.testing.assert_close(FM()(x), pairs)
    torch.testing.assert_close(FM(reduce_sum=False)(x).sum(1, keepdim=True), pairs)


def _deepfm_head_reference(fields, lr, extra):
    """First-order + FM logit and the deep input, written out: a pairwise loop for the FM."""
    b, f, _ = fields.shape
    pairs = sum((fields[:, i] * fields[:, j]).sum(1) for i in range(f) for j in range(i + 1, f))
    flat = fields.reshape(b, -1)
    wide = flat @ lr.fc.weight.t() + lr.fc.bias + pairs.unsqueeze(1)
    return wide, torch.cat([flat, *extra], 1)


@needs_cc
@pytest.mark.parametrize("rows", [1, 63, 64, 130])
@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", [(6, 4), (3, 16), (2, 37)], ids=str)
@pytest.mark.parametrize("strided", [False, True], ids=["contiguous", "strided"])
def test_wide_fm_head_kernel_matches_the_formula_forward_and_backward(
    rows: int, bf16: bool, shape: tuple[int, int], strided: bool
) -> None:
    """DeepFM's fused head (one C pass each way) against the written-out model: the logit in
    float32 also under bf16 autocast, the deep input exactly the fields (rounded to bf16 under
    autocast) followed by the extra columns, and every gradient (fields' three shares summed, the
    first-order weights summed over row blocks, the bias, the extra columns); widths below, at and
    past the kernel's 16-lane blocks."""
    from recforge.layers import LR
    from recforge.layers.interaction import wide_fm_and_deep_input

    gen = torch.Generator().manual_seed(rows)
    lr = LR(shape[0] * shape[1])
    fields = torch.randn(rows, *shape, generator=gen, requires_grad=True)
    second = torch.randn(2, rows, generator=gen).t() if strided else torch.randn(rows, 2, generator=gen)
    extra = [
        torch.randn(rows, 1, generator=gen, requires_grad=True),
        second,
    ]  # the kernel copies contiguous ones
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        wide, deep = wide_fm_and_deep_input(fields, lr, extra)
    assert "WideFMHead" in type(wide.grad_fn).__name__
    assert wide.dtype == torch.float32 and deep.dtype == (torch.bfloat16 if bf16 else torch.float32)
    ref_wide, ref_deep = _deepfm_head_reference(fields, lr, extra)
    torch.testing.assert_close(wide, ref_wide, atol=1e-5, rtol=1e-5)
    assert torch.equal(deep, ref_deep.to(deep.dtype))
    g_wide = torch.randn(rows, 1, generator=gen)
    g_deep = torch.randn(deep.shape, generator=gen).to(deep.dtype)
    params = [fields, extra[0], lr.fc.weight, lr.fc.bias]
    got = torch.autograd.grad((wide * g_wide).sum() + (deep.float() * g_deep.float()).sum(), params)
    want = torch.autograd.grad((ref_wide * g_wide).sum() + (ref_deep * g_deep.float()).sum(), params)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_wide_fm_head_takes_the_plain_composition_without_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """``RECFORGE_KERNELS=torch``: the same logit and deep input from LR + FM + join."""
    from recforge.layers import LR
    from recforge.layers.interaction import wide_fm_and_deep_input

    monkeypatch.setenv("RECFORGE_KERNELS", "torch")
    lr = LR(3 * 5)
    fields = torch.randn(7, 3, 5, requires_grad=True)
    wide, deep = wide_fm_and_deep_input(fields, lr, [torch.ones(7, 1)])
    assert "WideFMHead" not in type(wide.grad_fn).__name__
    ref_wide, ref_deep = _deepfm_head_reference(fields, lr, [torch.ones(7, 1)])
    torch.testing.assert_close(wide, ref_wide)
    torch.testing.assert_close(deep, ref_deep)
