"""Self-attentive multi-interest extraction (ComiRec-SA, arXiv 2005.09347; Lin et al. 2017,
arXiv 1703.03130): K attention heads pool a history into K interest vectors."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SelfAttentiveInterests(nn.Module):
    """``A = softmax_L(W2 tanh(W1 H^T))``, interests ``A H``.

    Args:
        dim: D.
        num_interests: K (attention heads).
        hidden_dim: width of the tanh layer (the paper's d_a; default 4 D as in ComiRec's code).
    """

    def __init__(self, dim: int, num_interests: int, *, hidden_dim: int | None = None) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(dim, hidden_dim or 4 * dim), nn.Tanh())
        self.heads = nn.Linear(hidden_dim or 4 * dim, num_interests, bias=False)

    def forward(self, seq: Tensor, mask: Tensor, values: Tensor | None = None) -> Tensor:
        """``seq (B, L, D)`` (what attention reads), ``mask (B, L)`` true at real items, ``values
        (B, L, D)`` (what is pooled; default ``seq``) -> ``(B, K, D)``.

        An all-padding history gives zero interests."""
        scores = self.heads(self.proj(seq)).transpose(1, 2)  # (B, K, L)
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        attn = torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)  # (B, K, L)
        return attn @ (seq if values is None else values)  # (B, K, D)
