"""Feature-interaction layers of the factorisation-machine family."""

from __future__ import annotations

from torch import Tensor, nn


class LR(nn.Module):
    """Logistic-regression term: ``(B, input_dim) -> (B, 1)``.

    Applied to flattened embeddings it equals per-id scalar weights on one-hot inputs (each id's
    embedding projected onto the weight vector), i.e. the wide/first-order term of the papers.
    """

    def __init__(self, input_dim: int, *, bias: bool = True) -> None:
        super().__init__()
        self.fc = nn.Linear(input_dim, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x)  # (B, 1)


class FM(nn.Module):
    """Second-order factorisation machine (Rendle 2010) over field embeddings.

    ``Σ_{i<j} <e_i, e_j> = ½ (‖Σ e_i‖² − Σ ‖e_i‖²)``, computed in O(F·D).

    Args:
        reduce_sum: sum over D to one logit ``(B, 1)``; otherwise keep the ``(B, D)`` bi-interaction
            vector (NFM).
    """

    def __init__(self, *, reduce_sum: bool = True) -> None:
        super().__init__()
        self.reduce_sum = reduce_sum

    def forward(self, x: Tensor) -> Tensor:
        """``x (B, F, D) -> (B, 1)`` or ``(B, D)``."""
        square_of_sum = x.sum(1).pow(2)  # (B, D)
        sum_of_square = x.pow(2).sum(1)  # (B, D)
        inter = 0.5 * (square_of_sum - sum_of_square)  # (B, D)
        return inter.sum(1, keepdim=True) if self.reduce_sum else inter
