"""NARM: Neural Attentive Session-based Recommendation (Li et al., CIKM 2017, arXiv 1711.04725).

A GRU encodes the session; the global encoder is the last state ``c_g = h_t``; the local encoder
attends from ``h_t`` over the earlier states, ``alpha_tj = v^T sigmoid(A1 h_t + A2 h_j)``,
``c_l = sum_j alpha_tj h_j`` (unnormalised, as in the paper); the bilinear decoder scores item e
as ``e^T B [c_g; c_l]``, so the user vector is ``B [c_g; c_l]``.

Deviations: ``sequence_tower`` applies the same encoder at every position (attending to positions
up to it), which lets a trainer predict every next item; the losses live in the objectives.

Torch-RecHub's call ``NARM(item_history_feature, hidden_dim, emb_dropout_p, session_rep_dropout_p,
item_feature=None)`` (one ``SequenceFeature`` first) is accepted; without ``item_feature`` an
item-id feature ``"item_id"`` owns the history's table (``_rechub.session_features``), and
``forward`` returns the logits of every item ``(B, V)`` as Torch-RecHub's does (``catalog_logits``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from recforge.features import Feature, SequenceFeature, SparseFeature
from recforge.ints import as_int
from recforge.layers.dropout import Dropout
from recforge.layers.recurrent import MaskedGRU
from recforge.models._rechub import positional
from recforge.models.matching._rechub import merge, session_features
from recforge.models.matching.sequential import SequentialModel

RECHUB_ORDER = ("hidden_dim", "emb_dropout_p", "session_rep_dropout_p", "item_feature")


class NARM(SequentialModel):
    """NARM. ``sequence_tower -> (B, L, D)``, ``user_tower -> (B, D)``.

    Args:
        history_features, item_features, temperature, normalize: as ``SequentialModel`` (or Torch-RecHub's
            form, see the module docstring).
        hidden_dim: GRU width H.
        emb_dropout_p: dropout on the item embeddings.
        session_rep_dropout_p: dropout on ``[c_g; c_l]``.
    """

    def __init__(
        self,
        history_features: Sequence[Feature] | SequenceFeature,
        item_features: Sequence[Feature] | None = None,
        *rechub_args: object,
        hidden_dim: int = 100,
        emb_dropout_p: float = 0.25,
        session_rep_dropout_p: float = 0.5,
        item_feature: SparseFeature | None = None,
        temperature: float = 1.0,
        normalize: bool = False,
    ) -> None:
        catalog = False  # Torch-RecHub's form without item_feature: forward scores every item
        if isinstance(history_features, SequenceFeature):  # Torch-RecHub's form
            values = rechub_args if item_features is None else (item_features, *rechub_args)
            kw = merge("NARM", positional("NARM", values, RECHUB_ORDER), {"item_feature": item_feature})
            hidden_dim = kw.get("hidden_dim", hidden_dim)  # type: ignore[assignment]
            emb_dropout_p = kw.get("emb_dropout_p", emb_dropout_p)  # type: ignore[assignment]
            session_rep_dropout_p = kw.get("session_rep_dropout_p", session_rep_dropout_p)  # type: ignore[assignment]
            catalog = kw.get("item_feature") is None
            history_features, item_features = session_features(
                "NARM", history_features, kw.get("item_feature")
            )
        elif item_features is None or rechub_args:
            raise TypeError(
                "NARM: pass history_features and item_features lists (hyper-parameters by keyword)"
            )
        hidden_dim = as_int(hidden_dim, "NARM: hidden_dim", minimum=1)
        super().__init__(history_features, item_features, temperature=temperature, normalize=normalize)  # type: ignore[arg-type]
        self.catalog_logits = catalog
        self.emb_dropout = Dropout(emb_dropout_p)
        self.gru = MaskedGRU(self.dim, hidden_dim)
        self.a_1 = nn.Linear(hidden_dim, hidden_dim, bias=False)
        self.a_2 = nn.Linear(hidden_dim, hidden_dim, bias=False)
        self.v = nn.Linear(hidden_dim, 1, bias=False)
        self.rep_dropout = Dropout(session_rep_dropout_p)
        self.b = nn.Linear(2 * hidden_dim, self.dim, bias=False)

    def encode(self, seq: Tensor, mask: Tensor, last_only: bool) -> Tensor:
        """``(B, L, D)`` -> ``B [c_g; c_l]`` at every (or only the last) position ``(B, Lq, D)``."""
        h = self.gru(self.emb_dropout(seq), mask)  # (B, L, H)
        length = h.shape[1]
        q_pos = torch.arange(length - 1 if last_only else 0, length, device=h.device)  # (Lq,)
        c_g = h[:, q_pos]  # (B, Lq, H)
        scores = self.v(torch.sigmoid(self.a_1(c_g).unsqueeze(2) + self.a_2(h).unsqueeze(1))).squeeze(
            -1
        )  # (B, Lq, L)
        causal = q_pos.unsqueeze(1) >= torch.arange(length, device=h.device).unsqueeze(0)  # (Lq, L)
        alpha = scores * (causal & mask.unsqueeze(1)).to(h.dtype)  # (B, Lq, L)
        c_l = alpha @ h  # (B, Lq, H)
        return self.b(self.rep_dropout(torch.cat([c_g, c_l], -1)))  # (B, Lq, D)
