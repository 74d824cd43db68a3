"""Exact (brute-force) search in torch: chunked matrix products and a running top-k. No extra
dependency; runs on any device (pass ``device="cuda"``)."""

from __future__ import annotations

import math
import os

import torch
from torch import Tensor

from recforge.files import atomic_write
from recforge.retrieval.base import (
    ArrayLike,
    Metric,
    SearchResult,
    VectorIndex,
    as_ids,
    as_matrix,
)


class ExactIndex(VectorIndex):
    """Brute-force index.

    Args:
        metric: ``"ip"`` (inner product) or ``"l2"`` (scores are ``-||q - x||^2``).
        device: where vectors live and scores are computed.
        chunk: stored vectors scored at a time (bounds memory to ``queries x chunk`` floats).
        query_chunk: queries processed at a time.
    """

    def __init__(
        self,
        metric: Metric | str = Metric.IP,
        *,
        device: str | torch.device = "cpu",
        chunk: int = 65_536,
        query_chunk: int = 1024,
    ) -> None:
        self.metric = Metric.parse(metric)
        self.device = torch.device(device)
        if chunk < 1 or query_chunk < 1:
            raise ValueError("chunk and query_chunk must be >= 1")
        self.chunk, self.query_chunk = chunk, query_chunk
        self.dim: int | None = None
        self.reset()

    def reset(self) -> None:
        self._vectors: list[Tensor] = []
        self._ids: list[Tensor] = []
        self._merged: tuple[Tensor, Tensor, Tensor] | None = None

    def __len__(self) -> int:
        return sum(len(i) for i in self._ids)

    def add(self, vectors: ArrayLike, ids: ArrayLike | None = None) -> ExactIndex:
        x = as_matrix("vectors", vectors, self.dim)
        self.dim = x.shape[1]
        self._ids.append(as_ids(ids, x.shape[0], len(self)))
        self._vectors.append(x.to(self.device))
        self._merged = None
        return self

    def _data(self) -> tuple[Tensor, Tensor, Tensor]:
        if self._merged is None:
            x = (
                torch.cat(self._vectors)
                if self._vectors
                else torch.zeros(0, self.dim or 0, device=self.device)
            )
            ids = torch.cat(self._ids) if self._ids else torch.zeros(0, dtype=torch.long)
            self._vectors, self._ids = [x], [ids]
            self._merged = (x, ids.to(self.device), (x * x).sum(1))
        return self._merged

    def search(self, queries: ArrayLike, k: int) -> SearchResult:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q_all = as_matrix("queries", queries, self.dim).to(self.device)
        x, ids, sq = self._data()
        n = x.shape[0]
        out_s, out_i = [], []
        for a in range(0, q_all.shape[0], self.query_chunk):
            q = q_all[a : a + self.query_chunk]
            best_s = torch.full((q.shape[0], 0), -math.inf, device=self.device)
            best_i = torch.zeros((q.shape[0], 0), dtype=torch.long, device=self.device)
            for c in range(0, n, self.chunk):
                s = q @ x[c : c + self.chunk].T  # (Q, c)
                if self.metric is Metric.L2:
                    s = 2 * s - sq[c : c + self.chunk] - (q * q).sum(1, keepdim=True)
                # top-k of the chunk first, then merge the two short lists
                cs, cj = torch.topk(s, min(k, s.shape[1]), dim=1)
                vals = torch.cat([best_s, cs], 1)
                cand = torch.cat([best_i, ids[c + cj]], 1)
                best_s, j = torch.topk(vals, min(k, vals.shape[1]), dim=1)
                best_i = cand.gather(1, j)
            if best_s.shape[1] < k:
                pad = k - best_s.shape[1]
                best_s = torch.cat([best_s, torch.full((q.shape[0], pad), -math.inf, device=self.device)], 1)
                best_i = torch.cat([best_i, torch.full((q.shape[0], pad), -1, device=self.device)], 1)
            out_s.append(best_s.cpu())
            out_i.append(best_i.cpu())
        return SearchResult(torch.cat(out_s), torch.cat(out_i))

    def save(self, path: str | os.PathLike[str]) -> None:
        x, ids, _ = self._data()
        state = {
            "kind": "exact",
            "metric": self.metric.value,
            "dim": self.dim,
            "vectors": x.cpu(),
            "ids": ids.cpu(),
        }
        atomic_write(path, lambda tmp: torch.save(state, tmp))

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> ExactIndex:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("kind") != "exact":
            raise ValueError(f"{path} is not an ExactIndex file (kind={state.get('kind')!r})")
        index = cls(state["metric"], device=device)
        if state["dim"] is not None:
            index.add(state["vectors"], state["ids"])
        return index
