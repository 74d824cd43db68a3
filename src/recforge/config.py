"""Run configuration: YAML in, typed frozen dataclasses out (strings are parsed here, at the edge).

A config has five sections: ``data``, ``features``, ``model``, ``trainer`` and the top-level
``run_dir``/``seed``. ``--set key.sub=value`` overrides any key (the value is parsed as YAML).
"""

from __future__ import annotations

import copy
import dataclasses
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from recforge.choices import Choice


class Optimizer(Choice):
    ADAM = "adam"
    ADAMW = "adamw"
    SGD = "sgd"
    ADAGRAD = "adagrad"
    RMSPROP = "rmsprop"

    @property
    def cls(self) -> type[torch.optim.Optimizer]:
        return {
            Optimizer.ADAM: torch.optim.Adam,
            Optimizer.ADAMW: torch.optim.AdamW,
            Optimizer.SGD: torch.optim.SGD,
            Optimizer.ADAGRAD: torch.optim.Adagrad,
            Optimizer.RMSPROP: torch.optim.RMSprop,
        }[self]


class Scheduler(Choice):
    STEP = "step"
    EXPONENTIAL = "exponential"
    COSINE = "cosine"
    PLATEAU = "plateau"

    @property
    def cls(self) -> type:
        s = torch.optim.lr_scheduler
        return {
            Scheduler.STEP: s.StepLR,
            Scheduler.EXPONENTIAL: s.ExponentialLR,
            Scheduler.COSINE: s.CosineAnnealingLR,
            Scheduler.PLATEAU: s.ReduceLROnPlateau,
        }[self]


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from. A source is a CSV/Parquet path or ``bundled:NAME/SPLIT``.

    ``valid`` absent: ``valid_fraction`` of the training rows (seeded) is held out for validation.
    ``label``: the target column (a list for multi-task).
    """

    train: str
    valid: str | None = None
    test: str | None = None
    valid_fraction: float = 0.1
    label: str | list[str] | None = "label"
    batch_size: int = 1024
    eval_batch_size: int = 8192


@dataclass(frozen=True)
class ModelConfig:
    """``name`` in the model registry; ``inputs`` maps each feature-list argument of the model's
    constructor to a selector (``all``, ``sparse``, ``dense``, ``sequence``, ``embedded`` or a list
    of feature names); ``params`` are its other keyword arguments."""

    name: str
    inputs: dict[str, str | list[str]] = field(default_factory=lambda: {"features": "all"})
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainerConfig:
    preset: str = "ctr"
    n_epoch: int = 10
    optimizer: Optimizer = Optimizer.ADAM
    optimizer_params: dict[str, Any] = field(default_factory=lambda: {"lr": 1e-3})
    scheduler: Scheduler | None = None
    scheduler_params: dict[str, Any] = field(default_factory=dict)
    earlystop_patience: int = 3
    earlystop_metric: str | None = None
    max_grad_norm: float | None = None
    device: str = "cpu"
    progress: bool = True
    num_threads: int | None = None
    # TorchRec-sharded embedding tables (recforge[torchrec], `recforge train --nproc N`): the
    # sharding type and the fused row-wise Adagrad's {lr, eps}.
    sharding: str | None = None
    embedding_optimizer_params: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig
    features: list[dict[str, Any]]
    model: ModelConfig
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    run_dir: str = "runs/run"
    seed: int = 2022


def _build(cls: type, raw: object, where: str) -> Any:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(raw).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(raw) - set(known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; valid: {sorted(known)}")
    missing = [
        n
        for n, f in known.items()
        if n not in raw and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ValueError(f"{where}: missing required key(s) {missing}")
    return cls(**raw)


def parse_config(raw: Mapping[str, Any]) -> RunConfig:
    """Validate a raw config mapping into a ``RunConfig`` (errors name the offending key)."""
    raw = dict(raw)
    for key in ("data", "features", "model"):
        if key not in raw:
            raise ValueError(f"config: missing section {key!r}")
    data = _build(DataConfig, raw["data"], "data")
    if not 0 <= data.valid_fraction < 1:
        raise ValueError(f"data.valid_fraction must be in [0, 1), got {data.valid_fraction}")
    feats = raw["features"]
    if not isinstance(feats, Sequence) or not feats or not all(isinstance(f, Mapping) for f in feats):
        raise ValueError("features: expected a non-empty list of mappings (one per column)")
    model = _build(ModelConfig, raw["model"], "model")
    trainer_raw = dict(raw.get("trainer") or {})
    if "optimizer" in trainer_raw:
        trainer_raw["optimizer"] = Optimizer.parse(trainer_raw["optimizer"], where="trainer.optimizer:")
    if trainer_raw.get("scheduler") is not None:
        trainer_raw["scheduler"] = Scheduler.parse(trainer_raw["scheduler"], where="trainer.scheduler:")
    if trainer_raw.get("sharding") is not None or trainer_raw.get("embedding_optimizer_params"):
        from recforge.torchrec.sharding import FusedRowWiseAdagrad, ShardingType

        if trainer_raw.get("sharding") is None:
            raise ValueError("trainer.embedding_optimizer_params needs trainer.sharding")
        trainer_raw["sharding"] = ShardingType.parse(trainer_raw["sharding"], where="trainer.sharding").value
        FusedRowWiseAdagrad.parse(trainer_raw.get("embedding_optimizer_params"))  # unknown keys fail now
    trainer = _build(TrainerConfig, trainer_raw, "trainer")
    top = {k: v for k, v in raw.items() if k not in ("data", "features", "model", "trainer")}
    unknown = set(top) - {"run_dir", "seed"}
    if unknown:
        raise ValueError(
            f"config: unknown top-level key(s) {sorted(unknown)}; valid: data, features, model, "
            "trainer, run_dir, seed"
        )
    return RunConfig(data=data, features=[dict(f) for f in feats], model=model, trainer=trainer, **top)


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a copy of ``raw``."""
    out = copy.deepcopy(dict(raw))
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node: dict[str, Any] = out
        for p in parts[:-1]:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise ValueError(f"--set {key}: {p!r} is not a mapping")
            node = child
        node[parts[-1]] = yaml.safe_load(value)
    return out


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> tuple[RunConfig, dict[str, Any]]:
    """Read YAML at ``path`` and apply overrides; returns the typed config and the resolved mapping."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"config file {str(p)!r} does not exist")
    raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    resolved = apply_overrides(raw, overrides)
    return parse_config(resolved), resolved


def to_plain(obj: object) -> Any:
    """A config (or part) as plain YAML-ready data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Mapping):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    return obj
