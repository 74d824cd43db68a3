"""Numeric columns: missing-value fill, optional ``log1p``, normalisation with training statistics.

Statistics are gathered by ``NumericAccumulator`` one batch at a time (the in-memory fit is one
batch); sums are exact, so batching never changes a fitted value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recforge.preprocess.columns import Fill, Normalize, Numeric
from recforge.preprocess.vocab import SMALL_LIST, ValueCounter, ValueKind


@dataclass(frozen=True)
class NumericStats:
    """What a fitted ``Numeric`` column applies: fill, then ``(x - shift) / scale``."""

    fill: float
    shift: float
    scale: float


def numeric_values(
    name: str, s: pd.Series | pa.Array | pa.ChunkedArray | list[object], *, spec: str = "Numeric"
) -> np.ndarray:
    """float64 values with NaN for missing; text or other non-numbers are a ``TypeError``.

    ``s`` is a Series, an Arrow array or a plain list of Python values (rows read from dicts,
    where ``None`` or NaN is missing); all give the same numbers. ``spec`` names the column spec
    (``Numeric``, ``Bucketize``) in errors.
    """
    if isinstance(s, list):
        return _list_numeric_values(name, s, spec)
    if isinstance(s, pa.Array | pa.ChunkedArray):
        t = s.type
        if pa.types.is_dictionary(t):
            return numeric_values(name, s.cast(t.value_type), spec=spec)
        if pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_null(t):
            return pc.fill_null(s.cast(pa.float64()), np.nan).to_numpy()
        if pa.types.is_decimal(t):
            return pc.fill_null(s.cast(pa.float64(), safe=False), np.nan).to_numpy()
        example = next((v for v in s.drop_null()[:1].to_pylist()), None)
        raise TypeError(
            f"column {name!r}: {spec} expects numbers but the column holds {t} values, "
            f"e.g. {example!r}; convert it or declare it Categorical"
        )
    dtype = s.dtype
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    inferred = pd.api.types.infer_dtype(s, skipna=True)
    if inferred in ("integer", "floating", "mixed-integer-float", "decimal", "boolean", "empty"):
        try:
            return pd.to_numeric(s).to_numpy(dtype=np.float64, na_value=np.nan)
        except (OverflowError, ValueError):  # Python ints beyond float64 or mixed huge ints
            return _plain_floats(s.tolist())
    example = next((v for v in s.dropna().head(1000) if not isinstance(v, int | float | np.number)), None)
    raise TypeError(
        f"column {name!r}: {spec} expects numbers but the column holds {inferred} values "
        f"(dtype {dtype}), e.g. {example!r}; convert it or declare it Categorical"
    )


def _list_numeric_values(name: str, values: list[object], spec: str) -> np.ndarray:
    plain = len(values) <= SMALL_LIST and {type(v) for v in values} <= {int, float, type(None)}
    if plain and all(v is None or type(v) is float or -(2**63) <= v < 2**63 for v in values):  # type: ignore[operator]
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    try:
        arr = pa.array(values, from_pandas=True)
    except OverflowError:  # Python ints beyond int64, which Arrow refuses
        if {type(v) for v in values} <= {int, float, bool, type(None)}:
            return _plain_floats(values)
        arr = None
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        arr = None
    t = arr.type if arr is not None else None
    if t is None or not (
        pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_null(t)
    ):
        present = [v for v in values[:1000] if v is not None]
        kinds = sorted({type(v).__name__ for v in present})
        example = next((v for v in present if not isinstance(v, int | float | np.number)), present[0])
        raise TypeError(
            f"column {name!r}: {spec} expects numbers but the column holds {kinds} values, "
            f"e.g. {example!r}; convert it or declare it Categorical"
        )
    floats = pc.fill_null(arr.cast(pa.float64(), safe=False), np.nan)
    return floats.to_numpy(zero_copy_only=False)


def _plain_floats(values: list[object]) -> np.ndarray:
    """Python numbers (None or NaN for missing) as float64; an int beyond float64 becomes ``inf``
    (refused later, naming the column)."""

    def one(v: object) -> float:
        if v is None:
            return math.nan
        try:
            return float(v)  # type: ignore[arg-type]
        except OverflowError:
            return math.inf if v > 0 else -math.inf  # type: ignore[operator]

    return np.fromiter((one(v) for v in values), dtype=np.float64, count=len(values))


FLOAT32_MAX = float(np.finfo(np.float32).max)


def reject_infinite(name: str, x: np.ndarray) -> None:
    """A ``ValueError`` naming the column when ``x`` holds ``inf`` or ``-inf``."""
    if np.isinf(x).any():
        raise ValueError(f"column {name!r}: {int(np.isinf(x).sum())} infinite values; replace them first")


def _reject_beyond_float32(name: str, x: np.ndarray, raw: np.ndarray, what: str) -> None:
    big = np.abs(x) > FLOAT32_MAX
    if big.any():
        i = int(np.argmax(big))
        raise ValueError(
            f"column {name!r}: {int(big.sum())} value(s) lie beyond float32's range (|x| > 3.4e38) "
            f"{what}, e.g. {raw[i]:g}; clip them, or set log1p=True for a heavy-tailed column"
        )


def apply_numeric(spec: Numeric, stats: NumericStats, x: np.ndarray) -> np.ndarray:
    x = np.where(np.isnan(x), stats.fill, x)
    reject_infinite(spec.name, x)
    raw = x
    if spec.log1p:
        bad = int((x <= -1).sum())
        if bad:
            raise ValueError(f"column {spec.name!r}: log1p needs values > -1, found {bad} that are not")
        x = np.log1p(x)
    out = (x - stats.shift) / stats.scale
    _reject_beyond_float32(spec.name, out, raw, "after scaling")
    return out.astype(np.float32)


_CHUNK = 1 << 20  # values per bincount: every per-exponent sum of limbs stays below 2**53 (exact)
_MIN_EXP = -1073  # np.frexp's exponent of the smallest subnormal
_N_EXP = 1024 - _MIN_EXP + 1
_SHIFT = 53 - _MIN_EXP  # x * 2**_SHIFT is an integer for every finite float64 x


class ExactMoments:
    """Count, sum and sum of squares of float64 values, kept exactly (Python integers scaled by a
    power of two), so mean and standard deviation do not depend on how the values were split into
    batches or in what order they came: a streaming fit equals the in-memory one bit for bit.

    Each value is ``m * 2**(e - 53)`` with an integer mantissa ``|m| < 2**53`` (``np.frexp``); the
    mantissas are cut into small limbs whose per-exponent sums ``np.bincount`` adds exactly in
    float64, then folded into the integers.
    """

    def __init__(self, *, squares: bool) -> None:
        self.squares = squares
        self.n = 0
        self.total = 0  # sum(x) * 2**_SHIFT
        self.total_sq = 0  # sum(x**2) * 2**(2 * _SHIFT)

    def add(self, x: np.ndarray) -> None:
        for start in range(0, len(x), _CHUNK):
            self._add(x[start : start + _CHUNK])

    def _add(self, x: np.ndarray) -> None:
        if not len(x):
            return
        frac, exp = np.frexp(x)
        m = (frac * 2.0**53).astype(np.int64)  # exact: frac has at most 53 significant bits
        b = exp - _MIN_EXP  # exponent bin
        self.n += len(x)
        hi, lo = m >> 27, m & ((1 << 27) - 1)  # m = hi * 2**27 + lo
        for limbs, weight in ((hi, 27), (lo, 0)):
            sums = np.bincount(b, weights=limbs.astype(np.float64), minlength=_N_EXP)
            for i in np.flatnonzero(sums):
                # value scaled by 2**_SHIFT: limb * 2**weight * 2**(e - 53 + _SHIFT), e - 53 + _SHIFT = bin
                self.total += int(sums[i]) << (weight + int(i))
        if not self.squares:
            return
        a = np.abs(m)
        parts = [(a >> (14 * k)) & ((1 << 14) - 1) for k in range(4)]  # |m| = sum parts[k] 2**(14k)
        for k in range(7):  # m**2 = sum_k 2**(14k) sum_{i+j=k} parts[i] parts[j]
            c = sum(parts[i] * parts[k - i] for i in range(max(0, k - 3), min(k, 3) + 1))
            sums = np.bincount(b, weights=c.astype(np.float64), minlength=_N_EXP)
            for i in np.flatnonzero(sums):
                self.total_sq += int(sums[i]) << (14 * k + 2 * int(i))

    def mean(self) -> float:
        """The exact mean rounded to float64."""
        return float(Fraction(self.total, self.n << _SHIFT))

    def std(self) -> float:
        """Population standard deviation (``np.std``'s ``ddof=0``): the square root of the exact
        variance rounded to float64."""
        var = Fraction(self.n * self.total_sq - self.total * self.total, (self.n * self.n) << (2 * _SHIFT))
        try:
            return math.sqrt(float(var))
        except OverflowError:  # beyond float64, as np.std of such values
            return math.inf


class NumericAccumulator:
    """What ``fit_numeric`` needs of a ``Numeric`` column, gathered batch by batch.

    Memory does not grow with rows, except for ``fill="median"``, which keeps a count per distinct
    value (exact; fine for integer-like columns, as large as the data for continuous ones).
    """

    def __init__(self, spec: Numeric) -> None:
        self.spec = spec
        self.n = 0
        self.raw = ExactMoments(squares=False) if spec.fill is Fill.MEAN else None
        self.moments = ExactMoments(squares=True) if spec.normalize is Normalize.STANDARD else None
        self.low, self.high = math.inf, -math.inf
        self.counts: ValueCounter | None = None
        if spec.fill is Fill.MEDIAN:
            self.counts = ValueCounter(spec.name)

    def add(self, x: np.ndarray) -> None:
        """``x``: float64 values, NaN for missing."""
        spec = self.spec
        present = x[~np.isnan(x)]
        reject_infinite(spec.name, present)
        if not present.size:
            return
        self.n += present.size
        if self.raw is not None:
            self.raw.add(present)
        if self.counts is not None:
            self.counts.add(pa.array(present), ValueKind.FLOAT)
        raw = present
        if spec.log1p:
            if (present <= -1).any():
                raise ValueError(f"column {spec.name!r}: log1p needs values > -1 in the training data")
            present = np.log1p(present)
        # Statistics of such values overflow (a scale of inf zeroes the column) and the model
        # reads float32: the training data must fit it.
        _reject_beyond_float32(spec.name, present, raw, "in the training data")
        if self.moments is not None:
            self.moments.add(present)
        if spec.normalize is Normalize.MINMAX:
            self.low, self.high = min(self.low, float(present.min())), max(self.high, float(present.max()))

    def _median(self) -> float:
        assert self.counts is not None
        table = self.counts.table().sort_by("value")
        values = table["value"].to_numpy()
        ends = np.cumsum(table["count"].to_numpy())
        middle = [(self.n - 1) // 2] if self.n % 2 else [self.n // 2 - 1, self.n // 2]
        picked = values[np.searchsorted(ends, np.array(middle), side="right")]
        return float(np.mean(picked))  # as np.median: the middle value, or the mean of the two

    def stats(self) -> NumericStats:
        spec = self.spec
        if self.n == 0:
            raise ValueError(f"column {spec.name!r}: no non-missing training values to fit on")
        if isinstance(spec.fill, float):
            fill = spec.fill
        elif self.raw is not None:
            fill = self.raw.mean()
        elif self.counts is not None:
            fill = self._median()
        else:
            fill = 0.0
        if spec.log1p and fill <= -1:
            raise ValueError(f"column {spec.name!r}: log1p needs values > -1 in the training data")
        shift, scale = 0.0, 1.0
        if self.moments is not None:
            shift, scale = self.moments.mean(), self.moments.std()
        elif spec.normalize is Normalize.MINMAX:
            shift, scale = self.low, self.high - self.low
        out = NumericStats(fill=fill, shift=shift, scale=scale if scale > 0 else 1.0)
        if not all(math.isfinite(v) for v in (out.fill, out.shift, out.scale)):
            raise ValueError(
                f"column {spec.name!r}: the fitted statistics are not finite ({out}); check its values"
            )
        return out


def fit_numeric(spec: Numeric, x: np.ndarray) -> NumericStats:
    acc = NumericAccumulator(spec)
    acc.add(x)
    return acc.stats()
