"""Labelled-row data of a run (``ctr``, ``mtl``): read the sources, split, fit the pipeline on the
training split only, encode every split."""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from recforge.config import RunConfig
from recforge.data import ColumnarDataset
from recforge.datasets.formats import ROW_READERS, DataFormat
from recforge.preprocess import FeaturePipeline, read_table
from recforge.runs.model import column_specs, read_source


def split_rows(
    df: pd.DataFrame, fraction: float, seed: int, *, key: str = "data.valid_fraction"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded random hold-out of ``fraction`` of the rows: ``(rest, held)``; both must keep rows."""
    rng = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(df), generator=rng).numpy()
    n_held = round(len(df) * fraction)
    if n_held == 0 or n_held == len(df):
        raise ValueError(
            f"{key}={fraction} of {len(df)} row(s) leaves {'no held-out' if n_held == 0 else 'no training'} "
            "row: give more data, another fraction, or the split as its own source"
        )
    return df.iloc[perm[n_held:]].reset_index(drop=True), df.iloc[perm[:n_held]].reset_index(drop=True)


def read_rows(cfg: RunConfig) -> dict[str, pd.DataFrame]:
    """The raw ``train`` (and ``valid``, ``test``) frames the config describes."""
    d = cfg.data
    if d.path is not None:
        reader = ROW_READERS.get(d.format)
        whole = reader(d.path) if reader is not None else read_table(d.path)
        parts: dict[str, pd.DataFrame] = {}
        rest = whole
        if d.test_fraction > 0:
            rest, parts["test"] = split_rows(rest, d.test_fraction, cfg.seed + 1, key="data.test_fraction")
        if d.valid_fraction > 0:
            rest, parts["valid"] = split_rows(rest, d.valid_fraction / (1 - d.test_fraction), cfg.seed)
        return {"train": rest, **parts}
    assert d.train is not None
    if d.format is not DataFormat.TABLE:
        raise ValueError(f"data.format {d.format.value!r} reads one data.path; data.train is a table source")
    train = read_source(d.train)
    parts = {}
    if d.valid is not None:
        parts["valid"] = read_source(d.valid)
    elif d.valid_fraction > 0:
        train, parts["valid"] = split_rows(train, d.valid_fraction, cfg.seed)
    if d.test is not None:
        parts["test"] = read_source(d.test)
    return {"train": train, **parts}


def prepare_rows(cfg: RunConfig) -> tuple[FeaturePipeline, dict[str, ColumnarDataset]]:
    """Read the sources, fit the pipeline on the training split only, transform every split."""
    frames = read_rows(cfg)
    label = cfg.data.label
    kw: dict[str, Any] = {"labels": label} if isinstance(label, list) else {"label": label}
    pipeline = FeaturePipeline(column_specs(cfg.features), label_types=cfg.data.label_types, **kw)
    pipeline.fit(frames["train"])
    return pipeline, {name: ColumnarDataset.from_pipeline(pipeline, frame) for name, frame in frames.items()}
