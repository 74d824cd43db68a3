"""Metrics: classification (AUC, logloss, GAUC) and full-ranking top-K retrieval metrics."""

from recforge.metrics.classification import auc_score, gauc_score, log_loss
from recforge.metrics.ranking import (
    ListRankingEvaluator,
    RankingAccumulator,
    RankingEvaluator,
    TargetRanks,
    evaluate_retrieval,
    full_ranking_metrics,
    list_ranks,
    rank_targets,
    sampled_ranks,
)

__all__ = [
    "ListRankingEvaluator",
    "RankingAccumulator",
    "RankingEvaluator",
    "TargetRanks",
    "auc_score",
    "evaluate_retrieval",
    "full_ranking_metrics",
    "gauc_score",
    "list_ranks",
    "log_loss",
    "rank_targets",
    "sampled_ranks",
]
