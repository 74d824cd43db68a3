"""Ranking (CTR) models: ``model(batch) -> logits (B,)``."""

from recforge.models.ranking.deepfm import DeepFM
from recforge.models.ranking.widedeep import WideDeep

MODELS = {"WideDeep": WideDeep, "DeepFM": DeepFM}

__all__ = ["MODELS", "DeepFM", "WideDeep"]
