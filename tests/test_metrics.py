import numpy as np
import pytest
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from recforge.metrics import auc_score, gauc_score, log_loss


@pytest.mark.parametrize("seed", range(5))
def test_auc_and_logloss_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 2000)
    p = np.round(rng.random(2000), 2)  # many ties
    assert auc_score(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert log_loss(y, p) == pytest.approx(sk_log_loss(y, np.clip(p, 1e-7, 1 - 1e-7)), abs=1e-12)


@pytest.mark.parametrize("weighted", [True, False])
def test_gauc_matches_per_group_sklearn(weighted):
    rng = np.random.default_rng(3)
    n = 3000
    y = rng.integers(0, 2, n)
    s = np.round(rng.random(n), 2)
    g = rng.integers(0, 200, n)
    aucs, sizes = [], []
    for k in np.unique(g):
        m = g == k
        if len(np.unique(y[m])) == 2:
            aucs.append(roc_auc_score(y[m], s[m]))
            sizes.append(m.sum())
    expected = np.average(aucs, weights=sizes if weighted else None)
    assert gauc_score(y, s, g, weighted=weighted) == pytest.approx(expected, abs=1e-12)


def test_single_class_groups_are_skipped_not_nan():
    y = np.array([1, 1, 0, 1, 0])
    s = np.array([0.9, 0.8, 0.1, 0.7, 0.2])
    g = np.array([0, 0, 1, 1, 1])  # group 0 has only positives
    assert gauc_score(y, s, g) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="only one class"):
        auc_score([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="no group has both"):
        gauc_score([1, 0], [0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match="NaN"):
        auc_score([1, 0], [np.nan, 0.3])
