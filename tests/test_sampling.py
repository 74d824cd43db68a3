"""Negative sampling: never the positive, never a seen item, the right distribution, log-probs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recforge.data import NegativeSampler, SamplingDistribution, SeenItems, frequency_log_q


def _seen(num_users: int, num_items: int, seed: int = 0) -> SeenItems:
    rng = np.random.default_rng(seed)
    lists = [
        sorted(set(rng.integers(1, num_items, rng.integers(0, num_items - 3)).tolist()))
        for _ in range(num_users)
    ]
    return SeenItems.from_lists(lists, num_items=num_items)


@pytest.mark.parametrize("distribution", ["uniform", "popularity"])
def test_never_positive_nor_seen(distribution: str) -> None:
    torch.manual_seed(0)
    v, n_users = 30, 40
    seen = _seen(n_users, v)
    counts = np.r_[0, np.arange(1, v) ** 2]
    sampler = NegativeSampler(v, distribution=distribution, counts=counts, seen=seen, max_rounds=2)
    users = torch.randint(0, n_users, (500,))
    pos = torch.randint(1, v, (500,))  # positives may or may not be seen
    neg = sampler.sample(pos, 16, users=users)
    assert neg.ids.shape == (500, 16) and neg.log_prob.shape == (500, 16)
    assert bool((neg.ids != pos.unsqueeze(1)).all())
    assert bool((neg.ids >= 1).all()) and bool((neg.ids < v).all())
    assert not bool(seen.contains(users.unsqueeze(1).expand(-1, 16), neg.ids).any())
    assert torch.equal(neg.log_prob, sampler.log_prob(neg.ids))


def test_uniform_exclusion_is_exactly_uniform_over_allowed() -> None:
    torch.manual_seed(1)
    v = 12
    seen = SeenItems.from_lists([[2, 5, 6, 11]], num_items=v)
    sampler = NegativeSampler.uniform(v, seen=seen)
    neg = sampler.sample(torch.tensor([3]), 60_000, users=torch.tensor([0])).ids.reshape(-1)
    allowed = sorted(set(range(1, v)) - {2, 5, 6, 11, 3})
    freq = torch.bincount(neg, minlength=v).double() / neg.numel()
    assert set(torch.unique(neg).tolist()) == set(allowed)
    assert torch.allclose(
        freq[allowed], torch.full((len(allowed),), 1 / len(allowed), dtype=torch.float64), atol=0.01
    )


def test_popularity_follows_counts_to_the_alpha() -> None:
    torch.manual_seed(2)
    counts = np.array([0, 1, 10, 100, 1000], dtype=float)
    sampler = NegativeSampler.popularity(counts, alpha=0.75)
    ids = sampler.sample_shared(200_000).ids
    freq = torch.bincount(ids, minlength=5).double() / ids.numel()
    want = counts**0.75 / (counts**0.75).sum()
    assert np.allclose(freq.numpy(), want, atol=0.005)
    assert np.allclose(sampler.log_q[1:].exp().numpy(), want[1:], rtol=1e-5)
    assert sampler.log_q[0] == -math.inf


def test_uniform_without_seen_and_shared() -> None:
    torch.manual_seed(3)
    s = NegativeSampler(5)
    pos = torch.tensor([1, 4, 2, 3] * 100)
    ids = s.sample(pos, 50).ids
    assert bool((ids != pos.unsqueeze(1)).all()) and set(torch.unique(ids).tolist()) == {1, 2, 3, 4}
    assert s.log_prob(torch.tensor([1])).item() == pytest.approx(-math.log(4))
    shared = s.sample_shared(10)
    assert shared.ids.shape == (10,) and bool((shared.ids >= 1).all())


def test_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="counts"):
        NegativeSampler(5, distribution="popularity")
    with pytest.raises(ValueError, match="uniform"):
        SamplingDistribution.parse("zipf")
    full = SeenItems.from_lists([[1, 2, 3, 4]], num_items=5)
    s = NegativeSampler.uniform(5, seen=full)
    with pytest.raises(ValueError, match="users"):
        s.sample(torch.tensor([1]), 2)
    with pytest.raises(ValueError, match="seen every item"):
        s.sample(torch.tensor([1]), 2, users=torch.tensor([0]))
    with pytest.raises(ValueError, match="num_negatives"):
        NegativeSampler(5).sample(torch.tensor([1]), 0)


def test_frequency_log_q() -> None:
    lq = frequency_log_q(np.array([5, 1, 3, 0]))
    assert lq[0] == -math.inf
    assert torch.allclose(lq[1:].exp(), torch.tensor([1 / 5, 3 / 5, 1 / 5]))
