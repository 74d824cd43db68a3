"""Bundled and synthetic datasets. ``load(name)`` returns a bundled dataset's splits as DataFrames."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from recforge.datasets.adult import load_adult
from recforge.datasets.movielens import MovieLens, load_ml100k
from recforge.datasets.synthetic import PlantedCTR, planted_ctr
from recforge.datasets.synthetic_mtl import FunnelConfig, conversion_funnel

BUNDLED: dict[str, Callable[[], dict[str, pd.DataFrame]]] = {"adult": load_adult}


def load(name: str) -> dict[str, pd.DataFrame]:
    """Splits of the bundled dataset ``name`` (e.g. ``load("adult")["train"]``)."""
    try:
        loader = BUNDLED[name]
    except KeyError:
        raise ValueError(f"unknown bundled dataset {name!r}; available: {sorted(BUNDLED)}") from None
    return loader()


__all__ = [
    "BUNDLED",
    "FunnelConfig",
    "MovieLens",
    "PlantedCTR",
    "conversion_funnel",
    "load",
    "load_adult",
    "load_ml100k",
    "planted_ctr",
]
