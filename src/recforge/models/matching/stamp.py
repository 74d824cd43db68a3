"""STAMP: Short-Term Attention/Memory Priority model (Liu et al., KDD 2018, doi 10.1145/3219819.3219950).

For the last click ``x_t`` and the session mean ``m_s``, attention
``alpha_i = w0^T sigmoid(W1 x_i + W2 x_t + W3 m_s + b_a)`` pools the session into ``m_a``; two
tanh MLPs give ``h_s = f(m_a)`` and ``h_t = f(x_t)``, and the user vector is ``h_s * h_t``
(trilinear scoring ``<h_s * h_t, e>``).

Deviations: ``sequence_tower`` applies the model at every position (each prefix is a session),
which lets a trainer predict every next item; weights start from N(0, ``weight_std``) as in
Torch-RecHub; the item-embedding init is the feature's ``initializer``.

Torch-RecHub's call ``STAMP(item_history_feature, weight_std, emb_std, item_feature=None)`` (one
``SequenceFeature`` first) is accepted; without ``item_feature`` an item-id feature ``"item_id"``,
initialised from N(0, ``emb_std``), owns the history's table (``_rechub.session_features``), and
``forward`` returns the logits of every item ``(B, V)`` as Torch-RecHub's does (``catalog_logits``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from recforge.features import Feature, RandomNormal, SequenceFeature, SparseFeature
from recforge.models._rechub import positional
from recforge.models.matching._rechub import merge, session_features
from recforge.models.matching.sequential import SequentialModel

RECHUB_ORDER = ("weight_std", "emb_std", "item_feature")


class STAMP(SequentialModel):
    """STAMP. ``sequence_tower -> (B, L, D)``, ``user_tower -> (B, D)``.

    Args:
        history_features, item_features, temperature, normalize: as ``SequentialModel`` (or Torch-RecHub's
            form, see the module docstring).
        weight_std: std of the attention and MLP weights.
        emb_std, item_feature: Torch-RecHub's form only.
    """

    def __init__(
        self,
        history_features: Sequence[Feature] | SequenceFeature,
        item_features: Sequence[Feature] | None = None,
        *rechub_args: object,
        weight_std: float = 0.05,
        emb_std: float | None = None,
        item_feature: SparseFeature | None = None,
        temperature: float = 1.0,
        normalize: bool = False,
    ) -> None:
        catalog = False  # Torch-RecHub's form without item_feature: forward scores every item
        if isinstance(history_features, SequenceFeature):  # Torch-RecHub's form
            values = rechub_args if item_features is None else (item_features, *rechub_args)
            kw = merge(
                "STAMP",
                positional("STAMP", values, RECHUB_ORDER),
                {"emb_std": emb_std, "item_feature": item_feature},
            )
            weight_std = kw.get("weight_std", weight_std)  # type: ignore[assignment]
            std = kw.get("emb_std")
            init = RandomNormal(0.0, float(std)) if std is not None else None  # type: ignore[arg-type]
            catalog = kw.get("item_feature") is None
            history_features, item_features = session_features(
                "STAMP", history_features, kw.get("item_feature"), init
            )
        elif item_features is None or rechub_args:
            raise TypeError(
                "STAMP: pass history_features and item_features lists (hyper-parameters by keyword)"
            )
        super().__init__(history_features, item_features, temperature=temperature, normalize=normalize)  # type: ignore[arg-type]
        self.catalog_logits = catalog
        d = self.dim
        self.w_1, self.w_2, self.w_3 = (nn.Linear(d, d, bias=False) for _ in range(3))
        self.b_a = nn.Parameter(torch.zeros(d))
        self.w_0 = nn.Linear(d, 1, bias=False)
        self.f_s = nn.Sequential(nn.Linear(d, d), nn.Tanh())
        self.f_t = nn.Sequential(nn.Linear(d, d), nn.Tanh())
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=weight_std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def encode(self, seq: Tensor, mask: Tensor, last_only: bool) -> Tensor:
        """``(B, L, D)`` -> ``h_s * h_t`` at every (or only the last) position ``(B, Lq, D)``."""
        m = mask.to(seq.dtype).unsqueeze(-1)  # (B, L, 1)
        x = seq * m  # (B, L, D)
        length = x.shape[1]
        q_pos = torch.arange(length - 1 if last_only else 0, length, device=x.device)  # (Lq,)
        m_s = (x.cumsum(1) / m.cumsum(1).clamp_min(1.0))[:, q_pos]  # (B, Lq, D)
        x_t = x[:, q_pos]  # (B, Lq, D)
        query = self.w_2(x_t) + self.w_3(m_s) + self.b_a  # (B, Lq, D)
        alpha = self.w_0(torch.sigmoid(self.w_1(x).unsqueeze(1) + query.unsqueeze(2))).squeeze(
            -1
        )  # (B, Lq, L)
        causal = q_pos.unsqueeze(1) >= torch.arange(length, device=x.device).unsqueeze(0)  # (Lq, L)
        m_a = (alpha * (causal & mask.unsqueeze(1)).to(x.dtype)) @ x  # (B, Lq, D)
        return self.f_s(m_a) * self.f_t(x_t)  # (B, Lq, D)
