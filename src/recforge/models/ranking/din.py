"""DIN: Deep Interest Network (Zhou et al. 2018, arXiv 1706.06978).

Each past behaviour is weighted by an activation unit (``TargetAttention``: an MLP over
``[target, behaviour, target - behaviour, target * behaviour]``) and summed into a user-interest
vector that depends on the candidate; that vector, the target and the other features feed an MLP
(Dice activations by default, as in the paper).

Deviations: a behaviour is the concatenation of all ``history_features`` (e.g. item and category)
as in the paper, not one attention per feature as in Torch-RecHub. The paper's mini-batch-aware
regularisation is left to the trainer (``regularization_params``). Padded steps get exactly zero
weight (the paper's code relies on zero embeddings instead).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from recforge.features import Feature, dedup
from recforge.layers import MLP, EmbeddingLayer, MLPConfig, output_dim
from recforge.layers.sequence import TargetAttention
from recforge.models._rechub import rechub_order
from recforge.models.ranking._behavior import behaviors, check_behavior_features, other_features, pair_targets


@rechub_order("mlp_params", "attention_mlp_params")
class DIN(nn.Module):
    """Deep Interest Network. ``forward(batch) -> logits (B,)``.

    Args:
        features: user-profile and context features for the MLP (the targets may be repeated here).
        history_features: behaviour sequences (``SequenceFeature``, ``pooling="concat"``, usually
            ``shared_with`` the matching target feature).
        target_features: the candidate's features, one per history feature, same widths (a longer
            list pairs each history with the target whose table it shares, ``pair_targets``).
        mlp_params: the prediction MLP (default ``{"dims": [200, 80], "activation": "dice"}``).
        attention_mlp_params: the activation unit (default ``{"dims": [36], "activation": "dice"}``).
        softmax_attention: normalise attention weights (the paper does not).
    """

    def __init__(
        self,
        features: Sequence[Feature],
        history_features: Sequence[Feature],
        target_features: Sequence[Feature],
        *,
        mlp_params: MLPConfig | Mapping[str, object] | None = None,
        attention_mlp_params: MLPConfig | Mapping[str, object] | None = None,
        softmax_attention: bool = False,
        sparse: bool = False,
    ) -> None:
        super().__init__()
        paired = pair_targets("DIN", history_features, target_features)
        dim = check_behavior_features("DIN", history_features, paired)
        self.history_features = list(history_features)
        self.target_features = paired
        self.other_features = other_features(features, target_features, history_features)
        self.features = dedup([*features, *history_features, *target_features])
        self.embedding = EmbeddingLayer(self.features, sparse=sparse)
        self.attention = TargetAttention(dim, attention_mlp_params, softmax=softmax_attention)
        mlp = MLPConfig.parse(mlp_params, dims=(200, 80), activation="dice")
        self.mlp = MLP(dim + output_dim(self.other_features), mlp, output_layer=True)

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """``batch`` columns (histories ``(B, L)`` left-padded with 0) -> logits ``(B,)``."""
        b = behaviors(self.embedding, batch, self.history_features, self.target_features)
        interest = self.attention(b.target, b.history, b.mask)  # (B, D)
        rest = self.embedding.flatten(batch, self.other_features)  # (B, Σd)
        return self.mlp(torch.cat([interest, rest], 1)).squeeze(1)  # (B,)
