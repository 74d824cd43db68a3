"""Losses. An objective maps ``(model outputs, batch) -> scalar loss``; models never hold losses."""

from recforge.objectives.generative import RQVAELoss, RQVAELosses, rqvae_losses, semantic_id_loss
from recforge.objectives.match import MatchMode, MatchObjective, NegativeSource, PairLoss
from recforge.objectives.matching import (
    bce_loss,
    bpr_loss,
    full_softmax_loss,
    hinge_loss,
    in_batch_softmax_loss,
    labelled_bce_loss,
    sampled_softmax_loss,
    softmax_loss,
)
from recforge.objectives.pointwise import BinaryCrossEntropy, MeanSquaredError, Objective
from recforge.objectives.sequence import SeqLoss, SequenceObjective

__all__ = [
    "BinaryCrossEntropy",
    "MatchMode",
    "MatchObjective",
    "MeanSquaredError",
    "NegativeSource",
    "RQVAELoss",
    "RQVAELosses",
    "Objective",
    "PairLoss",
    "SeqLoss",
    "SequenceObjective",
    "bce_loss",
    "bpr_loss",
    "full_softmax_loss",
    "hinge_loss",
    "in_batch_softmax_loss",
    "labelled_bce_loss",
    "rqvae_losses",
    "sampled_softmax_loss",
    "semantic_id_loss",
    "softmax_loss",
]
