"""Generative (sequential transduction) recommenders."""

from recforge.models.generative.hllm import HLLM, ItemPooling, tokenize_items
from recforge.models.generative.hstu import HSTU

MODELS: dict[str, type] = {"HSTU": HSTU, "HLLM": HLLM}

__all__ = ["HLLM", "HSTU", "MODELS", "ItemPooling", "tokenize_items"]
