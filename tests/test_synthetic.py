"""The planted click-model generator: reproducible, consistent with its own probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.datasets import planted_ctr
from recforge.metrics import auc_score


def test_same_seed_same_data_and_shapes() -> None:
    a = planted_ctr(2000, 5, 20, seed=3)
    b = planted_ctr(2000, 5, 20, seed=3)
    assert sorted(a.columns) == [f"f{k}" for k in range(5)]
    for c in a.columns:
        assert a.columns[c].dtype == np.int64 and a.columns[c].shape == (2000,)
        assert a.columns[c].min() >= 1 and a.columns[c].max() <= 20
        np.testing.assert_array_equal(a.columns[c], b.columns[c])
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.vocab_size == 21
    assert len(a.pairs) == 10


def test_labels_follow_the_true_probability() -> None:
    d = planted_ctr(40_000, 6, 30, seed=0)
    assert abs(d.labels.mean() - d.prob.mean()) < 0.01  # labels are Bernoulli(prob)
    assert auc_score(d.labels, d.prob) > 0.7  # the planted signal is strong
    shuffled = np.random.default_rng(0).permutation(d.prob)
    assert abs(auc_score(d.labels, shuffled) - 0.5) < 0.02


def test_interaction_choices() -> None:
    assert len(planted_ctr(10, 6, 5, interactions=4, seed=1).pairs) == 4
    assert planted_ctr(10, 6, 5, interactions=[(0, 5)], seed=1).pairs == [(0, 5)]
    with pytest.raises(ValueError, match="different fields"):
        planted_ctr(10, 6, 5, interactions=[(2, 2)])
    with pytest.raises(ValueError, match="interactions must lie"):
        planted_ctr(10, 4, 5, interactions=99)
