"""``torch_rechub.basic.layers``: the same building blocks from ``recforge.layers``.

The names resolve; the constructors are recforge's (e.g. ``MLP(input_dim, {"dims": [...]})`` takes
the parameter dict where Torch-RecHub takes keywords; ``EmbeddingLayer(features)(x, features,
squeeze_dim=...)`` keeps Torch-RecHub's call). See ``docs/migrating.md``.
"""

from recforge.layers import CIN, FFM, FM, LR, MLP, SENET, EmbeddingLayer
from recforge.layers.hstu import HSTULayer

__all__ = ["CIN", "FFM", "FM", "LR", "MLP", "SENET", "EmbeddingLayer", "HSTULayer"]
