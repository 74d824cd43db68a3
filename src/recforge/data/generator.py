"""Torch-RecHub-style ``DataGenerator``: ``(x, y)`` in, train/valid/test loaders out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

import pandas as pd
import torch

from recforge.data.dataset import ArrayLike, BatchLoader, ColumnarDataset

Columns: TypeAlias = Mapping[str, ArrayLike] | pd.DataFrame


class DataGenerator:
    """Build loaders from feature columns ``x`` and labels ``y``.

    ``generate_dataloader`` either takes explicit validation/test sets or a ``split_ratio``
    ``(train, valid)`` whose remainder is the test set (a seeded random split).
    """

    def __init__(self, x: Columns, y: ArrayLike | None, *, seed: int = 2022) -> None:
        self.dataset = ColumnarDataset(x, y)
        self.seed = seed

    def generate_dataloader(
        self,
        x_val: Columns | None = None,
        y_val: ArrayLike | None = None,
        x_test: Columns | None = None,
        y_test: ArrayLike | None = None,
        split_ratio: Sequence[float] | None = None,
        batch_size: int = 16,
        num_workers: int = 0,
    ) -> tuple[BatchLoader, BatchLoader | None, BatchLoader | None]:
        """Returns ``(train, valid, test)`` loaders; ``num_workers`` is accepted for compatibility
        (batches are tensor slices, so worker processes would only add overhead)."""
        del num_workers
        if split_ratio is not None:
            if len(split_ratio) != 2 or min(split_ratio) < 0 or sum(split_ratio) > 1:
                raise ValueError(
                    f"split_ratio must be (train, valid) fractions summing to <= 1, got {split_ratio}"
                )
            n = len(self.dataset)
            n_train, n_val = int(n * split_ratio[0]), int(n * split_ratio[1])
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
            train = self.dataset.subset(perm[:n_train])
            val: ColumnarDataset | None = self.dataset.subset(perm[n_train : n_train + n_val])
            test: ColumnarDataset | None = self.dataset.subset(perm[n_train + n_val :])
        else:
            train = self.dataset
            val = ColumnarDataset(x_val, y_val) if x_val is not None else None
            test = ColumnarDataset(x_test, y_test) if x_test is not None else None
        return (
            BatchLoader(train, batch_size, shuffle=True, seed=self.seed),
            BatchLoader(val, batch_size) if val is not None and len(val) else None,
            BatchLoader(test, batch_size) if test is not None and len(test) else None,
        )
