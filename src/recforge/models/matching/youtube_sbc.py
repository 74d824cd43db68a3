"""Sampling-bias-corrected two-tower model (Yi et al., RecSys 2019, doi 10.1145/3298689.3346996).

DSSM-style towers (L2-normalised, score divided by ``temperature``) trained with in-batch softmax
whose logits are corrected by ``- log Q(item)``, Q being each item's batch frequency estimated
online (``StreamingFrequency``, the paper's Algorithm 2). The model exposes what the objective
needs: ``item_log_q(ids)``; in training mode ``forward`` records the batch's item ids first.

Deviations: Torch-RecHub's ``sample_weight_feature`` (a precomputed probability column),
``batch_size`` and ``n_neg`` are accepted in its positional order and not used: Q is estimated
in-model, and the in-batch softmax takes every other row of the batch as a negative (the
objective's business), whatever the batch size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from recforge.features import Feature
from recforge.layers import MLPConfig
from recforge.layers.embedding import column
from recforge.layers.frequency import StreamingFrequency
from recforge.models._rechub import rechub_order
from recforge.models.matching._rechub import features_or_params
from recforge.models.matching.dssm import DSSM
from recforge.outputs import TowerOutput


@rechub_order("user_params", "item_params", "batch_size", "n_neg", "temperature")
class YoutubeSBC(DSSM):
    """In-batch softmax two-tower model with logQ correction.

    Args:
        user_features, item_features, user_params, item_params: as ``DSSM``.
        sample_weight_feature, batch_size, n_neg: Torch-RecHub's arguments, accepted and unused (see
            the module docstring); a parameter dict third is read as ``user_params``.
        temperature: divides the cosine (the paper tunes it around 0.05).
        alpha: moving-average rate of the frequency estimator.
        num_buckets: estimator size (default: the item-id vocabulary, no collisions).
    """

    def __init__(
        self,
        user_features: Sequence[Feature],
        item_features: Sequence[Feature],
        sample_weight_feature: Sequence[Feature] | MLPConfig | Mapping[str, object] | None = None,
        *,
        user_params: MLPConfig | Mapping[str, object] | None = None,
        item_params: MLPConfig | Mapping[str, object] | None = None,
        batch_size: int | None = None,
        n_neg: int | None = None,
        temperature: float = 0.05,
        alpha: float = 0.01,
        num_buckets: int | None = None,
    ) -> None:
        weights, (user_params, item_params) = features_or_params(
            "YoutubeSBC", "sample_weight_feature", sample_weight_feature, (user_params, item_params)
        )
        super().__init__(
            user_features,
            item_features,
            user_params=user_params,
            item_params=item_params,
            temperature=temperature,
            normalize=True,
        )
        self.sample_weight_feature, self.batch_size, self.n_neg = list(weights), batch_size, n_neg
        vocab = self.embedding.features[self.item_id].vocab_size
        self.frequency = StreamingFrequency(num_buckets or vocab, alpha=alpha)

    def item_log_q(self, ids: Tensor) -> Tensor:
        """``log Q`` of item ids (any shape): subtract it from in-batch logits."""
        return self.frequency.log_prob(ids)

    def forward(self, batch: Mapping[str, Tensor]) -> TowerOutput:
        """As ``TwoTowerModel.forward``; in training mode the batch's item ids update Q first."""
        if self.training:
            self.frequency.update(column(batch, self.item_id))
        return super().forward(batch)
