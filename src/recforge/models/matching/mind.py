"""MIND: Multi-Interest Network with Dynamic Routing (Li et al., CIKM 2019, arXiv 1904.08030).

Behaviour-to-Interest (B2I) dynamic routing with one shared bilinear map and random initial
routing logits extracts K interest capsules from the history (``CapsuleRouting``); profile features
are fused into each interest. Training uses label-aware attention: the user vector for an item e
is ``sum_k softmax_k(p * <v_k, e>) v_k``; at inference (eval mode) each item takes its best
interest (``p -> inf``). With ``dynamic_interest`` a user with n behaviours keeps
``K'_u = max(1, min(K, floor(log2 n)))`` interests.

Deviations: the attention logits are ``p * <v_k, e>`` rather than ``<v_k, e> ** p`` (undefined for
negative scores at non-integer p; both tend to the max as p grows); every candidate gets its own
attention (the paper reuses the label's user vector for the sampled negatives), so ``score`` needs
no label and the label's score is the paper's; the random initial logits are drawn once (a buffer)
so eval is deterministic; inactive dynamic interests are copies of the first interest, which
leaves max-scoring and indexing unchanged (``active_interests`` gives the mask).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from recforge.features import Feature
from recforge.layers import MLPConfig
from recforge.layers.capsule import Bilinear, CapsuleRouting
from recforge.layers.embedding import column
from recforge.models._rechub import rechub_order
from recforge.models.matching.multi_interest import MultiInterestModel, history_length


@rechub_order("max_length", "temperature", "interest_num")
class MIND(MultiInterestModel):
    """MIND. ``user_tower -> (B, K, D)``; ``score`` uses label-aware attention in training mode.

    Args:
        user_features, history_features, item_features, user_params: as ``MultiInterestModel``.
        neg_item_feature: Torch-RecHub's negatives column (its positional order: after the item
            features, then ``max_length``, ``temperature``, ``interest_num``).
        max_length: longest history L (default: the history feature's ``max_len``).
        temperature: divides every score.
        interest_num: K (the upper bound with ``dynamic_interest``).
        dynamic_interest: size K per user from the history length.
        routing_iters: dynamic routing iterations.
        attention_power: p of the label-aware attention.
        normalize: L2-normalise interests and items (``None``: as ``MultiInterestModel``).
    """

    def __init__(
        self,
        user_features: Sequence[Feature],
        history_features: Sequence[Feature],
        item_features: Sequence[Feature],
        neg_item_feature: Sequence[Feature] | None = None,
        *,
        max_length: int | None = None,
        temperature: float = 1.0,
        interest_num: int = 4,
        dynamic_interest: bool = False,
        routing_iters: int = 3,
        attention_power: float = 2.0,
        normalize: bool | None = None,
        user_params: MLPConfig | Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(
            user_features,
            history_features,
            item_features,
            interest_num=interest_num,
            temperature=temperature,
            normalize=normalize,
            user_params=user_params,
            neg_item_feature=neg_item_feature,
        )
        max_length = history_length("MIND", self.history, max_length)
        self.dynamic_interest, self.attention_power = dynamic_interest, float(attention_power)
        self.capsule = CapsuleRouting(
            self.dim,
            self.interest_num,
            max_length,
            bilinear=Bilinear.SHARED,
            iters=routing_iters,
            random_init=True,
        )

    def active_interests(self, batch: Mapping[str, Tensor]) -> Tensor:
        """``(B, K)`` bool: the interests a user really has (all true without ``dynamic_interest``)."""
        n = (column(batch, self.history.name) != 0).sum(1).clamp_min(1)  # (B,)
        k = torch.arange(self.interest_num, device=n.device)  # (K,)
        if not self.dynamic_interest:
            return k.expand(n.shape[0], -1) >= 0
        k_u = torch.floor(torch.log2(n.double())).clamp(1, self.interest_num)  # (B,)
        return k.unsqueeze(0) < k_u.unsqueeze(1)  # (B, K)

    def interests(self, seq: Tensor, mask: Tensor) -> Tensor:
        """Capsules ``(B, K, D)``; inactive dynamic interests repeat the first."""
        caps = self.capsule(seq, mask)  # (B, K, D)
        if self.dynamic_interest:
            active = self.active_interests({self.history.name: mask.long()})  # (B, K)
            caps = torch.where(active.unsqueeze(-1), caps, caps[:, :1])  # (B, K, D)
        return caps

    def score(self, user: Tensor, items: Tensor) -> Tensor:
        """``(B, N)`` logits; label-aware attention over interests in training, best interest in eval."""
        if not self.training or user.dim() == 2:
            return super().score(user, items)
        s = user @ (items.T if items.dim() == 2 else items.transpose(1, 2))  # (B, K, N)
        attn = torch.softmax(self.attention_power * s, dim=1)  # (B, K, N)
        return (attn * s).sum(1) / self.temperature  # (B, N)
