"""ComiRec-SA (Cen et al., KDD 2020, arXiv 2005.09347): multi-interest extraction by self-attention.

K attention heads over the history (plus learned position embeddings, as the official code adds)
pool it into K interests (``SelfAttentiveInterests``). Training and retrieval score each item with
its best interest (``TwoTowerModel.score``).

Deviations: positions are counted from the most recent item so left padding never shifts them;
each candidate takes its own best interest in training (the paper picks the label's best interest
and reuses it for the sampled negatives); the diversity-controlled aggregation is a retrieval-time
re-ranking and is not part of the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from recforge.features import Feature
from recforge.layers import MLPConfig
from recforge.layers.interest import SelfAttentiveInterests
from recforge.models._rechub import rechub_order
from recforge.models.matching.multi_interest import MultiInterestModel, history_length
from recforge.models.matching.towers import positions_from_end


@rechub_order("temperature", "interest_num")
class ComirecSA(MultiInterestModel):
    """ComiRec-SA. ``user_tower -> (B, K, D)``.

    Args:
        user_features, history_features, item_features, user_params: as ``MultiInterestModel``.
        neg_item_feature: Torch-RecHub's negatives column (its positional order: after the item
            features, then ``temperature``, ``interest_num``).
        max_length: longest history L (sizes the position table; default: the history feature's
            ``max_len``).
        temperature: divides every score.
        interest_num: K.
        hidden_dim: width of the attention's tanh layer (default 4 D).
        add_pos: add learned position embeddings before attending (``None``: when a length is
            known from ``max_length`` or the history's ``max_len``; Torch-RecHub adds none).
        normalize: L2-normalise interests and items (``None``: as ``MultiInterestModel``).
    """

    def __init__(
        self,
        user_features: Sequence[Feature],
        history_features: Sequence[Feature],
        item_features: Sequence[Feature],
        neg_item_feature: Sequence[Feature] | None = None,
        *,
        temperature: float = 1.0,
        interest_num: int = 4,
        max_length: int | None = None,
        hidden_dim: int | None = None,
        add_pos: bool | None = None,
        normalize: bool | None = None,
        user_params: MLPConfig | Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(
            user_features,
            history_features,
            item_features,
            interest_num=interest_num,
            temperature=temperature,
            normalize=normalize,
            user_params=user_params,
            neg_item_feature=neg_item_feature,
        )
        self.extract = SelfAttentiveInterests(self.dim, self.interest_num, hidden_dim=hidden_dim)
        if add_pos is None:
            add_pos = max_length is not None or self.history.max_len is not None
        length = history_length("ComirecSA", self.history, max_length) if add_pos else 0
        self.positions = nn.Parameter(torch.randn(length, self.dim) * 0.02) if add_pos else None

    def interests(self, seq: Tensor, mask: Tensor) -> Tensor:
        """``seq (B, L, D)``, ``mask (B, L)`` -> ``(B, K, D)``; attention reads positions, the
        interests pool the item embeddings themselves (as the official code)."""
        keys = seq
        if self.positions is not None:
            keys = seq + positions_from_end(self.positions, seq.shape[1], "ComirecSA")  # (B, L, D)
        return self.extract(keys, mask, values=seq)
