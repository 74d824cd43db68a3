"""Generative (sequential transduction) recommenders."""

from recforge.models.generative.hllm import HLLM, HLLMModel, ItemPooling, item_text_tokens, tokenize_items
from recforge.models.generative.hstu import HSTU, HSTUModel

MODELS: dict[str, type] = {"HSTU": HSTU, "HLLM": HLLM}

__all__ = [
    "HLLM",
    "HSTU",
    "MODELS",
    "HLLMModel",
    "HSTUModel",
    "ItemPooling",
    "item_text_tokens",
    "tokenize_items",
]
