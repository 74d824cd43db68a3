"""Training-sample builders of ``recforge.data.samples`` and the per-user validation holdout:
``BagSamples`` (bags of a user's other items, redrawn every epoch, optionally capped per user),
``bag_rows`` (fixed evaluation bags), ``length_bucketed`` and ``holdout_mask``."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.data import BagSamples, Histories, bag_rows, holdout_mask, length_bucketed


def _histories(lists: list[list[int]], num_items: int = 60) -> Histories:
    indptr = np.concatenate([[0], np.cumsum([len(x) for x in lists])]).astype(np.int64)
    items = np.concatenate([np.asarray(x, dtype=np.int64) for x in lists]) if lists else np.zeros(0, np.int64)
    return Histories(indptr, items, num_items)


LISTS = [[], list(range(1, 6)), list(range(10, 40)), [50, 51, 52]]


def _epoch(samples: BagSamples, epoch: int) -> dict[str, np.ndarray]:
    samples.set_epoch(epoch)
    batches = list(samples)
    return {k: np.concatenate([b[k].numpy() for b in batches]) for k in batches[0]}


def test_bag_samples_cap_draws_a_fresh_subset_of_each_users_items() -> None:
    samples = BagSamples(_histories(LISTS), max_len=4, batch_size=7, seed=0, max_per_user=4)
    assert samples.num_samples() == 4 + 4 + 3 and len(samples) == 2
    drawn = []
    for epoch in range(2):
        rows = _epoch(samples, epoch)
        users, items = rows["user_id"], rows["item_id"]
        assert np.bincount(users, minlength=4).tolist() == [0, 4, 4, 3]
        for u in (1, 2, 3):
            mine = items[users == u]
            assert len(set(mine.tolist())) == len(mine) and np.isin(mine, LISTS[u]).all()
        drawn.append(set(items[users == 2].tolist()))
    assert drawn[0] != drawn[1]  # redrawn each epoch (4 of 30: equal by chance with p < 1e-4)


def test_bag_samples_bags_hold_the_users_other_items_only() -> None:
    samples = BagSamples(_histories(LISTS), max_len=4, batch_size=5, seed=1)
    rows = _epoch(samples, 0)
    assert samples.num_samples() == len(rows["item_id"]) == 38  # one row per interaction
    for u, target, bag in zip(rows["user_id"], rows["item_id"], rows["hist_item_id"]):
        kept = bag[bag != 0]
        others = len(LISTS[u]) - 1
        assert target not in kept  # the target never leaks into its own input
        assert np.isin(kept, LISTS[u]).all() and len(kept) == min(others, 4)
        if others <= 4:  # all the others; beyond max_len a random draw (with replacement)
            assert sorted(kept.tolist()) == sorted(set(LISTS[u]) - {target})
        assert (bag[: 4 - len(kept)] == 0).all()  # left-padded


def test_bag_samples_replay_by_epoch_and_dropout_keeps_one_item() -> None:
    samples = BagSamples(_histories(LISTS), max_len=8, batch_size=16, seed=3, dropout=0.9)
    first, again, other = _epoch(samples, 0), _epoch(samples, 0), _epoch(samples, 1)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["hist_item_id"], other["hist_item_id"])
    assert ((first["hist_item_id"] != 0).sum(1) >= 1).all()  # every user here has another item
    full = _epoch(BagSamples(_histories(LISTS), max_len=8, batch_size=16, seed=3), 0)
    assert (first["hist_item_id"] != 0).sum() < (full["hist_item_id"] != 0).sum()


@pytest.mark.parametrize(
    "kwargs", [{"max_len": 0}, {"batch_size": 0}, {"dropout": 1.0}, {"max_per_user": -1}]
)
def test_bag_samples_rejects_bad_settings(kwargs: dict[str, float]) -> None:
    args = {"max_len": 4, "batch_size": 4, **kwargs}
    with pytest.raises(ValueError):
        BagSamples(_histories(LISTS), int(args.pop("max_len")), int(args.pop("batch_size")), **args)  # type: ignore[arg-type]


def test_bag_rows_fixed_subset_beyond_max_len() -> None:
    h = _histories(LISTS)
    rows = bag_rows(h, np.array([1, 2, 0]), 6, seed=0)
    assert rows["history"].shape == (3, 6) and rows["user"].tolist() == [1, 2, 0]
    assert rows["history"][0].tolist() == [0, *range(1, 6)]
    assert np.isin(rows["history"][1], LISTS[2]).all() and len(set(rows["history"][1].tolist())) == 6
    assert (rows["history"][2] == 0).all()
    again = bag_rows(h, np.array([1, 2, 0]), 6, seed=0)
    assert np.array_equal(rows["history"], again["history"])  # seeded


def test_holdout_mask_per_user_fraction() -> None:
    users = np.repeat(np.arange(4), [2, 3, 10, 20])
    mask = holdout_mask(np.random.default_rng(0).permutation(users), 0.1, seed=0)
    shuffled = np.random.default_rng(0).permutation(users)
    counts = np.bincount(shuffled[mask], minlength=4).tolist()
    assert counts == [0, 1, 1, 2]  # users under 3 rows keep all; at least one held out otherwise
    assert np.array_equal(mask, holdout_mask(shuffled, 0.1, seed=0))
    with pytest.raises(ValueError):
        holdout_mask(users, 0.0, seed=0)


def test_length_bucketed_keeps_rows_and_groups_lengths() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 9, 256)
    hist = np.zeros((256, 8), np.int64)
    for i, n in enumerate(lengths):
        hist[i, 8 - n :] = 1
    cols = {"hist": hist, "row": np.arange(256)}
    out = length_bucketed(cols, batch_size=8, seed=0, key="hist")
    assert sorted(out["row"].tolist()) == list(range(256))  # a permutation of the rows
    assert np.array_equal(out["hist"], hist[out["row"]])  # columns stay aligned
    spread = [np.ptp(lengths[out["row"][s : s + 8]]) for s in range(0, 256, 8)]
    assert np.mean(spread) < 2  # 256 rows = one chunk: each batch of 8 holds near-equal lengths
