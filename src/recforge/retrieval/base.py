"""The vector-index interface shared by every backend.

``build(vectors, ids)`` replaces the content, ``add`` appends, ``search(queries, k)`` returns the
``k`` best ``(scores, ids)`` per query with higher scores better: the inner product for
``Metric.IP``, the negated squared Euclidean distance for ``Metric.L2``. Fewer than ``k`` stored
vectors pad the result with score ``-inf`` and id ``-1``. ``save`` writes one file atomically
(temporary file + ``os.replace``); ``load`` is a class method of the backend.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from recforge.choices import Choice

ArrayLike = Tensor | np.ndarray


class Metric(Choice):
    IP = "ip"
    L2 = "l2"


class SearchResult(NamedTuple):
    scores: Tensor  # (Q, k) float32, higher is better
    ids: Tensor  # (Q, k) int64, -1 where fewer than k vectors exist


def as_matrix(name: str, x: ArrayLike, dim: int | None = None) -> Tensor:
    """``x`` as a contiguous float32 CPU tensor ``(N, D)``."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).detach().cpu().float()
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {tuple(t.shape)}")
    if dim is not None and t.shape[1] != dim:
        raise ValueError(f"{name} must have dimension {dim}, got {t.shape[1]}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return t.contiguous()


def as_ids(ids: ArrayLike | None, n: int, start: int) -> Tensor:
    if ids is None:
        return torch.arange(start, start + n, dtype=torch.int64)
    t = torch.as_tensor(np.asarray(ids) if not isinstance(ids, Tensor) else ids).detach().cpu()
    if t.dtype not in (torch.int64, torch.int32) or t.shape != (n,):
        raise ValueError(
            f"ids must be {n} integers (one per vector), got dtype {t.dtype} shape {tuple(t.shape)}"
        )
    return t.long()


class VectorIndex(ABC):
    """A searchable set of vectors with int64 ids."""

    metric: Metric
    dim: int | None

    @abstractmethod
    def add(self, vectors: ArrayLike, ids: ArrayLike | None = None) -> VectorIndex:
        """Append vectors (ids default to consecutive integers after the current size)."""

    @abstractmethod
    def reset(self) -> None:
        """Remove every vector."""

    def build(self, vectors: ArrayLike, ids: ArrayLike | None = None) -> VectorIndex:
        """Replace the content by ``vectors (N, D)`` with ``ids (N,)`` (default ``0 .. N - 1``)."""
        self.reset()
        return self.add(vectors, ids)

    @abstractmethod
    def search(self, queries: ArrayLike, k: int) -> SearchResult:
        """The ``k`` best vectors for each query ``(Q, D)``."""

    @abstractmethod
    def save(self, path: str | os.PathLike[str]) -> None: ...

    @classmethod
    @abstractmethod
    def load(cls, path: str | os.PathLike[str]) -> VectorIndex: ...

    @abstractmethod
    def __len__(self) -> int: ...
