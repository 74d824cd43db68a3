"""Generative (sequential transduction) recommenders."""

from recforge.models.generative.hllm import HLLM, HLLMModel, ItemPooling, item_text_tokens, tokenize_items
from recforge.models.generative.hstu import HSTU, HSTUModel
from recforge.models.generative.rqvae import RQVAE, RQVAEModel
from recforge.models.generative.semantic_ids import (
    BeamSearchResult,
    CollisionStats,
    PrefixTrie,
    SemanticIDs,
    collision_stats,
    constrained_beam_search,
)
from recforge.models.generative.tiger import TIGER, GeneratedItems, TIGERConfig, TIGERModel

MODELS: dict[str, type] = {"HSTU": HSTU, "HLLM": HLLM, "RQVAE": RQVAE, "TIGER": TIGER}

__all__ = [
    "HLLM",
    "HSTU",
    "MODELS",
    "HLLMModel",
    "HSTUModel",
    "ItemPooling",
    "item_text_tokens",
    "RQVAE",
    "TIGER",
    "BeamSearchResult",
    "CollisionStats",
    "GeneratedItems",
    "PrefixTrie",
    "RQVAEModel",
    "SemanticIDs",
    "TIGERConfig",
    "TIGERModel",
    "collision_stats",
    "constrained_beam_search",
    "tokenize_items",
]
