"""List columns: parse lists or ``sep``-delimited strings into flat values, then pad to ``(N, L)``.

Parsing goes through Arrow compute kernels (split, flatten, list lengths), so no per-row Python
runs for string columns; an object column of Python lists is converted to Arrow in one C++ pass.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recforge.preprocess.vocab import (
    SMALL_LIST,
    Value,
    ValueKind,
    canonical_list,
    canonical_values,
    int_range_error,
    nan_to_null,
)

_INT_PATTERN = r"^-?[0-9]+$"
_INT_RE = re.compile(r"-?[0-9]+")  # _INT_PATTERN for re.fullmatch


@dataclass(frozen=True)
class FlatList:
    """A list column as one flat array of canonical values plus each row's length (``values``
    is a Python list when a short list of rows was parsed in Python)."""

    values: pa.Array | list[Value]  # (ΣL,)
    kind: ValueKind
    lengths: np.ndarray  # (N,) int64


def _is_text(s: pd.Series | list[object]) -> bool:
    if isinstance(s, list):  # as pandas infers it: every present value is a str, and one is
        present = [v for v in s if v is not None and not (isinstance(v, float) and v != v)]
        return bool(present) and all(isinstance(v, str) for v in present)
    if isinstance(s.dtype, pd.StringDtype):
        return True
    if s.dtype != object:
        return False
    return pd.api.types.infer_dtype(s, skipna=True) == "string"


def _as_arrow(column: str, s: pd.Series | pa.Array | pa.ChunkedArray | list[object]) -> pa.Array:
    if isinstance(s, pa.ChunkedArray):
        return s.combine_chunks()
    if isinstance(s, pa.Array):
        return s
    try:
        arr = pa.array(s, from_pandas=True)
    except OverflowError:
        raise int_range_error(column, s.tolist() if isinstance(s, pd.Series) else s) from None
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        rows = s.tolist() if isinstance(s, pd.Series) else s
        kinds = sorted({type(v).__name__ for v in rows[:1000] if v is not None})
        raise TypeError(
            f"column {column!r}: expected a list per row (all of one type) or "
            f"sep-delimited strings; could not read its {kinds} values as lists"
        ) from None
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def flatten(
    column: str, s: pd.Series | pa.Array | pa.ChunkedArray | list[object], sep: str | None
) -> FlatList:
    """Parse ``s`` (lists/arrays per row, or ``sep``-joined strings); missing rows are empty.

    ``s`` is a Series, an Arrow array or a plain list of row values (rows read from dicts); all
    parse alike (a short list of plain values is parsed in Python, faster for a serving row).

    String tokens are stripped of surrounding whitespace and empty ones dropped; tokens that all
    look like integers become integers, as a CSV reader does for a scalar column, so ``"12|7"``
    and ``[12, 7]`` encode alike.
    """
    n = len(s)
    if n == 0:  # an empty column has no meaningful dtype
        return FlatList(pa.array([], type=pa.large_string()), ValueKind.STR, np.zeros(0, dtype=np.int64))
    if isinstance(s, list) and n <= SMALL_LIST:
        small = _flatten_small(s, sep)
        if small is not None:
            return small
    if isinstance(s, pd.Series) and s.dtype == object and not _is_text(s):
        text = False  # e.g. Python lists: never read as text even where Arrow could
    else:
        text = None
    lists = _as_arrow(column, s)
    if pa.types.is_dictionary(lists.type):
        lists = lists.dictionary_decode()
    if text is None:
        text = pa.types.is_string(lists.type) or pa.types.is_large_string(lists.type)
    if text:
        if sep is None:
            raise TypeError(
                f"column {column!r} holds strings, not lists; set sep=... to split them "
                "(e.g. sep='|' for '12|7|3')"
            )
        parts = pc.split_pattern(lists, pattern=sep)
        tokens = pc.utf8_trim_whitespace(parts.flatten())
        rows = pc.list_parent_indices(parts).to_numpy()
        keep = pc.not_equal(tokens, "").to_numpy(zero_copy_only=False)
        tokens = tokens.filter(pa.array(keep))
        lengths = np.bincount(rows[keep], minlength=n).astype(np.int64)
        if len(tokens) and pc.all(pc.match_substring_regex(tokens, _INT_PATTERN)).as_py():
            with contextlib.suppress(pa.ArrowInvalid):  # out of int64 range: keep the text
                tokens = pc.cast(tokens, pa.int64())
        return _finish(column, tokens, lengths)
    if pa.types.is_null(lists.type):  # every row missing (e.g. one serving row): empty lists
        return _finish(column, lists.drop_null(), np.zeros(n, dtype=np.int64))
    scalar = (
        pa.types.is_integer(lists.type) or pa.types.is_floating(lists.type) or pa.types.is_null(lists.type)
    )
    if sep is not None and scalar:
        # A CSV reader makes a delimited column numeric when no row holds a separator:
        # each value is then a one-item list (a missing value an empty one).
        lists = nan_to_null(lists)
        valid = pc.is_valid(lists).to_numpy(zero_copy_only=False)
        return _finish(column, lists.drop_null(), valid.astype(np.int64))
    if not (
        pa.types.is_list(lists.type)
        or pa.types.is_large_list(lists.type)
        or pa.types.is_fixed_size_list(lists.type)
    ):
        raise TypeError(
            f"column {column!r} holds scalar {lists.type} values; MultiValue/SequenceColumn "
            "expects a list per row or sep-delimited strings (use Categorical/Numeric for scalars)"
        )
    values = nan_to_null(lists.flatten())
    if values.null_count:
        raise ValueError(
            f"column {column!r}: {values.null_count} missing values inside lists; "
            "drop or replace them before preprocessing"
        )
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy().astype(np.int64)
    return _finish(column, values, lengths)


def _flatten_small(rows: list[object], sep: str | None) -> FlatList | None:
    """``flatten`` of a few rows of plain ``str`` or ``list`` values, in Python: what the Arrow
    kernels give (``str.strip`` trims the same characters as ``utf8_trim_whitespace``), or None
    for inputs left to the general path (NumPy values, missing values inside lists, ...)."""
    tokens: list[object] = []
    lengths: list[int] = []
    if _is_text(rows):
        if sep is None:
            return None
        words: list[str] = []
        for v in rows:
            parts = [] if not isinstance(v, str) else [t for t in (p.strip() for p in v.split(sep)) if t]
            words += parts
            lengths.append(len(parts))
        tokens = list(words)
        if words and all(_INT_RE.fullmatch(t) for t in words):
            ints = [int(t) for t in words]
            if all(-(2**63) <= i < 2**63 for i in ints):  # else Arrow's cast fails: text stays
                tokens = list(ints)
    else:
        for v in rows:
            if v is None:
                lengths.append(0)
            elif type(v) is list:
                tokens += v
                lengths.append(len(v))
            else:
                return None
    lengths_arr = np.asarray(lengths, dtype=np.int64)
    if not tokens:
        return FlatList(pa.array([], type=pa.large_string()), ValueKind.STR, lengths_arr)
    canonical = canonical_list(tokens)
    if canonical is None:
        return None
    return FlatList(canonical[0], canonical[1], lengths_arr)


def _finish(column: str, flat: pa.Array, lengths: np.ndarray) -> FlatList:
    if len(flat) == 0:
        return FlatList(pa.array([], type=pa.large_string()), ValueKind.STR, lengths)
    arr, kind = canonical_values(column, flat)
    return FlatList(arr, kind, lengths)


def pad_left(ids: np.ndarray, lengths: np.ndarray, max_len: int) -> np.ndarray:
    """Rows of flat ``ids`` -> ``(N, max_len)``: the last ``max_len`` of each row, left-padded with 0.

    The most recent (last) item of each row lands in column ``max_len - 1``.
    """
    n = len(lengths)
    kept = np.minimum(lengths, max_len)  # (N,)
    total = int(kept.sum())
    out = np.zeros((n, max_len), dtype=np.int64)  # (N, L)
    if total == 0:
        return out
    first = np.cumsum(kept) - kept  # (N,) where each row's kept items start among all kept items
    pos = np.arange(total)  # (ΣK,)
    # flat position in `out`: row * L + (L - kept) + offset within the kept block
    dst = np.repeat(np.arange(n) * max_len + (max_len - kept) - first, kept) + pos
    if total == len(ids):  # nothing truncated: the kept items are all of `ids`, in order
        out.reshape(-1)[dst] = ids
    else:
        src = np.repeat(np.cumsum(lengths) - kept - first, kept) + pos
        out.reshape(-1)[dst] = ids[src]
    return out
