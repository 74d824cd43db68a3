"""Run configuration: YAML in, typed frozen dataclasses out (strings are parsed here, at the edge).

A config has five sections: ``data``, ``features``, ``model``, ``trainer`` and the top-level
``run_dir``/``seed``. ``--set key.sub=value`` overrides any key (the value is parsed as YAML).
Every value is checked against its field's type; a wrong one is a ``ValueError`` naming the key,
the expected type and the value given. ``docs/configs.md`` lists every key.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import torch
import yaml

from recforge.choices import Choice
from recforge.data.interactions import SplitKind
from recforge.datasets.formats import DataFormat
from recforge.objectives.match import MatchMode, NegativeSource, PairLoss
from recforge.objectives.sequence import SeqLoss
from recforge.precision import Precision


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


class Preset(Choice):
    """The task family a run trains: labelled rows (``ctr``, ``mtl``) or an interaction log
    (``match``: two-tower and multi-interest retrieval; ``seq``: next-item models)."""

    CTR = "ctr"
    MTL = "mtl"
    MATCH = "match"
    SEQ = "seq"

    @property
    def needs_log(self) -> bool:
        return self in (Preset.MATCH, Preset.SEQ)


class SampleKind(Choice):
    """How training rows are built from an interaction log.

    ``next_item``: one row per interaction after the first, its earlier items as history;
    ``bag``: one row per interaction, a random bag of the user's other items as history (data
    without order); ``sequence``: one row per user, the next item at every position (``seq``).
    """

    NEXT_ITEM = "next_item"
    BAG = "bag"
    SEQUENCE = "sequence"


class RowSplit(Choice):
    """How labelled rows given as one ``data.path`` are split: seeded random fractions."""

    RANDOM = "random"


class Sampling(Choice):
    """Where sampled negatives are drawn from: uniformly, or by training popularity ** alpha."""

    UNIFORM = "uniform"
    POPULARITY = "popularity"


@dataclass(frozen=True)
class SamplesConfig:
    """Training rows of an interaction log (``match``/``seq``).

    kind: ``next_item``, ``bag`` or ``sequence`` (default: ``sequence`` for ``seq``, ``next_item``
        for ordered data, ``bag`` for unordered data such as LightGCN files).
    max_len: training history length (default: the history feature's ``max_len``, which is also
        the evaluation and serving length).
    dropout: ``bag`` only: each history item is dropped with this probability (one kept).
    max_per_user: ``bag`` only: at most this many targets per user and epoch (0 = all).
    length_bucketed: ``next_item`` only: batches of similar history length (``recforge.data.
        LengthBucketedLoader``), so less padding is computed (default: on for TIGER).
    """

    kind: SampleKind | None = None
    max_len: int | None = None
    dropout: float = 0.0
    max_per_user: int = 0
    length_bucketed: bool | None = None


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how it is split.

    Labelled rows (``ctr``, ``mtl``): ``train`` (+ ``valid``, ``test``) sources — CSV/Parquet paths
    or ``bundled:NAME/SPLIT`` — or one ``path`` read by ``format`` (``table``, ``census_income``,
    ``ali_ccp``) and split at random (``valid_fraction``, ``test_fraction``).
    ``label_types``: ``binary`` (0/1, default), ``soft`` ([0, 1]) or ``regression``, one for every
    label or one per label column.
    Interaction logs (``match``, ``seq``): ``path`` read by ``format`` (``interactions``,
    ``lightgcn``, ``user_item_pairs``, ``item_lists``, ``recbole``, ``movielens``), split by
    ``split`` (``leave_one_out``, ``temporal`` with ``valid_start``/``test_start``, or ``given``
    with a per-user ``valid_fraction`` held out when the data has no validation part).
    ``item_text``: item-table columns joined into each item's text, for models that read it (HLLM).
    """

    format: DataFormat = DataFormat.TABLE
    path: str | None = None
    train: str | None = None
    valid: str | None = None
    test: str | None = None
    split: str | None = None
    valid_fraction: float = 0.1
    test_fraction: float = 0.0
    valid_start: float | str | None = None
    test_start: float | str | None = None
    min_interactions: int = 3
    label: str | list[str] | None = "label"
    label_types: str | list[str] | None = None
    user: str = "user_id"
    item: str = "item_id"
    time: str = "time"
    user_columns: list[str] = field(default_factory=list)
    item_columns: list[str] = field(default_factory=list)
    item_text: list[str] = field(default_factory=list)
    samples: SamplesConfig = field(default_factory=SamplesConfig)
    batch_size: int = 1024
    eval_batch_size: int = 8192


class ContentSource(Choice):
    """Where TIGER's item content vectors come from (``recforge.data.content``): the item table's
    attribute ids (S3-Rec ``*_item2attributes.json``), the items' text through a local encoder, or
    the item tower of a trained recforge run on the same items."""

    ATTRIBUTES = "attributes"
    TEXT = "text"
    MODEL = "model"


@dataclass(frozen=True)
class SemanticIDsConfig:
    """TIGER's semantic IDs: item content vectors -> RQ-VAE codes -> a disambiguation code.

    content: the sources, concatenated (each part L2-normalised per item).
    attribute_column: the item-table column of attribute-id lists (``attributes``).
    text_encoder: a local ``transformers`` encoder directory (``text``; texts from ``data.item_text``).
    item_model: a trained run directory on the same items whose item tower gives vectors (``model``).
    rqvae: ``RQVAE`` keyword arguments (``dims``, ``latent_dim``, ``num_codes``, ``num_levels``, ...).
    beta, n_epoch, lr, batch_size: the RQ-VAE's training (commitment weight, Adam).
    """

    content: list[ContentSource] = field(default_factory=lambda: [ContentSource.ATTRIBUTES])
    attribute_column: str = "attributes"
    text_encoder: str | None = None
    item_model: str | None = None
    rqvae: dict[str, Any] = field(default_factory=dict)
    beta: float = 0.25
    n_epoch: int = 150
    lr: float = 1e-3
    batch_size: int = 1024


@dataclass(frozen=True)
class ModelConfig:
    """``name`` in the model registry; ``inputs`` maps each feature-list argument of the model's
    constructor to a feature group (``recforge.models.defaults``: ``all``, ``sparse``, ``dense``,
    ``sequence``, ``embedded``, ``history``, ``target``, ``neg_history``, ``user``, ``item``,
    ``item_id``; ``user+history`` joins two) or a list of feature names; ``params`` are its other
    keyword arguments. ``recforge models NAME`` prints a model's default section. ``semantic_ids``:
    how TIGER's item IDs are made (TIGER only; default: attributes)."""

    name: str
    inputs: dict[str, str | list[str]] = field(default_factory=lambda: {"features": "all"})
    params: dict[str, Any] = field(default_factory=dict)
    semantic_ids: SemanticIDsConfig | None = None


@dataclass(frozen=True)
class MatchConfig:
    """The ``match`` preset's objective (``recforge.objectives.MatchObjective``)."""

    mode: int | str = 2
    negatives: NegativeSource = NegativeSource.SHARED
    num_negatives: int = 1024
    sampling: Sampling = Sampling.UNIFORM
    alpha: float = 1.0
    pair_loss: PairLoss = PairLoss.BPR
    margin: float = 1.0
    logq: bool = True
    exclude_seen: bool = False


@dataclass(frozen=True)
class SeqConfig:
    """The ``seq`` preset's objective (``recforge.objectives.SequenceObjective``)."""

    loss: SeqLoss = SeqLoss.SAMPLED_SOFTMAX
    num_negatives: int = 256
    temperature: float = 1.0
    l2_normalize: bool = False
    logq: bool = True


@dataclass(frozen=True)
class GenerativeConfig:
    """Generative retrieval (TIGER) under the ``seq`` preset: ``beam_width`` of the evaluation's
    beam search (default: the largest cut-off) and ``valid_users``: validation users decoded each
    epoch to choose the epoch (a fixed seeded sample; 0 = all)."""

    beam_width: int | None = None
    valid_users: int = 0


@dataclass(frozen=True)
class MTLConfig:
    """The ``mtl`` preset: task weighting (``adaptive``: ``{"method": "uwl" | "gradnorm" |
    "metabalance" | "fixed", ...}``), fixed ``task_weights``, and the task whose metric stops
    training (``earlystop_taskid``: an index or ``mean``)."""

    adaptive: dict[str, Any] | None = None
    task_weights: list[float] | None = None
    earlystop_taskid: int | str = 0


@dataclass(frozen=True)
class EvalConfig:
    """Full-ranking evaluation of retrieval and next-item runs (every user with a held-out item).

    ks: cut-offs (default ``[20]`` for ``match``, ``[10, 50]`` for ``seq``). exclude_seen: leave
    each user's training items out of the ranking. normalize: rank by cosine similarity (default:
    what training used, ``trainer.seq.l2_normalize``).
    """

    ks: list[int] | None = None
    exclude_seen: bool = True
    normalize: bool | None = None


@dataclass(frozen=True)
class TrainerConfig:
    preset: Preset = Preset.CTR
    n_epoch: int = 10
    optimizer: Optimizer = Optimizer.ADAM
    optimizer_params: dict[str, Any] = field(default_factory=lambda: {"lr": 1e-3})
    sparse_optimizer: str | None = None
    scheduler: Scheduler | None = None
    scheduler_params: dict[str, Any] = field(default_factory=dict)
    regularization_params: dict[str, float] = field(default_factory=dict)
    earlystop_patience: int = 3
    earlystop_metric: str | None = None
    max_grad_norm: float | None = None
    refit: bool = False
    device: str = "cpu"
    precision: Precision = Precision.FP32
    progress: bool = True
    tensorboard: bool = False
    plot: bool = True
    num_threads: int | None = None
    gauc_group: str | None = None
    match: MatchConfig = field(default_factory=MatchConfig)
    seq: SeqConfig = field(default_factory=SeqConfig)
    generative: GenerativeConfig = field(default_factory=GenerativeConfig)
    mtl: MTLConfig = field(default_factory=MTLConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
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


# -- type checking --------------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and issubclass(tp, Choice):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an int", float: "a number", bool: "a bool (true/false)", str: "a string"}.get(tp, str(tp))


class _Mismatch(ValueError):
    pass


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` checked against the annotation ``tp`` (Choice strings parsed, ints accepted as
    floats, nested dataclasses built); raises ``ValueError`` naming ``where``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, where)
            except _Mismatch:
                continue
        raise _Mismatch(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
        raise _Mismatch(f"{where}: expected null, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise _Mismatch(f"{where}: expected {_type_name(tp)}, got {value!r}")
        (arg,) = typing.get_args(tp)
        return [_coerce(v, arg, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _Mismatch(f"{where}: expected a mapping, got {value!r}")
        _, arg = typing.get_args(tp)
        return {str(k): _coerce(v, arg, f"{where}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if isinstance(tp, type) and issubclass(tp, Choice):
        if not isinstance(value, str):
            raise _Mismatch(f"{where}: expected {_type_name(tp)}, got {value!r}")
        try:
            return tp.parse(value, where=f"{where}:")
        except ValueError as e:
            raise _Mismatch(str(e)) from None
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"{where}: unsupported config type {tp!r}")
    raise _Mismatch(f"{where}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def _build(cls: type, raw: object, where: str) -> Any:
    if not isinstance(raw, Mapping):
        raise _Mismatch(f"{where}: expected a mapping, got {raw!r}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(raw) - set(known)
    if unknown:
        raise _Mismatch(f"{where}: unknown key(s) {sorted(map(str, unknown))}; valid: {sorted(known)}")
    missing = [
        n
        for n, f in known.items()
        if n not in raw and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise _Mismatch(f"{where}: missing required key(s) {missing}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: _coerce(v, hints[k], f"{where}.{k}") for k, v in raw.items()})


def _positive(where: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{where} must be >= 1, got {value}")


def _check_device(device: str) -> None:
    m = re.fullmatch(r"(cpu|cuda|mps)(?::(\d+))?", device)
    if m is None:
        raise ValueError(f"trainer.device: expected 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}")
    if m.group(1) == "cuda":
        n = torch.cuda.device_count()
        index = int(m.group(2) or 0)
        if index >= n:
            raise ValueError(
                f"trainer.device: {device!r} is not available: this machine has {n} CUDA device(s)"
            )
    if m.group(1) == "mps" and not torch.backends.mps.is_available():
        raise ValueError("trainer.device: 'mps' is not available on this machine")


def _check_values(cfg: RunConfig) -> None:
    d, t = cfg.data, cfg.trainer
    if not 0 <= d.valid_fraction < 1:
        raise ValueError(f"data.valid_fraction must be in [0, 1), got {d.valid_fraction}")
    if not 0 <= d.test_fraction < 1 or d.valid_fraction + d.test_fraction >= 1:
        raise ValueError(
            f"data.test_fraction must be in [0, 1) and leave training rows, got {d.test_fraction}"
        )
    for key in ("batch_size", "eval_batch_size", "min_interactions"):
        _positive(f"data.{key}", getattr(d, key))
    _positive("data.samples.max_len", d.samples.max_len)
    if not 0 <= d.samples.dropout < 1:
        raise ValueError(f"data.samples.dropout must be in [0, 1), got {d.samples.dropout}")
    if d.samples.max_per_user < 0:
        raise ValueError(f"data.samples.max_per_user must be >= 0, got {d.samples.max_per_user}")
    for key in ("n_epoch", "earlystop_patience", "num_threads"):
        _positive(f"trainer.{key}", getattr(t, key))
    if t.max_grad_norm is not None and t.max_grad_norm <= 0:
        raise ValueError(f"trainer.max_grad_norm must be > 0, got {t.max_grad_norm}")
    _check_device(t.device)
    _positive("trainer.match.num_negatives", t.match.num_negatives)
    _positive("trainer.seq.num_negatives", t.seq.num_negatives)
    if t.seq.temperature <= 0:
        raise ValueError(f"trainer.seq.temperature must be > 0, got {t.seq.temperature}")
    MatchMode.parse(t.match.mode)
    _positive("trainer.generative.beam_width", t.generative.beam_width)
    if t.generative.valid_users < 0:
        raise ValueError(f"trainer.generative.valid_users must be >= 0, got {t.generative.valid_users}")
    sid = cfg.model.semantic_ids
    if sid is not None:
        if not sid.content:
            raise ValueError("model.semantic_ids.content: name at least one source (attributes, text, model)")
        for key in ("n_epoch", "batch_size"):
            _positive(f"model.semantic_ids.{key}", getattr(sid, key))
        if sid.lr <= 0 or sid.beta < 0:
            raise ValueError(f"model.semantic_ids: lr must be > 0 and beta >= 0, got {sid.lr}, {sid.beta}")
        if ContentSource.TEXT in sid.content and (sid.text_encoder is None or not d.item_text):
            raise ValueError(
                "model.semantic_ids.content 'text' needs model.semantic_ids.text_encoder (a local encoder "
                "directory) and data.item_text (the item-table columns holding the text)"
            )
        if ContentSource.MODEL in sid.content and sid.item_model is None:
            raise ValueError(
                "model.semantic_ids.content 'model' needs model.semantic_ids.item_model (a run directory)"
            )
    for k in t.evaluation.ks or []:
        _positive("trainer.evaluation.ks", k)
    if isinstance(t.mtl.earlystop_taskid, str) and t.mtl.earlystop_taskid != "mean":
        raise ValueError(
            f"trainer.mtl.earlystop_taskid must be a task index or 'mean', got {t.mtl.earlystop_taskid!r}"
        )
    # data shape per family
    if t.preset.needs_log:
        if not d.format.is_log:
            raise ValueError(
                f"trainer.preset {t.preset.value!r} trains on an interaction log: set data.format to one of "
                + ", ".join(repr(f.value) for f in DataFormat if f.is_log)
                + f" (got {d.format.value!r})"
            )
        if d.path is None:
            raise ValueError("data.path: an interaction log needs its path")
        if d.train or d.valid or d.test:
            raise ValueError("data.train/valid/test are for labelled rows; an interaction log uses data.path")
        SplitKind.parse(d.split or "", where="data.split")
    else:
        if d.format.is_log:
            raise ValueError(
                f"data.format {d.format.value!r} is an interaction log; train it with trainer.preset "
                "'match' or 'seq' (labelled rows: 'table', 'census_income', 'ali_ccp')"
            )
        if (d.path is None) == (d.train is None):
            raise ValueError("data: give either train (+ valid, test) sources or one path to split")
        if d.split is not None:
            RowSplit.parse(d.split, where="data.split")


def parse_config(raw: Mapping[str, Any]) -> RunConfig:
    """Validate a raw config mapping into a ``RunConfig`` (errors name the offending key)."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"config: expected a mapping of sections, got {type(raw).__name__}")
    raw = dict(raw)
    for key in ("data", "features", "model"):
        if key not in raw:
            raise ValueError(f"config: missing section {key!r}")
    unknown = set(raw) - {f.name for f in dataclasses.fields(RunConfig)}
    if unknown:
        raise ValueError(
            f"config: unknown top-level key(s) {sorted(map(str, unknown))}; valid: data, features, model, "
            "trainer, run_dir, seed"
        )
    feats = raw["features"]
    if not isinstance(feats, Sequence) or not feats or not all(isinstance(f, Mapping) for f in feats):
        raise ValueError("features: expected a non-empty list of mappings (one per column)")
    trainer_raw = raw.get("trainer") or {}
    if isinstance(trainer_raw, Mapping) and (
        trainer_raw.get("sharding") is not None or trainer_raw.get("embedding_optimizer_params")
    ):
        from recforge.torchrec.sharding import FusedRowWiseAdagrad, ShardingType

        if trainer_raw.get("sharding") is None:
            raise ValueError("trainer.embedding_optimizer_params needs trainer.sharding")
        trainer_raw = dict(trainer_raw)
        trainer_raw["sharding"] = ShardingType.parse(trainer_raw["sharding"], where="trainer.sharding").value
        FusedRowWiseAdagrad.parse(trainer_raw.get("embedding_optimizer_params"))  # unknown keys fail now
    hints = typing.get_type_hints(RunConfig)
    cfg = RunConfig(
        data=_build(DataConfig, raw["data"], "data"),
        features=[dict(f) for f in feats],
        model=_build(ModelConfig, raw["model"], "model"),
        trainer=_build(TrainerConfig, trainer_raw, "trainer"),
        **{k: _coerce(raw[k], hints[k], k) for k in ("run_dir", "seed") if k in raw},
    )
    _check_values(cfg)
    return cfg


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
            if child is None:
                child = node[p] = {}
            if not isinstance(child, dict):
                raise ValueError(f"--set {key}: {p!r} is not a mapping")
            node = child
        node[parts[-1]] = _safe_yaml(value, f"--set {key}")
    return out


def _safe_yaml(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        first = str(e).strip().splitlines()[0]
        raise ValueError(f"{where}: not valid YAML ({first})") from None


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> tuple[RunConfig, dict[str, Any]]:
    """Read YAML at ``path`` and apply overrides; returns the typed config and the resolved mapping."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {str(p)!r} does not exist")
    raw = _safe_yaml(p.read_text(encoding="utf-8"), f"config file {str(p)!r}") or {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"config file {str(p)!r}: expected a mapping of sections, got {type(raw).__name__}")
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
