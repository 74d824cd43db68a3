"""Jagged (ragged, unpadded) sequences: ``values (ΣL, ...)`` plus ``offsets (B + 1,)``.

Row ``b`` is ``values[offsets[b]:offsets[b + 1]]`` (oldest first). recforge batches are left-padded
``(B, L)`` with 0 (most recent item last); these helpers convert between the two layouts. The
layout is TorchRec's ``JaggedTensor`` layout (``recforge.torchrec.jagged`` wraps it in classes).
"""

from __future__ import annotations

import torch
from torch import Tensor


def offsets_from_lengths(lengths: Tensor) -> Tensor:
    """``lengths (B,)`` -> ``offsets (B + 1,)`` (int64, starting at 0)."""
    out = torch.zeros(lengths.numel() + 1, dtype=torch.long, device=lengths.device)
    torch.cumsum(lengths.long(), 0, out=out[1:])
    return out  # (B + 1,)


def lengths_from_offsets(offsets: Tensor) -> Tensor:
    """``offsets (B + 1,)`` -> ``lengths (B,)``."""
    if offsets.dim() != 1 or offsets.numel() < 1:
        raise ValueError(f"offsets must be 1-D with B + 1 >= 1 entries, got shape {tuple(offsets.shape)}")
    return offsets.diff()  # (B,)


def positions(offsets: Tensor) -> Tensor:
    """Index of every value inside its own row, ``(ΣL,)`` (0 = oldest)."""
    lengths = lengths_from_offsets(offsets)
    total = int(offsets[-1])
    return torch.arange(total, device=offsets.device) - torch.repeat_interleave(
        offsets[:-1], lengths, output_size=total
    )


def row_ids(offsets: Tensor) -> Tensor:
    """Row (batch index) of every value, ``(ΣL,)``."""
    lengths = lengths_from_offsets(offsets)
    return torch.repeat_interleave(
        torch.arange(lengths.numel(), device=offsets.device), lengths, output_size=int(offsets[-1])
    )


def padded_to_jagged(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Padded ``x (B, L, ...)`` with ``mask (B, L)`` true at real positions -> ``values (ΣL, ...)``,
    ``offsets (B + 1,)``. Real positions keep their order; left or right padding both work as long
    as every row's real positions are in time order."""
    if mask.shape != x.shape[:2]:
        raise ValueError(f"mask {tuple(mask.shape)} must match the first two dims of x {tuple(x.shape)}")
    return x[mask], offsets_from_lengths(mask.sum(1))  # (ΣL, ...), (B + 1,)


def jagged_to_padded(
    values: Tensor,
    offsets: Tensor,
    max_len: int | None = None,
    *,
    left: bool = True,
    padding_value: float = 0,
) -> Tensor:
    """``values (ΣL, ...)`` -> ``(B, L, ...)``, left-padded (most recent last; recforge's convention)
    or right-padded. Rows longer than ``max_len`` keep their most recent (left) / first (right)
    ``max_len`` values."""
    lengths = lengths_from_offsets(offsets)
    b = lengths.numel()
    width = int(lengths.max()) if max_len is None and b else (max_len or 0)
    out = values.new_full((b, width, *values.shape[1:]), padding_value)  # (B, L, ...)
    pos = positions(offsets)  # (ΣL,)
    row = row_ids(offsets)  # (ΣL,)
    col = pos + (width - lengths)[row] if left else pos  # (ΣL,)
    keep = (col >= 0) & (col < width)
    out[row[keep], col[keep]] = values[keep]
    return out


def padding_mask(lengths: Tensor, width: int, *, left: bool = True) -> Tensor:
    """``(B, width)`` bool, true at the real positions of rows with ``lengths (B,)``."""
    idx = torch.arange(width, device=lengths.device)  # (L,)
    if left:
        return idx[None, :] >= (width - lengths)[:, None]  # (B, L)
    return idx[None, :] < lengths[:, None]  # (B, L)
