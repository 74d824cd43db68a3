"""YouTube DNN candidate generation (Covington et al., RecSys 2016, doi 10.1145/2959100.2959190).

The user tower is an MLP over the user features (typically the mean-pooled watch history sharing
the item table, plus profile features); the item tower is the item-id embedding itself (the
paper's softmax weights). Trained list-wise with a sampled softmax over the catalog.

Deviations: as in Torch-RecHub both vectors are L2-normalised by default (``normalize``) and the
score is divided by ``temperature`` (the paper uses raw dot products); the user MLP's last layer
is linear (``TowerMLP``). Torch-RecHub's ``neg_item_feature`` (third, before ``user_params``) names
the batch column of precomputed negatives (``negative_batch``); negatives reach the item tower as
``(B, N)`` item columns either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from recforge.features import Feature
from recforge.layers import EmbeddingLayer, MLPConfig
from recforge.models._rechub import rechub_order
from recforge.models.matching._rechub import check_negatives, features_or_params
from recforge.models.matching.base import TwoTowerModel
from recforge.models.matching.towers import TowerMLP, id_only, item_ids, l2, tower_dim


@rechub_order("user_params", "temperature")
class YoutubeDNN(TwoTowerModel):
    """User MLP against item-id embeddings.

    Args:
        user_features: user tower inputs (history sequence features pooled by their ``pooling``).
        item_features: exactly the item-id feature; its ``embed_dim`` is D.
        neg_item_feature: optional negatives column(s) (Torch-RecHub's argument; see
            ``TwoTowerModel.negative_batch``). A parameter dict here is read as ``user_params``
            (recforge's positional order).
        user_params: user MLP; its last width must be D (default ``{"dims": [D]}``); ``{"dims": []}``
            uses the pooled user features as the user vector (their width must then be D).
        temperature: divides every score.
        normalize: L2-normalise both towers.
    """

    def __init__(
        self,
        user_features: Sequence[Feature],
        item_features: Sequence[Feature],
        neg_item_feature: Sequence[Feature] | MLPConfig | Mapping[str, object] | None = None,
        *,
        user_params: MLPConfig | Mapping[str, object] | None = None,
        temperature: float = 1.0,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        negs, (user_params,) = features_or_params(
            "YoutubeDNN", "neg_item_feature", neg_item_feature, (user_params,)
        )
        self.user_features, self.item_features = list(user_features), list(item_features)
        item = id_only(self.item_features, type(self).__name__)
        self.neg_item_features = check_negatives("YoutubeDNN", negs, self.item_features)
        self.temperature, self.normalize = float(temperature), normalize
        self.embedding = EmbeddingLayer([*self.user_features, *self.item_features])
        self.user_mlp = TowerMLP(tower_dim(self.user_features), user_params, default_dims=(item.dim,))
        if self.user_mlp.output_dim != item.dim:
            raise ValueError(
                f"YoutubeDNN: user_params dims must end at the item embed_dim {item.dim}, "
                f"got a user tower of width {self.user_mlp.output_dim}"
            )

    def user_tower(self, batch: Mapping[str, Tensor]) -> Tensor:
        """User columns -> ``(B, D)``."""
        return l2(self.user_mlp(self.embedding.flatten(batch, self.user_features)), self.normalize)

    def item_tower(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Item ids ``S`` -> ``S + (D,)``."""
        name = self.item_features[0].name
        return l2(self.embedding.lookup(name, item_ids(batch, self.item_features[0])), self.normalize)
