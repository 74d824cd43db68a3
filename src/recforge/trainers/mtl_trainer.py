"""Torch-RecHub's ``torch_rechub.trainers.mtl_trainer`` path: re-exports ``recforge.trainers.MTLTrainer``."""

from recforge.trainers import MTLTrainer

__all__ = ["MTLTrainer"]
