"""Torch-RecHub's ``torch_rechub.trainers.match_trainer`` path: re-exports ``recforge.trainers.MatchTrainer``."""

from recforge.trainers import MatchTrainer

__all__ = ["MatchTrainer"]
