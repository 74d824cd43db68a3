"""Ranking (CTR) models: ``model(batch) -> logits (B,)``."""

from recforge.models.ranking.afm import AFM
from recforge.models.ranking.autoint import AutoInt
from recforge.models.ranking.bst import BST
from recforge.models.ranking.dcn import DCN
from recforge.models.ranking.dcn_v2 import DCNv2
from recforge.models.ranking.deepffm import DeepFFM
from recforge.models.ranking.deepfm import DeepFM
from recforge.models.ranking.dien import DIEN
from recforge.models.ranking.din import DIN
from recforge.models.ranking.dlrm import DLRM
from recforge.models.ranking.edcn import EDCN
from recforge.models.ranking.fat_deepffm import FatDeepFFM
from recforge.models.ranking.fibinet import FiBiNet
from recforge.models.ranking.finalmlp import FinalMLP
from recforge.models.ranking.nfm import NFM
from recforge.models.ranking.pnn import PNN
from recforge.models.ranking.widedeep import WideDeep
from recforge.models.ranking.xdeepfm import xDeepFM

MODELS = {
    "WideDeep": WideDeep,
    "DeepFM": DeepFM,
    "DCN": DCN,
    "DCNv2": DCNv2,
    "EDCN": EDCN,
    "AFM": AFM,
    "FiBiNet": FiBiNet,
    "DeepFFM": DeepFFM,
    "FatDeepFFM": FatDeepFFM,
    "AutoInt": AutoInt,
    "xDeepFM": xDeepFM,
    "NFM": NFM,
    "PNN": PNN,
    "FinalMLP": FinalMLP,
    "DLRM": DLRM,
    "DIN": DIN,
    "DIEN": DIEN,
    "BST": BST,
}

# Behaviour-sequence models (history + target features): their contract test is
# tests/test_contract_seq_ranking.py; tests/test_contract_ranking.py covers the rest.
SEQUENCE_MODELS = ("DIN", "DIEN", "BST")

__all__ = [
    "AFM",
    "BST",
    "DIEN",
    "DIN",
    "SEQUENCE_MODELS",
    "DCN",
    "DLRM",
    "EDCN",
    "MODELS",
    "NFM",
    "PNN",
    "AutoInt",
    "DCNv2",
    "DeepFFM",
    "DeepFM",
    "FatDeepFFM",
    "FiBiNet",
    "FinalMLP",
    "WideDeep",
    "xDeepFM",
]
