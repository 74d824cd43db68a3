"""Models of a run: feature specs from the config, the model built from the registry, and a run
directory restored from disk (``recforge.layout`` names its files)."""

from __future__ import annotations

import dataclasses
import json
import os
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
from recforge.config import to_plain
from recforge.data import BatchLoader, ColumnarDataset, Histories
from recforge.files import atomic_write_text
from recforge.layout import RunLayout
from recforge.models.defaults import ColumnRoles, feature_groups, pick
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


def column_specs(entries: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Config ``features`` entries (``{name, type, ...}``) -> preprocessing column specs (an
    entry's ``initializer`` is for the model's feature, see ``with_initializers``)."""
    out = []
    for i, entry in enumerate(entries):
        entry = {k: v for k, v in entry.items() if k != "initializer"}
        kind = ColumnKind.parse(entry.pop("type", None), where=f"features[{i}] ({entry.get('name')!r}): type")
        try:
            out.append(_COLUMN_SPECS[kind](**entry))
        except TypeError as e:
            raise ValueError(f"features[{i}] ({entry.get('name')!r}): {e}") from None
    return out


def with_initializers(features: Sequence[F.Feature], entries: Sequence[Mapping[str, Any]]) -> list[F.Feature]:
    """``features`` with the embedding initialisers the config entries name, e.g.
    ``initializer: {type: RandomNormal, std: 0.1}`` (``RandomNormal``, ``RandomUniform``,
    ``XavierNormal``, ``XavierUniform``)."""
    inits: dict[str, F.Initializer] = {}
    for i, entry in enumerate(entries):
        raw = entry.get("initializer")
        if raw is None:
            continue
        if not isinstance(raw, Mapping):
            raise ValueError(
                f"features[{i}] ({entry.get('name')!r}): initializer must be a mapping with a type"
            )
        probe = F.from_dict({"type": "SparseFeature", "name": "x", "vocab_size": 2, "initializer": dict(raw)})
        assert isinstance(probe, F.SparseFeature)
        inits[str(entry["name"])] = probe.initializer
    out: list[F.Feature] = []
    for f in features:
        init = inits.get(f.name)
        out.append(
            dataclasses.replace(f, initializer=init)
            if init is not None and not isinstance(f, F.DenseFeature)
            else f
        )
    return out


def select(
    features: Sequence[F.Feature],
    selector: str | Sequence[str],
    where: str,
    *,
    roles: ColumnRoles | None = None,
) -> list[F.Feature]:
    """Features picked by a group (``recforge.models.defaults``: ``all``, ``sparse``, ...,
    ``user+history``; ``roles`` gives the user/item groups) or an explicit list of names."""
    if isinstance(selector, str):
        return pick(feature_groups(features, roles), selector, where)
    by_name = {f.name: f for f in features}
    missing = [n for n in selector if n not in by_name]
    if missing:
        raise ValueError(f"{where}: unknown feature(s) {missing}; known: {sorted(by_name)}")
    return [by_name[n] for n in selector]


def is_generative(name: str) -> bool:
    """Whether the registry's model ``name`` generates items from semantic IDs (TIGER)."""
    from recforge.models.generative import TIGER

    try:
        return issubclass(get_model(name), TIGER)
    except ValueError:
        return False


def build_model(name: str, inputs: Mapping[str, list[F.Feature]], params: Mapping[str, Any]) -> nn.Module:
    cls = get_model(name)
    try:
        return cls(**inputs, **params)
    except TypeError as e:
        raise ValueError(f"model {name!r} rejected its arguments {sorted([*inputs, *params])}: {e}") from e


@dataclass
class Run:
    """A loaded run: the fitted pipeline, the model with its best weights, the config, and (for
    retrieval runs) the known users' training items."""

    pipeline: FeaturePipeline
    model: nn.Module
    config: dict[str, Any]
    path: Path
    histories: Histories | None = None

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.path)

    def loader(self, df: pd.DataFrame, batch_size: int = 8192) -> BatchLoader:
        return BatchLoader(ColumnarDataset.from_pipeline(self.pipeline, df), batch_size)


def save_model_spec(
    run_dir: Path,
    name: str,
    inputs: Mapping[str, list[F.Feature]],
    params: Mapping[str, Any],
    tensors: Mapping[str, torch.Tensor] | None = None,
    semantic_ids: Mapping[str, Any] | None = None,
) -> None:
    """``model.json`` (class, feature lists, plain arguments) and, for arguments that are tensors
    taken from the data, ``model_tensors.pt`` (read back weights-only). ``semantic_ids``: a TIGER
    run's tokenizer entry (``recforge.runs.generative.save_tokenizer``)."""
    layout = RunLayout(Path(run_dir))
    spec: dict[str, Any] = {
        "name": name,
        "params": to_plain(dict(params)),
        "inputs": {k: [f.name for f in v] for k, v in inputs.items()},
        "features": [F.to_dict(f) for f in F.dedup([f for v in inputs.values() for f in v])],
        "tensors": sorted(tensors or {}),
    }
    if semantic_ids is not None:
        spec["semantic_ids"] = to_plain(dict(semantic_ids))
    if tensors:
        from recforge.files import atomic_write

        atomic_write(layout.model_tensors, lambda tmp: torch.save(dict(tensors), tmp))
    atomic_write_text(layout.model, json.dumps(spec, indent=2))


def load_model_spec(run_dir: str | os.PathLike[str]) -> nn.Module:
    """The model a run directory's ``model.json`` describes (untrained weights)."""
    layout = RunLayout.of(run_dir)
    spec = json.loads(layout.model.read_text(encoding="utf-8"))
    feats = {d["name"]: F.from_dict(d) for d in spec["features"]}
    inputs = {k: [feats[n] for n in names] for k, names in spec["inputs"].items()}
    params = dict(spec["params"])
    if spec.get("tensors"):
        params.update(torch.load(layout.model_tensors, map_location="cpu", weights_only=True))
    if spec.get("semantic_ids") is not None:  # TIGER: the item -> ID table and its RQ-VAE
        from recforge.runs.generative import load_tokenizer

        tok = load_tokenizer(layout.root, spec["semantic_ids"])
        params.update(semantic_ids=tok.ids, rqvae=tok.rqvae)
    return build_model(spec["name"], inputs, params)


def save_histories(path: Path, histories: Histories) -> None:
    """Known users' training items (CSR tensors; read back weights-only)."""
    from recforge.files import atomic_write

    state = {
        "indptr": torch.tensor(histories.indptr),
        "items": torch.tensor(histories.items),
        "num_items": histories.num_items,
    }
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_histories(path: Path) -> Histories:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return Histories(state["indptr"].numpy(), state["items"].numpy(), int(state["num_items"]))


def load_run(run_dir: str | os.PathLike[str], *, device: str = "cpu") -> Run:
    """Restore a run directory written by ``recforge train``."""
    layout = RunLayout.of(run_dir)
    for needed in (layout.model, layout.best, layout.pipeline):
        if not needed.exists():
            raise FileNotFoundError(
                f"{str(layout.root)!r} is not a complete run directory: {needed.name!r} is missing"
            )
    model = load_model_spec(layout.root)
    state = torch.load(layout.best, map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    model.eval()
    config = yaml.safe_load(layout.config.read_text(encoding="utf-8")) if layout.config.exists() else {}
    histories = load_histories(layout.histories) if layout.histories.exists() else None
    return Run(FeaturePipeline.load(layout.pipeline), model, config or {}, layout.root, histories)


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
