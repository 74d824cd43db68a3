"""Torch-RecHub's ``torch_rechub.trainers.ctr_trainer`` path: re-exports ``recforge.trainers.CTRTrainer``."""

from recforge.trainers import CTRTrainer

__all__ = ["CTRTrainer"]
