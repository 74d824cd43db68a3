"""Facebook embedding-based retrieval two-tower model (Huang et al., KDD 2020, arXiv 2006.11632).

Two MLP towers with cosine similarity, trained pair-wise: a triplet (hinge) loss
``max(0, s(u, neg) - s(u, pos) + margin)``, i.e. ``MatchTrainer`` mode 1. The model only
produces the towers; the margin lives in the pair-wise objective.

Deviations: Torch-RecHub's ``neg_item_features`` (third, before ``user_params``) name the batch
columns of precomputed negatives, one per item feature (``negative_batch``); they go through the
same item tower and tables as the positives (Torch-RecHub gives them tables of their own). Without
them the trainer's sampler draws the negatives. The paper's hard-negative mining and multi-feature
text inputs are left to the sampler and the feature pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from recforge.features import Feature
from recforge.layers import MLPConfig
from recforge.models._rechub import rechub_order
from recforge.models.matching._rechub import check_negatives, features_or_params
from recforge.models.matching.dssm import DSSM


@rechub_order("user_params", "item_params", "temperature")
class FacebookDSSM(DSSM):
    """Pair-wise (hinge) trained cosine two-tower model; towers as ``DSSM``.

    Args:
        user_features: features of the user tower.
        pos_item_features: features of the item tower; the first is the item id.
        neg_item_features: optional negatives columns, one per item feature (Torch-RecHub's
            argument); a parameter dict here is read as ``user_params`` (recforge's order).
        user_params, item_params: tower MLPs (same last width).
        temperature: divides the cosine (1.0: the hinge margin is in cosine units, as in the paper).
    """

    def __init__(
        self,
        user_features: Sequence[Feature],
        pos_item_features: Sequence[Feature],
        neg_item_features: Sequence[Feature] | MLPConfig | Mapping[str, object] | None = None,
        *,
        user_params: MLPConfig | Mapping[str, object] | None = None,
        item_params: MLPConfig | Mapping[str, object] | None = None,
        temperature: float = 1.0,
    ) -> None:
        negs, (user_params, item_params) = features_or_params(
            "FacebookDSSM", "neg_item_features", neg_item_features, (user_params, item_params)
        )
        super().__init__(
            user_features,
            pos_item_features,
            user_params=user_params,
            item_params=item_params,
            temperature=temperature,
            normalize=True,
        )
        self.neg_item_features = check_negatives("FacebookDSSM", negs, self.item_features)
