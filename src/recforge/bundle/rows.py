"""What serving calls take and give: raw rows in, named results out, and running a micro-batch of
independent requests together with each request's error kept in its slot."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeAlias, TypeVar

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from recforge.features import LABEL

Rows: TypeAlias = pd.DataFrame | Mapping[str, object] | Sequence[Mapping[str, object]]


class Recommendation(NamedTuple):
    """Top-K items of one user: original item ids, best first, with their scores."""

    items: list[object]
    scores: list[float]


class Ranked(NamedTuple):
    """Candidates sorted by descending probability (original values) with their probabilities."""

    candidates: list[object]
    scores: list[float]


@dataclass(frozen=True)
class RecommendQuery:
    """The arguments of one ``Bundle.recommend`` call; ``recommend_batch`` runs several at once."""

    users: Rows
    k: int = 10
    exclude_seen: bool = True
    rerank: bool | None = None
    exclude: Sequence[Sequence[object]] | None = None


def _check_rows(rows: object, what: str) -> Sequence[Mapping[str, object]]:
    if isinstance(rows, Mapping):
        return [rows]
    if isinstance(rows, str | bytes) or not isinstance(rows, Sequence):
        raise TypeError(f"{what}: expected a DataFrame, a dict or a list of dicts, got {type(rows).__name__}")
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping):
            raise TypeError(f"{what}[{i}]: expected a dict of column -> value, got {type(r).__name__}")
    return rows


def as_frame(rows: Rows, *, what: str = "rows") -> pd.DataFrame:
    """Raw rows as a DataFrame: a DataFrame, one mapping (one row) or a sequence of mappings."""
    if isinstance(rows, pd.DataFrame):
        return rows
    return pd.DataFrame.from_records(list(_check_rows(rows, what)))


def as_records(rows: Rows, *, what: str = "rows") -> list[Mapping[str, object]]:
    """Raw rows as a list of dicts: a DataFrame, one mapping (one row) or a sequence of mappings."""
    if isinstance(rows, pd.DataFrame):
        return rows.to_dict("records")  # type: ignore[return-value]
    return list(_check_rows(rows, what))


def to_tensors(arrays: Mapping[str, np.ndarray]) -> dict[str, Tensor]:
    """Encoded columns as a model batch (labels left out)."""
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items() if k != LABEL}


def concat(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Column-wise concatenation of encoded batches with the same columns."""
    if len(parts) == 1:
        return dict(parts[0])
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def split_sizes(values: np.ndarray, sizes: Sequence[int]) -> list[np.ndarray]:
    """``values`` cut into consecutive pieces of ``sizes`` (the offsets computed once)."""
    return list(np.split(values, np.cumsum(sizes)[:-1])) if sizes else []


_T = TypeVar("_T")
_R = TypeVar("_R")


def per_request(
    prepared: Sequence[_T | Exception], run: Callable[[list[_T]], list[_R]]
) -> list[_R | Exception]:
    """Run the valid requests of a batch together; errors stay in their slots.

    Should the joint run fail, each request is run alone, so a failure caused by one request
    cannot fail the others.
    """
    valid = [p for p in prepared if not isinstance(p, Exception)]
    if not valid:
        return list(prepared)  # type: ignore[arg-type]
    try:
        results: list[_R | Exception] = list(run(valid))
    except Exception as e:  # handed back to the callers
        if len(valid) == 1:
            results = [e]
        else:
            results = []
            for p in valid:
                try:
                    results.extend(run([p]))
                except Exception as e1:
                    results.append(e1)
    it = iter(results)
    return [p if isinstance(p, Exception) else next(it) for p in prepared]
