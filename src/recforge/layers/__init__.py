"""Shared building blocks: each concept lives once here and models compose them."""

from recforge.layers.attention import (
    MultiHeadAttention,
    TransformerBlock,
    TransformerDecoder,
    TransformerDecoderBlock,
    TransformerEncoder,
)
from recforge.layers.cin import CIN
from recforge.layers.cross import (
    BridgeModule,
    BridgeType,
    CrossLayer,
    CrossLayerV2,
    CrossNet,
    CrossNetMix,
    CrossNetV2,
    RegulationModule,
)
from recforge.layers.dropout import Dropout
from recforge.layers.embedding import EmbeddingLayer, dense_column, output_dim, pool_sequence
from recforge.layers.experts import (
    Experts,
    ExtractionLayer,
    ExtractionOutput,
    Gate,
    InformationTransfer,
    MixtureOfExperts,
    behavioral_calibration,
    mix,
)
from recforge.layers.interaction import (
    FFM,
    FM,
    LR,
    SENET,
    AFMAttention,
    BilinearFusion,
    BilinearInteraction,
    BilinearType,
    FeatureGating,
    InnerProduct,
    InteractingLayer,
    OuterProduct,
    field_dim,
    pair_indices,
    wide_fm_and_deep_input,
)
from recforge.layers.mlp import MLP, Activation, Dice, MLPConfig
from recforge.layers.quantize import ResidualQuantizer, VectorQuantizer, kmeans

__all__ = [
    "CIN",
    "FFM",
    "FM",
    "LR",
    "MLP",
    "SENET",
    "AFMAttention",
    "Activation",
    "BilinearFusion",
    "BilinearInteraction",
    "BilinearType",
    "BridgeModule",
    "BridgeType",
    "CrossLayer",
    "CrossLayerV2",
    "CrossNet",
    "CrossNetMix",
    "CrossNetV2",
    "Dice",
    "Dropout",
    "EmbeddingLayer",
    "FeatureGating",
    "InnerProduct",
    "InteractingLayer",
    "MLPConfig",
    "MultiHeadAttention",
    "OuterProduct",
    "RegulationModule",
    "TransformerBlock",
    "TransformerEncoder",
    "dense_column",
    "field_dim",
    "output_dim",
    "pair_indices",
    "pool_sequence",
    "wide_fm_and_deep_input",
]
__all__ += [
    "Experts",
    "ExtractionLayer",
    "ExtractionOutput",
    "Gate",
    "InformationTransfer",
    "MixtureOfExperts",
    "behavioral_calibration",
    "mix",
]
__all__ += ["TransformerDecoder", "TransformerDecoderBlock", "ResidualQuantizer", "VectorQuantizer", "kmeans"]
