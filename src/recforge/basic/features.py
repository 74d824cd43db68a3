"""``torch_rechub.basic.features``: the feature specs are recforge's own (``recforge.features``)."""

from recforge.features import DenseFeature, SequenceFeature, SparseFeature

__all__ = ["DenseFeature", "SequenceFeature", "SparseFeature"]
