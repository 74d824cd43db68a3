"""``FeaturePipeline``: fit encoders on the training split, transform every split identically.

```python
pipe = FeaturePipeline([Categorical("user_id"), Numeric("age"),
                        SequenceColumn("hist_item_id", max_len=50, shared_with="item_id"),
                        Categorical("item_id")], label="label").fit(train)
train_ds = ColumnarDataset.from_pipeline(pipe, train)    # recforge.data
test_ds = ColumnarDataset.from_pipeline(pipe, test)
model = DeepFM(pipe.features, pipe.features, mlp_params={"dims": [256, 128]})
pipe.save(run_dir)   # run_dir/pipeline.json, reloaded with FeaturePipeline.load(run_dir)
```

Everything learnt (vocabularies, fill values, normalisation statistics, bucket boundaries,
multi-value lengths) comes
from the data given to ``fit`` (or ``fit_stream``: the same, in one pass over batches or Parquet
files larger than memory); ``transform`` only applies it. Arrow input stays Arrow throughout. The
saved form is one JSON file with a format ``version``; no pickle.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recforge.features import (
    LABEL,
    DenseFeature,
    Feature,
    Pooling,
    SequenceFeature,
    SparseFeature,
    auto_embed_dim,
)
from recforge.files import atomic_write_text
from recforge.preprocess.buckets import BucketAccumulator, bucket_ids
from recforge.preprocess.columns import (
    Bucketize,
    Categorical,
    ColumnSpec,
    EncodedSpec,
    LabelType,
    ListSpec,
    MultiValue,
    Numeric,
    SequenceColumn,
    spec_from_dict,
    spec_to_dict,
)
from recforge.preprocess.io import (
    PARQUET_SUFFIXES,
    Column,
    Frame,
    TableLike,
    column_names,
    iter_parquet_batches,
    iter_tables,
    read_frame,
    require_columns,
)
from recforge.preprocess.labels import label_values, parse_label_types
from recforge.preprocess.lists import FlatList, flatten, pad_left
from recforge.preprocess.numeric import NumericAccumulator, NumericStats, apply_numeric, numeric_values
from recforge.preprocess.vocab import (
    NUM_RESERVED,
    SMALL_LIST,
    Value,
    ValueCounter,
    ValueKind,
    Vocabulary,
    canonical_list,
    canonical_values,
    to_arrow,
)

FORMAT = "recforge.FeaturePipeline"
VERSION = 1
FILENAME = "pipeline.json"
_T = TypeVar("_T")
_R = TypeVar("_R")


class NotFittedError(ValueError):
    """The pipeline was used before ``fit`` (or ``load``)."""


# -- per-column helpers ----------------------------------------------------------------------------
def _categorical_values(
    spec: Categorical, s: Column | list[object]
) -> tuple[pa.Array | list[Value], ValueKind]:
    if isinstance(s, list) and len(s) <= SMALL_LIST:
        small = canonical_list(s)
        if small is not None:
            return small
    arr = to_arrow(spec.name, s)
    if arr.null_count:
        if spec.fill_value is None:
            raise ValueError(
                f"column {spec.name!r}: {arr.null_count} of {len(arr)} rows are missing (NaN/None); "
                f"set Categorical({spec.name!r}, fill_value=...) or drop those rows"
            )
        if pa.types.is_null(arr.type):  # every value missing (e.g. one serving row): just the fill
            return canonical_values(spec.name, pa.array([spec.fill_value] * len(arr)))
        text = pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)
        if text != isinstance(spec.fill_value, str):
            raise TypeError(
                f"column {spec.name!r}: fill_value={spec.fill_value!r} does not match the column's "
                f"values ({arr.type}); use a {'string' if text else 'number'}"
            )
        if (not text and not pa.types.is_integer(arr.type)) or isinstance(spec.fill_value, float):
            arr = arr.cast(pa.float64())
        arr = pc.fill_null(arr, pa.scalar(spec.fill_value, type=arr.type))
    return canonical_values(spec.name, arr)


# -- the pipeline ----------------------------------------------------------------------------------
class _FitState:
    """What fitting has gathered so far: accumulators that take one batch at a time."""

    def __init__(self, pipe: FeaturePipeline) -> None:
        self.batches = 0
        self.rows = 0
        self.numeric = {c.name: NumericAccumulator(c) for c in pipe.columns if isinstance(c, Numeric)}
        self.buckets = {
            c.name: BucketAccumulator(c)
            for c in pipe.columns
            if isinstance(c, Bucketize) and c.boundaries is None
        }
        self.values = {
            c.name: ValueCounter(c.name, count=pipe._owner(c).hash_buckets is None)
            for c in pipe.columns
            if isinstance(c, EncodedSpec)
        }
        self.longest: dict[str, int] = {}  # MultiValue: the longest training row so far


class FeaturePipeline:
    """Encoders for the columns of a table, fit on the training split only.

    Args:
        columns: one spec per input column (``Categorical``, ``Numeric``, ``Bucketize``,
            ``MultiValue``, ``SequenceColumn``); their names are the output column and feature names.
        label: the target column, output under ``"label"`` as float32 ``(N,)``.
        labels: several target columns (multi-task), output under ``"label"`` as ``(N, T)``.
        label_types: what the labels may hold (``LabelType``): ``"binary"`` (0/1, the default),
            ``"soft"`` (probabilities in [0, 1]) or ``"regression"`` (finite numbers); one type
            for every label or one per label column. Checked whenever labels are read (``fit``,
            ``transform``); a value breaking it is a ``ValueError`` naming the column.
        num_threads: columns are processed by this many threads (the Arrow and numpy kernels
            doing the work release the GIL); results do not depend on it. Not saved.
    """

    def __init__(
        self,
        columns: Sequence[ColumnSpec],
        *,
        label: str | None = None,
        labels: Sequence[str] | None = None,
        label_types: LabelType | str | Sequence[LabelType | str] | None = None,
        num_threads: int = 1,
    ) -> None:
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"num_threads must be a positive int, got {num_threads!r}")
        self.num_threads = num_threads
        self.columns: list[ColumnSpec] = list(columns)
        if not self.columns:
            raise ValueError("FeaturePipeline needs at least one column spec")
        for c in self.columns:
            if not isinstance(c, ColumnSpec):
                raise TypeError(
                    "columns must be Categorical, Numeric, Bucketize, MultiValue or SequenceColumn specs, "
                    f"got {type(c).__name__}"
                )
        if label is not None and labels is not None:
            raise ValueError("give either label= or labels=, not both")
        if labels is not None and (isinstance(labels, str) or not labels):
            raise ValueError(f"labels must be a non-empty list of column names, got {labels!r}")
        self.label = label
        self.labels: list[str] = [label] if label is not None else list(labels or [])
        self.multi_task = labels is not None
        self.label_types: list[LabelType | None] = list(parse_label_types(self.labels, label_types))
        self._by_name: dict[str, ColumnSpec] = {}
        for c in self.columns:
            if c.name in self._by_name:
                raise ValueError(f"column {c.name!r} is declared twice")
            if c.name == LABEL:
                raise ValueError(f"column {LABEL!r} is reserved for targets; rename the feature column")
            self._by_name[c.name] = c
        for y in self.labels:
            if y in self._by_name:
                raise ValueError(f"column {y!r} is both a feature and a label")
        self._check_sharing()
        self._vocabs: dict[str, Vocabulary] = {}
        self._stats: dict[str, NumericStats] = {}
        self._buckets: dict[str, tuple[float, ...]] = {}  # Bucketize: the bucket boundaries
        self._max_len: dict[str, int] = {}
        self._fitted = False

    def _check_sharing(self) -> None:
        for c in self.columns:
            if not isinstance(c, EncodedSpec) or c.shared_with is None:
                continue
            owner = self._by_name.get(c.shared_with)
            if owner is None:
                raise ValueError(
                    f"column {c.name!r}: shared_with={c.shared_with!r} names no declared column; "
                    f"declared: {sorted(self._by_name)}"
                )
            if not isinstance(owner, EncodedSpec):
                raise ValueError(
                    f"column {c.name!r}: shared_with={owner.name!r} is {type(owner).__name__} "
                    "and has no vocabulary"
                )
            if owner.shared_with is not None:
                raise ValueError(
                    f"column {c.name!r}: shared_with must name a vocabulary owner, but "
                    f"{owner.name!r} itself shares {owner.shared_with!r}"
                )
            if c.hash_buckets is not None or c.max_size is not None or c.min_freq != 1:
                raise ValueError(
                    f"column {c.name!r} shares the vocabulary of {owner.name!r}; set min_freq, max_size "
                    f"and hash_buckets on {owner.name!r}, not on {c.name!r}"
                )
            if c.embed_dim is not None and c.embed_dim != owner.embed_dim:
                raise ValueError(
                    f"column {c.name!r} (embed_dim={c.embed_dim}) shares {owner.name!r} "
                    f"(embed_dim={owner.embed_dim}); leave embed_dim=None on {c.name!r} or make them equal"
                )

    # -- fitting -------------------------------------------------------------------------------
    def _owner(self, spec: EncodedSpec) -> EncodedSpec:
        owner = self._by_name[spec.shared_with] if spec.shared_with is not None else spec
        assert isinstance(owner, EncodedSpec)
        return owner

    def _encoded_values(
        self, spec: EncodedSpec, values: Column | list[object]
    ) -> tuple[pa.Array | list[Value], ValueKind, FlatList | None]:
        if isinstance(spec, Categorical):
            arr, kind = _categorical_values(spec, values)
            return arr, kind, None
        flat = flatten(spec.name, values, spec.sep)
        return flat.values, flat.kind, flat

    def _map(self, fn: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
        """``[fn(x) for x in items]``, on ``num_threads`` threads; the first error (in order) is raised."""
        if self.num_threads == 1 or len(items) < 2:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(min(self.num_threads, len(items))) as pool:
            return list(pool.map(fn, items))

    def fit(
        self, data: TableLike, *, catalog: Mapping[str, Sequence[object] | np.ndarray] | None = None
    ) -> FeaturePipeline:
        """Learn vocabularies and statistics from ``data`` (the training split only).

        Args:
            data: the training split.
            catalog: values known in advance per vocabulary column (e.g. every item of the
                catalogue, every registered user): each gets an id even if the training split
                never holds it (after the training values, in sorted order), so that held-out
                rows of those values are encoded, not turned into OOV. ``min_freq``/``max_size``
                do not drop catalogue values.
        """
        df = read_frame(data)
        require_columns(df, self._fit_columns(), source="the training data")
        state = _FitState(self)
        self._fit_batch(state, df)
        return self._finish_fit(state, catalog)

    def fit_stream(
        self,
        batches: Iterable[TableLike] | str | os.PathLike[str],
        *,
        batch_rows: int = 65_536,
        catalog: Mapping[str, Sequence[object] | np.ndarray] | None = None,
    ) -> FeaturePipeline:
        """``fit`` in one pass over data larger than memory, with the same result as ``fit`` on all
        of it at once (vocabulary ids, tie-breaking and numeric statistics included).

        Args:
            batches: the training split as an iterable of pieces (Arrow record batches or tables,
                DataFrames, ...), or a Parquet file or directory (e.g. Spark's ``part-*.parquet``),
                read ``batch_rows`` rows at a time, only the needed columns, or a CSV file, read in
                chunks of ``batch_rows`` rows.
            batch_rows: rows per read when ``batches`` is a path.
            catalog: as for ``fit``.

        Memory: one piece plus one count per distinct value of each vocabulary column (and of a
        ``Numeric(fill="median")`` column); numeric sums are exact, whatever the batching. A
        quantile ``Bucketize`` column keeps its training values, exactly up to ``RESERVOIR_SIZE``
        (1,000,000) and beyond that a seeded uniform sample of that size (approximate quantiles).
        """
        if isinstance(batches, str | os.PathLike):
            path = Path(batches)
            if path.is_dir() or path.name.lower().endswith(PARQUET_SUFFIXES):
                batches = iter_parquet_batches(path, self._fit_columns(), batch_rows)
            else:
                batches = iter_tables(path, batch_rows)
        state = _FitState(self)
        for i, batch in enumerate(batches):
            df = read_frame(batch)
            require_columns(df, self._fit_columns(), source=f"training batch {i}")
            self._fit_batch(state, df)
        if state.batches == 0:
            raise ValueError("fit_stream got no training batches")
        return self._finish_fit(state, catalog)

    def _fit_columns(self) -> list[str]:
        return [c.name for c in self.columns] + self.labels

    def _fit_batch(self, state: _FitState, df: Frame) -> None:
        def add(c: ColumnSpec) -> None:
            if isinstance(c, Numeric):
                state.numeric[c.name].add(numeric_values(c.name, df[c.name]))
                return
            if isinstance(c, Bucketize):
                acc = state.buckets.get(c.name)
                if acc is not None:
                    acc.add(numeric_values(c.name, df[c.name], spec="Bucketize"))
                return
            arr, kind, flat = self._encoded_values(c, df[c.name])
            assert isinstance(arr, pa.Array)  # a table column always goes through Arrow
            state.values[c.name].add(arr, kind)
            if isinstance(c, MultiValue) and flat is not None:
                state.longest[c.name] = max(state.longest.get(c.name, 0), int(flat.lengths.max(initial=0)))

        self._map(add, self.columns)
        for y, kind in zip(self.labels, self.label_types):
            label_values(y, df[y], kind)
        state.rows += len(df)
        state.batches += 1

    def _finish_fit(
        self, state: _FitState, catalog: Mapping[str, Sequence[object] | np.ndarray] | None = None
    ) -> FeaturePipeline:
        if state.rows == 0:
            raise ValueError("the training data has no rows (an empty file or split); nothing to fit on")
        stats = {c.name: state.numeric[c.name].stats() for c in self.columns if isinstance(c, Numeric)}
        buckets = {
            c.name: tuple(c.boundaries) if c.boundaries is not None else state.buckets[c.name].boundaries()
            for c in self.columns
            if isinstance(c, Bucketize)
        }
        max_len = {
            c.name: c.max_len or max(1, state.longest.get(c.name, 0))
            for c in self.columns
            if isinstance(c, MultiValue)
        }
        sharing: dict[str, list[str]] = {}
        for c in self.columns:
            if isinstance(c, EncodedSpec):
                sharing.setdefault(self._owner(c).name, []).append(c.name)
        owners = list(sharing)
        known = self._catalog_owners(catalog or {})
        vocabs = dict(
            zip(
                owners,
                self._map(
                    lambda o: self._fit_vocabulary(o, [state.values[n] for n in sharing[o]], known.get(o)),
                    owners,
                ),
            )
        )
        self._vocabs, self._stats, self._max_len, self._buckets = vocabs, stats, max_len, buckets
        self._fitted = True
        return self

    def _catalog_owners(
        self, catalog: Mapping[str, Sequence[object] | np.ndarray]
    ) -> dict[str, Sequence[object] | np.ndarray]:
        """``catalog`` keyed by vocabulary owner (a column sharing a vocabulary names its owner)."""
        out: dict[str, Sequence[object] | np.ndarray] = {}
        for name, values in catalog.items():
            spec = self._by_name.get(name)
            if not isinstance(spec, EncodedSpec):
                encoded = sorted(c.name for c in self.columns if isinstance(c, EncodedSpec))
                raise KeyError(f"catalog: {name!r} is not a vocabulary column; those are {encoded}")
            owner = self._owner(spec)
            if owner.hash_buckets is not None:
                raise ValueError(f"catalog: column {name!r} is hashed and has no vocabulary to extend")
            out[owner.name] = values
        return out

    def _fit_vocabulary(
        self,
        owner_name: str,
        parts: list[ValueCounter],
        catalog: Sequence[object] | np.ndarray | None = None,
    ) -> Vocabulary:
        """One vocabulary from the training values of its owner and every column sharing it,
        extended by the ``catalog`` values training did not hold."""
        owner = self._by_name[owner_name]
        assert isinstance(owner, EncodedSpec)
        kinds = {p.column: p.kind for p in parts if p.kind is not None}
        if len({k.numeric for k in kinds.values()}) > 1:
            detail = ", ".join(f"{n}: {k.value}" for n, k in kinds.items())
            raise TypeError(
                f"columns sharing the vocabulary of {owner_name!r} hold different value types ({detail})"
            )
        kind = next(iter(kinds.values()), ValueKind.STR)
        if kind.numeric and ValueKind.FLOAT in kinds.values():
            kind = ValueKind.FLOAT
        if owner.hash_buckets is not None:
            return Vocabulary(kind=kind, hash_buckets=owner.hash_buckets)
        merged = ValueCounter(owner_name)
        for p in parts:
            if p.kind is not None:
                merged.add_counts(p.table(), kind)
        vocab = Vocabulary.from_counts(merged.table(), kind, min_freq=owner.min_freq, max_size=owner.max_size)
        if catalog is None or not len(catalog):
            return vocab
        extra, extra_kind = canonical_values(f"catalog of {owner_name!r}", list(catalog))
        if parts and any(p.kind is not None for p in parts) and extra_kind.numeric != kind.numeric:
            raise TypeError(
                f"catalog of {owner_name!r} holds {extra_kind.value} values, the training data {kind.value}"
            )
        known = set(vocab.values)
        missing = sorted({v for v in extra.to_pylist() if v not in known})  # type: ignore[type-var]
        return Vocabulary([*vocab.values, *missing], kind=kind if vocab.values else extra_kind)

    def fit_transform(self, data: TableLike) -> dict[str, np.ndarray]:
        df = read_frame(data)
        return self.fit(df).transform(df)

    # -- transforming --------------------------------------------------------------------------
    def _require_fitted(self) -> None:
        if not self._fitted:
            raise NotFittedError(
                "this FeaturePipeline is not fitted; call fit(train) or FeaturePipeline.load() first"
            )

    @property
    def is_fitted(self) -> bool:
        return self._fitted

    def max_len(self, spec: ListSpec) -> int:
        """The padded length L of a list column (learnt from training data for ``MultiValue(max_len=None)``)."""
        return spec.max_len if isinstance(spec, SequenceColumn) else self._max_len[spec.name]

    def transform(self, data: TableLike) -> dict[str, np.ndarray]:
        """Encode ``data``: column name -> array (ids int64 ``(N,)``, dense float32 ``(N,)``,
        lists int64 ``(N, L)`` left-padded), plus ``"label"`` when the label columns are present."""
        self._require_fitted()
        df = read_frame(data)
        require_columns(df, [c.name for c in self.columns])
        arrays = self._map(lambda c: self._encode(c, df[c.name]), self.columns)
        out: dict[str, np.ndarray] = {c.name: a for c, a in zip(self.columns, arrays)}
        names = column_names(df)
        present = [y for y in self.labels if y in names]
        if present and len(present) < len(self.labels):
            missing = [y for y in self.labels if y not in names]
            raise KeyError(f"label column(s) {missing} not found; available columns: {sorted(names)}")
        if present:
            ys = [label_values(y, df[y], kind) for y, kind in zip(self.labels, self.label_types)]
            out[LABEL] = np.stack(ys, axis=1) if self.multi_task else ys[0]
        return out

    def transform_records(
        self, rows: Sequence[Mapping[str, object]], columns: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """``transform`` of dict rows (one per row) without building a DataFrame: the serving path.

        Each column's values are read straight from the rows and encoded with the code
        ``transform`` uses, so the arrays equal ``transform(pd.DataFrame.from_records(rows))``
        (a key missing from some rows is a missing value there, as in that DataFrame). Labels are
        not read.

        Args:
            rows: raw rows, column name -> original value.
            columns: encode only these columns (default: every column of the pipeline).
        Returns:
            column name -> array, as ``transform``.
        """
        self._require_fitted()
        specs = self._record_specs(rows, columns)
        return {c.name: self._encode(c, [r.get(c.name) for r in rows]) for c in specs}

    def _record_specs(
        self, rows: Sequence[Mapping[str, object]], columns: Sequence[str] | None
    ) -> list[ColumnSpec]:
        """The specs to encode; every one must be a key of some row (else a ``KeyError``)."""
        specs = self.columns if columns is None else [self._spec(name) for name in columns]
        present = {k for r in rows for k in r} if rows else set()
        missing = [c.name for c in specs if c.name not in present]
        if missing:
            raise KeyError(
                f"column(s) {missing} not found in the rows; available columns: {sorted(map(str, present))}"
            )
        return specs

    def transform_record_groups(
        self, groups: Sequence[Sequence[Mapping[str, object]]], columns: Sequence[str] | None = None
    ) -> list[dict[str, np.ndarray] | Exception]:
        """``transform_records`` of several independent row groups (a serving micro-batch; ``columns``
        as there) with one encoding call per column over all groups; each group is checked on its own first, and
        should the joint encoding fail, each group is encoded alone, so a bad value fails only its
        own group (its slot holds the exception)."""
        self._require_fitted()
        checked: list[Sequence[Mapping[str, object]] | Exception] = []
        for rows in groups:
            try:
                self._record_specs(rows, columns)
                checked.append(rows)
            except Exception as e:  # handed back in the group's slot
                checked.append(e)
        valid = [g for g in checked if not isinstance(g, Exception)]

        def encode(rows: Sequence[Mapping[str, object]]) -> dict[str, np.ndarray]:
            return self.transform_records(rows, columns)

        try:
            joint = encode([r for g in valid for r in g])
        except Exception:  # find the group at fault: encode each alone
            return [g if isinstance(g, Exception) else _attempt(encode, g) for g in checked]
        bounds = np.cumsum([0, *(len(g) for g in valid)])
        parts = iter([{k: v[bounds[i] : bounds[i + 1]] for k, v in joint.items()} for i in range(len(valid))])
        return [g if isinstance(g, Exception) else next(parts) for g in checked]

    def encode_column(self, name: str, values: pd.Series | Sequence[object]) -> np.ndarray:
        """One column's raw values (a Series or a sequence, ``None`` or NaN for missing) encoded
        as ``transform`` encodes that column."""
        self._require_fitted()
        spec = self._spec(name)
        return self._encode(spec, values if isinstance(values, pd.Series) else list(values))

    def _spec(self, name: str) -> ColumnSpec:
        spec = self._by_name.get(name)
        if spec is None:
            raise KeyError(f"no column {name!r} in this pipeline; columns: {sorted(self._by_name)}")
        return spec

    def _encode(self, c: ColumnSpec, values: Column | list[object]) -> np.ndarray:
        if isinstance(c, Numeric):
            return apply_numeric(c, self._stats[c.name], numeric_values(c.name, values))
        if isinstance(c, Bucketize):
            return bucket_ids(self._buckets[c.name], numeric_values(c.name, values, spec="Bucketize"))
        vocab = self._vocabs[self._owner(c).name]
        arr, kind, flat = self._encoded_values(c, values)
        ids = vocab.encode_canonical(arr, kind, column=c.name)
        if flat is None:
            return ids
        assert isinstance(c, MultiValue | SequenceColumn)
        length = self.max_len(c)
        longest = int(flat.lengths.max(initial=0))
        if not c.truncate and longest > length:
            raise ValueError(
                f"column {c.name!r}: row {int(flat.lengths.argmax())} has {longest} items but "
                f"max_len={length} and truncate=False; raise max_len or set truncate=True"
            )
        return pad_left(ids, flat.lengths, length)

    def iter_transform(self, data: TableLike, batch_rows: int = 1_000_000) -> Iterator[dict[str, np.ndarray]]:
        """``transform`` piece by piece (at most ``batch_rows`` rows each), for tables larger than
        memory: CSV and Parquet files are read in chunks. Concatenated, the pieces equal
        ``transform(data)``."""
        self._require_fitted()
        for piece in iter_tables(data, batch_rows):
            yield self.transform(piece)

    # -- what models see -----------------------------------------------------------------------
    @property
    def features(self) -> list[Feature]:
        """One feature spec per column, vocabulary sizes filled in (names = column names)."""
        self._require_fitted()
        dims: dict[str, int] = {}
        for c in self.columns:
            if isinstance(c, EncodedSpec) and c.shared_with is None:
                dims[c.name] = c.embed_dim or auto_embed_dim(len(self._vocabs[c.name]))
        out: list[Feature] = []
        for c in self.columns:
            if isinstance(c, Numeric):
                out.append(DenseFeature(c.name))
                continue
            if isinstance(c, Bucketize):
                size = self.num_buckets(c.name) + NUM_RESERVED
                out.append(SparseFeature(c.name, size, c.embed_dim or auto_embed_dim(size), padding_idx=0))
                continue
            owner = self._owner(c)
            size, dim = len(self._vocabs[owner.name]), dims[owner.name]
            if isinstance(c, Categorical):
                out.append(SparseFeature(c.name, size, dim, shared_with=c.shared_with, padding_idx=0))
            else:
                out.append(
                    SequenceFeature(
                        c.name,
                        size,
                        dim,
                        pooling=Pooling.parse(c.pooling),
                        shared_with=c.shared_with,
                        padding_idx=0,
                        max_len=self.max_len(c),
                    )
                )
        return out

    def vocabulary(self, column: str) -> Vocabulary:
        """The vocabulary ``column`` encodes with (its owner's when shared)."""
        self._require_fitted()
        spec = self._spec(column)
        if not isinstance(spec, EncodedSpec):
            raise KeyError(f"column {column!r} is {type(spec).__name__} and has no vocabulary")
        return self._vocabs[self._owner(spec).name]

    def bucket_boundaries(self, column: str) -> tuple[float, ...]:
        """The boundaries of a ``Bucketize`` column (given, or fit on the training split)."""
        self._require_fitted()
        if column not in self._buckets:
            raise KeyError(f"no Bucketize column {column!r}; Bucketize columns: {sorted(self._buckets)}")
        return self._buckets[column]

    def num_buckets(self, column: str) -> int:
        """How many buckets a ``Bucketize`` column has (ids ``2 .. num_buckets + 1``)."""
        return len(self.bucket_boundaries(column)) + 1

    def numeric_stats(self, column: str) -> NumericStats:
        """Fill value and normalisation of a ``Numeric`` column."""
        self._require_fitted()
        if column not in self._stats:
            raise KeyError(f"no Numeric column {column!r}; Numeric columns: {sorted(self._stats)}")
        return self._stats[column]

    def __repr__(self) -> str:
        cols = ", ".join(f"{type(c).__name__}({c.name!r})" for c in self.columns)
        state = "fitted" if self._fitted else "not fitted"
        return f"FeaturePipeline([{cols}], labels={self.labels}, {state})"

    # -- persistence ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, object]:
        self._require_fitted()
        return {
            "format": FORMAT,
            "version": VERSION,
            "label": self.label,
            "labels": self.labels if self.multi_task else None,
            "label_types": [t.value if t is not None else None for t in self.label_types],
            "columns": [spec_to_dict(c) for c in self.columns],
            "vocabularies": {k: v.to_dict() for k, v in self._vocabs.items()},
            "numeric": {k: asdict(v) for k, v in self._stats.items()},
            "buckets": {k: list(v) for k, v in self._buckets.items()},
            "max_len": self._max_len,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object], *, num_threads: int = 1) -> FeaturePipeline:
        if data.get("format") != FORMAT:
            raise ValueError(
                f"not a saved FeaturePipeline: format is {data.get('format')!r}, expected {FORMAT!r}"
            )
        version = data.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ValueError(f"saved FeaturePipeline has an invalid format version {version!r}")
        if version > VERSION:
            raise ValueError(
                f"saved FeaturePipeline has format version {version}, newer than this recforge "
                f"reads (up to {VERSION}); upgrade recforge to load it"
            )
        specs = [spec_from_dict(c) for c in data["columns"]]  # type: ignore[attr-defined]
        labels = data.get("labels")
        pipe = cls(specs, label=data.get("label"), labels=labels, num_threads=num_threads)  # type: ignore[arg-type]
        saved_types = data.get("label_types")
        # a file written before label types existed: its labels are only checked to be finite
        pipe.label_types = (
            [None] * len(pipe.labels)
            if saved_types is None
            else [None if t is None else LabelType.parse(t, where="label_types") for t in saved_types]  # type: ignore[attr-defined]
        )
        if len(pipe.label_types) != len(pipe.labels):
            raise ValueError(
                f"saved FeaturePipeline: label_types {saved_types!r} do not match labels {pipe.labels}"
            )
        vocabs = data["vocabularies"]
        pipe._vocabs = {k: Vocabulary.from_dict(v) for k, v in vocabs.items()}  # type: ignore[attr-defined]
        pipe._stats = {k: NumericStats(**v) for k, v in data["numeric"].items()}  # type: ignore[attr-defined]
        pipe._max_len = {k: int(v) for k, v in data["max_len"].items()}  # type: ignore[attr-defined]
        # files written before Bucketize existed have no "buckets"
        buckets = data.get("buckets", {})
        pipe._buckets = {k: tuple(float(b) for b in v) for k, v in buckets.items()}  # type: ignore[attr-defined]
        missing = [c.name for c in specs if isinstance(c, Bucketize) and c.name not in pipe._buckets]
        if missing:
            raise ValueError(f"saved FeaturePipeline has no bucket boundaries for column(s) {missing}")
        pipe._fitted = True
        return pipe

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``pipeline.json`` into directory ``path`` (or to ``path`` if it ends in ``.json``),
        atomically. Returns the file written."""
        target = Path(path)
        if target.suffix != ".json":
            target.mkdir(parents=True, exist_ok=True)
            target = target / FILENAME
        return atomic_write_text(
            target, json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, num_threads: int = 1) -> FeaturePipeline:
        """Read a pipeline written by ``save`` (a run directory or the ``.json`` file itself)."""
        source = Path(path)
        if source.is_dir():
            source = source / FILENAME
        if not source.exists():
            raise FileNotFoundError(f"no saved FeaturePipeline at {source}")
        with source.open(encoding="utf-8") as fh:
            data = json.load(fh)
        if not isinstance(data, dict):
            raise ValueError(f"{source}: not a saved FeaturePipeline (expected a JSON object)")
        return cls.from_dict(data, num_threads=num_threads)


def _attempt(
    fn: Callable[[Sequence[Mapping[str, object]]], dict[str, np.ndarray]],
    rows: Sequence[Mapping[str, object]],
) -> dict[str, np.ndarray] | Exception:
    try:
        return fn(rows)
    except Exception as e:  # handed back in the group's slot
        return e
