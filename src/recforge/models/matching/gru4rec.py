"""GRU4Rec (Hidasi et al., ICLR 2016, arXiv 1511.06939): a GRU over the session; its state after
each item scores the next item against the item embeddings.

Deviations: the item embeddings are both the GRU input and the output weights (tied, as in the
later GRU4Rec variants and Torch-RecHub); losses (the paper's TOP1/BPR, or cross-entropy) live in
the objectives; a linear map brings the GRU width to D when ``hidden_dim != D``; Torch-RecHub's
user-feature MLP is not included.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from recforge.features import Feature
from recforge.layers.dropout import Dropout
from recforge.layers.recurrent import MaskedGRU
from recforge.models.matching.sequential import SequentialModel


class GRU4Rec(SequentialModel):
    """GRU4Rec. ``sequence_tower -> (B, L, D)``, ``user_tower -> (B, D)``.

    Args:
        history_features, item_features, temperature: as ``SequentialModel``.
        hidden_dim: GRU width (default D).
        num_layers: stacked GRU layers.
        dropout: on the input embeddings and between layers.
    """

    def __init__(
        self,
        history_features: Sequence[Feature],
        item_features: Sequence[Feature],
        *,
        hidden_dim: int | None = None,
        num_layers: int = 1,
        dropout: float = 0.0,
        temperature: float = 1.0,
    ) -> None:
        super().__init__(history_features, item_features, temperature=temperature)
        hidden = hidden_dim or self.dim
        self.drop = Dropout(dropout)
        self.gru = MaskedGRU(
            self.dim, hidden, num_layers=num_layers, dropout=dropout if num_layers > 1 else 0.0
        )
        self.out = nn.Linear(hidden, self.dim) if hidden != self.dim else nn.Identity()

    def encode(self, seq: Tensor, mask: Tensor, last_only: bool) -> Tensor:
        """``(B, L, D)`` -> GRU states mapped to D ``(B, L, D)``."""
        return self.out(self.gru(self.drop(seq), mask))  # (B, L, D)
