"""DSSM two-tower retrieval (Huang et al., CIKM 2013; the two-tower form of Yi et al. 2019).

An MLP over the flattened user features and another over the flattened item features give the
two vectors; the score is their cosine (both L2-normalised, ``normalize=True`` as in Torch-RecHub)
divided by ``temperature``. Deviations: the paper's letter-trigram word hashing is left to the
feature pipeline; each tower's last layer is linear (see ``TowerMLP``); unlike Torch-RecHub the
temperature is actually applied (``TwoTowerModel.score``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from recforge.features import Feature
from recforge.layers import EmbeddingLayer, MLPConfig
from recforge.models._rechub import rechub_order
from recforge.models.matching.base import TwoTowerModel
from recforge.models.matching.towers import TowerMLP, item_inputs, l2, tower_dim


@rechub_order("user_params", "item_params", "temperature")
class DSSM(TwoTowerModel):
    """Deep Structured Semantic Model.

    Args:
        user_features: features of the user tower.
        item_features: features of the item tower; the first is the item id.
        user_params: user MLP (``{"dims": [...], "dropout": ...}``); the last width is D.
        item_params: item MLP; its last width must equal the user tower's.
        temperature: divides the cosine.
        normalize: L2-normalise both towers (cosine similarity).
    """

    def __init__(
        self,
        user_features: Sequence[Feature],
        item_features: Sequence[Feature],
        *,
        user_params: MLPConfig | Mapping[str, object] | None = None,
        item_params: MLPConfig | Mapping[str, object] | None = None,
        temperature: float = 1.0,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.user_features, self.item_features = list(user_features), list(item_features)
        self.temperature, self.normalize = float(temperature), normalize
        self.embedding = EmbeddingLayer([*self.user_features, *self.item_features])
        self.user_mlp = TowerMLP(tower_dim(self.user_features), user_params, default_dims=(256, 64))
        self.item_mlp = TowerMLP(tower_dim(self.item_features), item_params, default_dims=(256, 64))
        if self.user_mlp.output_dim != self.item_mlp.output_dim:
            raise ValueError(
                f"{type(self).__name__}: user tower width {self.user_mlp.output_dim} != item tower "
                f"width {self.item_mlp.output_dim}; end user_params and item_params with the same dim"
            )

    def user_tower(self, batch: Mapping[str, Tensor]) -> Tensor:
        """User columns -> ``(B, D)``."""
        return l2(self.user_mlp(self.embedding.flatten(batch, self.user_features)), self.normalize)

    def item_tower(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Item columns ``S`` -> ``S + (D,)``."""
        return l2(self.item_mlp(item_inputs(self.embedding, batch, self.item_features)), self.normalize)
