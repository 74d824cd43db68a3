"""Batches, loaders and dataset tools."""

from recforge.data.catalog import ItemCatalog, catalog_of
from recforge.data.content import (
    attribute_embeddings,
    cached,
    load_item_attributes,
    model_item_embeddings,
    text_embeddings,
)
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
from recforge.data.interactions import (
    Histories,
    InteractionSplit,
    SeenItems,
    build_histories,
    eval_samples,
    ground_truth,
    leave_one_out_split,
    next_item_samples,
    sequence_samples,
    temporal_split,
)
from recforge.data.sampling import Negatives, NegativeSampler, SamplingDistribution, frequency_log_q

__all__ = [
    "LABEL",
    "Batch",
    "BatchLoader",
    "ColumnarDataset",
    "DataGenerator",
    "Histories",
    "InteractionSplit",
    "ItemCatalog",
    "NegativeSampler",
    "Negatives",
    "SamplingDistribution",
    "SeenItems",
    "attribute_embeddings",
    "build_histories",
    "cached",
    "catalog_of",
    "eval_samples",
    "frequency_log_q",
    "ground_truth",
    "leave_one_out_split",
    "load_item_attributes",
    "model_item_embeddings",
    "next_item_samples",
    "passthrough",
    "sequence_samples",
    "split_batch",
    "temporal_split",
    "text_embeddings",
    "to_tensor",
]
