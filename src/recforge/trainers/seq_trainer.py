"""Torch-RecHub's ``torch_rechub.trainers.seq_trainer`` path: re-exports ``recforge.trainers.SeqTrainer``."""

from recforge.trainers import SeqTrainer

__all__ = ["SeqTrainer"]
