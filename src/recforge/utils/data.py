"""Torch-RecHub's ``torch_rechub.utils.data`` names, so ported code only renames the import."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from recforge.data import DataGenerator


def df_to_dict(data: pd.DataFrame) -> dict[str, np.ndarray]:
    """A DataFrame as ``{column: values}`` (list columns become stacked 2-D arrays)."""
    out: dict[str, np.ndarray] = {}
    for col in data.columns:
        values = data[col].to_numpy()
        if values.dtype == object and len(values) and isinstance(values[0], list | tuple | np.ndarray):
            values = np.stack([np.asarray(v) for v in values])
        out[str(col)] = values
    return out


def pad_sequences(
    sequences: Sequence[Sequence[int]],
    maxlen: int | None = None,
    dtype: str = "int64",
    padding: str = "pre",
    truncating: str = "pre",
    value: int = 0,
) -> np.ndarray:
    """Pad/truncate id lists to ``(N, maxlen)`` like Keras: ``"pre"`` pads or cuts at the front
    (recforge's convention: the most recent item stays last)."""
    for arg, v in (("padding", padding), ("truncating", truncating)):
        if v not in ("pre", "post"):
            raise ValueError(f"{arg} must be 'pre' or 'post', got {v!r}")
    maxlen = maxlen if maxlen is not None else max((len(s) for s in sequences), default=0)
    out = np.full((len(sequences), maxlen), value, dtype=dtype)
    for i, s in enumerate(sequences):
        s = list(s)
        s = s[-maxlen:] if truncating == "pre" else s[:maxlen]
        if not s:
            continue
        if padding == "pre":
            out[i, maxlen - len(s) :] = s
        else:
            out[i, : len(s)] = s
    return out


__all__ = ["DataGenerator", "df_to_dict", "pad_sequences"]
