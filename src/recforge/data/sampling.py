"""Negative sampling for retrieval training, vectorised (no per-row Python loops).

Distributions: ``uniform`` over item ids ``1 .. V - 1`` and ``popularity`` (``count ** alpha``,
word2vec's unigram^0.75 by default). In-batch negatives need no sampler: they are an objective mode
(``recforge.trainers.match.Negatives.IN_BATCH``, the other rows' positives); ``mixed`` combines
in-batch with sampled negatives. Every sample comes with its log-probability under the sampling
distribution, for the logQ correction of sampled softmax (Yi et al., RecSys 2019).

Guarantees: a per-row sample never equals the row's positive, and with ``seen`` never an item the
row's user has seen. Uniform sampling is exact: it draws the r-th allowed item directly from the
complement of the user's seen set. Popularity sampling rejects and redraws forbidden entries for
``max_rounds`` rounds, then draws any entry still forbidden uniformly from the allowed set (rare;
the reported log-probability stays the popularity one). Reported log-probabilities are those of
the unrestricted distribution (not renormalised per user).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from recforge.choices import Choice
from recforge.data.interactions import SeenItems


class SamplingDistribution(Choice):
    UNIFORM = "uniform"
    POPULARITY = "popularity"


class Negatives(NamedTuple):
    """Sampled item ids and their log sampling probabilities (same shape)."""

    ids: Tensor
    log_prob: Tensor


def frequency_log_q(counts: Tensor | np.ndarray, *, alpha: float = 1.0) -> Tensor:
    """Log of ``counts ** alpha`` normalised over ids ``1 .. V - 1`` -> ``(V,)``; id 0 gets ``-inf``.
    Zero counts are floored at 1 so that no real item has ``-inf`` (used for in-batch logQ)."""
    c = torch.as_tensor(np.asarray(counts), dtype=torch.float64).clone()
    if c.dim() != 1 or c.numel() < 2:
        raise ValueError(f"counts must be 1-D over item ids (length >= 2), got shape {tuple(c.shape)}")
    if bool((c < 0).any()):
        raise ValueError("counts must be non-negative")
    w = c.clamp_min(1.0) ** alpha
    w[0] = 0.0
    out = torch.log(w / w.sum())
    return out.float()


class NegativeSampler:
    """Draws negative item ids.

    Args:
        num_items: item-id space including padding 0 (ids ``1 .. num_items - 1`` are drawn).
        distribution: ``"uniform"`` or ``"popularity"``.
        counts: ``(num_items,)`` interaction counts per item id (needed for popularity).
        alpha: popularity exponent (0.75 as in word2vec).
        seen: items per user id to exclude (``SeenItems`` indexed by user id); ``sample`` then needs
            ``users``. ``sample_shared`` draws for the whole batch, so it cannot exclude per user:
            ``MatchTrainer`` masks each row's seen items out of shared and in-batch negatives instead.
        max_rounds: rejection rounds for popularity sampling before the exact uniform fallback.
        generator: a ``torch.Generator`` (default: the global RNG, which the trainer checkpoints).
    """

    def __init__(
        self,
        num_items: int,
        *,
        distribution: SamplingDistribution | str = SamplingDistribution.UNIFORM,
        counts: Tensor | np.ndarray | None = None,
        alpha: float = 0.75,
        seen: SeenItems | None = None,
        max_rounds: int = 8,
        generator: torch.Generator | None = None,
    ) -> None:
        if num_items < 3:
            raise ValueError(f"num_items must be >= 3 (padding + at least 2 items), got {num_items}")
        self.num_items = num_items
        self.distribution = SamplingDistribution.parse(distribution)
        self.alpha = alpha
        self.max_rounds = max_rounds
        self.generator = generator
        if self.distribution is SamplingDistribution.POPULARITY:
            if counts is None:
                raise ValueError("popularity sampling needs counts (interactions per item id)")
            c = torch.as_tensor(np.asarray(counts), dtype=torch.float64)
            if c.shape != (num_items,):
                raise ValueError(f"counts must have shape ({num_items},), got {tuple(c.shape)}")
            if bool((c < 0).any()):
                raise ValueError("counts must be non-negative")
            w = c**alpha
            w[0] = 0.0
            if float(w.sum()) <= 0:
                raise ValueError("counts are all zero: nothing to sample by popularity")
            q = w / w.sum()
            self._cdf: Tensor | None = torch.cumsum(q, 0)
            self.log_q = torch.log(q).float()  # (V,), -inf for id 0 and zero counts
        else:
            self._cdf = None
            self.log_q = torch.full((num_items,), -math.log(num_items - 1))
            self.log_q[0] = -math.inf
        self.seen: SeenItems | None = None
        if seen is not None:
            if seen.num_items != num_items:
                raise ValueError(f"seen.num_items={seen.num_items} differs from num_items={num_items}")
            keep = seen.indices > 0  # padding is never drawn anyway
            rows = torch.repeat_interleave(torch.arange(seen.num_rows), seen.counts())
            self.seen = SeenItems.from_pairs(
                rows[keep], seen.indices[keep], num_rows=seen.num_rows, num_items=num_items
            )
            s = self.seen
            local = torch.arange(s.indices.numel()) - torch.repeat_interleave(s.indptr[:-1], s.counts())
            # unseen items before each seen item; sorted within a row, so the keys sort globally
            self._adj_keys = rows[keep] * num_items + (s.indices - 1 - local)
            self._item_keys = s.keys()

    @classmethod
    def uniform(cls, num_items: int, *, seen: SeenItems | None = None) -> NegativeSampler:
        return cls(num_items, seen=seen)

    @classmethod
    def popularity(
        cls, counts: Tensor | np.ndarray, *, alpha: float = 0.75, seen: SeenItems | None = None
    ) -> NegativeSampler:
        return cls(
            len(counts), distribution=SamplingDistribution.POPULARITY, counts=counts, alpha=alpha, seen=seen
        )

    def log_prob(self, ids: Tensor) -> Tensor:
        """Log sampling probability of ``ids`` (any shape)."""
        lq = self.log_q.to(ids.device)
        return lq[ids]

    # -- drawing ---------------------------------------------------------------------------------
    def _rand(self, shape: tuple[int, ...], device: torch.device) -> Tensor:
        return torch.rand(shape, generator=self.generator, dtype=torch.float64).to(device)

    def _draw(self, shape: tuple[int, ...], device: torch.device) -> Tensor:
        u = self._rand(shape, device)
        if self._cdf is None:
            return (u * (self.num_items - 1)).long().clamp_max(self.num_items - 2) + 1
        if self._cdf.device != device:
            self._cdf = self._cdf.to(device)
        cdf = self._cdf
        return torch.searchsorted(cdf, (u * cdf[-1]).contiguous(), right=True).clamp(1, self.num_items - 1)

    def sample_shared(self, num_negatives: int, device: torch.device | str = "cpu") -> Negatives:
        """``num_negatives`` ids shared by a whole batch ``(N,)`` (sampled softmax); no exclusion —
        the objective masks accidental hits of each row's positive."""
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
        ids = self._draw((num_negatives,), torch.device(device))
        return Negatives(ids, self.log_prob(ids))

    def sample(self, positives: Tensor, num_negatives: int, *, users: Tensor | None = None) -> Negatives:
        """``num_negatives`` ids per row ``(B, K)``, never the row's positive (``positives (B,)``)
        nor, with ``seen``, any item of ``users (B,)``."""
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
        if positives.dim() != 1:
            raise ValueError(f"positives must be (B,), got {tuple(positives.shape)}")
        if self.seen is not None:
            if users is None:
                raise ValueError("this sampler excludes seen items: pass users=(B,) user ids")
            if users.shape != positives.shape:
                raise ValueError(f"users {tuple(users.shape)} and positives {tuple(positives.shape)} differ")
            if users.numel() and (int(users.min()) < 0 or int(users.max()) >= self.seen.num_rows):
                raise IndexError(f"users must lie in [0, {self.seen.num_rows}) (rows of seen)")
        device = positives.device
        shape = (positives.shape[0], num_negatives)
        pos = positives.unsqueeze(1).expand(shape)  # (B, K)
        usr = (
            users.to(device).unsqueeze(1).expand(shape)
            if users is not None and self.seen is not None
            else None
        )
        if self._cdf is None:
            ids = self._uniform_allowed(pos.reshape(-1), None if usr is None else usr.reshape(-1)).reshape(
                shape
            )
        else:
            ids = self._draw(shape, device)
            for _ in range(self.max_rounds):
                bad = self._forbidden(ids, pos, usr)
                if not bool(bad.any()):
                    break
                ids = torch.where(bad, self._draw(shape, device), ids)
            bad = self._forbidden(ids, pos, usr)
            if bool(bad.any()):
                fb = self._uniform_allowed(pos[bad], None if usr is None else usr[bad])
                ids = ids.masked_scatter(bad, fb)
        return Negatives(ids, self.log_prob(ids))

    def _forbidden(self, ids: Tensor, pos: Tensor, usr: Tensor | None) -> Tensor:
        bad = ids == pos
        if usr is not None and self.seen is not None:
            bad |= self.seen.contains(usr, ids)
        return bad

    def _uniform_allowed(self, pos: Tensor, usr: Tensor | None) -> Tensor:
        """Exact uniform draw from ``{1..V-1} \\ (seen(usr) ∪ {pos})`` for each entry ``(M,)``."""
        device = pos.device
        v = self.num_items
        pos_c, usr_c = pos.cpu(), None if usr is None else usr.cpu()
        if usr_c is None or self.seen is None:
            n_allowed = torch.full_like(pos_c, v - 1) - (pos_c > 0).long()
            r = (self._rand(tuple(pos_c.shape), torch.device("cpu")) * n_allowed).long()
            x = r + 1
            return (x + ((pos_c > 0) & (x >= pos_c)).long()).to(device)
        s = self.seen
        start = s.indptr[usr_c]
        m = s.counts(usr_c)
        pos_seen = s.contains(usr_c, pos_c) | (pos_c <= 0)
        extra = (~pos_seen).long()
        n_allowed = (v - 1) - m - extra
        if bool((n_allowed <= 0).any()):
            u = int(usr_c[n_allowed <= 0][0])
            raise ValueError(f"user {u} has seen every item: no negative can be drawn")
        r = (self._rand(tuple(pos_c.shape), torch.device("cpu")) * n_allowed).long().clamp_max(n_allowed - 1)
        # rank of the positive among the user's unseen items: skip it when the draw reaches it
        seen_below_pos = torch.searchsorted(self._item_keys, usr_c * v + pos_c) - start
        pos_rank = pos_c - 1 - seen_below_pos
        r = r + ((~pos_seen) & (r >= pos_rank)).long()
        below = torch.searchsorted(self._adj_keys, usr_c * v + r, right=True) - start
        return (r + 1 + below).to(device)
