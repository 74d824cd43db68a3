"""Approximate (and exact Flat) search through faiss, behind the ``faiss`` extra
(``pip install 'recforge[faiss]'``); faiss is imported only when an index is created."""

from __future__ import annotations

import math
import os
from types import ModuleType
from typing import Any

import numpy as np
import torch

from recforge.choices import Choice
from recforge.files import atomic_write
from recforge.retrieval.base import (
    ArrayLike,
    Metric,
    SearchResult,
    VectorIndex,
    as_ids,
    as_matrix,
)


def import_faiss() -> ModuleType:
    try:
        import faiss
    except ImportError as e:
        raise ImportError(
            "the faiss backend needs the 'faiss' extra: pip install 'recforge[faiss]' (faiss-cpu); "
            "ExactIndex works without it"
        ) from e
    return faiss


class FaissKind(Choice):
    FLAT = "flat"
    IVF = "ivf"
    HNSW = "hnsw"


class FaissIndex(VectorIndex):
    """A faiss index: ``flat`` (exact), ``ivf`` (inverted lists, ``nlist`` cells, ``nprobe`` probed)
    or ``hnsw`` (graph, ``hnsw_m`` links, ``ef_construction`` / ``ef_search`` beam widths).

    IVF trains its coarse quantizer on the first ``add``/``build`` (``nlist`` is lowered to
    ``n // 39`` when fewer vectors are given). ``threads`` sets faiss's OpenMP threads.
    """

    def __init__(
        self,
        kind: FaissKind | str = FaissKind.FLAT,
        metric: Metric | str = Metric.IP,
        *,
        nlist: int = 1024,
        nprobe: int = 16,
        hnsw_m: int = 32,
        ef_construction: int = 200,
        ef_search: int = 128,
        threads: int | None = None,
    ) -> None:
        self.faiss = import_faiss()
        self.kind, self.metric = FaissKind.parse(kind), Metric.parse(metric)
        self.nlist, self.nprobe = nlist, nprobe
        self.hnsw_m, self.ef_construction, self.ef_search = hnsw_m, ef_construction, ef_search
        if threads is not None:
            self.faiss.omp_set_num_threads(threads)
        self.dim: int | None = None
        self.reset()

    def reset(self) -> None:
        self._index: Any = None
        self._ids = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._ids)

    def _faiss_metric(self) -> int:
        return self.faiss.METRIC_INNER_PRODUCT if self.metric is Metric.IP else self.faiss.METRIC_L2

    def _create(self, x: np.ndarray) -> object:
        f, d = self.faiss, x.shape[1]
        if self.kind is FaissKind.FLAT:
            return f.IndexFlatIP(d) if self.metric is Metric.IP else f.IndexFlatL2(d)
        if self.kind is FaissKind.HNSW:
            index = f.IndexHNSWFlat(d, self.hnsw_m, self._faiss_metric())
            index.hnsw.efConstruction = self.ef_construction
            return index
        nlist = max(1, min(self.nlist, x.shape[0] // 39))
        quantizer = f.IndexFlatIP(d) if self.metric is Metric.IP else f.IndexFlatL2(d)
        index = f.IndexIVFFlat(quantizer, d, nlist, self._faiss_metric())
        index.train(x)
        self._quantizer = quantizer  # the IVF index does not own it: keep it alive
        return index

    def add(self, vectors: ArrayLike, ids: ArrayLike | None = None) -> FaissIndex:
        x = as_matrix("vectors", vectors, self.dim).numpy()
        new_ids = as_ids(ids, x.shape[0], len(self)).numpy()
        if self._index is None:
            if x.shape[0] == 0:
                raise ValueError("cannot create a faiss index from zero vectors")
            self._index = self._create(x)
            self.dim = x.shape[1]
        self._index.add(x)
        self._ids = np.concatenate([self._ids, new_ids])
        return self

    def search(self, queries: ArrayLike, k: int) -> SearchResult:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q = as_matrix("queries", queries, self.dim).numpy()
        if self._index is None:
            return SearchResult(torch.full((q.shape[0], k), -math.inf), torch.full((q.shape[0], k), -1))
        if self.kind is FaissKind.IVF:
            self._index.nprobe = self.nprobe
        elif self.kind is FaissKind.HNSW:
            self._index.hnsw.efSearch = max(self.ef_search, k)
        dist, pos = self._index.search(q, k)
        missing = pos < 0
        scores = dist if self.metric is Metric.IP else -dist
        scores = np.where(missing, -np.inf, scores).astype(np.float32)
        ids = np.where(missing, -1, self._ids[np.clip(pos, 0, None)] if len(self._ids) else -1)
        return SearchResult(torch.from_numpy(scores), torch.from_numpy(ids.astype(np.int64)))

    def save(self, path: str | os.PathLike[str]) -> None:
        blob = self.faiss.serialize_index(self._index) if self._index is not None else np.zeros(0, np.uint8)
        state = {
            "kind": "faiss",
            "index_kind": self.kind.value,
            "metric": self.metric.value,
            "dim": self.dim,
            "params": [self.nlist, self.nprobe, self.hnsw_m, self.ef_construction, self.ef_search],
            "blob": torch.from_numpy(np.asarray(blob, dtype=np.uint8)),
            "ids": torch.from_numpy(self._ids),
        }
        atomic_write(path, lambda tmp: torch.save(state, tmp))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FaissIndex:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("kind") != "faiss":
            raise ValueError(f"{path} is not a FaissIndex file (kind={state.get('kind')!r})")
        nlist, nprobe, m, efc, efs = state["params"]
        index = cls(
            state["index_kind"],
            state["metric"],
            nlist=nlist,
            nprobe=nprobe,
            hnsw_m=m,
            ef_construction=efc,
            ef_search=efs,
        )
        if state["blob"].numel():
            index._index = index.faiss.deserialize_index(state["blob"].numpy())
            index.dim = state["dim"]
            index._ids = state["ids"].numpy().copy()
        return index
