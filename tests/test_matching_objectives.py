"""Matching objectives against direct formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from recforge.objectives import (
    bce_loss,
    bpr_loss,
    full_softmax_loss,
    hinge_loss,
    in_batch_softmax_loss,
    sampled_softmax_loss,
    softmax_loss,
)


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_pointwise_and_pairwise() -> None:
    pos = torch.tensor([2.0, -1.0])
    neg = torch.tensor([[0.5, 1.0], [-2.0, 3.0]])
    valid = torch.tensor([[True, False], [True, True]])
    want_bce = (
        -(
            math.log(_sig(2))
            + math.log(_sig(-1))
            + math.log(1 - _sig(0.5))
            + math.log(1 - _sig(-2))
            + math.log(1 - _sig(3))
        )
        / 5
    )
    assert bce_loss(pos, neg, valid).item() == pytest.approx(want_bce, rel=1e-5)
    want_bpr = -(math.log(_sig(1.5)) + math.log(_sig(1.0)) + math.log(_sig(-4.0))) / 3
    assert bpr_loss(pos, neg, valid).item() == pytest.approx(want_bpr, rel=1e-5)
    want_hinge = (max(0, 1 - 2 + 0.5) + max(0, 1 + 1 - 2) + max(0, 1 + 1 + 3)) / 3
    assert hinge_loss(pos, neg, valid, margin=1.0).item() == pytest.approx(want_hinge)
    with pytest.raises(ValueError, match=r"\(B, K\)"):
        bpr_loss(pos, neg[0])


def test_softmax_logq_and_mask() -> None:
    logits = torch.tensor([[1.0, 2.0, 0.5]])
    log_q = torch.tensor([[-1.0, 0.5, -3.0]])
    z = logits - log_q
    assert softmax_loss(logits, log_q).item() == pytest.approx(
        -(z[0, 0] - torch.logsumexp(z[0], 0)).item(), rel=1e-6
    )
    masked = softmax_loss(logits, None, torch.tensor([[True, False, True]]))
    assert masked.item() == pytest.approx(-(1.0 - math.log(math.exp(1.0) + math.exp(0.5))), rel=1e-6)


def test_in_batch_masks_duplicates_and_corrects_logq() -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 4)
    ids = torch.tensor([7, 3, 7, 9])
    log_q = torch.log(torch.tensor([0.5, 0.1, 0.5, 0.2]))
    got = in_batch_softmax_loss(logits, ids, log_q)
    z = logits - log_q
    total = 0.0
    for i in range(4):
        cols = [j for j in range(4) if j == i or ids[j] != ids[i]]
        total += -(z[i, i] - torch.logsumexp(z[i, cols], 0)).item()
    assert got.item() == pytest.approx(total / 4, rel=1e-5)


def test_sampled_softmax_masks_accidental_hits() -> None:
    pos = torch.tensor([1.0, 0.0])
    neg = torch.tensor([[0.5, 2.0], [0.3, -1.0]])
    got = sampled_softmax_loss(pos, neg, pos_ids=torch.tensor([4, 5]), neg_ids=torch.tensor([4, 6]))
    row0 = -(1.0 - math.log(math.exp(1.0) + math.exp(2.0)))  # neg 4 == positive of row 0: masked
    row1 = -(0.0 - math.log(1 + math.exp(0.3) + math.exp(-1.0)))
    assert got.item() == pytest.approx((row0 + row1) / 2, rel=1e-5)


def test_full_softmax_ignores_padding() -> None:
    logits = torch.tensor([[9.0, 1.0, 2.0], [9.0, 0.0, 0.0]])
    got = full_softmax_loss(logits, torch.tensor([2, 0]))
    assert got.item() == pytest.approx(
        F.cross_entropy(torch.tensor([[1.0, 2.0]]), torch.tensor([1])).item(), rel=1e-6
    )
