"""Semantic IDs (TIGER, Rajput et al. 2023, arXiv 2305.05065): the item -> code-tuple table, its
prefix trie, and beam search constrained to the IDs that exist.

* ``SemanticIDs``: row ``i`` holds item id ``i``'s codes ``(C,)`` (row 0, the padding item, is -1).
  ``SemanticIDs.from_codes`` takes the L codes of a quantiser (``RQVAE.encode``) and appends one
  *disambiguation* code: items sharing the same L-tuple get 0, 1, 2, ... in item-id order (the
  paper's fix for collisions), so every item's C = L + 1 tuple is unique. ``extend`` gives new items
  IDs the same way, continuing each tuple's count, without touching existing IDs. Saved as JSON.
* ``PrefixTrie``: every valid prefix is a node (breadth-first numbering, children of a node are
  consecutive, sorted by code), stored as flat tensors, so the allowed next codes of a whole batch
  of beams are one gather.
* ``constrained_beam_search``: batched beam search over the trie; a beam only extends to codes
  that lead to at least one item, and items excluded for a row (seen items) are removed by pruning
  every prefix whose items are all excluded. Scores are the model's log-probabilities summed over
  the C codes (masking without renormalising), so with a beam at least as wide as the number of
  valid prefixes the result equals scoring every valid ID.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from recforge.files import atomic_write_text

FORMAT = "recforge.semantic_ids"


@dataclass(frozen=True)
class CollisionStats:
    """How many items share a code tuple.

    Attributes:
        items: items with an ID. unique: distinct tuples.
        collision_rate: ``1 - unique / items``: the share of items that need a disambiguation code
            other than 0.
        colliding_items: items whose tuple at least one other item has.
        max_bucket: the most items sharing one tuple.
    """

    items: int
    unique: int
    collision_rate: float
    colliding_items: int
    max_bucket: int


def collision_stats(codes: Tensor) -> CollisionStats:
    """Collisions among the rows of ``codes (N, L)``."""
    if codes.shape[0] == 0:
        return CollisionStats(0, 0, 0.0, 0, 0)
    _, counts = np.unique(codes.cpu().numpy(), axis=0, return_counts=True)
    n = int(codes.shape[0])
    return CollisionStats(
        n, len(counts), 1.0 - len(counts) / n, int(counts[counts > 1].sum()), int(counts.max())
    )


def _disambiguate(codes: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """Rank of each row among the rows with the same tuple, in row order, plus ``start`` of its tuple."""
    _, inverse = np.unique(codes, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    sorted_groups = inverse[order]
    first = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1]  # first row of each group
    rank_sorted = np.arange(len(order)) - np.repeat(first, np.diff(np.r_[first, len(order)]))
    rank = np.empty_like(rank_sorted)
    rank[order] = rank_sorted
    return rank + (start if start is not None else 0)


@dataclass(frozen=True)
class SemanticIDs:
    """Item id -> semantic ID.

    Attributes:
        codes: ``(num_items, C)`` int64; row ``i`` is item ``i``'s codes, row 0 (padding) is -1.
        num_codes: codebook size of each of the C positions (the last one bounds how many items
            may share the first C - 1 codes).
    """

    codes: Tensor
    num_codes: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.codes.dim() != 2 or self.codes.dtype != torch.int64:
            raise ValueError(
                f"SemanticIDs.codes must be int64 (num_items, C), got {self.codes.dtype} {tuple(self.codes.shape)}"
            )
        if self.codes.shape[1] != len(self.num_codes):
            raise ValueError(
                f"codes have {self.codes.shape[1]} positions but num_codes has {len(self.num_codes)}"
            )
        real = self.codes[1:]
        absent = (real == -1).all(1, keepdim=True)  # an id without an ID (e.g. a reserved OOV id)
        if real.numel() and (
            bool(((real < 0) & ~absent).any()) or bool((real >= torch.tensor(self.num_codes)).any())
        ):
            raise ValueError(
                f"every item 1.. needs codes in [0, num_codes) = {self.num_codes} (or -1 everywhere: no ID)"
            )

    @classmethod
    def from_codes(
        cls, codes: Tensor, *, num_codes: Sequence[int], capacity: int | None = None, first_item: int = 1
    ) -> SemanticIDs:
        """IDs for items ``first_item .. first_item + N - 1`` from their quantiser codes ``codes (N,
        L)`` (row ``j`` = item ``j + first_item``): the L codes plus a disambiguation code. Ids below
        ``first_item`` (padding, reserved ids) get no ID (-1): never generated, ignored in histories.
        ``capacity`` is the size of that last position (default: the largest number of items
        sharing an L-tuple); leave room when items will be added later with ``extend``."""
        if codes.dim() != 2 or codes.shape[1] != len(num_codes):
            raise ValueError(f"codes must be (N, {len(num_codes)}), got {tuple(codes.shape)}")
        c = codes.detach().cpu().long().numpy()
        extra = _disambiguate(c) if len(c) else np.zeros(0, np.int64)
        need = int(extra.max()) + 1 if len(extra) else 1
        cap = need if capacity is None else int(capacity)
        if cap < need:
            raise ValueError(f"capacity {cap} is too small: {need} items share one code tuple")
        none = np.full((max(first_item, 1), c.shape[1] + 1), -1)
        full = np.concatenate([none, np.c_[c, extra]]) if len(c) else none
        return cls(torch.from_numpy(full.astype(np.int64)), (*map(int, num_codes), cap))

    @property
    def num_items(self) -> int:
        """Item-id space including padding 0."""
        return int(self.codes.shape[0])

    @property
    def length(self) -> int:
        """C, codes per item."""
        return int(self.codes.shape[1])

    def extend(self, codes: Tensor) -> SemanticIDs:
        """A table with ``n`` new items (ids ``num_items .. num_items + n - 1``) from their quantiser
        codes ``(n, C - 1)``; existing IDs are unchanged."""
        if codes.dim() != 2 or codes.shape[1] != self.length - 1:
            raise ValueError(f"codes must be (n, {self.length - 1}), got {tuple(codes.shape)}")
        old = self._with_id().numpy()
        new = codes.detach().cpu().long().numpy()
        both = np.concatenate([old[:, :-1], new])
        _, inverse = np.unique(both, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        next_free = np.zeros(inverse.max() + 1 if len(inverse) else 0, np.int64)
        np.maximum.at(next_free, inverse[: len(old)], old[:, -1] + 1)
        extra = _disambiguate(new, next_free[inverse[len(old) :]]) if len(new) else np.zeros(0, np.int64)
        if len(extra) and int(extra.max()) >= self.num_codes[-1]:
            raise ValueError(
                f"{int(extra.max()) + 1} items would share one code tuple but the disambiguation "
                f"position has {self.num_codes[-1]} codes; build the table with a larger capacity"
            )
        rows = torch.from_numpy(np.c_[new, extra].astype(np.int64))
        return SemanticIDs(torch.cat([self.codes, rows]), self.num_codes)

    def _with_id(self) -> Tensor:
        return self.codes[(self.codes >= 0).all(1)]  # (M, C) the items that have an ID

    def stats_before(self) -> CollisionStats:
        """Collisions of the quantiser's codes (all positions but the disambiguation one)."""
        return collision_stats(self._with_id()[:, :-1])

    def stats_after(self) -> CollisionStats:
        """Collisions of the full IDs (0 for a valid table)."""
        return collision_stats(self._with_id())

    def to_dict(self) -> dict[str, object]:
        return {
            "format": FORMAT,
            "version": 1,
            "num_codes": list(self.num_codes),
            "codes": self.codes.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> SemanticIDs:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a semantic-ID table (format {data.get('format')!r}, expected {FORMAT!r})")
        num_codes = data["num_codes"]
        assert isinstance(num_codes, list)
        return cls(torch.tensor(data["codes"], dtype=torch.int64), tuple(int(k) for k in num_codes))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the table as JSON (atomically)."""
        atomic_write_text(path, json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SemanticIDs:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


class PrefixTrie:
    """Every prefix of the valid IDs as a node; node 0 is the root (the empty prefix).

    Attributes:
        depth: C. num_nodes: nodes including the root.
        indptr: ``(num_nodes + 1,)``: the children of node ``p`` are nodes
            ``1 + indptr[p] .. indptr[p + 1]`` (breadth-first numbering).
        code: ``(num_nodes,)`` the last code of each node's prefix (-1 for the root).
        item: ``(num_nodes,)`` the item id of a full-ID node (0 elsewhere).
        leaf_count: ``(num_nodes,)`` items below each node.
        ancestors: ``(num_items, C + 1)`` each item's node at every depth (-1 for items without ID).
        width: the widest codebook (the code axis of ``children``).
    """

    def __init__(self, ids: SemanticIDs) -> None:
        all_codes = ids.codes.numpy()
        items = np.flatnonzero((all_codes >= 0).all(1))
        codes = all_codes[items]
        order = np.lexsort(codes[:, ::-1].T)
        codes, items = codes[order], items[order]
        m, depth = codes.shape
        node_of = np.zeros((m, depth + 1), np.int64)
        start = 1
        for d in range(1, depth + 1):
            new = np.ones(m, bool)
            new[1:] = (codes[1:, :d] != codes[:-1, :d]).any(1)
            if d == depth and not new.all():
                raise ValueError("two items share a full semantic ID; disambiguate the table first")
            node_of[:, d] = start + np.cumsum(new) - 1
            start += int(new.sum())
        num_nodes = start
        parent = np.zeros(num_nodes, np.int64)
        code = np.full(num_nodes, -1, np.int64)
        item = np.zeros(num_nodes, np.int64)
        leaf_count = np.zeros(num_nodes, np.int64)
        for d in range(1, depth + 1):
            parent[node_of[:, d]] = node_of[:, d - 1]
            code[node_of[:, d]] = codes[:, d - 1]
        item[node_of[:, depth]] = items
        np.add.at(leaf_count, node_of.reshape(-1), 1)
        indptr = np.zeros(num_nodes + 1, np.int64)
        indptr[1:] = np.cumsum(np.bincount(parent[1:], minlength=num_nodes))
        ancestors = np.full((ids.num_items, depth + 1), -1, np.int64)
        ancestors[items] = node_of
        self.depth, self.num_nodes, self.width = depth, num_nodes, max(ids.num_codes)
        self.indptr = torch.from_numpy(indptr)
        self.code = torch.from_numpy(code)
        self.item = torch.from_numpy(item)
        self.leaf_count = torch.from_numpy(leaf_count)
        self.ancestors = torch.from_numpy(ancestors)

    def to(self, device: torch.device | str) -> PrefixTrie:
        for name in ("indptr", "code", "item", "leaf_count", "ancestors"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def children(self, nodes: Tensor) -> Tensor:
        """Child node of each of ``nodes (M,)`` per next code -> ``(M, width)``, -1 where no valid
        ID continues (and everywhere for a node -1)."""
        m = nodes.numel()
        real = nodes >= 0
        n = nodes.clamp_min(0)
        first = self.indptr[n]  # (M,)
        counts = (self.indptr[n + 1] - first) * real  # (M,)
        row = torch.repeat_interleave(torch.arange(m, device=nodes.device), counts)  # (E,)
        offset = torch.arange(row.numel(), device=nodes.device) - (torch.cumsum(counts, 0) - counts)[row]
        child = first[row] + offset + 1  # (E,)
        out = torch.full((m, self.width), -1, dtype=torch.long, device=nodes.device)
        out[row, self.code[child]] = child
        return out


class _Exclusions:
    """Per-row excluded items, as counts of excluded items below (row, node) keys at each depth."""

    def __init__(self, trie: PrefixTrie, rows: Tensor, items: Tensor) -> None:
        n_items = trie.ancestors.shape[0]
        items = items.to(trie.ancestors.device).long()
        rows = rows.to(items.device).long()
        known = (items > 0) & (items < n_items)
        pairs = torch.unique(rows[known] * n_items + items[known])
        rows, items = pairs // n_items, pairs % n_items
        anc = trie.ancestors[items]  # (M, C + 1)
        keep = anc[:, 0] >= 0
        rows, anc = rows[keep], anc[keep]
        self.trie = trie
        self.keys, self.counts = [], []
        for d in range(trie.depth + 1):
            k, c = torch.unique(rows * trie.num_nodes + anc[:, d], return_counts=True)
            self.keys.append(k)
            self.counts.append(c)

    def dead(self, rows: Tensor, nodes: Tensor, depth: int) -> Tensor:
        """Whether every item below ``nodes`` (depth ``depth``) is excluded for ``rows`` (same shape)."""
        keys, counts = self.keys[depth], self.counts[depth]
        if keys.numel() == 0:
            return torch.zeros_like(nodes, dtype=torch.bool)
        q = rows * self.trie.num_nodes + nodes.clamp_min(0)
        pos = torch.searchsorted(keys, q.reshape(-1)).clamp_max(keys.numel() - 1).reshape(q.shape)
        hit = keys[pos] == q
        return hit & (counts[pos] >= self.trie.leaf_count[nodes.clamp_min(0)]) & (nodes >= 0)


class BeamSearchResult(NamedTuple):
    items: Tensor  # (B, W) item ids, best first; 0 where fewer than W IDs exist
    scores: Tensor  # (B, W) summed log-probabilities; -inf where no item
    codes: Tensor  # (B, W, C)


StepFn = Callable[[Tensor, Tensor | None], Tensor]


@torch.no_grad()
def constrained_beam_search(
    step: StepFn,
    trie: PrefixTrie,
    batch_size: int,
    *,
    beam_width: int,
    exclude: tuple[Tensor, Tensor] | None = None,
) -> BeamSearchResult:
    """Beam search over the IDs in ``trie``.

    Args:
        step: ``(codes (B, G, t), parents) -> log-probabilities (B, G, width)`` of the next code
            of each of the G beams of each row (G = 1 at t = 0); ``parents (B, G)`` is the index of
            the previous step's beam each beam extends (None at t = 0), for a model that caches
            per-beam state.
        trie: the valid IDs. batch_size: B.
        beam_width: W, beams kept per row (and results returned).
        exclude: ``(row (M,), item (M,))`` items never returned for that row.

    Returns:
        The W best complete IDs per row by summed log-probability.
    """
    if beam_width < 1:
        raise ValueError(f"beam_width must be >= 1, got {beam_width}")
    dev = trie.indptr.device
    b = batch_size
    nodes = torch.zeros(b, 1, dtype=torch.long, device=dev)  # (B, G) the root
    scores = torch.zeros(b, 1, device=dev)
    codes = torch.zeros(b, 1, 0, dtype=torch.long, device=dev)  # (B, G, t)
    excl = _Exclusions(trie, *exclude) if exclude is not None and exclude[0].numel() else None
    rows = torch.arange(b, device=dev)
    parents: Tensor | None = None
    for t in range(trie.depth):
        g = nodes.shape[1]
        logp = step(codes, parents).float()  # (B, G, V)
        child = trie.children(nodes.reshape(-1)).reshape(b, g, trie.width)  # (B, G, V)
        valid = child >= 0
        if excl is not None:  # look up only the real children (few, below the first level)
            at = torch.nonzero(valid.reshape(-1)).squeeze(1)  # (E,)
            row_of = at // (g * trie.width)
            valid.view(-1)[at] = ~excl.dead(rows[row_of], child.reshape(-1)[at], t + 1)
        total = torch.where(valid, scores[..., None] + logp, torch.full_like(logp, -torch.inf))
        top, idx = total.reshape(b, -1).topk(min(beam_width, g * trie.width), dim=1)  # (B, W)
        beam, code = idx // trie.width, idx % trie.width
        nodes = torch.where(torch.isfinite(top), child.reshape(b, -1).gather(1, idx), -1)  # (B, W)
        codes = torch.cat([codes.gather(1, beam[..., None].expand(-1, -1, t)), code[..., None]], 2)
        scores, parents = top, beam
    items = torch.where(nodes >= 0, trie.item[nodes.clamp_min(0)], 0)  # (B, W)
    if items.shape[1] < beam_width:  # fewer IDs than beams in the whole trie
        pad = beam_width - items.shape[1]
        items = torch.cat([items, items.new_zeros(b, pad)], 1)
        scores = torch.cat([scores, scores.new_full((b, pad), -torch.inf)], 1)
        codes = torch.cat([codes, codes.new_full((b, pad, trie.depth), -1)], 1)
    return BeamSearchResult(items, scores, codes)
