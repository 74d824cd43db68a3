"""Numeric columns: missing-value fill, optional ``log1p``, normalisation with training statistics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recforge.preprocess.columns import Fill, Normalize, Numeric
from recforge.preprocess.vocab import SMALL_LIST


@dataclass(frozen=True)
class NumericStats:
    """What a fitted ``Numeric`` column applies: fill, then ``(x - shift) / scale``."""

    fill: float
    shift: float
    scale: float


def numeric_values(name: str, s: pd.Series | list[object]) -> np.ndarray:
    """float64 values with NaN for missing; text or other non-numbers are a ``TypeError``.

    ``s`` is a Series or a plain list of Python values (rows read from dicts, where ``None`` or
    NaN is missing); both give the same numbers.
    """
    if isinstance(s, list):
        return _list_numeric_values(name, s)
    dtype = s.dtype
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    inferred = pd.api.types.infer_dtype(s, skipna=True)
    if inferred in ("integer", "floating", "mixed-integer-float", "decimal", "boolean", "empty"):
        return pd.to_numeric(s).to_numpy(dtype=np.float64, na_value=np.nan)
    example = next((v for v in s.dropna().head(1000) if not isinstance(v, int | float | np.number)), None)
    raise TypeError(
        f"column {name!r}: Numeric expects numbers but the column holds {inferred} values "
        f"(dtype {dtype}), e.g. {example!r}; convert it or declare it Categorical"
    )


def _list_numeric_values(name: str, values: list[object]) -> np.ndarray:
    plain = len(values) <= SMALL_LIST and {type(v) for v in values} <= {int, float, type(None)}
    if plain and all(v is None or type(v) is float or -(2**63) <= v < 2**63 for v in values):  # type: ignore[operator]
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    try:
        arr = pa.array(values, from_pandas=True)
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
            f"column {name!r}: Numeric expects numbers but the column holds {kinds} values, "
            f"e.g. {example!r}; convert it or declare it Categorical"
        )
    floats = pc.fill_null(arr.cast(pa.float64(), safe=False), np.nan)
    return floats.to_numpy(zero_copy_only=False)


def apply_numeric(spec: Numeric, stats: NumericStats, x: np.ndarray) -> np.ndarray:
    x = np.where(np.isnan(x), stats.fill, x)
    if np.isinf(x).any():
        raise ValueError(
            f"column {spec.name!r}: {int(np.isinf(x).sum())} infinite values; replace them first"
        )
    if spec.log1p:
        bad = int((x <= -1).sum())
        if bad:
            raise ValueError(f"column {spec.name!r}: log1p needs values > -1, found {bad} that are not")
        x = np.log1p(x)
    return ((x - stats.shift) / stats.scale).astype(np.float32)


def fit_numeric(spec: Numeric, x: np.ndarray) -> NumericStats:
    present = x[~np.isnan(x)]
    if present.size == 0:
        raise ValueError(f"column {spec.name!r}: no non-missing training values to fit on")
    if np.isinf(present).any():
        raise ValueError(
            f"column {spec.name!r}: {int(np.isinf(present).sum())} infinite values; replace them first"
        )
    if isinstance(spec.fill, float):
        fill = spec.fill
    elif spec.fill is Fill.MEAN:
        fill = float(present.mean())
    elif spec.fill is Fill.MEDIAN:
        fill = float(np.median(present))
    else:
        fill = 0.0
    if spec.log1p:
        if (present <= -1).any() or fill <= -1:
            raise ValueError(f"column {spec.name!r}: log1p needs values > -1 in the training data")
        present = np.log1p(present)
    shift, scale = 0.0, 1.0
    if spec.normalize is Normalize.STANDARD:
        shift, scale = float(present.mean()), float(present.std())
    elif spec.normalize is Normalize.MINMAX:
        shift, scale = float(present.min()), float(present.max() - present.min())
    return NumericStats(fill=fill, shift=shift, scale=scale if scale > 0 else 1.0)
