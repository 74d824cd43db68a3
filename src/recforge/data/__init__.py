"""Batches, loaders and dataset tools."""

from recforge.data.dataset import (
    LABEL,
    Batch,
    BatchLoader,
    ColumnarDataset,
    passthrough,
    split_batch,
    to_tensor,
)
from recforge.data.generator import DataGenerator

__all__ = [
    "LABEL",
    "Batch",
    "BatchLoader",
    "ColumnarDataset",
    "DataGenerator",
    "passthrough",
    "split_batch",
    "to_tensor",
]
