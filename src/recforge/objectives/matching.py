"""Retrieval objectives on logits from ``TwoTowerModel.score`` (never on probabilities).

Point-wise (``bce``), pair-wise (``bpr``, ``hinge``) and list-wise (``softmax_loss`` over one
positive and K negatives) losses, plus the softmax variants used for large catalogs:

- ``in_batch_softmax_loss``: the other rows' positives are the negatives; duplicates of a row's
  positive elsewhere in the batch are masked; the logQ correction of Yi et al. (RecSys 2019,
  "Sampling-bias-corrected neural modeling for large corpus item recommendations") subtracts each
  candidate's log sampling probability (its in-batch frequency) from its logit.
- ``sampled_softmax_loss``: N negatives shared by the batch (with logQ; accidental hits masked).
- ``full_softmax_loss``: cross-entropy over every item (small catalogs, next-item training).

Conventions: negative logits ``(B, K)`` come with an optional boolean ``valid`` mask (False =
ignore, e.g. an accidental hit); every loss is a mean over valid terms.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

_NEG = -1e9  # large negative instead of -inf keeps gradients finite when a row is fully masked


def _masked_mean(x: Tensor, valid: Tensor | None) -> Tensor:
    if valid is None:
        return x.mean()
    v = valid.to(x.dtype)
    return (x * v).sum() / v.sum().clamp_min(1.0)


def _check_pair(pos: Tensor, neg: Tensor) -> None:
    if pos.dim() != 1 or neg.dim() != 2 or neg.shape[0] != pos.shape[0]:
        raise ValueError(
            f"expected positive logits (B,) and negative logits (B, K), got {tuple(pos.shape)}, {tuple(neg.shape)}"
        )


def bce_loss(pos: Tensor, neg: Tensor, valid: Tensor | None = None) -> Tensor:
    """Point-wise log loss: positives labelled 1, negatives 0; mean over the valid candidates."""
    _check_pair(pos, neg)
    pos_term = F.softplus(-pos)  # -log sigmoid(pos)   (B,)
    neg_term = F.softplus(neg)  # -log(1 - sigmoid(neg))   (B, K)
    n_neg = neg.numel() if valid is None else valid.sum()
    total = pos_term.sum() + (neg_term.sum() if valid is None else (neg_term * valid.to(neg.dtype)).sum())
    return total / (pos.numel() + n_neg)


def labelled_bce_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Point-wise log loss on rows that carry their own 0/1 label (Torch-RecHub mode 0 data)."""
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype).reshape(logits.shape))


def bpr_loss(pos: Tensor, neg: Tensor, valid: Tensor | None = None) -> Tensor:
    """Bayesian personalised ranking: ``-log sigmoid(pos - neg)`` per (positive, negative) pair."""
    _check_pair(pos, neg)
    return _masked_mean(F.softplus(neg - pos.unsqueeze(1)), valid)


def hinge_loss(pos: Tensor, neg: Tensor, valid: Tensor | None = None, *, margin: float = 1.0) -> Tensor:
    """Pair-wise hinge: ``max(0, margin - pos + neg)`` per pair."""
    _check_pair(pos, neg)
    return _masked_mean(F.relu(margin - pos.unsqueeze(1) + neg), valid)


def softmax_loss(logits: Tensor, log_q: Tensor | None = None, valid: Tensor | None = None) -> Tensor:
    """List-wise cross-entropy with the positive in column 0 of ``logits (B, 1 + K)``.

    ``log_q (B, 1 + K)`` (optional) is the log expected count of each candidate under the sampling
    scheme; it is subtracted (logQ correction). ``valid (B, 1 + K)`` masks candidates out.
    """
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ValueError(f"expected logits (B, 1 + K) with K >= 1, got {tuple(logits.shape)}")
    z = logits if log_q is None else logits - log_q
    if valid is not None:
        z = z.masked_fill(~valid, _NEG)
    target = torch.zeros(z.shape[0], dtype=torch.long, device=z.device)
    return F.cross_entropy(z.float(), target)


def in_batch_softmax_loss(logits: Tensor, item_ids: Tensor, log_q: Tensor | None = None) -> Tensor:
    """Softmax over the batch's positives: ``logits (B, B)`` scores every row's user against every
    row's positive item; the diagonal is the target.

    Args:
        logits: ``(B, B)`` from ``model.score(user, item_vectors_of_the_batch)``.
        item_ids: ``(B,)`` positive ids; another row's copy of a row's own positive is masked.
        log_q: ``(B,)`` log sampling probability of each column's item (logQ correction, Yi et al.).
    """
    b = logits.shape[0]
    if logits.shape != (b, b) or item_ids.shape != (b,):
        raise ValueError(
            f"expected logits (B, B) and item_ids (B,), got {tuple(logits.shape)}, {tuple(item_ids.shape)}"
        )
    z = logits if log_q is None else logits - log_q.unsqueeze(0)
    eye = torch.eye(b, dtype=torch.bool, device=z.device)
    dup = (item_ids.unsqueeze(0) == item_ids.unsqueeze(1)) & ~eye  # (B, B)
    z = z.masked_fill(dup, _NEG)
    return F.cross_entropy(z.float(), torch.arange(b, device=z.device))


def sampled_softmax_loss(
    pos: Tensor,
    neg: Tensor,
    *,
    pos_ids: Tensor,
    neg_ids: Tensor,
    pos_log_q: Tensor | None = None,
    neg_log_q: Tensor | None = None,
) -> Tensor:
    """Sampled softmax with negatives shared by the batch (Jean et al. 2015; logQ as Yi et al.).

    Args:
        pos: ``(B,)`` positive logits. neg: ``(B, N)`` logits of the N shared negatives.
        pos_ids: ``(B,)``; neg_ids: ``(N,)`` — a negative equal to a row's positive is masked.
        pos_log_q, neg_log_q: ``(B,)`` / ``(N,)`` log expected counts, subtracted when given.
    """
    _check_pair(pos, neg)
    if neg_ids.shape != (neg.shape[1],):
        raise ValueError(f"neg_ids must be (N,) = ({neg.shape[1]},), got {tuple(neg_ids.shape)}")
    if pos_log_q is not None:
        pos = pos - pos_log_q
    if neg_log_q is not None:
        neg = neg - neg_log_q.unsqueeze(0)
    neg = neg.masked_fill(neg_ids.unsqueeze(0) == pos_ids.unsqueeze(1), _NEG)  # accidental hits
    return softmax_loss(torch.cat([pos.unsqueeze(1), neg], 1))


def full_softmax_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy over every item: ``logits (B, V)`` indexed by item id, ``targets (B,)``.
    Column 0 (padding) is never a candidate; rows with target 0 are ignored.

    No copy of the ``(B, V)`` logits is made (beyond the float32 cast of bfloat16 logits): the
    softmax runs over the whole row and column 0 is taken out afterwards,
    ``log p'(t) = log p(t) - log(1 - p(0))``, so forward and backward cost what a plain
    ``F.cross_entropy`` costs. Rows where the padding column holds more than half the mass (where
    that subtraction would lose precision) are recomputed without it.
    ``full_softmax_loss_reference`` is the plain version (mask column 0 on a copy).
    """
    _check_full(logits, targets)
    z = logits.float()  # (B, V)
    log_p = torch.log_softmax(z, 1)  # (B, V)
    both = log_p.gather(1, torch.stack([targets, torch.zeros_like(targets)], 1))  # (B, 2)
    log_pt, log_p0 = both[:, 0], both[:, 1]  # (B,)
    risky = log_p0 > -math.log(2.0)  # p(0) > 1/2
    log_rest = torch.log1p(-log_p0.clamp_max(-math.log(2.0)).exp())  # log(1 - p(0))  (B,)
    row = log_rest - log_pt  # (B,)
    if bool(risky.any()):
        idx = risky.nonzero().squeeze(1)  # (R,)
        exact = torch.log_softmax(z.index_select(0, idx)[:, 1:], 1)  # (R, V - 1)
        t = targets.index_select(0, idx)
        picked = exact.gather(1, (t - 1).clamp_min(0).unsqueeze(1)).squeeze(1)  # (R,)
        row = row.index_put((idx,), -picked)
    valid = targets != 0
    return (row * valid).sum() / valid.sum()


def full_softmax_loss_reference(logits: Tensor, targets: Tensor) -> Tensor:
    """The plain reference of ``full_softmax_loss``: column 0 set to a large negative on a copy."""
    _check_full(logits, targets)
    z = logits.float().clone()
    z[:, 0] = _NEG
    return F.cross_entropy(z, targets, ignore_index=0)


def _check_full(logits: Tensor, targets: Tensor) -> None:
    if logits.dim() != 2 or targets.shape != (logits.shape[0],):
        raise ValueError(
            f"expected logits (B, V) and targets (B,), got {tuple(logits.shape)}, {tuple(targets.shape)}"
        )
