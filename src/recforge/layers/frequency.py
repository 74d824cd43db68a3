"""Streaming item-frequency estimation (Yi et al., RecSys 2019, "Sampling-Bias-Corrected Neural
Modeling for Large Corpus Item Recommendations", Algorithm 2).

For every item (bucket) it keeps the step it was last seen (``A``) and a moving average of the gap
between sightings (``B``); ``1 / B`` estimates how often the item lands in a batch, the ``Q`` of
the logQ correction of in-batch softmax. Ids are bucketed by ``id % num_buckets`` (the paper's
hash; with ``num_buckets >= vocab_size`` there are no collisions).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class StreamingFrequency(nn.Module):
    """Per-item sampling probability estimated from the stream of training batches.

    Args:
        num_buckets: size of the hash arrays (the item vocabulary size for exact counts).
        alpha: learning rate of the gap's moving average.
    """

    step: Tensor
    last_seen: Tensor
    gap: Tensor

    def __init__(self, num_buckets: int, *, alpha: float = 0.01) -> None:
        super().__init__()
        if num_buckets < 1 or not 0.0 < alpha <= 1.0:
            raise ValueError(f"num_buckets must be >= 1 and alpha in (0, 1], got {num_buckets}, {alpha}")
        self.num_buckets, self.alpha = num_buckets, alpha
        self.register_buffer("step", torch.zeros((), dtype=torch.float64))
        self.register_buffer("last_seen", torch.zeros(num_buckets, dtype=torch.float64))
        # An unseen item is assumed to come round once per num_buckets batches.
        self.register_buffer("gap", torch.full((num_buckets,), float(num_buckets), dtype=torch.float64))

    @torch.no_grad()
    def update(self, ids: Tensor) -> None:
        """Record one training batch's item ids (any shape; id 0, padding, is ignored)."""
        self.step += 1
        seen = torch.unique(ids[ids > 0] % self.num_buckets)  # (U,)
        gap = self.step - self.last_seen[seen]
        self.gap[seen] = (1 - self.alpha) * self.gap[seen] + self.alpha * gap
        self.last_seen[seen] = self.step

    def log_prob(self, ids: Tensor) -> Tensor:
        """``log Q`` of ``ids`` (same shape, float32): the log of the estimated batch frequency."""
        return (-self.gap[ids % self.num_buckets].log()).float()
