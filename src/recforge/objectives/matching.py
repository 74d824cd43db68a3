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


def linear_full_softmax_loss(
    hidden: Tensor,
    items: Tensor,
    targets: Tensor,
    *,
    temperature: float = 1.0,
    block_items: int | None = None,
) -> Tensor:
    """``full_softmax_loss(hidden @ items.T / temperature, targets)`` without ever holding the
    ``(P, V)`` logits: items are processed ``block_items`` at a time (default: a ~16 MB block of
    logits), the softmax normaliser is accumulated online, and backward recomputes each block.

    The full-catalog cross-entropy of next-item models is dominated by that matrix (P positions by
    V items, hundreds of MB per step): writing it, masking it, its softmax and its gradient are
    each a pass over main memory, and each fresh allocation of it page-faults. Here every block
    stays in cache and one buffer is reused, for the price of one more ``(P, D) x (D, V)``
    product. Under bfloat16 autocast the products run in bfloat16, the softmax in float32.

    Args:
        hidden: ``(P, D)`` query vectors. items: ``(V, D)`` vectors of every item id (row 0 is
            padding and never a candidate). targets: ``(P,)`` item ids; 0 rows are ignored.
        temperature: divides every logit.
        block_items: items per block.
    """
    if hidden.dim() != 2 or items.dim() != 2 or hidden.shape[1] != items.shape[1]:
        raise ValueError(
            f"expected hidden (P, D) and items (V, D), got {tuple(hidden.shape)}, {tuple(items.shape)}"
        )
    if targets.shape != (hidden.shape[0],):
        raise ValueError(f"expected targets ({hidden.shape[0]},), got {tuple(targets.shape)}")
    device = hidden.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else torch.float32
    block = block_items or max(64, (1 << 22) // max(hidden.shape[0], 1))
    with torch.autocast(device, enabled=False):
        return _LinearFullSoftmax.apply(hidden, items, targets, 1.0 / temperature, block, dtype)  # type: ignore[no-any-return]


def linear_full_softmax_loss_reference(
    hidden: Tensor,
    items: Tensor,
    targets: Tensor,
    *,
    temperature: float = 1.0,
    block_items: int | None = None,
) -> Tensor:
    """The plain reference of ``linear_full_softmax_loss``: the whole logits matrix, then
    ``full_softmax_loss_reference``."""
    del block_items
    return full_softmax_loss_reference(hidden @ items.T / temperature, targets)


# exp() of arguments below this is < 1.7e-38 (nothing next to the row's max term, which is 1);
# clamping there keeps exp off its slow denormal path.
_EXP_FLOOR = -87.0


class _LinearFullSoftmax(torch.autograd.Function):
    """Blocked ``logsumexp_{j >= 1}(h·e_j s) - h·e_t s`` (``s = 1/T``), mean over rows with
    ``t != 0``; blocks run over the items so each block's gradient rows are written once."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        hidden: Tensor,
        items: Tensor,
        targets: Tensor,
        scale: float,
        block: int,
        dtype: torch.dtype,
    ) -> Tensor:
        h = (hidden.float() * scale).to(dtype)  # (P, D)
        e = items.to(dtype)  # (V, D)
        n_rows, n_items = h.shape[0], e.shape[0]
        run_max = torch.full((n_rows,), float("-inf"), device=h.device)  # (P,)
        run_sum = torch.zeros(n_rows, device=h.device)  # (P,)
        picked = torch.zeros(n_rows, device=h.device)  # (P,)
        buf = torch.empty(n_rows * min(block, n_items), device=h.device)
        for j in range(0, n_items, block):
            z = _block_logits(h, e, j, block, buf)  # (P, c)
            inside, col = _target_columns(targets, j, z.shape[1])
            picked = torch.where(inside, z.gather(1, col.unsqueeze(1)).squeeze(1), picked)
            new_max = torch.maximum(run_max, z.amax(1))  # (P,)
            run_sum.mul_((run_max - new_max).exp_())
            run_sum.add_(z.sub_(new_max.unsqueeze(1)).clamp_min_(_EXP_FLOOR).exp_().sum(1))
            if j == 0:
                run_sum.sub_(z[:, 0])  # padding column: exp(-inf) was clamped, take it back out
            run_max = new_max
        lse = run_max + run_sum.log()  # (P,)
        valid = targets != 0  # (P,)
        count = valid.sum()
        loss = torch.where(valid, lse - picked, 0.0).sum() / count
        ctx.save_for_backward(h, e, targets, lse, valid, count)
        ctx.scale, ctx.block = scale, block  # type: ignore[attr-defined]
        ctx.dtypes = (hidden.dtype, items.dtype)  # type: ignore[attr-defined]
        return loss

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor | None, Tensor | None, None, None, None, None]:
        h, e, targets, lse, valid, count = ctx.saved_tensors  # type: ignore[attr-defined]
        scale, block = ctx.scale, ctx.block  # type: ignore[attr-defined]
        weight = (valid.float() * (grad / count)).unsqueeze(1)  # (P, 1)
        n_rows, n_items = h.shape[0], e.shape[0]
        grad_h = torch.zeros(h.shape, dtype=torch.float32, device=h.device)  # (P, D)
        grad_e = torch.empty(e.shape, dtype=torch.float32, device=h.device)  # (V, D)
        buf = torch.empty(n_rows * min(block, n_items), device=h.device)
        for j in range(0, n_items, block):
            p = _block_logits(h, e, j, block, buf)  # (P, c)
            p.sub_(lse.unsqueeze(1)).clamp_min_(_EXP_FLOOR).exp_()  # softmax without column 0
            if j == 0:
                p[:, 0] = 0.0
            inside, col = _target_columns(targets, j, p.shape[1])
            p.scatter_add_(1, col.unsqueeze(1), -inside.to(p.dtype).unsqueeze(1))  # minus the one-hot
            p.mul_(weight)  # (P, c): d loss / d logit
            pc, eb = p.to(e.dtype), e[j : j + block]
            if pc.dtype == torch.float32:
                torch.mm(pc.T, h, out=grad_e[j : j + block])
                grad_h.addmm_(pc, eb)
            else:
                grad_e[j : j + block] = pc.T @ h
                grad_h += pc @ eb
        grad_h.mul_(scale)  # logit = (hidden·e) * scale; h above is already scaled
        h_dtype, e_dtype = ctx.dtypes  # type: ignore[attr-defined]
        return grad_h.to(h_dtype), grad_e.to(e_dtype), None, None, None, None


def _block_logits(h: Tensor, e: Tensor, start: int, block: int, buf: Tensor) -> Tensor:
    """``h (P, D) @ e[start : start + block].T`` in float32 in ``buf`` (column 0 -inf): ``(P, c)``."""
    eb = e[start : start + block]  # (c, D)
    z = buf[: h.shape[0] * eb.shape[0]].view(h.shape[0], eb.shape[0])
    if h.dtype == torch.float32:
        torch.mm(h, eb.T, out=z)
    else:
        z.copy_(h @ eb.T)
    if start == 0:
        z[:, 0] = float("-inf")
    return z


def _target_columns(targets: Tensor, start: int, width: int) -> tuple[Tensor, Tensor]:
    """Which targets fall in columns ``[start, start + width)`` ``(P,)`` and their column there."""
    inside = (targets >= start) & (targets < start + width)
    return inside, (targets - start).clamp(0, width - 1)
