"""Metrics: classification (AUC, logloss, GAUC) and full-ranking top-K retrieval metrics, and the
same top-K metrics of precomputed recommendation lists (``topk_metrics``)."""

from recforge.metrics.classification import (
    UndefinedMetricError,
    UndefinedMetricWarning,
    auc_score,
    gauc_score,
    log_loss,
    nan_if_undefined,
)
from recforge.metrics.lists import list_metrics, topk_metrics
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
    "UndefinedMetricError",
    "UndefinedMetricWarning",
    "auc_score",
    "evaluate_retrieval",
    "full_ranking_metrics",
    "gauc_score",
    "list_metrics",
    "list_ranks",
    "log_loss",
    "nan_if_undefined",
    "rank_targets",
    "sampled_ranks",
    "topk_metrics",
]
