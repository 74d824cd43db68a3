"""``torch_rechub.utils.hstu_utils``: ``VocabMask``, the next-item logit mask of Torch-RecHub's HSTU
examples. (HSTU's relative position/time bias is ``recforge.layers.hstu.RelativeBias``.)"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from recforge.ints import as_int

MASKED = -1e9


class VocabMask(nn.Module):
    """Logits of ``invalid_items`` (e.g. padding 0) and, per row, of given ids (e.g. the user's history)
    set to ``-1e9`` so top-K never returns them."""

    def __init__(self, vocab_size: int, invalid_items: Sequence[int] | None = None) -> None:
        super().__init__()
        self.vocab_size = as_int(vocab_size, "vocab_size", minimum=1)
        mask = torch.ones(self.vocab_size, dtype=torch.bool)
        bad = [as_int(i, "invalid_items[i]") for i in (invalid_items or [])]
        mask[[i for i in bad if 0 <= i < self.vocab_size]] = False
        self.mask: Tensor
        self.register_buffer("mask", mask)

    def apply_mask(self, logits: Tensor, invalid_ids: Tensor | None = None) -> Tensor:
        """``logits (..., V)`` with masked columns at ``-1e9``; ``invalid_ids`` ``(B, N)`` (or ``(N,)``
        for every row) masks more columns of each row of ``logits (B, V)``; ids outside ``[0, V)``
        are ignored."""
        out = logits.masked_fill(~self.mask, MASKED)
        if invalid_ids is None:
            return out
        ids = invalid_ids.to(out.device, torch.long)
        if ids.dim() == 1:
            ids = ids.unsqueeze(0).expand(out.shape[0], -1)  # (B, N)
        if out.dim() != 2 or ids.dim() != 2 or ids.shape[0] != out.shape[0]:
            raise ValueError(
                f"invalid_ids masking needs logits (B, V) and invalid_ids (B, N), got {tuple(out.shape)}, "
                f"{tuple(invalid_ids.shape)}"
            )
        v = self.vocab_size
        ids = torch.where((ids >= 0) & (ids < v), ids, v)  # outside ids go to a spare column
        hit = torch.zeros(out.shape[0], v + 1, dtype=torch.bool, device=out.device).scatter_(1, ids, True)
        return out.masked_fill(hit[:, :v], MASKED)


__all__ = ["VocabMask"]
