"""A GRU over left-padded histories (GRU4Rec, NARM).

Histories are left-padded (most recent item last). Running a GRU over the leading padding would
change the state, so rows are shifted to right padding, packed (``pack_padded_sequence`` skips the
padding), run, and shifted back: padding never changes the output, and padded positions output 0.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def shift_left_padding(x: Tensor, lengths: Tensor, *, to_right: bool) -> Tensor:
    """Move each row's ``lengths`` real steps of ``x (B, L, ...)`` from the end to the start
    (``to_right=True``: left padding -> right padding) or back."""
    b, length = x.shape[:2]
    ar = torch.arange(length, device=x.device).expand(b, length)  # (B, L)
    offset = (length - lengths).unsqueeze(1)  # (B, 1)
    src = (ar + offset) % length if to_right else (ar - offset) % length  # (B, L)
    index = src.view(b, length, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


class MaskedGRU(nn.Module):
    """``torch.nn.GRU`` (batch first) that respects left padding.

    Args:
        input_dim: width of the inputs.
        hidden_dim: GRU width.
        num_layers: stacked layers.
        dropout: between stacked layers.
        bias: GRU biases.
    """

    def __init__(
        self, input_dim: int, hidden_dim: int, *, num_layers: int = 1, dropout: float = 0.0, bias: bool = True
    ) -> None:
        super().__init__()
        self.gru = nn.GRU(
            input_dim, hidden_dim, num_layers=num_layers, batch_first=True, dropout=dropout, bias=bias
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``x (B, L, E)``, ``mask (B, L)`` (left-padded) -> hidden states ``(B, L, H)``; padded
        positions and empty rows are 0."""
        lengths = mask.sum(1)  # (B,)
        b, length = mask.shape
        real = lengths > 0
        out = x.new_zeros(b, length, self.gru.hidden_size)  # (B, L, H)
        if not bool(real.any()):
            return out
        xr = shift_left_padding(x[real], lengths[real], to_right=True)  # (B', L, E)
        packed = pack_padded_sequence(xr, lengths[real].cpu(), batch_first=True, enforce_sorted=False)
        h, _ = self.gru(packed)
        h, _ = pad_packed_sequence(h, batch_first=True, total_length=length)  # (B', L, H)
        out[real] = shift_left_padding(h, lengths[real], to_right=False)
        return out
