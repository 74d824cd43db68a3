"""Behaviour-sequence layers: masking, packing and the attention-gated GRUs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from recforge.layers.sequence import (
    GRUType,
    InterestEvolution,
    InterestExtractor,
    TargetAttention,
    front_pack,
    gather_steps,
    trim_padding,
)

B, L, D = 5, 6, 4


def _mask() -> torch.Tensor:
    lengths = torch.tensor([0, 1, 3, 6, 2])
    return torch.arange(L) >= (L - lengths).unsqueeze(1)  # (B, L) left padding


@pytest.mark.parametrize("softmax", [False, True])
def test_target_attention_gives_padding_zero_weight(softmax: bool) -> None:
    torch.manual_seed(0)
    att = TargetAttention(D, {"dims": [8]}, softmax=softmax).eval()
    q, k, mask = torch.randn(B, D), torch.randn(B, L, D), _mask()
    w = att.weights(q, k, mask)
    assert torch.all(w[~mask] == 0)
    assert torch.all(w[mask] != 0)
    if softmax:
        sums = w.sum(1)
        assert torch.allclose(sums[mask.any(1)], torch.ones(int(mask.any(1).sum())))
        assert sums[0] == 0  # an empty history has no weights at all
    # Garbage at padded positions never reaches the output.
    k2 = k.clone()
    k2[~mask] = 1e3 * torch.randn(int((~mask).sum()), D)
    assert torch.equal(att(q, k, mask), att(q, k2, mask))
    assert torch.equal(att(q, k, mask)[0], torch.zeros(D))


def test_target_attention_matches_a_per_row_loop_and_has_finite_grads() -> None:
    torch.manual_seed(1)
    att = TargetAttention(D, {"dims": [8], "activation": "prelu"}, softmax=True)
    q, k, mask = torch.randn(B, D, requires_grad=True), torch.randn(B, L, D), _mask()
    out = att(q, k, mask)
    for i in range(B):
        ki = k[i][mask[i]]  # (l, D)
        if len(ki) == 0:
            assert torch.equal(out[i], torch.zeros(D))
            continue
        qi = q[i].expand_as(ki)
        s = att.score(att.mlp(torch.cat([qi, ki, qi - ki, qi * ki], -1))).squeeze(-1).softmax(0)
        assert torch.allclose(out[i], (s.unsqueeze(-1) * ki).sum(0), atol=1e-6)
    out.sum().backward()
    assert torch.isfinite(q.grad).all()


def test_front_pack_keeps_order_and_handles_holes() -> None:
    mask = torch.tensor([[False, True, False, True], [False, False, False, False], [True, True, True, True]])
    x = torch.arange(12.0).reshape(3, 4, 1)
    order, lengths = front_pack(mask)
    assert lengths.tolist() == [2, 0, 4]
    packed = gather_steps(x, order)[..., 0]
    assert packed[0, :2].tolist() == [1.0, 3.0]
    assert packed[2].tolist() == [8.0, 9.0, 10.0, 11.0]
    assert trim_padding(torch.tensor([[False, False, True], [False, True, True]])) == slice(1, 3)


def test_interest_extractor_equals_unpadded_gru_per_row() -> None:
    torch.manual_seed(2)
    ext = InterestExtractor(D, 3)
    x = torch.randn(B, L, D)
    lengths = torch.tensor([0, 1, 3, 6, 2])
    out = ext(x, lengths)  # front-packed input
    for i in range(B):
        n = int(lengths[i])
        assert torch.all(out[i, n:] == 0)
        if n:
            ref, _ = ext.gru(x[i : i + 1, :n])
            assert torch.allclose(out[i, :n], ref[0], atol=1e-6)


@pytest.mark.parametrize("gru_type", list(GRUType))
def test_interest_evolution_ignores_steps_past_each_length(gru_type: GRUType) -> None:
    torch.manual_seed(3)
    evo = InterestEvolution(D, gru_type=gru_type)
    x, att = torch.randn(B, L, D), torch.rand(B, L)
    lengths = torch.tensor([0, 1, 3, 6, 2])
    full = evo(x, att, lengths)
    assert torch.equal(full[0], torch.zeros(D))  # an empty history keeps the zero state
    x2, att2 = x.clone(), att.clone()
    for i, n in enumerate(lengths.tolist()):
        x2[i, n:] = 100.0
        att2[i, n:] = 0.9
        if n:
            alone = evo(x[i : i + 1, :n], att[i : i + 1, :n], torch.tensor([n]))
            assert torch.allclose(full[i], alone[0], atol=1e-6)
    assert torch.allclose(full, evo(x2, att2, lengths), atol=1e-6)


@pytest.mark.parametrize("gru_type", [GRUType.AUGRU, GRUType.AGRU])
def test_zero_attention_keeps_the_state(gru_type: GRUType) -> None:
    """AUGRU/AGRU: a step with attention 0 leaves the hidden state unchanged (update gate 0)."""
    torch.manual_seed(4)
    evo = InterestEvolution(D, gru_type=gru_type)
    x, att = torch.randn(B, L, D), torch.rand(B, L)
    lengths = torch.full((B,), L)
    att_tail_zero = att.clone()
    att_tail_zero[:, 3:] = 0.0
    prefix = evo(x[:, :3], att[:, :3], torch.full((B,), 3))
    assert torch.allclose(evo(x, att_tail_zero, lengths), prefix, atol=1e-6)
    # ...and attention matters: a non-zero tail changes it.
    assert not torch.allclose(evo(x, att, lengths), prefix, atol=1e-4)


def test_aigru_scales_inputs_by_attention() -> None:
    torch.manual_seed(5)
    evo = InterestEvolution(D, gru_type="aigru")
    x, att = torch.randn(2, L, D), torch.rand(2, L)
    lengths = torch.tensor([L, 4])
    _, h = evo.gru(x[1:, :4] * att[1:, :4].unsqueeze(-1))
    assert torch.allclose(evo(x, att, lengths)[1], h[0, 0], atol=1e-6)


def test_gru_type_parse() -> None:
    assert GRUType.parse("augru") is GRUType.AUGRU
    with pytest.raises(ValueError, match="AUGRU"):
        GRUType.parse("lstm")
    assert isinstance(InterestEvolution(D, gru_type="AGRU").x2h, nn.Linear)


@pytest.mark.parametrize("pre_norm", [True, False])
@pytest.mark.parametrize("causal", [True, False])
def test_transformer_last_only_equals_the_last_position_of_the_full_pass(
    pre_norm: bool, causal: bool
) -> None:
    from recforge.layers.attention import TransformerEncoder

    torch.manual_seed(0)
    enc = TransformerEncoder(
        16, num_layers=3, num_heads=2, ffn_dim=24, pre_norm=pre_norm, causal=causal
    ).eval()
    x = torch.randn(5, 7, 16)
    mask = torch.arange(7)[None, :] >= torch.tensor([0, 2, 6, 3, 1])[:, None]  # left padding
    full = enc(x, key_mask=mask)
    last = enc(x, key_mask=mask, last_only=True)
    assert last.shape == (5, 1, 16)
    torch.testing.assert_close(last, full[:, -1:], rtol=1e-5, atol=1e-6)
