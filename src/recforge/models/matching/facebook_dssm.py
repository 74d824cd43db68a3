"""Facebook embedding-based retrieval two-tower model (Huang et al., KDD 2020, arXiv 2006.11632).

Two MLP towers with cosine similarity, trained pair-wise: a triplet (hinge) loss
``max(0, s(u, neg) - s(u, pos) + margin)``, i.e. ``MatchTrainer`` mode 1. The model only
produces the towers; the margin lives in the pair-wise objective.

Deviations: Torch-RecHub's ``pos_item_features``/``neg_item_features`` pair becomes one
``pos_item_features`` list (negatives are drawn by the trainer's sampler and fed through the same
item tower); the paper's hard-negative mining and multi-feature text inputs are left to the
sampler and the feature pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from recforge.features import Feature
from recforge.layers import MLPConfig
from recforge.models.matching.dssm import DSSM


class FacebookDSSM(DSSM):
    """Pair-wise (hinge) trained cosine two-tower model; towers as ``DSSM``.

    Args:
        user_features: features of the user tower.
        pos_item_features: features of the item tower; the first is the item id.
        user_params, item_params: tower MLPs (same last width).
        temperature: divides the cosine (1.0: the hinge margin is in cosine units, as in the paper).
    """

    def __init__(
        self,
        user_features: Sequence[Feature],
        pos_item_features: Sequence[Feature],
        user_params: MLPConfig | Mapping[str, object] | None = None,
        item_params: MLPConfig | Mapping[str, object] | None = None,
        *,
        temperature: float = 1.0,
    ) -> None:
        super().__init__(
            user_features,
            pos_item_features,
            user_params,
            item_params,
            temperature=temperature,
            normalize=True,
        )
