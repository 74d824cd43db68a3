"""Column specs: what to do with each input column (pure data; fitted state lives in the pipeline).

``Categorical`` -> one id per row, ``Numeric`` -> one float per row, ``Bucketize`` -> one bucket
id per row of a numeric column, ``MultiValue`` and ``SequenceColumn`` -> a left-padded ``(N, L)``
id matrix. Every spec validates its arguments and names the column in its errors; closed choices
(``fill``, ``normalize``, ``strategy``, ``pooling``) are enums parsed here, at the edge.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from recforge.choices import Choice
from recforge.features import Pooling


class _Choice(Choice):
    @classmethod
    def parse(cls, value: object, *, column: str = "", arg: str = "", where: str | None = None) -> _Choice:  # type: ignore[override]
        return super().parse(value, where=where or f"column {column!r}: {arg}")


class Fill(_Choice):
    """How a numeric column's missing values are filled (statistics from the training split)."""

    MEAN = "mean"
    MEDIAN = "median"
    ZERO = "zero"


class Normalize(_Choice):
    """How a numeric column is scaled (statistics from the training split)."""

    STANDARD = "standard"
    MINMAX = "minmax"


class Binning(_Choice):
    """How a ``Bucketize`` column places its bucket edges on the training values."""

    QUANTILE = "quantile"
    UNIFORM = "uniform"


class LabelType(Choice):
    """What a label column may hold; checked by ``FeaturePipeline`` whenever it reads labels.

    ``binary``: 0 or 1 (booleans too), the targets of CTR and multi-task classification;
    ``soft``: probabilities in [0, 1] (e.g. distilled or averaged clicks) for the same losses;
    ``regression``: any finite number.
    """

    BINARY = "binary"
    SOFT = "soft"
    REGRESSION = "regression"


def _check_name(kind: str, name: object) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{kind}: the column name must be a non-empty string, got {name!r}")


def _check_int(column: str, arg: str, value: object, *, minimum: int, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"column {column!r}: {arg} must be an int >= {minimum}, got {value!r}")


def _check_bool(column: str, arg: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"column {column!r}: {arg} must be a bool, got {value!r}")


def _check_shared(column: str, shared_with: object) -> None:
    if shared_with is not None and (not isinstance(shared_with, str) or shared_with == column):
        raise ValueError(f"column {column!r}: shared_with must name another column, got {shared_with!r}")


def _check_sep(column: str, sep: object) -> None:
    if sep is not None and (not isinstance(sep, str) or not sep):
        raise ValueError(f"column {column!r}: sep must be a non-empty string or None, got {sep!r}")


@dataclass(frozen=True)
class Categorical:
    """One id per row from a vocabulary fit on the training split (or a stable hash).

    Args:
        name: the column (and feature) name.
        embed_dim: embedding width of the feature; ``None`` picks an automatic size.
        min_freq: values seen fewer times in training encode to OOV (1).
        max_size: keep at most this many known values (the most frequent); the rest encode to OOV.
            The vocabulary size is then at most ``max_size + 2`` (padding and OOV included).
        hash_buckets: skip the vocabulary and hash values into ids ``2 .. hash_buckets + 1``; needs
            no fitting, never meets an unseen value, but distinct values may collide.
        fill_value: replaces missing values; with ``None`` a missing value is an error.
        shared_with: use the vocabulary (and embedding table) of another column, fit on the union
            of both columns' training values.
    """

    name: str
    embed_dim: int | None = None
    min_freq: int = 1
    max_size: int | None = None
    hash_buckets: int | None = None
    fill_value: int | float | str | None = None
    shared_with: str | None = None

    def __post_init__(self) -> None:
        _check_name("Categorical", self.name)
        _check_int(self.name, "embed_dim", self.embed_dim, minimum=1)
        _check_int(self.name, "min_freq", self.min_freq, minimum=1, allow_none=False)
        _check_int(self.name, "max_size", self.max_size, minimum=0)
        _check_int(self.name, "hash_buckets", self.hash_buckets, minimum=1)
        _check_shared(self.name, self.shared_with)
        if self.fill_value is not None and not isinstance(self.fill_value, int | float | str):
            raise ValueError(
                f"column {self.name!r}: fill_value must be a str or number, got {self.fill_value!r}"
            )


@dataclass(frozen=True)
class Numeric:
    """A float per row: missing values filled, optionally ``log1p``-ed, then normalised.

    Args:
        name: the column (and feature) name.
        fill: ``"mean"``, ``"median"``, ``"zero"`` or a number; statistics from training data.
        normalize: ``"standard"`` (z-score), ``"minmax"`` (to [0, 1] on the training range) or None.
        log1p: apply ``log(1 + x)`` after filling, before normalising (values must be > -1).
    """

    name: str
    fill: Fill | str | float = Fill.MEAN
    normalize: Normalize | str | None = Normalize.STANDARD
    log1p: bool = False

    def __post_init__(self) -> None:
        _check_name("Numeric", self.name)
        if isinstance(self.fill, bool) or not isinstance(self.fill, int | float):
            object.__setattr__(self, "fill", Fill.parse(self.fill, column=self.name, arg="fill"))
        else:
            object.__setattr__(self, "fill", float(self.fill))
        if self.normalize is not None:
            norm = Normalize.parse(self.normalize, column=self.name, arg="normalize")
            object.__setattr__(self, "normalize", norm)
        _check_bool(self.name, "log1p", self.log1p)


def _parse_boundaries(column: str, boundaries: object) -> tuple[float, ...]:
    if isinstance(boundaries, str | bytes) or not isinstance(boundaries, Sequence) or not boundaries:
        raise ValueError(
            f"column {column!r}: boundaries must be a non-empty list of numbers, got {boundaries!r}"
        )
    if any(isinstance(b, bool) or not isinstance(b, int | float) or not math.isfinite(b) for b in boundaries):
        raise ValueError(f"column {column!r}: boundaries must be finite numbers, got {list(boundaries)!r}")
    out = tuple(float(b) for b in boundaries)
    if any(a >= b for a, b in itertools.pairwise(out)):
        raise ValueError(
            f"column {column!r}: boundaries must be strictly increasing, got {list(boundaries)!r}"
        )
    return out


@dataclass(frozen=True)
class Bucketize:
    """A numeric column cut into buckets: one categorical id per row (an embedded ``SparseFeature``).

    Bucket ``i`` holds ``boundaries[i-1] <= x < boundaries[i]`` (TensorFlow's ``bucketized_column``);
    ``m`` boundaries make ``m + 1`` buckets with ids ``2 .. m + 2`` in increasing value order, so
    values below the first boundary land in the first bucket and values from the last one up (``inf``
    included) in the last. A missing value (None/NaN) encodes to id 1 (OOV), never an error.

    With ``boundaries=None`` they are fit on the training split. ``strategy="quantile"``: the inner
    quantiles at ``1/bins, .., (bins-1)/bins`` (numpy's default linear method) below the training
    maximum, equal ones merged, each nudged up to the next float so that quantile buckets are closed
    on the right (``(q[k-1], q[k]]``, as ``pandas.qcut``): a value repeated in many rows fills one
    bucket of its own and the rest are still split (a column that is 0 in 92% of rows, as
    ``capital_gain``, gets ``<= 0`` and ``> 0`` with ``bins=10``), but yields fewer buckets than
    ``bins``. ``"uniform"``: the ``bins - 1`` inner points equally spaced from the training minimum
    to the maximum. The feature's vocabulary size counts the buckets actually made.
    ``fit_stream`` keeps up to ``RESERVOIR_SIZE`` (1,000,000) training values per column, so
    quantiles are exact (and equal to ``fit``'s) up to that many rows; beyond it they come from a
    seeded uniform sample of that size and are approximate. Uniform edges are always exact.

    Args:
        name: the column (and feature) name.
        bins: the number of buckets to fit (at most; merged edges make fewer); unused with
            ``boundaries``.
        boundaries: explicit, strictly increasing, finite bucket boundaries; nothing is fit.
        embed_dim: embedding width of the feature; ``None`` picks an automatic size.
        strategy: ``"quantile"`` (equal-frequency buckets) or ``"uniform"`` (equal-width buckets).
    """

    name: str
    bins: int = 10
    boundaries: Sequence[float] | None = None
    embed_dim: int | None = None
    strategy: Binning | str = Binning.QUANTILE

    def __post_init__(self) -> None:
        _check_name("Bucketize", self.name)
        _check_int(self.name, "bins", self.bins, minimum=1, allow_none=False)
        _check_int(self.name, "embed_dim", self.embed_dim, minimum=1)
        object.__setattr__(self, "strategy", Binning.parse(self.strategy, column=self.name, arg="strategy"))
        if self.boundaries is not None:
            object.__setattr__(self, "boundaries", _parse_boundaries(self.name, self.boundaries))


@dataclass(frozen=True)
class MultiValue:
    """A set-like column (``"a|b|c"`` strings or lists) -> ``(N, max_len)`` ids, left-padded with 0.

    Args:
        name: the column (and feature) name.
        sep: separator of the string form (lists are taken as they are).
        max_len: at most this many values per row (the last ones are kept); ``None`` takes the
            longest training row.
        embed_dim, min_freq, max_size, hash_buckets, shared_with: as for ``Categorical``.
        pooling: how models reduce the values (``"mean"``, ``"sum"``, ``"max"``, ``"concat"``).
        truncate: with ``False`` a row with more than ``max_len`` values is an error.
    """

    name: str
    sep: str | None = "|"
    max_len: int | None = None
    embed_dim: int | None = None
    pooling: Pooling | str = Pooling.MEAN
    min_freq: int = 1
    max_size: int | None = None
    hash_buckets: int | None = None
    shared_with: str | None = None
    truncate: bool = True

    def __post_init__(self) -> None:
        _check_name("MultiValue", self.name)
        _check_bool(self.name, "truncate", self.truncate)
        _check_sep(self.name, self.sep)
        _check_int(self.name, "max_len", self.max_len, minimum=1)
        _check_int(self.name, "embed_dim", self.embed_dim, minimum=1)
        _check_int(self.name, "min_freq", self.min_freq, minimum=1, allow_none=False)
        _check_int(self.name, "max_size", self.max_size, minimum=0)
        _check_int(self.name, "hash_buckets", self.hash_buckets, minimum=1)
        _check_shared(self.name, self.shared_with)
        object.__setattr__(self, "pooling", Pooling.parse(self.pooling, feature=self.name))


@dataclass(frozen=True)
class SequenceColumn:
    """An ordered list column (a behaviour history) -> ``(N, max_len)`` ids, left-padded with 0.

    The end of each list is the most recent item: the last ``max_len`` items are kept and the most
    recent one lands in the last position. Missing lists are empty histories.

    Args:
        name: the column (and feature) name.
        max_len: sequence length L.
        shared_with: typically the item column, whose vocabulary and embedding table it uses.
        pooling: ``"concat"`` keeps ``(B, L, D)`` for attention models; or mean/sum/max.
        truncate: with ``False`` a row longer than ``max_len`` is an error instead of being cut.
        sep: also accept ``sep``-delimited strings (e.g. ``"12|7|3"`` from CSV).
        embed_dim, min_freq, max_size, hash_buckets: as for ``Categorical`` (ignored when shared).
    """

    name: str
    max_len: int = 50
    shared_with: str | None = None
    pooling: Pooling | str = Pooling.MEAN
    truncate: bool = True
    sep: str | None = None
    embed_dim: int | None = None
    min_freq: int = 1
    max_size: int | None = None
    hash_buckets: int | None = None

    def __post_init__(self) -> None:
        _check_name("SequenceColumn", self.name)
        _check_int(self.name, "max_len", self.max_len, minimum=1, allow_none=False)
        _check_shared(self.name, self.shared_with)
        _check_sep(self.name, self.sep)
        _check_int(self.name, "embed_dim", self.embed_dim, minimum=1)
        _check_int(self.name, "min_freq", self.min_freq, minimum=1, allow_none=False)
        _check_int(self.name, "max_size", self.max_size, minimum=0)
        _check_int(self.name, "hash_buckets", self.hash_buckets, minimum=1)
        _check_bool(self.name, "truncate", self.truncate)
        object.__setattr__(self, "pooling", Pooling.parse(self.pooling, feature=self.name))


ColumnSpec = Categorical | Numeric | Bucketize | MultiValue | SequenceColumn
EncodedSpec = Categorical | MultiValue | SequenceColumn  # encoded through a vocabulary
ListSpec = MultiValue | SequenceColumn

_SPECS: dict[str, type[ColumnSpec]] = {
    c.__name__: c for c in (Categorical, Numeric, Bucketize, MultiValue, SequenceColumn)
}


def spec_to_dict(spec: ColumnSpec) -> dict[str, object]:
    """A column spec as plain JSON data (its class name under ``"type"``)."""
    out: dict[str, object] = {"type": type(spec).__name__}
    for k, v in asdict(spec).items():
        out[k] = v.value if isinstance(v, Choice) else list(v) if isinstance(v, tuple) else v
    return out


def spec_from_dict(data: Mapping[str, object]) -> ColumnSpec:
    """``spec_to_dict``'s inverse; an unknown ``"type"`` is a ``ValueError`` naming the known ones."""
    data = dict(data)
    kind = data.pop("type", None)
    if kind not in _SPECS:
        raise ValueError(f"column spec type must be one of {sorted(_SPECS)}, got {kind!r}")
    return _SPECS[str(kind)](**data)  # type: ignore[arg-type]
