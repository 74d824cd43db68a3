"""Shared building blocks: each concept lives once here and models compose them."""

from recforge.layers.embedding import EmbeddingLayer, dense_column, output_dim, pool_sequence
from recforge.layers.interaction import FM, LR
from recforge.layers.mlp import MLP, Activation, Dice, MLPConfig

__all__ = [
    "FM",
    "LR",
    "MLP",
    "Activation",
    "Dice",
    "EmbeddingLayer",
    "MLPConfig",
    "dense_column",
    "output_dim",
    "pool_sequence",
]

from recforge.layers.attention import MultiHeadAttention, TransformerBlock, TransformerEncoder

__all__ += ["MultiHeadAttention", "TransformerBlock", "TransformerEncoder"]
