"""Optimizers for embedding tables with sparse (row-subset) gradients."""

from recforge.optim.sparse import LazyAdam, RowWiseAdagrad, SparseOptimizer, coalesce_rows, sparse_optimizer

__all__ = ["LazyAdam", "RowWiseAdagrad", "SparseOptimizer", "coalesce_rows", "sparse_optimizer"]
