"""Generative (sequential transduction) recommenders."""

from recforge.models.generative.hllm import HLLM, ItemPooling, item_text_tokens, tokenize_items
from recforge.models.generative.hstu import HSTU

MODELS: dict[str, type] = {"HSTU": HSTU, "HLLM": HLLM}

__all__ = ["HLLM", "HSTU", "MODELS", "ItemPooling", "item_text_tokens", "tokenize_items"]
