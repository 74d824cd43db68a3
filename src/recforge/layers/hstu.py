"""HSTU: the Hierarchical Sequential Transduction Unit (Zhai et al. 2024, arXiv 2402.17152).

One layer, for inputs ``X`` (``ΣL x D`` jagged, or ``B x L x D`` padded)::

    U, V, Q, K = split(SiLU(f1(LayerNorm(X))))                 # pointwise projection
    A = SiLU(Q K^T + rab(positions, time gaps)) * causal / n   # pointwise attention, no softmax
    Y = X + f2(LayerNorm(A V) * U)                              # gated output + residual

Choices (documented deviations / details):

* ``n`` (attention normalisation) is the layer's ``max_len`` constant, not the number of visible
  keys: SiLU attention keeps preference *intensity* (a user with many relevant items aggregates
  more), which a per-row mean would remove. A constant also makes the output independent of how a
  batch is padded or bucketed (the paper's code divides by the padded length of the batch).
* ``rab`` is one learned scalar per relative distance ``i - j`` (clipped at ``max_len - 1``) plus,
  when timestamps are given, one per time-gap bucket ``floor(log2(1 + |t_i - t_j|))`` (clipped at
  ``num_time_buckets - 1``), shared by all heads. ``t_i`` is the query's own timestamp.
* Jagged attention (``HSTUKernel.JAGGED``) in plain PyTorch: rows are grouped into length buckets
  ``ceil(log2(L))``; each bucket is gathered into a right-padded ``(n_b, L_b)`` block with ``L_b``
  the longest row *in that bucket* and attended with one batched matmul, then the outputs are
  scattered back to the jagged layout. The projections, norms and gating run on the ``ΣL`` values
  only. Padding waste is bounded (``L_b < 2 L`` for every row, so at most ~4x the exact quadratic
  work per row, usually far less) instead of padding every row to the batch's longest one, and there
  are at most ``log2(max L) + 1`` matmuls. Right padding within a bucket needs no key mask: a causal
  query only sees earlier positions, which are real. No custom kernel, so it runs on CPU and GPU.
* ``HSTUKernel.PADDED`` is the simple reference with the same signature: every row padded to the
  batch's longest row.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recforge.choices import Choice
from recforge.jagged import lengths_from_offsets
from recforge.layers.dropout import Dropout


class HSTUKernel(Choice):
    JAGGED = "jagged"
    PADDED = "padded"


class RelativeBias(nn.Module):
    """``rab^{p,t}``: a scalar per relative position plus one per log2 time-gap bucket.

    Args:
        max_len: distances ``>= max_len - 1`` share the last position entry.
        num_time_buckets: time-gap buckets (0: no time bias).
    """

    def __init__(self, max_len: int, num_time_buckets: int = 0) -> None:
        super().__init__()
        if max_len < 1 or num_time_buckets < 0:
            raise ValueError(
                f"max_len must be >= 1 and num_time_buckets >= 0, got {max_len}, {num_time_buckets}"
            )
        self.max_len = max_len
        self.pos = nn.Parameter(torch.randn(max_len) * 0.02)
        self.time = nn.Parameter(torch.randn(num_time_buckets) * 0.02) if num_time_buckets else None

    def forward(
        self, pos_q: Tensor, pos_k: Tensor, time_q: Tensor | None = None, time_k: Tensor | None = None
    ) -> Tensor:
        """``pos_q (..., Lq)``, ``pos_k (..., Lk)`` (and timestamps alike) -> ``(..., Lq, Lk)``."""
        dist = (pos_q.unsqueeze(-1) - pos_k.unsqueeze(-2)).clamp(0, self.max_len - 1)  # (..., Lq, Lk)
        bias = self.pos[dist]
        if self.time is not None and time_q is not None and time_k is not None:
            gap = (time_q.unsqueeze(-1) - time_k.unsqueeze(-2)).abs().double()  # (..., Lq, Lk)
            bucket = torch.log2(gap + 1).floor().long().clamp(0, self.time.numel() - 1)
            bias = bias + self.time[bucket]
        return bias


def pointwise_attention(
    q: Tensor, k: Tensor, v: Tensor, bias: Tensor, allowed: Tensor, norm: float
) -> Tensor:
    """``SiLU(q k^T + bias) * allowed / norm @ v``.

    Args:
        q, k: ``(N, H, Lq|Lk, dk)``. v: ``(N, H, Lk, dv)``.
        bias: ``(N|1, Lq, Lk)`` shared by heads. allowed: ``(N|1, Lq, Lk)`` bool.
        norm: divides every attention weight.

    Returns:
        ``(N, H, Lq, dv)``.
    """
    s = q @ k.transpose(-1, -2) + bias.unsqueeze(1)  # (N, H, Lq, Lk)
    a = F.silu(s) * (allowed.unsqueeze(1).to(s.dtype) / norm)  # (N, H, Lq, Lk)
    return a @ v


def _attend_blocks(
    q: Tensor, k: Tensor, v: Tensor, idx: Tensor, timestamps: Tensor | None, bias: RelativeBias, norm: float
) -> Tensor:
    """Causal attention over right-padded rows gathered by ``idx (n, Lb)`` from jagged ``(ΣL, H, d)``."""
    width = idx.shape[1]
    qb, kb, vb = (t[idx].transpose(1, 2) for t in (q, k, v))  # (n, H, Lb, d)
    pos = torch.arange(width, device=q.device)  # (Lb,)
    t = timestamps[idx] if timestamps is not None else None  # (n, Lb)
    rab = bias(pos, pos, t, t)  # (n|1, Lb, Lb)
    if rab.dim() == 2:
        rab = rab.unsqueeze(0)  # (1, Lb, Lb)
    causal = torch.ones(width, width, dtype=torch.bool, device=q.device).tril().unsqueeze(0)  # (1, Lb, Lb)
    return pointwise_attention(qb, kb, vb, rab, causal, norm).transpose(1, 2)  # (n, Lb, H, dv)


def _gather_index(offsets: Tensor, rows: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    width = int(lengths[rows].max())
    col = torch.arange(width, device=offsets.device)  # (Lb,)
    valid = col[None, :] < lengths[rows][:, None]  # (n, Lb)
    idx = torch.where(valid, offsets[rows][:, None] + col[None, :], 0)  # (n, Lb)
    return idx, valid


def jagged_hstu_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    offsets: Tensor,
    timestamps: Tensor | None,
    bias: RelativeBias,
    norm: float,
) -> Tensor:
    """Causal pointwise attention over jagged rows, bucketed by ``ceil(log2(length))``.

    Args:
        q, k: ``(ΣL, H, dk)``. v: ``(ΣL, H, dv)``. offsets: ``(B + 1,)``.
        timestamps: ``(ΣL,)`` or None. bias: the relative bias. norm: attention divisor.

    Returns:
        ``(ΣL, H, dv)``.
    """
    total = q.shape[0]
    if total == 0:
        return v.new_zeros(v.shape)
    lengths = lengths_from_offsets(offsets)
    bucket = torch.ceil(torch.log2(lengths.clamp_min(1).double())).long()  # (B,)
    bucket = torch.where(lengths > 0, bucket, -1)
    outs, where = [], []
    for b in torch.unique(bucket).tolist():
        if b < 0:
            continue
        rows = torch.nonzero(bucket == b).squeeze(1)  # (n,)
        idx, valid = _gather_index(offsets, rows, lengths)
        outs.append(_attend_blocks(q, k, v, idx, timestamps, bias, norm)[valid])  # (Σ_b L, H, dv)
        where.append(idx[valid])
    perm = torch.cat(where)  # (ΣL,) jagged index of each computed row
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(total, device=perm.device)
    return torch.cat(outs)[inverse]  # (ΣL, H, dv)


def padded_hstu_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    offsets: Tensor,
    timestamps: Tensor | None,
    bias: RelativeBias,
    norm: float,
) -> Tensor:
    """Reference with ``jagged_hstu_attention``'s signature: every row padded to the longest."""
    if q.shape[0] == 0:
        return v.new_zeros(v.shape)
    lengths = lengths_from_offsets(offsets)
    rows = torch.arange(lengths.numel(), device=offsets.device)
    idx, valid = _gather_index(offsets, rows, lengths)
    return _attend_blocks(q, k, v, idx, timestamps, bias, norm)[valid]  # (ΣL, H, dv)


_KERNELS = {HSTUKernel.JAGGED: jagged_hstu_attention, HSTUKernel.PADDED: padded_hstu_attention}


class HSTULayer(nn.Module):
    """One HSTU layer (see the module docstring).

    Args:
        dim: model width D.
        num_heads: H.
        attention_dim: per-head width of Q and K (default ``dim // num_heads``).
        linear_dim: per-head width of U and V (default ``dim // num_heads``).
        max_len: longest sequence; also the attention normaliser ``n``.
        num_time_buckets: log2 time-gap buckets of the relative bias (0: positions only).
        dropout: on the gated output (training only).
        kernel: ``"jagged"`` (length-bucketed) or ``"padded"`` (reference).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 1,
        *,
        attention_dim: int | None = None,
        linear_dim: int | None = None,
        max_len: int = 200,
        num_time_buckets: int = 0,
        dropout: float = 0.0,
        kernel: HSTUKernel | str = HSTUKernel.JAGGED,
    ) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"HSTU dim {dim} must be divisible by num_heads {num_heads} >= 1")
        self.num_heads = num_heads
        self.dk = attention_dim or dim // num_heads
        self.dv = linear_dim or dim // num_heads
        self.max_len = max_len
        self.kernel = HSTUKernel.parse(kernel)
        self.norm_in = nn.LayerNorm(dim)
        self.f1 = nn.Linear(dim, num_heads * (2 * self.dv + 2 * self.dk))
        self.norm_attn = nn.LayerNorm(num_heads * self.dv)
        self.f2 = nn.Linear(num_heads * self.dv, dim)
        self.bias = RelativeBias(max_len, num_time_buckets)
        self.drop = Dropout(dropout)

    def _project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        h, dk, dv = self.num_heads, self.dk, self.dv
        u, v, q, k = F.silu(self.f1(self.norm_in(x))).split([h * dv, h * dv, h * dk, h * dk], -1)
        return u, v.unflatten(-1, (h, dv)), q.unflatten(-1, (h, dk)), k.unflatten(-1, (h, dk))  # (..., H, d)

    def _output(self, x: Tensor, av: Tensor, u: Tensor) -> Tensor:
        return x + self.f2(self.drop(self.norm_attn(av.flatten(-2)) * u))  # (..., D)

    def forward(self, x: Tensor, offsets: Tensor, timestamps: Tensor | None = None) -> Tensor:
        """Jagged ``x (ΣL, D)``, ``offsets (B + 1,)``, ``timestamps (ΣL,)`` -> ``(ΣL, D)``."""
        u, v, q, k = self._project(x)
        av = _KERNELS[self.kernel](
            q, k, v, offsets, timestamps, self.bias, float(self.max_len)
        )  # (ΣL, H, dv)
        return self._output(x, av, u)

    def forward_padded(
        self, x: Tensor, positions: Tensor, allowed: Tensor, timestamps: Tensor | None = None
    ) -> Tensor:
        """Padded ``x (B, L, D)`` with an explicit attention mask ``allowed (B, L, L)`` (query,
        key) and per-token ``positions (B, L)`` / ``timestamps (B, L)`` -> ``(B, L, D)``.
        Used for custom masks such as M-FALCON candidate scoring."""
        u, v, q, k = self._project(x)
        rab = self.bias(positions, positions, timestamps, timestamps)  # (B, L, L)
        av = pointwise_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), rab, allowed, float(self.max_len)
        ).transpose(1, 2)  # (B, L, H, dv)
        return self._output(x, av, u)
