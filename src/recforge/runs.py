"""Run directories: build a model from a config, train it, and reload everything from disk.

A run directory holds ``config.yaml`` (resolved), ``pipeline/`` (the fitted feature pipeline),
``model.json`` (model class, arguments and feature specs), ``best.pt`` (weights), ``checkpoint.pt``,
``metrics.jsonl``, ``learning_curve.png`` and ``test_metrics.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml
from torch import nn

from recforge import features as F
from recforge.choices import Choice
from recforge.config import RunConfig, to_plain
from recforge.data import BatchLoader, ColumnarDataset
from recforge.models.registry import get_model
from recforge.preprocess import (
    Bucketize,
    Categorical,
    FeaturePipeline,
    MultiValue,
    Numeric,
    SequenceColumn,
    read_table,
)
from recforge.utils.files import atomic_write_text

MODEL_FILE = "model.json"
PIPELINE_DIR = "pipeline"
CONFIG_FILE = "config.yaml"
WEIGHTS = "best.pt"


class ColumnKind(Choice):
    CATEGORICAL = "categorical"
    NUMERIC = "numeric"
    BUCKETIZE = "bucketize"
    MULTI_VALUE = "multi_value"
    SEQUENCE = "sequence"


_COLUMN_SPECS = {
    ColumnKind.CATEGORICAL: Categorical,
    ColumnKind.NUMERIC: Numeric,
    ColumnKind.BUCKETIZE: Bucketize,
    ColumnKind.MULTI_VALUE: MultiValue,
    ColumnKind.SEQUENCE: SequenceColumn,
}


class Selector(Choice):
    ALL = "all"
    SPARSE = "sparse"
    DENSE = "dense"
    SEQUENCE = "sequence"
    EMBEDDED = "embedded"


def column_specs(entries: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Config ``features`` entries (``{name, type, ...}``) -> preprocessing column specs."""
    out = []
    for i, entry in enumerate(entries):
        entry = dict(entry)
        kind = ColumnKind.parse(entry.pop("type", None), where=f"features[{i}] ({entry.get('name')!r}): type")
        out.append(_COLUMN_SPECS[kind](**entry))
    return out


def select(features: Sequence[F.Feature], selector: str | Sequence[str], where: str) -> list[F.Feature]:
    """Features picked by a selector keyword or an explicit list of names."""
    if isinstance(selector, str):
        sel = Selector.parse(selector, where=f"{where}: selector (or a list of feature names)")
        keep = {
            Selector.ALL: lambda f: True,
            Selector.SPARSE: lambda f: isinstance(f, F.SparseFeature),
            Selector.DENSE: lambda f: isinstance(f, F.DenseFeature),
            Selector.SEQUENCE: lambda f: isinstance(f, F.SequenceFeature),
            Selector.EMBEDDED: lambda f: not isinstance(f, F.DenseFeature),
        }[sel]
        return [f for f in features if keep(f)]
    by_name = {f.name: f for f in features}
    missing = [n for n in selector if n not in by_name]
    if missing:
        raise ValueError(f"{where}: unknown feature(s) {missing}; known: {sorted(by_name)}")
    return [by_name[n] for n in selector]


def build_model(name: str, inputs: Mapping[str, list[F.Feature]], params: Mapping[str, Any]) -> nn.Module:
    cls = get_model(name)
    try:
        return cls(**inputs, **params)
    except TypeError as e:
        raise ValueError(f"model {name!r} rejected its arguments {sorted([*inputs, *params])}: {e}") from e


@dataclass
class Run:
    """A loaded run: the fitted pipeline, the model with its best weights, and the config."""

    pipeline: FeaturePipeline
    model: nn.Module
    config: dict[str, Any]
    path: Path

    def loader(self, df: pd.DataFrame, batch_size: int = 8192) -> BatchLoader:
        return BatchLoader(self.pipeline.dataset(df), batch_size)


def save_model_spec(
    run_dir: Path, name: str, inputs: Mapping[str, list[F.Feature]], params: Mapping[str, Any]
) -> None:
    spec = {
        "name": name,
        "params": to_plain(dict(params)),
        "inputs": {k: [f.name for f in v] for k, v in inputs.items()},
        "features": [F.to_dict(f) for f in F.dedup([f for v in inputs.values() for f in v])],
    }
    atomic_write_text(run_dir / MODEL_FILE, json.dumps(spec, indent=2))


def load_run(run_dir: str | Path, *, device: str = "cpu") -> Run:
    """Restore a run directory written by ``recforge train``."""
    path = Path(run_dir)
    for needed in (MODEL_FILE, WEIGHTS, PIPELINE_DIR):
        if not (path / needed).exists():
            raise FileNotFoundError(f"{str(path)!r} is not a complete run directory: {needed!r} is missing")
    spec = json.loads((path / MODEL_FILE).read_text(encoding="utf-8"))
    feats = {d["name"]: F.from_dict(d) for d in spec["features"]}
    inputs = {k: [feats[n] for n in names] for k, names in spec["inputs"].items()}
    model = build_model(spec["name"], inputs, spec["params"])
    state = torch.load(path / WEIGHTS, map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    model.eval()
    config = (
        yaml.safe_load((path / CONFIG_FILE).read_text(encoding="utf-8"))
        if (path / CONFIG_FILE).exists()
        else {}
    )
    return Run(FeaturePipeline.load(path / PIPELINE_DIR), model, config, path)


def read_source(source: str) -> pd.DataFrame:
    """``bundled:NAME/SPLIT`` or a CSV/Parquet path -> DataFrame."""
    if source.startswith("bundled:"):
        from recforge.datasets import load

        name, _, split = source[len("bundled:") :].partition("/")
        splits = load(name)
        if split not in splits:
            raise ValueError(f"bundled dataset {name!r} has splits {sorted(splits)}, not {split!r}")
        return splits[split]
    if not Path(source).exists():
        raise FileNotFoundError(f"data source {source!r} does not exist")
    return read_table(source)


def split_valid(df: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded random hold-out of ``fraction`` of the rows."""
    rng = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(df), generator=rng).numpy()
    n_valid = round(len(df) * fraction)
    return (df.iloc[perm[n_valid:]].reset_index(drop=True), df.iloc[perm[:n_valid]].reset_index(drop=True))


def prepare_data(cfg: RunConfig) -> tuple[FeaturePipeline, dict[str, ColumnarDataset]]:
    """Read the sources, fit the pipeline on the training split only, transform every split."""
    train = read_source(cfg.data.train)
    if cfg.data.valid is not None:
        valid = read_source(cfg.data.valid)
    elif cfg.data.valid_fraction > 0:
        train, valid = split_valid(train, cfg.data.valid_fraction, cfg.seed)
    else:
        valid = None
    test = read_source(cfg.data.test) if cfg.data.test is not None else None
    label = cfg.data.label
    kw: dict[str, Any] = {"labels": label} if isinstance(label, list) else {"label": label}
    pipeline = FeaturePipeline(column_specs(cfg.features), **kw).fit(train)
    splits = {"train": pipeline.dataset(train)}
    if valid is not None:
        splits["valid"] = pipeline.dataset(valid)
    if test is not None:
        splits["test"] = pipeline.dataset(test)
    return pipeline, splits
