"""Vocabularies: value <-> id maps with reserved padding and out-of-vocabulary ids.

Id 0 is padding, id 1 is the out-of-vocabulary (OOV) bucket, known values take ids 2, 3, ... in
order of descending training frequency, ties broken by value (text in code-point order), so
fitting the same data always gives the same ids. A hashed vocabulary instead maps every value
through a stable hash into ``hash_buckets`` ids ``2 .. hash_buckets + 1``: it needs no fitting and
stores nothing, but distinct values may collide. The hash is ``pandas.util.hash_array`` with a
fixed key (integers hash by value, text by its UTF-8 bytes), identical across processes, machines
and runs; Python's per-process salted ``hash()`` is never used.

Counting and lookups run on Arrow arrays (``value_counts``, ``index_in``), which is several times
faster than Python-object arrays for text ids.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

PAD = 0
OOV = 1
NUM_RESERVED = 2
SMALL_BATCH = 2048  # inputs up to this many values are encoded through a cached dict
SMALL_LIST = 256  # Python lists up to this long are canonicalised in Python, not through Arrow
_INT64 = 2**63
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

    @property
    def arrow_type(self) -> pa.DataType:
        return {ValueKind.INT: pa.int64(), ValueKind.FLOAT: pa.float64(), ValueKind.STR: pa.large_string()}[
            self
        ]


def to_arrow(column: str, values: pd.Series | np.ndarray | pa.Array | Sequence[object]) -> pa.Array:
    """One column as an Arrow array; NaN and None become nulls. Mixed text/numbers is a TypeError."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return nan_to_null(values)
    if isinstance(values, list):
        # Rows read straight from dicts (serving): Arrow converts a Python list about 15x faster
        # than building a Series first, with the same values (ints with gaps stay int64 + nulls).
        try:
            return pa.array(values, from_pandas=True)
        except OverflowError:  # a Python int beyond int64 (Arrow says "too large to convert to C long")
            raise int_range_error(column, values) from None
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            kinds = sorted({type(v).__name__ for v in values[:1000] if v is not None})
            raise TypeError(
                f"column {column!r}: values must be all text or all numbers, found {kinds}; "
                "convert the column to one type first"
            ) from None
    s = values if isinstance(values, pd.Series) else pd.Series(values)
    if pd.api.types.is_numeric_dtype(s.dtype) and isinstance(s.dtype, np.dtype):
        return pa.array(s.to_numpy(), from_pandas=True)
    try:
        arr = pa.array(s, from_pandas=True)
    except OverflowError:
        raise int_range_error(column, s.tolist()) from None
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        kinds = sorted({type(v).__name__ for v in s.head(1000)})
        raise TypeError(
            f"column {column!r}: values must be all text or all numbers, found {kinds}; "
            "convert the column to one type first"
        ) from None
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def int_range_error(column: str, values: Iterable[object]) -> ValueError:
    """The error for integer ids beyond int64 (looking one level into lists for an example)."""

    def items() -> Iterator[object]:
        for v in values:
            yield from (v if isinstance(v, list | tuple) else [v])

    example = next(
        (v for v in items() if isinstance(v, int | np.integer) and not -_INT64 <= int(v) < _INT64), None
    )
    shown = f"id {example}" if example is not None else "an id"
    return ValueError(
        f"column {column!r}: {shown} lies outside the int64 range [-2**63, 2**63 - 1]; "
        "integer ids must fit in int64 (store larger ones as text)"
    )


def nan_to_null(arr: pa.Array) -> pa.Array:
    """Float NaNs as nulls, as pandas reads them (Arrow keeps NaN and null apart)."""
    if pa.types.is_floating(arr.type) and len(arr) and pc.any(pc.is_nan(arr)).as_py():
        return pc.if_else(pc.is_nan(arr), pa.scalar(None, arr.type), arr)
    return arr


def canonical_values(
    column: str, values: pd.Series | np.ndarray | pa.Array | Sequence[object]
) -> tuple[pa.Array, ValueKind]:
    """Values of one categorical column (no missing values) as an Arrow array, and their kind.

    Integers and booleans become int64, floats that are all whole numbers too (a CSV reader makes
    an integer column with gaps float), other floats float64, text large_string. A column that
    mixes text and numbers, holds lists or other types is refused naming ``column``.
    """
    arr = to_arrow(column, values)
    t = arr.type
    if pa.types.is_dictionary(t):
        return canonical_values(column, arr.dictionary_decode())
    if arr.null_count:
        raise ValueError(f"column {column!r}: {arr.null_count} missing values")
    if pa.types.is_unsigned_integer(t) and len(arr) and pc.max(arr).as_py() >= _INT64:
        raise int_range_error(column, [pc.max(arr).as_py()])
    if pa.types.is_boolean(t) or pa.types.is_integer(t):
        return arr.cast(pa.int64()), ValueKind.INT
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        f = arr.cast(pa.float64(), safe=False).to_numpy()
        if f.size and np.isfinite(f).all() and (f == np.round(f)).all() and np.abs(f).max() < 2**53:
            return pa.array(f.astype(np.int64)), ValueKind.INT
        return pa.array(f), ValueKind.FLOAT
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return arr.cast(pa.large_string()), ValueKind.STR
    if pa.types.is_null(t):  # empty column
        return pa.array([], type=pa.large_string()), ValueKind.STR
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        raise TypeError(
            f"column {column!r} holds lists; declare it as MultiValue or SequenceColumn, not Categorical"
        )
    raise TypeError(f"column {column!r}: unsupported value type {t} for ids; expected text or numbers")


def canonical_list(values: list[object]) -> tuple[list[Value], ValueKind] | None:
    """``canonical_values`` of a short list of plain Python ``str``/``int``/``float`` values,
    computed in Python (an Arrow call costs tens of microseconds, too much for one serving row).

    Gives the values ``canonical_values`` would (as a list) and their kind; returns None when
    the list needs the general path: missing values, booleans, NumPy scalars, mixed text and
    numbers, integers Arrow would not hold exactly.
    """
    kinds = {type(v) for v in values}
    if kinds == {str}:
        return values, ValueKind.STR  # type: ignore[return-value]
    if kinds == {int}:
        return (values, ValueKind.INT) if all(-_INT64 <= v < _INT64 for v in values) else None  # type: ignore[return-value,operator]
    if kinds == {float} or kinds == {int, float}:
        if any(type(v) is int and not -(2**53) <= v <= 2**53 for v in values):  # type: ignore[operator]
            return None
        floats = [float(v) for v in values]  # type: ignore[arg-type]
        if any(f != f for f in floats):  # NaN is a missing value
            return None
        if all(math.isfinite(f) and f.is_integer() and abs(f) < 2**53 for f in floats):
            return [int(f) for f in floats], ValueKind.INT
        return floats, ValueKind.FLOAT  # type: ignore[return-value]
    return None


def stable_hash(values: pa.Array, num_buckets: int) -> np.ndarray:
    """Ids ``2 .. num_buckets + 1`` from a process-independent hash of canonical ``values``."""
    encoded = pc.dictionary_encode(values)  # hash each distinct value once
    uniques = encoded.dictionary.to_numpy(zero_copy_only=False)
    h = pd.util.hash_array(uniques, hash_key=HASH_KEY, encoding="utf8", categorize=False)
    bucket = (h % np.uint64(num_buckets)).astype(np.int64) + NUM_RESERVED
    return bucket[encoded.indices.to_numpy(zero_copy_only=False)]


def _lookup_type(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    return a if a == b else (pa.float64() if pa.types.is_floating(a) or pa.types.is_floating(b) else a)


class ValueCounter:
    """How often each distinct value occurs, gathered batch by batch: memory grows with the number
    of distinct values, not rows. Counts of each batch (``value_counts``) are kept as they come and
    merged (a hash group-by) whenever they hold several times more entries than distinct values.

    Args:
        column: named in errors.
        count: with ``False`` only the values' kind is tracked (a hashed vocabulary needs no counts).
    """

    def __init__(self, column: str, *, count: bool = True) -> None:
        self.column = column
        self.count = count
        self.kind: ValueKind | None = None
        self._parts: list[pa.Table] = []
        self._held = 0  # entries in _parts
        self._distinct = 0  # entries after the last merge

    def add(self, values: pa.Array, kind: ValueKind) -> None:
        """Count canonical ``values`` (see ``canonical_values``) of type ``kind``."""
        if not len(values):
            return
        self._set_kind(kind)
        if self.count:
            counts = pc.value_counts(values)
            self._append(pa.table({"value": counts.field("values"), "count": counts.field("counts")}))

    def add_counts(self, counts: pa.Table, kind: ValueKind) -> None:
        """Add a table of distinct ``value`` and their ``count`` (another counter's ``table()``)."""
        if len(counts):
            self._set_kind(kind)
            self._append(counts)

    def _set_kind(self, kind: ValueKind) -> None:
        if self.kind is not None and self.kind.numeric != kind.numeric:
            raise TypeError(
                f"column {self.column!r}: earlier batches held {self.kind.value} values, this one "
                f"{kind.value} values; every batch must hold the same type"
            )
        if self.kind is None or kind is ValueKind.FLOAT:
            self.kind = kind  # whole floats read as ints in one batch are floats once any is not

    def _append(self, counts: pa.Table) -> None:
        self._parts.append(counts)
        self._held += len(counts)
        if len(self._parts) > 1 and self._held > 4 * self._distinct + 65_536:
            self._merge()

    def _merge(self) -> None:
        kind = self.kind or ValueKind.STR
        parts = [t.set_column(0, "value", t["value"].cast(kind.arrow_type)) for t in self._parts]
        table = pa.concat_tables(parts)
        if len(parts) > 1:
            summed = table.group_by("value").aggregate([("count", "sum")])
            table = pa.table({"value": summed["value"], "count": summed["count_sum"]})
        self._parts = [table]
        self._held = self._distinct = len(table)

    def table(self) -> pa.Table:
        """Columns ``value`` (of ``kind``'s Arrow type) and ``count`` (int64), one row per distinct value."""
        if not self._parts:
            kind = self.kind or ValueKind.STR
            return pa.table({"value": pa.array([], kind.arrow_type), "count": pa.array([], pa.int64())})
        self._merge()
        return self._parts[0]


class Vocabulary:
    """Maps one column's values to ids and back.

    Args:
        values: the known values in id order (the first gets id 2).
        kind: the values' type (inferred from ``values`` when not given); ``encode`` refuses data
            of another type (text vs numbers).
        hash_buckets: if set, a hashed vocabulary of that many buckets (``values`` must be empty).
    """

    def __init__(
        self,
        values: Sequence[Value] | np.ndarray = (),
        *,
        kind: ValueKind | str | None = None,
        hash_buckets: int | None = None,
    ) -> None:
        if hash_buckets is not None and (
            isinstance(hash_buckets, bool) or not isinstance(hash_buckets, int) or hash_buckets < 1
        ):
            raise ValueError(f"hash_buckets must be a positive int, got {hash_buckets!r}")
        if hash_buckets is not None and len(values):
            raise ValueError("a hashed vocabulary holds no values")
        self.values: list[Value] = values.tolist() if isinstance(values, np.ndarray) else list(values)
        if kind is None and self.values:
            kind = canonical_values("vocabulary", pa.array(self.values))[1]
        self.kind = ValueKind(kind) if kind is not None else None
        self.hash_buckets = hash_buckets
        if len(set(self.values)) != len(self.values):
            raise ValueError("vocabulary values must be distinct")
        self._value_set: pa.Array | None = None
        self._decode_table: np.ndarray | None = None
        self._lookup_table: dict[Value, int] | None = None
        self._indexes: dict[str, pd.Index | None] = {}

    @classmethod
    def fit(
        cls, values: pa.Array, kind: ValueKind, *, min_freq: int = 1, max_size: int | None = None
    ) -> Vocabulary:
        """Known values of canonical ``values`` ordered by descending count, then value.

        Values seen fewer than ``min_freq`` times, and those past the ``max_size`` most frequent,
        are left out (they encode to OOV).
        """
        counter = ValueCounter("values")
        counter.add(values, kind)
        return cls.from_counts(counter.table(), kind, min_freq=min_freq, max_size=max_size)

    @classmethod
    def from_counts(
        cls, counts: pa.Table, kind: ValueKind, *, min_freq: int = 1, max_size: int | None = None
    ) -> Vocabulary:
        """``fit`` from a table of distinct ``value`` and their ``count`` (see ``ValueCounter``)."""
        table = counts.filter(pc.greater_equal(counts["count"], min_freq))
        order = pc.sort_indices(table, sort_keys=[("count", "descending"), ("value", "ascending")])
        if max_size is not None:
            order = order[:max_size]
        return cls(table["value"].take(order).to_pylist(), kind=kind)

    def __len__(self) -> int:
        """Number of ids, reserved ones included (the ``vocab_size`` of the feature spec)."""
        if self.hash_buckets is not None:
            return self.hash_buckets + NUM_RESERVED
        return len(self.values) + NUM_RESERVED

    def __repr__(self) -> str:
        if self.hash_buckets is not None:
            return f"Vocabulary(hash_buckets={self.hash_buckets})"
        head = ", ".join(repr(v) for v in self.values[:5])
        more = ", ..." if len(self.values) > 5 else ""
        kind = self.kind.value if self.kind is not None else None
        return f"Vocabulary(size={len(self)}, kind={kind!r}, values=[{head}{more}])"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Vocabulary)
            and self.hash_buckets == other.hash_buckets
            and self.kind == other.kind
            and self.values == other.values
        )

    __hash__ = None  # type: ignore[assignment]

    def _lookup(self) -> dict[Value, int]:
        if self._lookup_table is None:
            self._lookup_table = {v: i for i, v in enumerate(self.values, start=NUM_RESERVED)}
        return self._lookup_table

    def _values_arrow(self) -> pa.Array:
        if self._value_set is None:
            kind = self.kind or ValueKind.STR
            self._value_set = pa.array(self.values, type=kind.arrow_type)
        return self._value_set

    def encode(
        self, values: Sequence[Value] | np.ndarray | pd.Series | pa.Array, *, column: str = ""
    ) -> np.ndarray:
        """Ids (int64) of ``values``; unseen values get OOV (1). Missing values are an error."""
        arr, kind = canonical_values(column or "values", values)
        return self.encode_canonical(arr, kind, column=column)

    def encode_canonical(
        self, arr: pa.Array | list[Value], kind: ValueKind, *, column: str = ""
    ) -> np.ndarray:
        """``encode`` for values already passed through ``canonical_values`` (an Arrow array)
        or ``canonical_list`` (a list)."""
        if self.kind is not None and len(arr) and kind.numeric != self.kind.numeric:
            raise TypeError(
                f"column {column!r}: the vocabulary was fit on {self.kind.value} values but the data "
                f"holds {kind.value} values; the column's type must match the training data"
            )
        if len(arr) == 0:
            return np.zeros(0, dtype=np.int64)
        if isinstance(arr, list) and (self.hash_buckets is not None or len(arr) > SMALL_BATCH):
            arr = pa.array(arr, type=kind.arrow_type)
        if self.hash_buckets is not None:
            return stable_hash(arr, self.hash_buckets)
        if len(arr) <= SMALL_BATCH:
            # Serving-sized inputs: Arrow's index_in rebuilds a hash table of the whole vocabulary
            # on every call (milliseconds for 50k values); a cached dict answers in microseconds.
            lookup = self._lookup()
            values = arr if isinstance(arr, list) else arr.to_pylist()
            return np.fromiter((lookup.get(v, OOV) for v in values), dtype=np.int64, count=len(values))
        assert isinstance(arr, pa.Array)
        value_set = self._values_arrow()
        common = _lookup_type(arr.type, value_set.type)
        index = self._index(common)
        if index is None:  # distinct integers that collide as floats: Arrow's slower set lookup
            pos = pc.fill_null(pc.index_in(arr.cast(common), value_set=value_set.cast(common)), -1).to_numpy()
        elif kind is ValueKind.STR:
            # Python strings are made only for the batch's distinct values, looked up once each
            encoded = pc.dictionary_encode(arr)
            pos = index.get_indexer(encoded.dictionary.to_numpy(zero_copy_only=False))
            pos = pos[encoded.indices.to_numpy(zero_copy_only=False)]
        else:
            pos = index.get_indexer(arr.cast(common).to_numpy())
        ids = pos.astype(np.int64)
        ids += NUM_RESERVED
        ids[ids < NUM_RESERVED] = OOV  # -1: unseen value
        return ids

    def _index(self, arrow_type: pa.DataType) -> pd.Index | None:
        """The known values as a ``pd.Index`` of ``arrow_type``: its hash table is built once and
        kept (Arrow's ``index_in`` rebuilds one of the whole vocabulary on every call). ``None``
        when the values are not distinct in that type (huge integers as floats)."""
        key = str(arrow_type)
        if key not in self._indexes:
            values = self._values_arrow().cast(arrow_type).to_numpy(zero_copy_only=False)
            index = pd.Index(values, dtype=object if values.dtype == object else values.dtype)
            self._indexes[key] = index if index.is_unique else None
        return self._indexes[key]

    def decode(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Original values of ``ids`` (object array); padding and OOV decode to ``None``."""
        if self.hash_buckets is not None:
            raise TypeError("a hashed vocabulary cannot decode ids: hashing is one-way")
        idx = np.asarray(ids, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise ValueError(f"ids must lie in [0, {len(self)}), got range [{idx.min()}, {idx.max()}]")
        if self._decode_table is None:
            table = np.empty(len(self), dtype=object)
            for i, v in enumerate(self.values, start=NUM_RESERVED):
                table[i] = v
            self._decode_table = table
        return self._decode_table[idx]

    def extend(self, values: Sequence[Value] | np.ndarray, *, column: str = "") -> np.ndarray:
        """Append new ``values`` (none of them known, no duplicates) and return their ids, which
        follow every existing id, so ids already handed out never change (items added to a
        catalogue after training)."""
        if self.hash_buckets is not None:
            raise TypeError(f"column {column!r}: a hashed vocabulary cannot take new values")
        arr, kind = canonical_values(column or "values", values)
        if self.kind is not None and len(arr) and kind is not self.kind:
            raise TypeError(
                f"column {column!r}: the vocabulary holds {self.kind.value} values, the new ones are {kind.value}"
            )
        new = arr.to_pylist()
        known = [v for v in new if v in self._lookup()]
        if known:
            raise ValueError(f"column {column!r}: {len(known)} value(s) are already known, e.g. {known[:5]}")
        if len(set(new)) != len(new):
            raise ValueError(f"column {column!r}: the new values repeat")
        first = len(self)
        self.values.extend(new)
        if self.kind is None and new:
            self.kind = kind
        self._forget()
        return np.arange(first, len(self), dtype=np.int64)

    def truncate(self, size: int) -> None:
        """Drop the ids from ``size`` on (undoes an ``extend``)."""
        if not NUM_RESERVED <= size <= len(self) or self.hash_buckets is not None:
            raise ValueError(f"cannot truncate a vocabulary of {len(self)} ids to {size}")
        del self.values[size - NUM_RESERVED :]
        self._forget()

    def _forget(self) -> None:
        """Drop the lookup structures built from ``values`` (they are rebuilt on use)."""
        self._value_set, self._decode_table, self._lookup_table, self._indexes = None, None, None, {}

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
