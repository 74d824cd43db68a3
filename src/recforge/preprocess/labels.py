"""Label columns: read as float32 and checked against their declared type (binary 0/1, soft labels
in [0, 1], regression values within float32), with an error naming the column, the rule and a fix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recforge.preprocess.columns import LabelType
from recforge.preprocess.io import Column


def label_values(name: str, s: Column, kind: LabelType | None) -> np.ndarray:
    """A label column as float32 ``(N,)``, checked against its declared ``kind`` (``None``: a
    pipeline saved before label types existed, whose labels are only checked to be finite)."""
    if len(s) == 0:  # an empty split (e.g. a CSV with a header only): its dtype says nothing
        return np.zeros(0, dtype=np.float32)
    if isinstance(s, pa.ChunkedArray):
        t = s.type
        if not (pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_floating(t)):
            raise TypeError(f"label column {name!r}: expected numbers (e.g. 0/1), got type {t}")
        y = pc.fill_null(s.cast(pa.float64()), np.nan).to_numpy()
    else:
        if not (pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype)):
            raise TypeError(f"label column {name!r}: expected numbers (e.g. 0/1), got dtype {s.dtype}")
        y = s.to_numpy(dtype=np.float64, na_value=np.nan)
    n_missing = int(np.isnan(y).sum())
    if n_missing:
        raise ValueError(f"label column {name!r}: {n_missing} missing values; drop those rows")
    check_labels(name, y, kind)
    return y.astype(np.float32)


def check_labels(name: str, y: np.ndarray, kind: LabelType | None) -> None:
    if kind is LabelType.BINARY:
        bad = (y != 0) & (y != 1)
        rule = "binary labels must be 0 or 1"
        hint = "map them to 0/1, or declare label_types='soft' for probabilities in [0, 1]"
    elif kind is LabelType.SOFT:
        bad = ~((y >= 0) & (y <= 1))
        rule = "soft labels must lie in [0, 1]"
        hint = "rescale them, or declare label_types='regression'"
    else:
        bad = ~np.isfinite(y) | (np.abs(y) > np.finfo(np.float32).max)
        rule = "labels must be finite numbers within float32's range"
        hint = "drop or clip those rows"
    n_bad = int(bad.sum())
    if n_bad:
        found = np.unique(y[bad])
        shown = ", ".join(f"{v:g}" for v in found[:5]) + (", ..." if len(found) > 5 else "")
        raise ValueError(f"label column {name!r}: {rule}; {n_bad} rows hold other values ({shown}); {hint}")


def parse_label_types(
    labels: Sequence[str], label_types: LabelType | str | Sequence[LabelType | str] | None
) -> list[LabelType]:
    if label_types is None:
        return [LabelType.BINARY] * len(labels)
    if isinstance(label_types, str):  # one type for every label (a LabelType is a str too)
        return [LabelType.parse(label_types, where="label_types")] * len(labels)
    types = list(label_types)
    if len(types) != len(labels):
        raise ValueError(f"label_types: expected one type per label column {list(labels)}, got {types!r}")
    return [LabelType.parse(t, where=f"label_types[{i}] ({labels[i]!r})") for i, t in enumerate(types)]
