"""SINE: Sparse-Interest Network for Sequential Recommendation (Tan et al., WSDM 2021, arXiv 2102.09267).

From a large pool of ``num_concept`` learned concept prototypes, each user activates the top
``num_intention`` (K) by a self-attentive summary of the history; every behaviour is softly
assigned to the active concepts (``P(k|t)``, cosine softmax), and K interest embeddings pool the
history with ``P(k|t) P(t|k)``. An intention predicted from the concept-rewritten history weighs
the K interests into one user vector, which is the user tower's output for training and retrieval.

Deviations: the concept-covariance regulariser is not included (``TowerOutput`` carries no
auxiliary loss); one attention head; positions are counted from the most recent item so left
padding changes nothing; LayerNorm on the interests and the intention as in the paper (the
official code L2-normalises the intention).

Torch-RecHub's call ``SINE(history_features, item_features, neg_item_features, num_items,
embedding_dim, hidden_dim, num_concept, num_intention, seq_max_len, num_heads=1, temperature=1.0)``
with column names (``["hist_movie_id"]``, ``["movie_id"]``, ``["neg_items"]``) is accepted: the specs
are built from the names, ``num_items`` and ``embedding_dim`` (``_rechub.features_from_names``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recforge.features import Feature, Pooling, SequenceFeature
from recforge.ints import as_int
from recforge.layers import EmbeddingLayer
from recforge.models._rechub import positional
from recforge.models.matching._rechub import check_negatives, features_from_names, merge
from recforge.models.matching.base import TwoTowerModel
from recforge.models.matching.multi_interest import history_length
from recforge.models.matching.towers import (
    history_feature,
    id_only,
    item_ids,
    left_aligned,
    positions_from_end,
)

RECHUB_ORDER = (
    "neg_item_features", "num_items", "embedding_dim", "hidden_dim", "num_concept", "num_intention",
    "seq_max_len", "num_heads", "temperature",
)  # fmt: skip


def _masked_softmax(scores: Tensor, mask: Tensor, dim: int) -> Tensor:
    return torch.nan_to_num(torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=dim), nan=0.0)


class _AttentionPool(nn.Module):
    """``softmax_L(tanh(x W1) W2)`` weights ``(B, L, H)`` over real positions."""

    def __init__(self, dim: int, hidden_dim: int, heads: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden_dim, bias=False), nn.Tanh(), nn.Linear(hidden_dim, heads, bias=False)
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return _masked_softmax(self.net(x), mask.unsqueeze(-1), dim=1)  # (B, L, H)


class SINE(TwoTowerModel):
    """SINE. ``user_tower -> (B, D)``.

    Args:
        history_features: exactly one ``SequenceFeature`` sharing the item-id table.
        item_features: exactly the item-id feature; its ``embed_dim`` is D.
        num_concept: size of the concept prototype pool.
        num_intention: K, concepts activated per user.
        hidden_dim: width of the attention layers.
        seq_max_len: longest history L (default: the history feature's ``max_len``).
        temperature: divides every score.
        aggregation_temperature: softmax temperature of the interest aggregation.
        neg_item_features, num_items, embedding_dim, num_heads: Torch-RecHub's arguments (see the
            module docstring); ``num_heads`` must be 1 (one attention head here).
    """

    def __init__(
        self,
        history_features: Sequence[Feature] | Sequence[str],
        item_features: Sequence[Feature] | Sequence[str],
        *rechub_args: object,
        num_concept: int | None = None,
        num_intention: int | None = None,
        hidden_dim: int | None = None,
        seq_max_len: int | None = None,
        temperature: float = 1.0,
        aggregation_temperature: float = 0.1,
        neg_item_features: Sequence[Feature] | Sequence[str] | None = None,
        num_items: int | None = None,
        embedding_dim: int | None = None,
        num_heads: int = 1,
    ) -> None:
        super().__init__()
        kw = merge(
            "SINE",
            positional("SINE", rechub_args, RECHUB_ORDER),
            dict(
                neg_item_features=neg_item_features, num_items=num_items, embedding_dim=embedding_dim,
                hidden_dim=hidden_dim, num_concept=num_concept, num_intention=num_intention,
                seq_max_len=seq_max_len, num_heads=num_heads, temperature=temperature,
            ),
            {"num_heads": 1, "temperature": 1.0},
        )  # fmt: skip
        if as_int(kw["num_heads"], "SINE: num_heads", minimum=1) != 1:
            raise ValueError(
                "SINE: num_heads must be 1 (recforge's SINE uses one attention head); drop num_heads"
            )
        for arg in ("hidden_dim", "num_concept", "num_intention"):
            if kw[arg] is None:
                raise TypeError(f"SINE: missing {arg} (pass it by keyword)")
        negs = list(kw["neg_item_features"] or [])  # type: ignore[call-overload]
        if any(isinstance(x, str) for x in (*history_features, *item_features)):
            history_features, item_features = features_from_names(
                "SINE",
                history_features,
                item_features,
                kw["num_items"],
                kw["embedding_dim"],
                kw["seq_max_len"],
            )
            negs = [
                SequenceFeature(str(n), item_features[0].vocab_size, item_features[0].dim, pooling=Pooling.CONCAT,  # type: ignore[union-attr]
                                shared_with=item_features[0].name)
                if isinstance(n, str) else n
                for n in negs
            ]  # fmt: skip
        num_concept = as_int(kw["num_concept"], "SINE: num_concept", minimum=1)
        num_intention = as_int(kw["num_intention"], "SINE: num_intention", minimum=1)
        hidden_dim = as_int(kw["hidden_dim"], "SINE: hidden_dim", minimum=1)
        temperature = float(kw["temperature"])  # type: ignore[arg-type]
        self.history = history_feature(history_features, item_features, "SINE")  # type: ignore[arg-type]
        seq_max_len = history_length("SINE", self.history, kw["seq_max_len"], "seq_max_len")
        item = id_only(item_features, "SINE")  # type: ignore[arg-type]
        self.neg_item_features = check_negatives("SINE", negs, [item])
        if not 1 <= num_intention <= num_concept:
            raise ValueError(
                f"SINE: need 1 <= num_intention <= num_concept, got {num_intention}, {num_concept}"
            )
        self.user_features, self.item_features = [self.history], [item]
        self.temperature, self.aggregation_temperature = float(temperature), float(aggregation_temperature)
        self.num_intention, d = num_intention, item.dim
        self.embedding = EmbeddingLayer([self.history, item])
        self.positions = nn.Parameter(torch.randn(seq_max_len, d) * 0.02)
        self.concepts = nn.Parameter(torch.randn(num_concept, d) * d**-0.5)
        self.summary = _AttentionPool(d, hidden_dim, 1)
        self.assign = nn.Linear(d, d, bias=False)
        self.per_interest = _AttentionPool(d, hidden_dim, num_intention)
        self.intention = _AttentionPool(d, hidden_dim, 1)
        self.norm_interest, self.norm_intention = nn.LayerNorm(d), nn.LayerNorm(d)

    def user_tower(self, batch: Mapping[str, Tensor]) -> Tensor:
        """History ``(B, L)`` -> user vector ``(B, D)`` (a history padded at the end is re-aligned
        first, ``towers.left_aligned``)."""
        batch = left_aligned(batch, self.history.name)
        seq, mask = self.embedding.sequence(batch, self.history.name)  # (B, L, D), (B, L)
        x = seq + positions_from_end(self.positions, seq.shape[1], "SINE")  # (B, L, D)
        z = (self.summary(x, mask) * x).sum(1)  # (B, D)
        top = (z @ self.concepts.T).topk(self.num_intention, dim=-1)  # (B, K)
        c = self.concepts[top.indices] * top.values.sigmoid().unsqueeze(-1)  # (B, K, D)
        p_k_t = torch.softmax(
            F.normalize(self.assign(x), dim=-1) @ F.normalize(c, dim=-1).transpose(1, 2), -1
        )  # (B, L, K)
        p_k_t = p_k_t * mask.unsqueeze(-1).to(x.dtype)  # (B, L, K)
        p_t_k = self.per_interest(x, mask)  # (B, L, K)
        phi = self.norm_interest((p_k_t * p_t_k).transpose(1, 2) @ x)  # (B, K, D)
        x_hat = p_k_t @ c  # (B, L, D)
        c_apt = self.norm_intention((self.intention(x_hat, mask) * x_hat).sum(1))  # (B, D)
        e = torch.softmax(
            (phi @ c_apt.unsqueeze(-1)).squeeze(-1) / self.aggregation_temperature, -1
        )  # (B, K)
        return (e.unsqueeze(-1) * phi).sum(1)  # (B, D)

    def item_tower(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Item ids ``S`` -> ``S + (D,)``."""
        return self.embedding.lookup(self.item_id, item_ids(batch, self.item_features[0]))
