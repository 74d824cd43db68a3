"""Optimizers for embedding tables with sparse (row-subset) gradients."""

from recforge.optim.sparse import (
    LazyAdam,
    RowKernel,
    RowWiseAdagrad,
    SparseOptimizer,
    coalesce_rows,
    sparse_optimizer,
)

__all__ = ["LazyAdam", "RowKernel", "RowWiseAdagrad", "SparseOptimizer", "coalesce_rows", "sparse_optimizer"]
