"""Splits, histories, sliding-window samples, SeenItems and the item catalog; leakage test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recforge.data import (
    ItemCatalog,
    SeenItems,
    eval_samples,
    leave_one_out_split,
    next_item_samples,
    sequence_samples,
    temporal_split,
)


def _log(seed: int = 0, n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "user_id": rng.choice([f"u{i}" for i in range(30)], n),
            "item_id": rng.choice([f"i{i}" for i in range(80)], n),
            "time": rng.permutation(n).astype(float),
        }
    )


def test_leave_one_out_split_no_leakage() -> None:
    log = _log()
    log.loc[len(log)] = ["u0", "only_in_test", 10_000.0]  # an item that appears only as u0's last event
    sp = leave_one_out_split(log)
    # last / second-last per user (with >= 3 events) go to test / valid
    for raw_u, g in log.sort_values("time").groupby("user_id"):
        if len(g) < 3:
            continue
        uid = int(sp.users.encode([raw_u])[0])
        t = sp.test[sp.test.user_id == uid]
        assert len(t) <= 1 and (len(t) == 0 or t.time.iloc[0] == g.time.iloc[-1])
    # the vocabularies cover the catalogue: the test-only item keeps its row (its user is ranked)
    only = int(sp.items.encode(["only_in_test"])[0])
    assert only >= 2 and only in set(sp.test.item_id) and only not in set(sp.train.item_id)
    assert sp.dropped == {"valid": 0, "test": 0}
    assert int(sp.train.user_id.min()) >= 2 and int(sp.train.item_id.min()) >= 2  # 0 pad, 1 OOV

    def raw(part):
        return set(zip(sp.users.decode(part.user_id), sp.items.decode(part.item_id), part.time))

    raw_train = raw(sp.train)
    for part in (sp.valid, sp.test):
        assert not raw(part) & raw_train
    # nothing after a user's validation time reaches training samples or histories
    h = sp.histories()
    samples = next_item_samples(h, 5)
    cut = sp.valid.groupby("user_id").time.min()
    train_times = sp.train.groupby("user_id").time.max()
    assert bool((train_times.reindex(cut.index) < cut).all())
    held_keys = set(zip(sp.valid.user_id, sp.valid.item_id)) | set(zip(sp.test.user_id, sp.test.item_id))
    train_keys = set(zip(sp.train.user_id, sp.train.item_id))
    for u, hist, tgt in zip(
        samples["user_id"].tolist(), samples["hist_item_id"].tolist(), samples["item_id"].tolist()
    ):
        for i in [*hist, tgt]:
            if i:
                assert (u, i) in train_keys
    assert len(held_keys) > 0
    # histories and the seen set hold train interactions only
    seen = h.seen()
    for u, i in zip(sp.train.user_id, sp.train.item_id):
        assert bool(seen.contains(torch.tensor([u]), torch.tensor([i]))[0])
    assert h.items.size == len(sp.train)


def test_temporal_split() -> None:
    log = _log(1)
    sp = temporal_split(log, valid_start=300.0, test_start=350.0)
    assert (
        sp.train.time.max() < 300 and sp.valid.time.between(300, 349.99).all() and (sp.test.time >= 350).all()
    )
    assert len(sp.train) + len(sp.valid) + len(sp.test) == len(log) and sum(sp.dropped.values()) == 0
    with pytest.raises(ValueError, match="valid_start"):
        temporal_split(log, valid_start=10.0, test_start=5.0)
    with pytest.raises(KeyError, match="ts"):
        temporal_split(log, valid_start=1.0, test_start=2.0, time="ts")


def test_sliding_windows_match_python_reference() -> None:
    sp = leave_one_out_split(_log(2))
    h = sp.histories()
    L = 4
    got = next_item_samples(h, L, min_history=2)
    want = []
    for u in range(h.num_users):
        seq = h.items[h.indptr[u] : h.indptr[u + 1]].tolist()
        for t in range(2, len(seq)):
            hist = seq[max(0, t - L) : t]
            want.append((u, [0] * (L - len(hist)) + hist, seq[t]))
    assert got["user_id"].tolist() == [w[0] for w in want]
    assert got["hist_item_id"].tolist() == [w[1] for w in want]
    assert got["item_id"].tolist() == [w[2] for w in want]
    # histories are time-ordered within each user
    tr = sp.train.sort_values(["user_id", "time"])
    assert h.items.tolist() == tr.item_id.tolist()


def test_sequence_and_eval_samples() -> None:
    sp = leave_one_out_split(_log(3))
    h = sp.histories()
    seq = sequence_samples(h, 3)
    for row, u in enumerate(seq["user_id"].tolist()):
        items = h.items[h.indptr[u] : h.indptr[u + 1]].tolist()
        x, y = items[:-1][-3:], items[1:][-3:]
        assert seq["hist_item_id"][row].tolist() == [0] * (3 - len(x)) + x
        assert seq["target_item_id"][row].tolist() == [0] * (3 - len(y)) + y
    test_h = sp.histories("train", "valid")
    ev = eval_samples(test_h, sp.test, 5)
    for row, (u, i) in enumerate(zip(sp.test.user_id, sp.test.item_id)):
        items = test_h.items[test_h.indptr[u] : test_h.indptr[u + 1]].tolist()[-5:]
        assert ev["hist_item_id"][row].tolist() == [0] * (5 - len(items)) + items
        assert ev["item_id"][row] == i
    with pytest.raises(ValueError, match="split parts"):
        sp.histories("tests")


def test_seen_items_csr() -> None:
    s = SeenItems.from_pairs(np.array([2, 0, 2, 2, 0]), np.array([5, 1, 3, 5, 4]), num_rows=4, num_items=6)
    assert s.indptr.tolist() == [0, 2, 2, 4, 4] and s.indices.tolist() == [1, 4, 3, 5]
    pos, items = s.pairs(torch.tensor([2, 1, 0]))
    assert pos.tolist() == [0, 0, 2, 2] and items.tolist() == [3, 5, 1, 4]
    assert s.contains(torch.tensor([0, 0, 2, 3]), torch.tensor([4, 5, 3, 1])).tolist() == [
        True,
        False,
        True,
        False,
    ]
    rows, items = torch.tensor([2, 0, 0, 3]), torch.tensor([5, 1, 1, 0, 4])  # repeated rows and items
    expected = [[i in {0: [1, 4], 2: [3, 5]}.get(r, []) for i in items.tolist()] for r in rows.tolist()]
    assert s.grid(rows, items).tolist() == expected
    assert s.grid(rows, items).tolist() == s.contains(rows.unsqueeze(1), items.unsqueeze(0)).tolist()
    u = s.union(SeenItems.from_lists([[2], [], [], [1]], num_items=6))
    assert u.counts().tolist() == [3, 0, 2, 1]
    with pytest.raises(ValueError, match="rows"):
        SeenItems.from_pairs(np.array([5]), np.array([1]), num_rows=4, num_items=6)


def test_item_catalog() -> None:
    cat = ItemCatalog.from_frame(
        pd.DataFrame({"item_id": [3, 1, 2], "cate_id": [7, 5, 6], "price": [3.0, 1.0, 2.0]}), num_items=5
    )
    assert cat.num_items == 5
    b = cat.batch(torch.tensor([[1, 3], [4, 0]]))
    assert b["cate_id"].tolist() == [[5, 7], [0, 0]] and b["item_id"].shape == (2, 2)
    assert b["price"].dtype == torch.float32
    batches = list(cat.all(2))
    assert [x["item_id"].tolist() for x in batches] == [[0, 1], [2, 3], [4]]
    with pytest.raises(IndexError, match="ids must lie"):
        cat.batch(torch.tensor([5]))
    with pytest.raises(ValueError, match="arange"):
        ItemCatalog({"item_id": [1, 0, 2]})
    with pytest.raises(ValueError, match="duplicate"):
        ItemCatalog.from_frame({"item_id": [1, 1]})
