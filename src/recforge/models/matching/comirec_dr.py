"""ComiRec-DR (Cen et al., KDD 2020, arXiv 2005.09347): multi-interest extraction by dynamic routing.

Each behaviour is mapped to every interest by its own matrix (``Bilinear.PER_INTEREST``), routing
logits start at zero and K squashed interest capsules come out (``CapsuleRouting``). Training takes,
for every item, the interest that scores it best (``TwoTowerModel.score``), as does retrieval.

Deviations: the official code keeps one matrix per (position, interest); one per interest (the
paper's ``W_j``) keeps the model independent of left padding. The paper's training picks the
interest by the label and scores sampled negatives with it; here each candidate takes its own best
interest, which equals the paper for the label. The controllable aggregation (diversity lambda) is a
retrieval-time re-ranking and is not part of the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from recforge.features import Feature
from recforge.layers import MLPConfig
from recforge.layers.capsule import Bilinear, CapsuleRouting
from recforge.models._rechub import rechub_order
from recforge.models.matching.multi_interest import MultiInterestModel, history_length


@rechub_order("max_length", "temperature", "interest_num")
class ComirecDR(MultiInterestModel):
    """ComiRec-DR. ``user_tower -> (B, K, D)``.

    Args:
        user_features, history_features, item_features, user_params: as ``MultiInterestModel``.
        neg_item_feature: Torch-RecHub's negatives column (its positional order: after the item
            features, then ``max_length``, ``temperature``, ``interest_num``).
        max_length: longest history L (default: the history feature's ``max_len``).
        temperature: divides every score.
        interest_num: K.
        routing_iters: dynamic routing iterations.
        normalize: L2-normalise interests and items (``None``: as ``MultiInterestModel``).
    """

    def __init__(
        self,
        user_features: Sequence[Feature],
        history_features: Sequence[Feature],
        item_features: Sequence[Feature],
        neg_item_feature: Sequence[Feature] | None = None,
        *,
        max_length: int | None = None,
        temperature: float = 1.0,
        interest_num: int = 4,
        routing_iters: int = 3,
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
        max_length = history_length("ComirecDR", self.history, max_length)
        self.capsule = CapsuleRouting(
            self.dim,
            self.interest_num,
            max_length,
            bilinear=Bilinear.PER_INTEREST,
            iters=routing_iters,
            random_init=False,
        )

    def interests(self, seq: Tensor, mask: Tensor) -> Tensor:
        """``seq (B, L, D)``, ``mask (B, L)`` -> capsules ``(B, K, D)``."""
        return self.capsule(seq, mask)
