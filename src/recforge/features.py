"""Feature specs: pure, immutable data describing model inputs.

The names and arguments follow Torch-RecHub (``DenseFeature``, ``SparseFeature``,
``SequenceFeature``) so its users port code by renaming the import. Specs hold no modules and no
tensors; ``recforge.layers.EmbeddingLayer`` turns them into tables. Only the standard library is
imported here.

Integer arguments accept any integer type (``np.int64``, 0-d tensors) and are stored as ``int``.

Conventions: id 0 is padding, ids run ``1 .. vocab_size - 1``; a feature that names another in
``shared_with`` looks up the other's table.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from recforge.choices import Choice
from recforge.ints import as_int


class Pooling(Choice):
    """How a sequence feature is reduced to one vector (``CONCAT`` keeps the whole sequence)."""

    MEAN = "mean"
    SUM = "sum"
    MAX = "max"
    CONCAT = "concat"

    @classmethod
    def parse(cls, value: object, *, feature: str = "", where: str | None = None) -> Pooling:  # type: ignore[override]
        return super().parse(value, where=where or f"feature {feature!r}: pooling")


LABEL = "label"  # the batch column that holds the target(s): (B,) or (B, T)


@dataclass(frozen=True)
class RandomNormal:
    """Normal(mean, std) initialisation of an embedding table."""

    mean: float = 0.0
    std: float = 1e-4


@dataclass(frozen=True)
class RandomUniform:
    """Uniform(minval, maxval) initialisation of an embedding table."""

    minval: float = -0.05
    maxval: float = 0.05


@dataclass(frozen=True)
class XavierNormal:
    gain: float = 1.0


@dataclass(frozen=True)
class XavierUniform:
    gain: float = 1.0


Initializer = RandomNormal | RandomUniform | XavierNormal | XavierUniform


def auto_embed_dim(vocab_size: int) -> int:
    """Rule-of-thumb embedding width ``6 * vocab_size ** 0.25`` (Google's feature-column heuristic)."""
    return max(1, math.floor(6 * vocab_size**0.25))


def _check_name(name: object, kind: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{kind}: name must be a non-empty string, got {name!r}")


def _coerce_ints(spec: object, *args: str, minimum: int = 1) -> None:
    """Store each named field of a frozen spec as a Python int (any integer type is accepted: a
    vocabulary size is often ``df[col].max() + 1``, an ``np.int64``); ``None`` stays ``None``."""
    name = getattr(spec, "name", "")
    for arg in args:
        value = getattr(spec, arg)
        if value is not None:
            object.__setattr__(spec, arg, as_int(value, f"feature {name!r}: {arg}", minimum=minimum))


@dataclass(frozen=True)
class DenseFeature:
    """A numeric column; ``embed_dim`` is its width (1 for a scalar, d for a (B, d) vector)."""

    name: str
    embed_dim: int = 1

    def __post_init__(self) -> None:
        _check_name(self.name, "DenseFeature")
        _coerce_ints(self, "embed_dim")


@dataclass(frozen=True)
class SparseFeature:
    """A categorical column holding int ids in ``[0, vocab_size)``; 0 is padding/missing."""

    name: str
    vocab_size: int
    embed_dim: int | None = None
    shared_with: str | None = None
    padding_idx: int | None = None
    initializer: Initializer = field(default_factory=RandomNormal)

    def __post_init__(self) -> None:
        _check_name(self.name, "SparseFeature")
        if self.vocab_size is None:
            raise ValueError(f"feature {self.name!r}: vocab_size must be a positive int, got None")
        _coerce_ints(self, "vocab_size", "embed_dim")
        _coerce_ints(self, "padding_idx", minimum=0)
        if self.embed_dim is None:
            object.__setattr__(self, "embed_dim", auto_embed_dim(self.vocab_size))
        if self.padding_idx is not None and not 0 <= self.padding_idx < self.vocab_size:
            raise ValueError(f"feature {self.name!r}: padding_idx {self.padding_idx} outside [0, vocab_size)")
        if self.shared_with == self.name:
            raise ValueError(f"feature {self.name!r}: shared_with must name another feature")

    @property
    def table(self) -> str:
        """Name of the embedding table this feature looks up."""
        return self.shared_with or self.name

    @property
    def dim(self) -> int:
        assert self.embed_dim is not None
        return self.embed_dim


@dataclass(frozen=True)
class SequenceFeature:
    """A list column of ids, padded with 0 to ``(B, L)``; most recent items are kept.

    ``pooling`` reduces the sequence to ``(B, D)`` (mean/sum/max over non-padding positions);
    ``concat`` keeps ``(B, L, D)`` for attention models. ``max_len`` bounds L in preprocessing.
    """

    name: str
    vocab_size: int
    embed_dim: int | None = None
    pooling: Pooling = Pooling.MEAN
    shared_with: str | None = None
    padding_idx: int | None = None
    initializer: Initializer = field(default_factory=RandomNormal)
    max_len: int | None = None

    def __post_init__(self) -> None:
        _check_name(self.name, "SequenceFeature")
        if self.vocab_size is None:
            raise ValueError(f"feature {self.name!r}: vocab_size must be a positive int, got None")
        _coerce_ints(self, "vocab_size", "embed_dim", "max_len")
        _coerce_ints(self, "padding_idx", minimum=0)
        if self.embed_dim is None:
            object.__setattr__(self, "embed_dim", auto_embed_dim(self.vocab_size))
        object.__setattr__(self, "pooling", Pooling.parse(self.pooling, feature=self.name))
        if self.padding_idx is not None and not 0 <= self.padding_idx < self.vocab_size:
            raise ValueError(f"feature {self.name!r}: padding_idx {self.padding_idx} outside [0, vocab_size)")
        if self.shared_with == self.name:
            raise ValueError(f"feature {self.name!r}: shared_with must name another feature")

    @property
    def table(self) -> str:
        return self.shared_with or self.name

    @property
    def dim(self) -> int:
        assert self.embed_dim is not None
        return self.embed_dim


Feature = DenseFeature | SparseFeature | SequenceFeature
EmbeddedFeature = SparseFeature | SequenceFeature


def dedup(features: Iterable[Feature]) -> list[Feature]:
    """Features in first-seen order, each once; two different specs of one kind with one name are
    refused. A column may be declared once dense and once embedded (sparse or sequence): the dense
    feature reads its values, the embedded one looks its values up as ids (Torch-RecHub's Avazu
    example declares numeric columns both ways)."""
    seen: dict[tuple[str, bool], Feature] = {}
    for f in features:
        key = (f.name, isinstance(f, DenseFeature))
        prev = seen.get(key)
        if prev is not None and prev != f:
            raise ValueError(f"feature {f.name!r} is declared twice with different specs: {prev} vs {f}")
        seen.setdefault(key, f)
    return list(seen.values())


def dense_of(features: Sequence[Feature]) -> list[DenseFeature]:
    return [f for f in features if isinstance(f, DenseFeature)]


def sparse_of(features: Sequence[Feature]) -> list[SparseFeature]:
    return [f for f in features if isinstance(f, SparseFeature)]


def sequence_of(features: Sequence[Feature]) -> list[SequenceFeature]:
    return [f for f in features if isinstance(f, SequenceFeature)]


def embedded_of(features: Sequence[Feature]) -> list[EmbeddedFeature]:
    return [f for f in features if isinstance(f, SparseFeature | SequenceFeature)]


def to_dict(feature: Feature) -> dict[str, object]:
    """JSON-ready description of a spec (used by run directories and bundles)."""
    kind = type(feature).__name__
    out: dict[str, object] = {"type": kind}
    for k, v in feature.__dict__.items():
        if isinstance(v, Pooling):
            v = v.value
        elif isinstance(v, RandomNormal | RandomUniform | XavierNormal | XavierUniform):
            v = {"type": type(v).__name__, **v.__dict__}
        out[k] = v
    return out


_INITIALIZERS = {c.__name__: c for c in (RandomNormal, RandomUniform, XavierNormal, XavierUniform)}
_FEATURES = {c.__name__: c for c in (DenseFeature, SparseFeature, SequenceFeature)}


def from_dict(data: dict[str, object]) -> Feature:
    """Inverse of ``to_dict``; an unknown ``type`` is a ``ValueError`` listing the valid ones."""
    data = dict(data)
    kind = data.pop("type", None)
    if kind not in _FEATURES:
        raise ValueError(f"feature type must be one of {sorted(_FEATURES)}, got {kind!r}")
    init = data.get("initializer")
    if isinstance(init, dict):
        init = dict(init)
        ikind = init.pop("type", None)
        if ikind not in _INITIALIZERS:
            raise ValueError(f"initializer type must be one of {sorted(_INITIALIZERS)}, got {ikind!r}")
        data["initializer"] = _INITIALIZERS[ikind](**init)  # type: ignore[index]
    return _FEATURES[kind](**data)  # type: ignore[index,arg-type]
