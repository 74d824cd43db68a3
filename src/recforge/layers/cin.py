"""Compressed Interaction Network, xDeepFM's explicit vector-wise high-order crosses (arXiv 1803.05170)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class CIN(nn.Module):
    """CIN: ``X^k_h = Σ_{i,j} W^{k,h}_{ij} (X^{k-1}_i ⊙ X^0_j)``, each layer sum-pooled over D.

    Args:
        num_fields: F (rows of ``X^0``).
        layer_sizes: feature maps H_k per layer.
        split_half: as in the paper's implementation, every layer but the last passes half of its
            maps to the next layer and half to the output (sizes must then be even).

    Shapes: ``x (B, F, D) -> (B, output_dim)``.
    """

    def __init__(
        self, num_fields: int, layer_sizes: Sequence[int] = (64, 64), *, split_half: bool = True
    ) -> None:
        super().__init__()
        sizes = [int(s) for s in layer_sizes]
        if not sizes or any(s < 1 for s in sizes):
            raise ValueError(f"CIN layer_sizes must be positive ints, got {list(layer_sizes)!r}")
        if split_half and any(s % 2 for s in sizes[:-1]):
            raise ValueError(f"CIN with split_half needs even layer sizes (except the last), got {sizes}")
        self.split_half = split_half
        self.convs = nn.ModuleList()
        prev, out = num_fields, 0
        for i, h in enumerate(sizes):
            # A 1x1 convolution over the F*H_{k-1} pairwise maps is the W^{k,h} sum.
            self.convs.append(nn.Conv1d(prev * num_fields, h, kernel_size=1))
            last = i == len(sizes) - 1
            keep = h // 2 if split_half and not last else h
            prev, out = keep, out + (h - keep if split_half and not last else h)
        self.output_dim = out

    def forward(self, x: Tensor) -> Tensor:
        """``x (B, F, D) -> (B, output_dim)``."""
        b, _, d = x.shape
        h, pooled = x, []
        for i, conv in enumerate(self.convs):
            z = torch.einsum("bhd,bfd->bhfd", h, x).reshape(b, -1, d)  # (B, H*F, D)
            z = conv(z)  # (B, H_k, D); linear, as the paper's Eq. 6
            if self.split_half and i < len(self.convs) - 1:
                h, direct = z.split(z.shape[1] // 2, 1)  # (B, H_k/2, D) each
            else:
                h, direct = z, z
            pooled.append(direct.sum(-1))  # (B, H_k or H_k/2)
        return torch.cat(pooled, 1)  # (B, output_dim)
