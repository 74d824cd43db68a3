"""Vocabularies: value <-> id maps with reserved padding and out-of-vocabulary ids.

Id 0 is padding, id 1 is the out-of-vocabulary (OOV) bucket, known values take ids 2, 3, ... in
order of descending training frequency, ties broken by value, so fitting the same data always
gives the same ids. A hashed vocabulary instead maps every value through a stable hash into
``hash_buckets`` ids ``2 .. hash_buckets + 1``: it needs no fitting and no storage, but distinct
values may collide. The hash is ``pandas.util.hash_array`` with a fixed key, identical across
processes, machines and runs (Python's ``hash()`` is salted per process and never used).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import numpy as np
import pandas as pd

PAD = 0
OOV = 1
NUM_RESERVED = 2
HASH_KEY = "recforge.hash.v1"  # exactly 16 bytes, as pandas' siphash requires

Value = int | float | str


class ValueKind(str, enum.Enum):
    """The type of a column's values after canonicalisation (see ``canonical_values``)."""

    INT = "int"
    FLOAT = "float"
    STR = "str"

    @property
    def numeric(self) -> bool:
        return self is not ValueKind.STR


def _looks_like_list(v: object) -> bool:
    return isinstance(v, list | tuple | np.ndarray)


def canonical_values(column: str, values: pd.Series | np.ndarray) -> tuple[np.ndarray, ValueKind]:
    """Values of one categorical column (no missing values) as a plain array and its kind.

    Integers (and booleans, and floats that are all whole numbers, as CSV readers produce for an
    integer column with gaps) become int64, other floats float64, text an object array of str.
    A column that mixes text and numbers, or holds lists, is refused naming ``column``.
    """
    s = values if isinstance(values, pd.Series) else pd.Series(values)
    dtype = s.dtype
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_integer_dtype(dtype):
        return s.to_numpy(dtype=np.int64), ValueKind.INT
    if pd.api.types.is_float_dtype(dtype):
        arr = s.to_numpy(dtype=np.float64)
        return _floats(arr)
    arr = s.to_numpy(dtype=object)
    inferred = pd.api.types.infer_dtype(arr, skipna=False)
    if inferred == "string":
        return arr, ValueKind.STR
    if inferred in ("integer", "boolean"):
        return arr.astype(np.int64), ValueKind.INT
    if inferred in ("floating", "mixed-integer-float", "decimal"):
        return _floats(arr.astype(np.float64))
    if inferred == "empty":
        return arr, ValueKind.STR
    first = next((v for v in arr if v is not None), None)
    if _looks_like_list(first):
        raise TypeError(
            f"column {column!r} holds lists; declare it as MultiValue or SequenceColumn, not Categorical"
        )
    kinds = sorted({type(v).__name__ for v in arr[:1000]})
    raise TypeError(
        f"column {column!r}: categorical values must be all text or all numbers, found {kinds} "
        f"(inferred {inferred!r}); convert the column to one type first"
    )


def _floats(arr: np.ndarray) -> tuple[np.ndarray, ValueKind]:
    if arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)) and np.abs(arr).max() < 2**53:
        return arr.astype(np.int64), ValueKind.INT
    return arr, ValueKind.FLOAT


def stable_hash(values: np.ndarray, num_buckets: int) -> np.ndarray:
    """Ids ``2 .. num_buckets + 1`` from a process-independent hash of canonical ``values``."""
    h = pd.util.hash_array(values, hash_key=HASH_KEY, encoding="utf8", categorize=True)
    return (h % np.uint64(num_buckets)).astype(np.int64) + NUM_RESERVED


def _to_python(v: object) -> Value:
    return v.item() if isinstance(v, np.generic) else v  # type: ignore[return-value]


class Vocabulary:
    """Maps one column's values to ids and back.

    Args:
        values: the known values in id order (the first gets id 2).
        kind: the values' type; ``encode`` refuses data of another type (text vs numbers).
        hash_buckets: if set, a hashed vocabulary of that many buckets (``values`` must be empty).
    """

    def __init__(
        self,
        values: Sequence[Value] | np.ndarray = (),
        *,
        kind: ValueKind | str | None = None,
        hash_buckets: int | None = None,
    ) -> None:
        if hash_buckets is not None and (isinstance(hash_buckets, bool) or int(hash_buckets) < 1):
            raise ValueError(f"hash_buckets must be a positive int, got {hash_buckets!r}")
        if hash_buckets is not None and len(values):
            raise ValueError("a hashed vocabulary holds no values")
        self.values: list[Value] = [_to_python(v) for v in values]
        self.kind = ValueKind(kind) if kind is not None else None
        self.hash_buckets = int(hash_buckets) if hash_buckets is not None else None
        self._index: pd.Index | None = None

    @classmethod
    def fit(
        cls,
        values: np.ndarray,
        kind: ValueKind,
        *,
        min_freq: int = 1,
        max_size: int | None = None,
    ) -> Vocabulary:
        """Known values of ``values`` ordered by descending count, then value.

        Values seen fewer than ``min_freq`` times, and those past the ``max_size`` most frequent,
        are left out (they encode to OOV).
        """
        counts = pd.Series(values).value_counts(sort=False, dropna=True)
        keys = counts.index.to_numpy()
        freq = counts.to_numpy()
        keep = freq >= min_freq
        keys, freq = keys[keep], freq[keep]
        try:
            by_value = np.argsort(keys, kind="stable")
        except TypeError:  # defensive: incomparable values fall back to their text
            by_value = np.argsort(keys.astype(str), kind="stable")
        order = by_value[np.argsort(-freq[by_value], kind="stable")]
        if max_size is not None:
            order = order[:max_size]
        return cls(keys[order], kind=kind)

    def __len__(self) -> int:
        """Number of ids, reserved ones included (the ``vocab_size`` of the feature spec)."""
        if self.hash_buckets is not None:
            return self.hash_buckets + NUM_RESERVED
        return len(self.values) + NUM_RESERVED

    def __contains__(self, value: object) -> bool:
        if self.hash_buckets is not None:
            return True
        return value in self._lookup()

    def __repr__(self) -> str:
        if self.hash_buckets is not None:
            return f"Vocabulary(hash_buckets={self.hash_buckets})"
        head = ", ".join(repr(v) for v in self.values[:5])
        more = ", ..." if len(self.values) > 5 else ""
        return f"Vocabulary(size={len(self)}, kind={self.kind and self.kind.value!r}, values=[{head}{more}])"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Vocabulary)
            and self.hash_buckets == other.hash_buckets
            and self.kind == other.kind
            and self.values == other.values
        )

    __hash__ = None  # type: ignore[assignment]

    def _lookup(self) -> pd.Index:
        if self._index is None:
            dtype = np.int64 if self.kind is ValueKind.INT else None
            self._index = pd.Index(np.asarray(self.values, dtype=dtype) if self.values else [], dtype=dtype)
        return self._index

    def encode(self, values: Sequence[Value] | np.ndarray | pd.Series, *, column: str = "") -> np.ndarray:
        """Ids (int64) of ``values``; unseen values get OOV (1). No missing values allowed."""
        arr, kind = canonical_values(column or "value", pd.Series(values) if not isinstance(values, pd.Series) else values)
        return self.encode_canonical(arr, kind, column=column)

    def encode_canonical(self, arr: np.ndarray, kind: ValueKind, *, column: str = "") -> np.ndarray:
        """``encode`` for an array already passed through ``canonical_values``."""
        if self.kind is not None and len(arr) and kind.numeric != self.kind.numeric:
            raise TypeError(
                f"column {column!r}: the vocabulary was fit on {self.kind.value} values but the data "
                f"holds {kind.value} values; the column's type must match the training data"
            )
        if self.hash_buckets is not None:
            return stable_hash(arr, self.hash_buckets)
        ids = self._lookup().get_indexer(arr).astype(np.int64)
        ids += NUM_RESERVED
        ids[ids < NUM_RESERVED] = OOV  # get_indexer gives -1 for unseen values
        return ids

    def decode(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Original values of ``ids`` (object array); padding and OOV decode to ``None``."""
        if self.hash_buckets is not None:
            raise TypeError("a hashed vocabulary cannot decode ids: hashing is one-way")
        idx = np.asarray(ids, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise ValueError(f"ids must lie in [0, {len(self)}), got range [{idx.min()}, {idx.max()}]")
        table = np.empty(len(self), dtype=object)
        table[NUM_RESERVED:] = self.values if self.values else []
        return table[idx]

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind.value if self.kind is not None else None,
            "hash_buckets": self.hash_buckets,
            "values": self.values,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Vocabulary:
        values = data.get("values") or []
        return cls(values, kind=data.get("kind"), hash_buckets=data.get("hash_buckets"))  # type: ignore[arg-type]
