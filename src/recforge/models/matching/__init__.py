"""Retrieval (matching) models: user and item towers, ``forward(batch) -> TowerOutput``."""

from recforge.models.matching.base import TwoTowerModel
from recforge.models.matching.comirec_dr import ComirecDR
from recforge.models.matching.comirec_sa import ComirecSA
from recforge.models.matching.dssm import DSSM
from recforge.models.matching.facebook_dssm import FacebookDSSM
from recforge.models.matching.gru4rec import GRU4Rec
from recforge.models.matching.mind import MIND
from recforge.models.matching.multi_interest import MultiInterestModel
from recforge.models.matching.narm import NARM
from recforge.models.matching.sasrec import SASRec
from recforge.models.matching.sequential import SequentialModel
from recforge.models.matching.sine import SINE
from recforge.models.matching.stamp import STAMP
from recforge.models.matching.youtube_dnn import YoutubeDNN
from recforge.models.matching.youtube_sbc import YoutubeSBC

FaceBookDSSM = FacebookDSSM  # Torch-RecHub's spelling

MODELS: dict[str, type] = {
    m.__name__: m
    for m in (
        DSSM,
        FacebookDSSM,
        YoutubeDNN,
        YoutubeSBC,
        MIND,
        ComirecDR,
        ComirecSA,
        SINE,
        GRU4Rec,
        NARM,
        STAMP,
        SASRec,
    )
}

__all__ = [
    "MODELS",
    "MIND",
    "NARM",
    "SINE",
    "STAMP",
    "DSSM",
    "ComirecDR",
    "ComirecSA",
    "FaceBookDSSM",
    "FacebookDSSM",
    "GRU4Rec",
    "MultiInterestModel",
    "SASRec",
    "SequentialModel",
    "TwoTowerModel",
    "YoutubeDNN",
    "YoutubeSBC",
]
