"""Metrics: classification (AUC, logloss, GAUC) and, in ``ranking``, top-K retrieval metrics."""

from recforge.metrics.classification import auc_score, gauc_score, log_loss

__all__ = ["auc_score", "gauc_score", "log_loss"]
