"""Retrieval (matching) models: user and item towers, ``forward(batch) -> TowerOutput``."""

from recforge.models.matching.base import TwoTowerModel

MODELS: dict[str, type] = {}

__all__ = ["MODELS", "TwoTowerModel"]
