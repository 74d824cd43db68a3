"""Preprocessing: fit encoders on the training split, transform every split the same way.

``FeaturePipeline`` turns a table (pandas, Polars, Arrow, CSV or Parquet) into model-ready columns
and the matching feature specs; ``read_table`` reads any of those inputs as pandas.
"""

from recforge.preprocess.columns import (
    Categorical,
    ColumnSpec,
    Fill,
    MultiValue,
    Normalize,
    Numeric,
    SequenceColumn,
)
from recforge.preprocess.io import iter_tables, read_table, require_columns
from recforge.preprocess.lists import FlatList, flatten, pad_left
from recforge.preprocess.numeric import NumericStats
from recforge.preprocess.pipeline import FORMAT, VERSION, FeaturePipeline, NotFittedError
from recforge.preprocess.vocab import HASH_KEY, OOV, PAD, ValueKind, Vocabulary, canonical_values, stable_hash

__all__ = [
    "FORMAT",
    "HASH_KEY",
    "OOV",
    "PAD",
    "VERSION",
    "Categorical",
    "ColumnSpec",
    "FeaturePipeline",
    "Fill",
    "FlatList",
    "MultiValue",
    "NotFittedError",
    "Normalize",
    "Numeric",
    "NumericStats",
    "SequenceColumn",
    "ValueKind",
    "Vocabulary",
    "canonical_values",
    "flatten",
    "iter_tables",
    "pad_left",
    "read_table",
    "require_columns",
    "stable_hash",
]
