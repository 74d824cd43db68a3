"""TorchRec's embedding configs and collections on ``torch.nn.EmbeddingBag`` (no fbgemm).

``EmbeddingBagCollection`` pools each feature of a ``KeyedJaggedTensor`` into one vector per row
(``forward(kjt) -> KeyedTensor``); ``EmbeddingCollection`` keeps every id's vector
(``forward(kjt) -> dict[str, JaggedTensor]``). A table serves every feature listed in its
``feature_names``. Parameter names match TorchRec's (``embedding_bags.<table>.weight`` and
``embeddings.<table>.weight``), so state dicts load across the two libraries.

These modules are the jagged counterpart of ``recforge.layers.EmbeddingLayer`` (which looks up
fixed-shape id columns); they exist for TorchRec's API, and recforge's own models keep using
``EmbeddingLayer``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recforge.torchrec.jagged import JaggedTensor, KeyedJaggedTensor, KeyedTensor, as_kjt


class PoolingType(str, enum.Enum):
    """How an ``EmbeddingBagCollection`` reduces a row's ids (TorchRec's names)."""

    SUM = "SUM"
    MEAN = "MEAN"

    @classmethod
    def parse(cls, value: PoolingType | str, *, table: str = "") -> PoolingType:
        if isinstance(value, PoolingType):
            return value
        # TorchRec's own enum members parse by name.
        raw = getattr(value, "name", value)
        try:
            return cls(str(raw).upper())
        except ValueError:
            valid = ", ".join(p.value for p in cls)
            raise ValueError(f"table {table!r}: pooling must be one of {valid}, got {value!r}") from None


@dataclass(frozen=True)
class EmbeddingConfig:
    """One embedding table (TorchRec's fields).

    Args:
        num_embeddings: rows ``V``.
        embedding_dim: width ``D``.
        name: table name (unique in a collection).
        feature_names: the KJT keys this table serves.
        weight_init_min, weight_init_max: uniform init range; default ``±sqrt(1 / V)`` as in TorchRec.
    """

    num_embeddings: int
    embedding_dim: int
    name: str = ""
    feature_names: tuple[str, ...] = ()
    weight_init_min: float | None = None
    weight_init_max: float | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("embedding config: name must be a non-empty string")
        for arg in ("num_embeddings", "embedding_dim"):
            v = getattr(self, arg)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"table {self.name!r}: {arg} must be a positive int, got {v!r}")
        names = tuple(self.feature_names) or (self.name,)
        if len(set(names)) != len(names):
            raise ValueError(f"table {self.name!r}: duplicate feature_names {list(names)}")
        object.__setattr__(self, "feature_names", names)

    def init_range(self) -> tuple[float, float]:
        bound = math.sqrt(1.0 / self.num_embeddings)
        lo = -bound if self.weight_init_min is None else self.weight_init_min
        hi = bound if self.weight_init_max is None else self.weight_init_max
        return lo, hi


@dataclass(frozen=True)
class EmbeddingBagConfig(EmbeddingConfig):
    """A pooled table: ``EmbeddingConfig`` plus ``pooling`` (``SUM`` by default, as in TorchRec)."""

    pooling: PoolingType = field(default=PoolingType.SUM)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "pooling", PoolingType.parse(self.pooling, table=self.name))


def _check_tables(tables: Sequence[EmbeddingConfig]) -> None:
    if not tables:
        raise ValueError("an embedding collection needs at least one table")
    names = [t.name for t in tables]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate table names {names}")
    owner: dict[str, str] = {}
    for t in tables:
        for f in t.feature_names:
            if f in owner:
                raise ValueError(f"feature {f!r} is served by both table {owner[f]!r} and {t.name!r}")
            owner[f] = t.name


def _new_weight(t: EmbeddingConfig, module: nn.Embedding | nn.EmbeddingBag) -> None:
    lo, hi = t.init_range()
    with torch.no_grad():
        module.weight.uniform_(lo, hi)


def _check_ids(feature: str, ids: Tensor, num_embeddings: int) -> None:
    if ids.numel() and not torch.jit.is_tracing() and not torch.compiler.is_compiling():
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= num_embeddings:
            raise IndexError(f"feature {feature!r}: ids must lie in [0, {num_embeddings}), got [{lo}, {hi}]")


class EmbeddingBagCollection(nn.Module):
    """Pooled embeddings of the features of a ``KeyedJaggedTensor``.

    Args:
        tables: the tables; each serves its ``feature_names``.
        is_weighted: multiply each id's vector by the KJT's per-id weight before (SUM) pooling.
        device: where the tables live.
        sparse: sparse gradients (train with a sparse/row-wise optimizer; recforge extension).
    """

    def __init__(
        self,
        tables: Sequence[EmbeddingBagConfig],
        is_weighted: bool = False,
        device: torch.device | None = None,
        *,
        sparse: bool = False,
    ) -> None:
        super().__init__()
        _check_tables(tables)
        for t in tables:
            if not isinstance(t, EmbeddingBagConfig):
                raise TypeError(f"table {t.name!r}: EmbeddingBagCollection needs EmbeddingBagConfig")
            if is_weighted and t.pooling is not PoolingType.SUM:
                raise ValueError(
                    f"table {t.name!r}: weighted pooling needs pooling=SUM, got {t.pooling.value}"
                )
        self._configs = list(tables)
        self._is_weighted = is_weighted
        self.embedding_bags = nn.ModuleDict()
        for t in tables:
            mode = "sum" if t.pooling is PoolingType.SUM else "mean"
            bag = nn.EmbeddingBag(t.num_embeddings, t.embedding_dim, mode=mode, sparse=sparse, device=device)
            _new_weight(t, bag)
            self.embedding_bags[t.name] = bag
        self._feature_names = [f for t in tables for f in t.feature_names]
        self._dims = [t.embedding_dim for t in tables for _ in t.feature_names]

    def embedding_bag_configs(self) -> list[EmbeddingBagConfig]:
        return list(self._configs)

    def is_weighted(self) -> bool:
        return self._is_weighted

    def feature_names(self) -> list[str]:
        """Output keys, in table order then ``feature_names`` order."""
        return list(self._feature_names)

    def forward(self, features: KeyedJaggedTensor | object) -> KeyedTensor:
        """``features`` (a KJT with stride ``B``) -> ``KeyedTensor`` of ``(B, ΣD)``."""
        kjt = as_kjt(features)
        b = kjt.stride()
        weights = kjt.weights_or_none()
        if self._is_weighted and weights is None:
            raise ValueError("EmbeddingBagCollection(is_weighted=True) needs a KJT with weights")
        key_index = {k: i for i, k in enumerate(kjt.keys())}
        opk = kjt.offset_per_key()  # one host sync for all keys
        lengths2d = kjt.lengths().reshape(len(key_index), b)  # (K, B)
        values = kjt.values()
        parts: list[Tensor] = []
        for t in self._configs:
            bag = cast(nn.EmbeddingBag, self.embedding_bags[t.name])
            missing = [f for f in t.feature_names if f not in key_index]
            if missing:
                raise KeyError(f"table {t.name!r}: KJT has no key(s) {missing}; it has {kjt.keys()}")
            # One embedding_bag call per table: its features' bags are stacked as F_t * B bags.
            idx = [key_index[f] for f in t.feature_names]
            if idx == list(range(idx[0], idx[0] + len(idx))):  # consecutive keys: views, no copy
                ids = values[opk[idx[0]] : opk[idx[-1] + 1]]  # (ΣL,)
                psw = None if weights is None else weights[opk[idx[0]] : opk[idx[-1] + 1]]
                lengths = lengths2d[idx[0] : idx[-1] + 1].reshape(-1)  # (F_t * B,)
            else:
                ids = torch.cat([values[opk[i] : opk[i + 1]] for i in idx])
                psw = None if weights is None else torch.cat([weights[opk[i] : opk[i + 1]] for i in idx])
                lengths = lengths2d[idx].reshape(-1)
            self._check_ids(t, ids, lengths, b)
            offsets = torch.zeros(lengths.numel() + 1, dtype=torch.long, device=ids.device)
            torch.cumsum(lengths, 0, out=offsets[1:])
            pooled = F.embedding_bag(
                ids.long(),
                bag.weight,
                offsets,
                mode=bag.mode,
                sparse=bag.sparse,
                per_sample_weights=psw.to(bag.weight.dtype)
                if self._is_weighted and psw is not None
                else None,
                include_last_offset=True,
            )  # (F_t * B, D)
            n = len(idx)
            parts.append(
                pooled.reshape(n, b, t.embedding_dim).transpose(0, 1).reshape(b, n * t.embedding_dim)
            )  # (B, F_t * D)
        return KeyedTensor(self._feature_names, self._dims, torch.cat(parts, 1))  # (B, ΣD)

    @staticmethod
    def _check_ids(t: EmbeddingBagConfig, ids: Tensor, lengths: Tensor, b: int) -> None:
        """One range check per table; on failure, name the offending feature."""
        if not ids.numel() or torch.jit.is_tracing() or torch.compiler.is_compiling():
            return
        lo, hi = torch.aminmax(ids)
        if int(lo) >= 0 and int(hi) < t.num_embeddings:
            return
        per_feature = torch.split(ids, lengths.reshape(len(t.feature_names), b).sum(1).tolist())
        for f, part in zip(t.feature_names, per_feature):
            _check_ids(f, part, t.num_embeddings)


class EmbeddingCollection(nn.Module):
    """Unpooled embeddings: every id of every feature gets its vector.

    Args:
        tables: the tables; each serves its ``feature_names``.
        device: where the tables live.
        sparse: sparse gradients (recforge extension).
    """

    def __init__(
        self,
        tables: Sequence[EmbeddingConfig],
        device: torch.device | None = None,
        *,
        sparse: bool = False,
    ) -> None:
        super().__init__()
        _check_tables(tables)
        self._configs = list(tables)
        self.embeddings = nn.ModuleDict()
        for t in tables:
            emb = nn.Embedding(t.num_embeddings, t.embedding_dim, sparse=sparse, device=device)
            _new_weight(t, emb)
            self.embeddings[t.name] = emb

    def embedding_configs(self) -> list[EmbeddingConfig]:
        return list(self._configs)

    def forward(self, features: KeyedJaggedTensor | object) -> dict[str, JaggedTensor]:
        """``features`` -> ``{feature: JaggedTensor(values (ΣL, D), lengths (B,))}``."""
        kjt = as_kjt(features)
        jts = kjt.to_dict()
        out: dict[str, JaggedTensor] = {}
        for t in self._configs:
            emb = self.embeddings[t.name]
            for f in t.feature_names:
                if f not in jts:
                    raise KeyError(f"table {t.name!r}: KJT has no key {f!r}; it has {kjt.keys()}")
                jt = jts[f]
                _check_ids(f, jt.values(), t.num_embeddings)
                out[f] = JaggedTensor(emb(jt.values().long()), jt.weights_or_none(), lengths=jt.lengths())
        return out
