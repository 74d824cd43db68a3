"""Generative (sequential transduction) recommenders."""

from recforge.models.generative.hstu import HSTU

MODELS: dict[str, type] = {"HSTU": HSTU}

__all__ = ["HSTU", "MODELS"]
