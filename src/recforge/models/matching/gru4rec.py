"""GRU4Rec (Hidasi et al., ICLR 2016, arXiv 1511.06939): a GRU over the session; its state after
each item scores the next item against the item embeddings.

Deviations: the item embeddings are both the GRU input and the output weights (tied, as in the
later GRU4Rec variants and Torch-RecHub); losses (the paper's TOP1/BPR, or cross-entropy) live in
the objectives; a linear map brings the GRU width to D when ``hidden_dim != D``.

Torch-RecHub's call ``GRU4Rec(user_features, history_features, item_features, neg_item_feature,
user_params, temperature)`` is accepted: its user features are fused with the GRU state by the
``user_params`` MLP (``SequentialModel``), a ``"num_layers"`` key there sets the GRU depth, and both
towers are L2-normalised as in Torch-RecHub unless ``normalize`` says otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from recforge.features import Feature
from recforge.ints import as_int
from recforge.layers import MLPConfig
from recforge.layers.dropout import Dropout
from recforge.layers.recurrent import MaskedGRU
from recforge.models._rechub import positional
from recforge.models.matching._rechub import merge
from recforge.models.matching.sequential import SequentialModel

RECHUB_ORDER = (
    "user_features",
    "history_features",
    "item_features",
    "neg_item_feature",
    "user_params",
    "temperature",
)


class GRU4Rec(SequentialModel):
    """GRU4Rec. ``sequence_tower -> (B, L, D)``, ``user_tower -> (B, D)``.

    Args:
        history_features, item_features, temperature: as ``SequentialModel``.
        hidden_dim: GRU width (default D).
        num_layers: stacked GRU layers.
        dropout: on the input embeddings and between layers.
        user_features, user_params, neg_item_feature: as ``SequentialModel``; given positionally
            after two feature lists, the arguments follow Torch-RecHub's order (module docstring).
        normalize: L2-normalise both towers (default: only in Torch-RecHub's form).
    """

    def __init__(
        self,
        history_features: Sequence[Feature],
        item_features: Sequence[Feature],
        *rechub_args: object,
        user_features: Sequence[Feature] | None = None,
        neg_item_feature: Sequence[Feature] | None = None,
        user_params: MLPConfig | Mapping[str, object] | None = None,
        hidden_dim: int | None = None,
        num_layers: int = 1,
        dropout: float = 0.0,
        temperature: float = 1.0,
        normalize: bool | None = None,
    ) -> None:
        rechub = user_features is not None or neg_item_feature is not None or bool(rechub_args)
        if rechub_args:  # Torch-RecHub's positional order
            given = positional("GRU4Rec", (history_features, item_features, *rechub_args), RECHUB_ORDER)
            kw = merge(
                "GRU4Rec",
                given,
                {
                    "neg_item_feature": neg_item_feature,
                    "user_params": user_params,
                    "temperature": temperature,
                },
                {"temperature": 1.0},
            )
            user_features, history_features = kw["user_features"], kw["history_features"]  # type: ignore[assignment]
            item_features, neg_item_feature = kw["item_features"], kw.get("neg_item_feature")  # type: ignore[assignment]
            user_params, temperature = kw.get("user_params"), kw.get("temperature", temperature)  # type: ignore[assignment]
        if isinstance(user_params, Mapping) and "num_layers" in user_params:
            user_params = dict(user_params)
            num_layers = as_int(
                user_params.pop("num_layers"), "GRU4Rec: user_params['num_layers']", minimum=1
            )
        super().__init__(
            history_features,
            item_features,
            temperature=float(temperature),  # type: ignore[arg-type]
            user_features=user_features or (),
            user_params=user_params,
            normalize=rechub if normalize is None else normalize,
            neg_item_feature=neg_item_feature,
        )
        hidden = hidden_dim or self.dim
        self.drop = Dropout(dropout)
        self.gru = MaskedGRU(
            self.dim, hidden, num_layers=num_layers, dropout=dropout if num_layers > 1 else 0.0
        )
        self.out = nn.Linear(hidden, self.dim) if hidden != self.dim else nn.Identity()

    def encode(self, seq: Tensor, mask: Tensor, last_only: bool) -> Tensor:
        """``(B, L, D)`` -> GRU states mapped to D ``(B, L, D)``."""
        return self.out(self.gru(self.drop(seq), mask))  # (B, L, D)
