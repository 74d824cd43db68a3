"""BST: Behavior Sequence Transformer (Chen et al. 2019, arXiv 1905.06874).

The behaviour sequence with the target item appended, plus position embeddings, goes through a
transformer encoder (post-norm blocks as in the paper); the encoded target position and the other
features feed an MLP.

Deviations: the paper's position is the time gap to the recommendation; here it is the recency
rank (0 = target, 1 = most recent behaviour, ...), which needs no timestamps and does not move
with padding. Instead of concatenating every position's output (which would make the MLP width
depend on L), the MLP sees the encoded target plus the mean of the encoded real behaviours. The
feed-forward activation is GELU (the paper uses LeakyReLU). Padded steps are masked out of the
attention.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from recforge.features import Feature, Pooling, dedup
from recforge.layers import MLP, EmbeddingLayer, MLPConfig, TransformerEncoder, output_dim, pool_sequence
from recforge.models._rechub import rechub_order
from recforge.models.ranking._behavior import behaviors, check_behavior_features, other_features, pair_targets


@rechub_order("mlp_params", "nhead", "dropout", "num_layers", "max_seq_len")
class BST(nn.Module):
    """Behavior Sequence Transformer. ``forward(batch) -> logits (B,)``.

    Args:
        features, history_features, target_features: as ``DIN``.
        mlp_params: the prediction MLP (default ``{"dims": [256, 128]}`` with ReLU; the paper's is
            1024-512-256 with LeakyReLU).
        nhead: attention heads (the behaviour width must be divisible by it).
        dropout: dropout inside the transformer.
        num_layers: transformer blocks (the paper finds 1 best).
        max_seq_len: most positions (history + target) the position table holds.
    """

    def __init__(
        self,
        features: Sequence[Feature],
        history_features: Sequence[Feature],
        target_features: Sequence[Feature],
        *,
        mlp_params: MLPConfig | Mapping[str, object] | None = None,
        nhead: int = 8,
        dropout: float = 0.2,
        num_layers: int = 1,
        max_seq_len: int = 51,
        sparse: bool = False,
    ) -> None:
        super().__init__()
        paired = pair_targets("BST", history_features, target_features)
        dim = check_behavior_features("BST", history_features, paired)
        if nhead < 1 or dim % nhead:
            raise ValueError(f"BST: the behaviour width {dim} must be divisible by nhead={nhead}")
        if max_seq_len < 2:
            raise ValueError(f"BST: max_seq_len must be >= 2 (a behaviour and the target), got {max_seq_len}")
        self.history_features = list(history_features)
        self.target_features = paired
        self.other_features = other_features(features, target_features, history_features)
        self.features = dedup([*features, *history_features, *target_features])
        self.max_seq_len = max_seq_len
        self.embedding = EmbeddingLayer(self.features, sparse=sparse)
        self.position = nn.Embedding(max_seq_len, dim)
        self.encoder = TransformerEncoder(dim, num_layers, nhead, dropout=dropout, pre_norm=False)
        mlp = MLPConfig.parse(mlp_params, dims=(256, 128))
        self.mlp = MLP(2 * dim + output_dim(self.other_features), mlp, output_layer=True)

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """``batch`` columns (histories ``(B, L)`` left-padded with 0) -> logits ``(B,)``."""
        b = behaviors(self.embedding, batch, self.history_features, self.target_features)
        mask = torch.cat([b.mask, b.mask.new_ones(b.mask.shape[0], 1)], 1)  # (B, L+1)
        rank = mask.flip(1).cumsum(1).flip(1) - 1  # (B, L+1): 0 at the target, 1 most recent...
        if rank.numel() and int(rank.max()) >= self.max_seq_len:
            raise ValueError(
                f"BST: a history has {int(rank.max())} items, more than max_seq_len - 1 = "
                f"{self.max_seq_len - 1}; raise max_seq_len or truncate histories"
            )
        seq = torch.cat([b.history, b.target.unsqueeze(1)], 1)  # (B, L+1, D)
        seq = seq + self.position(rank.clamp_min(0))  # (B, L+1, D)
        out = self.encoder(seq, mask)  # (B, L+1, D), 0 at padding
        history = pool_sequence(out[:, :-1], b.mask, Pooling.MEAN)  # (B, D)
        rest = self.embedding.flatten(batch, self.other_features)  # (B, Σd)
        return self.mlp(torch.cat([out[:, -1], history, rest], 1)).squeeze(1)  # (B,)
