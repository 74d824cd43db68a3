"""Optimizers for embedding tables with sparse (row-subset) gradients."""

from recforge.optim.sparse import LazyAdam, RowWiseAdagrad, SparseOptimizer, sparse_optimizer

__all__ = ["LazyAdam", "RowWiseAdagrad", "SparseOptimizer", "sparse_optimizer"]
