"""Vector indexes for serving retrieval: one interface (``build``, ``add``, ``search``, ``save``,
``load``), an exact torch backend (default) and a faiss backend (Flat, IVF, HNSW; ``faiss`` extra)."""

from __future__ import annotations

import os

import torch

from recforge.retrieval.base import Metric, SearchResult, VectorIndex
from recforge.retrieval.exact import ExactIndex
from recforge.retrieval.faiss_index import FaissIndex, FaissKind


def load_index(path: str | os.PathLike[str]) -> VectorIndex:
    """Load any index written by ``save`` (the backend is recorded in the file)."""
    kind = torch.load(path, map_location="cpu", weights_only=True).get("kind")
    if kind == "exact":
        return ExactIndex.load(path)
    if kind == "faiss":
        return FaissIndex.load(path)
    raise ValueError(f"{path}: unknown index kind {kind!r}")


__all__ = ["ExactIndex", "FaissIndex", "FaissKind", "Metric", "SearchResult", "VectorIndex", "load_index"]
