"""One training loop (``Trainer``) and its task-family presets."""

from recforge.objectives.match import MatchMode, MatchObjective, NegativeSource, PairLoss
from recforge.objectives.sequence import SeqLoss, SequenceObjective
from recforge.trainers.ctr import CTRTrainer
from recforge.trainers.generative import GenerativeTrainer, train_rqvae
from recforge.trainers.loop import EarlyStopper, Trainer
from recforge.trainers.match import MatchTrainer
from recforge.trainers.mtl import MTLTrainer
from recforge.trainers.optim import SparseAwareOptimizer, build_optimizer
from recforge.trainers.options import TrainOptions
from recforge.trainers.seq import SeqTrainer

PRESETS: dict[str, type[Trainer]] = {"ctr": CTRTrainer, "mtl": MTLTrainer}


def get_preset(name: str) -> type[Trainer]:
    """The trainer preset called ``name`` (``ctr``, ...); unknown names list the valid ones."""
    try:
        return PRESETS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown trainer preset {name!r}; valid: {sorted(PRESETS)}") from None


__all__ = [
    "PRESETS",
    "CTRTrainer",
    "EarlyStopper",
    "GenerativeTrainer",
    "MatchMode",
    "MatchObjective",
    "MatchTrainer",
    "NegativeSource",
    "PairLoss",
    "SeqLoss",
    "SeqTrainer",
    "SequenceObjective",
    "MTLTrainer",
    "SparseAwareOptimizer",
    "TrainOptions",
    "Trainer",
    "build_optimizer",
    "train_rqvae",
    "get_preset",
]
