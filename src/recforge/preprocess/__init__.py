"""Preprocessing: fit encoders on the training split, transform every split the same way.

``FeaturePipeline`` turns a table (pandas, Polars, Arrow, CSV or Parquet) into model-ready columns
and the matching feature specs; ``read_table`` reads any of those inputs as pandas.

```python
pipe = FeaturePipeline([Categorical("user_id"), Categorical("item_id"), Numeric("age"),
                        MultiValue("genres", sep="|", max_len=5),
                        SequenceColumn("hist_item_id", max_len=50, shared_with="item_id")],
                       label="label").fit(train)
model = DeepFM(pipe.features, pipe.features, mlp_params={"dims": [256, 128]})
loader = BatchLoader(ColumnarDataset.from_pipeline(pipe, valid), 4096)
```

Conventions: id 0 is padding, id 1 the out-of-vocabulary bucket, known values from 2 by
descending training frequency; list columns keep their last ``max_len`` items, left-padded with 0;
numeric statistics come from the training split only. ``Bucketize("age", bins=10)`` turns a
numeric column into bucket ids (an embedded feature): 1 for missing, buckets ``[b[i-1], b[i])``
from 2 in increasing value order, boundaries given or fit as training quantiles (equal edges
merged, so a heavily repeated value gives fewer buckets) or equal widths. ``pipe.fit_stream("train/")`` fits the same
pipeline in one pass over Parquet files or batches larger than memory. ``pipe.save(run_dir)``
writes one versioned JSON file. Importing this package does not import torch.
"""

from recforge.preprocess.buckets import RESERVOIR_SIZE
from recforge.preprocess.columns import (
    Binning,
    Bucketize,
    Categorical,
    ColumnSpec,
    Fill,
    LabelType,
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
    "RESERVOIR_SIZE",
    "VERSION",
    "Binning",
    "Bucketize",
    "Categorical",
    "ColumnSpec",
    "FeaturePipeline",
    "Fill",
    "FlatList",
    "LabelType",
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
