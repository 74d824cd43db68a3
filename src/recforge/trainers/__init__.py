"""One training loop (``Trainer``) and its task-family presets."""

from recforge.trainers.ctr import CTRTrainer
from recforge.trainers.loop import EarlyStopper, Trainer
from recforge.trainers.optim import SparseAwareOptimizer, build_optimizer

__all__ = ["CTRTrainer", "EarlyStopper", "SparseAwareOptimizer", "Trainer", "build_optimizer"]
