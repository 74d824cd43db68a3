"""DIEN: Deep Interest Evolution Network (Zhou et al. 2019, arXiv 1809.03672).

An interest-extractor GRU turns the behaviour sequence into interest states ``h_t``; an auxiliary
loss makes each ``h_t`` predict the next behaviour ``e[t+1]`` against a sampled negative
``ê[t+1]`` (eq. 7, inner-product scores); an interest-evolving GRU (AUGRU by default, or AIGRU /
AGRU) weighted by attention to the target produces the final interest, which is concatenated with
the target and the other features and fed to an MLP. As in the authors' released code, the MLP also
sees the pooled behaviour sequence and its element-wise product with the target (their
``item_his_eb_sum`` and ``item_eb * item_his_eb_sum``; here the mean over the real steps rather
than the sum, so the scale does not grow with the history length).

Deviations: the attention ``a_t`` is DIN's activation unit, softmax-normalised over the real steps,
as in the authors' released code (the paper writes a bilinear form ``h_t W e_target``). The
auxiliary loss is computed in training mode only, from the ``neg_history_features`` columns
(``recforge.data.behavior.build_behavior_ctr`` builds them); evaluation and serving need no
negatives and report ``aux_loss = 0``. Padded steps never update either GRU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recforge.features import Feature, Pooling, dedup
from recforge.layers import MLP, EmbeddingLayer, MLPConfig, output_dim, pool_sequence
from recforge.layers.sequence import (
    GRUType,
    InterestEvolution,
    InterestExtractor,
    TargetAttention,
    front_pack,
    gather_steps,
)
from recforge.models.ranking._behavior import (
    behaviors,
    check_behavior_features,
    history_of,
    other_features,
    pair_targets,
)
from recforge.outputs import RankingOutput


class DIEN(nn.Module):
    """Deep Interest Evolution Network. ``forward(batch) -> RankingOutput(logits (B,), aux_loss)``.

    Args:
        features, history_features, target_features, mlp_params, attention_mlp_params: as ``DIN``.
        neg_history_features: sampled negative behaviours aligned step by step with
            ``history_features`` (same widths, usually ``shared_with`` the targets); ``None``
            disables the auxiliary loss.
        gru_type: interest-evolution cell, ``"AUGRU"`` (paper's best), ``"AIGRU"`` or ``"AGRU"``.
        alpha: weight of the auxiliary loss (the paper's ``α``).
    """

    def __init__(
        self,
        features: Sequence[Feature],
        history_features: Sequence[Feature],
        target_features: Sequence[Feature],
        *,
        mlp_params: MLPConfig | Mapping[str, object] | None = None,
        attention_mlp_params: MLPConfig | Mapping[str, object] | None = None,
        neg_history_features: Sequence[Feature] | None = None,
        gru_type: GRUType | str = GRUType.AUGRU,
        alpha: float = 1.0,
        sparse: bool = False,
    ) -> None:
        super().__init__()
        paired = pair_targets("DIEN", history_features, target_features)
        dim = check_behavior_features("DIEN", history_features, paired)
        negs = list(neg_history_features or [])
        if negs:
            check_behavior_features("DIEN", negs, paired, role="neg_history_features")
        if alpha < 0:
            raise ValueError(f"DIEN: alpha must be >= 0, got {alpha}")
        self.history_features = list(history_features)
        self.target_features = paired
        self.neg_history_features = negs
        self.other_features = other_features(features, target_features, history_features, negs)
        self.features = dedup([*features, *history_features, *target_features, *negs])
        self.alpha = float(alpha)
        self.embedding = EmbeddingLayer(self.features, sparse=sparse)
        self.extractor = InterestExtractor(dim)
        self.attention = TargetAttention(dim, attention_mlp_params, softmax=True)
        self.evolution = InterestEvolution(dim, gru_type=gru_type)
        mlp = MLPConfig.parse(mlp_params, dims=(200, 80), activation="dice")
        self.mlp = MLP(3 * dim + output_dim(self.other_features), mlp, output_layer=True)

    def forward(self, batch: Mapping[str, Tensor]) -> RankingOutput:
        """``batch`` columns (histories ``(B, L)`` left-padded with 0) -> logits ``(B,)`` and the
        weighted auxiliary loss (a scalar)."""
        b = behaviors(self.embedding, batch, self.history_features, self.target_features)
        order, lengths = front_pack(b.mask)  # real steps first, in time order
        steps = max(int(lengths.max()), 1) if lengths.numel() else 1
        order = order[:, :steps]  # (B, T)
        history = gather_steps(b.history, order)  # (B, T, D)
        states = self.extractor(history, lengths)  # (B, T, D)
        real = torch.arange(steps, device=lengths.device) < lengths.unsqueeze(1)  # (B, T)
        att = self.attention.weights(b.target, states, real)  # (B, T)
        final = self.evolution(states, att, lengths)  # (B, D)
        pooled = pool_sequence(b.history, b.mask, Pooling.MEAN)  # (B, D)
        rest = self.embedding.flatten(batch, self.other_features)  # (B, Σd), targets included
        logits = self.mlp(torch.cat([final, pooled, b.target * pooled, rest], 1)).squeeze(1)  # (B,)
        aux = logits.new_zeros(())
        if self.training and self.neg_history_features and self.alpha > 0:
            neg, neg_mask, _ = history_of(self.embedding, batch, self.neg_history_features, b.keep)
            neg = gather_steps(neg, order)  # (B, T, D)
            neg_real = neg_mask.gather(1, order)  # (B, T)
            aux = self.alpha * self._auxiliary(states, history, neg, real & neg_real)
        return RankingOutput(logits, aux)

    @staticmethod
    def _auxiliary(states: Tensor, history: Tensor, neg: Tensor, real: Tensor) -> Tensor:
        """Mean over steps t with a real next step of ``-log σ(h_t·e[t+1]) - log(1 - σ(h_t·ê[t+1]))``."""
        h = states[:, :-1]  # (B, T-1, D)
        valid = real[:, 1:]  # (B, T-1): step t+1 exists and has a negative
        if not bool(valid.any()):
            return states.new_zeros(())
        pos = (h * history[:, 1:]).sum(-1)[valid]  # (P,)
        negs = (h * neg[:, 1:]).sum(-1)[valid]  # (P,)
        return (F.softplus(-pos) + F.softplus(negs)).mean()
