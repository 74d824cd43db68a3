"""``torch_rechub.basic.callback``: Torch-RecHub's ``EarlyStopper`` over the training loop's own."""

from __future__ import annotations

import copy
from collections.abc import Mapping

from torch import Tensor

from recforge.ints import as_int
from recforge.trainers import EarlyStopper as _EarlyStopper


class EarlyStopper(_EarlyStopper):
    """``EarlyStopper(patience)`` with Torch-RecHub's ``stop_training(val_auc, weights)`` call:
    higher is better; ``best_weights`` keeps a copy of the best epoch's state dict."""

    def __init__(self, patience: int) -> None:
        super().__init__("auc", as_int(patience, "patience", minimum=1), "max")
        self.best_weights: Mapping[str, Tensor] | None = None
        self._epoch = -1

    @property
    def best_auc(self) -> float:
        return self.best

    def stop_training(self, val_auc: float, weights: Mapping[str, Tensor]) -> bool:
        """Record one epoch's validation AUC; True when ``patience`` epochs passed without a gain."""
        self._epoch += 1
        is_best, stop = self.step(float(val_auc), self._epoch)
        if is_best:
            self.best_weights = copy.deepcopy(dict(weights))
        return stop


__all__ = ["EarlyStopper"]
