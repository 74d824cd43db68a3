"""The DIN-protocol behaviour CTR builder: exact histories, leave-one-out splits, no leakage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recforge.data.behavior import OOV, PAD, build_behavior_ctr


def _log(seed: int = 0, n_users: int = 12, n_items: int = 30) -> tuple[pd.DataFrame, dict[str, str]]:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        n = int(rng.integers(1, 9))
        items = rng.choice(n_items, size=n, replace=False)
        times = rng.permutation(100)[:n]  # unsorted, distinct within a user
        rows += [(f"u{u}", f"i{i}", int(t)) for i, t in zip(items, times)]
    log = pd.DataFrame(rows, columns=["user", "item", "ts"]).sample(frac=1.0, random_state=seed)
    cate = {f"i{i}": f"c{i % 4}" for i in range(n_items)}
    return log.reset_index(drop=True), cate


def _reference(log: pd.DataFrame, max_len: int) -> dict[str, list[tuple[str, str, tuple[str, ...]]]]:
    """Plain-Python protocol: (user, positive item, history) per split."""
    out: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {"train": [], "valid": [], "test": []}
    for user, g in log.groupby("user", sort=True):
        seq = list(g.sort_values("ts", kind="stable")["item"])
        n = len(seq)
        for p in range(1, n):
            split = "test" if p == n - 1 else "valid" if p == n - 2 else "train"
            out[split].append((str(user), seq[p], tuple(seq[max(0, p - max_len) : p])))
    return out


def _decode(data, split: str, key: str) -> list[tuple[str, str, tuple[str, ...]]]:
    cols = getattr(data, split)
    inv_item = {v: k for k, v in data.vocabs["item"].items()}
    inv_user = {v: k for k, v in data.vocabs["user"].items()}
    pos = cols["label"] == 1
    rows = []
    for u, i, h in zip(cols["user"][pos], cols["item"][pos], cols[key][pos]):
        hist = tuple(inv_item.get(int(x), "<oov>") for x in h if x != PAD)
        rows.append((inv_user.get(int(u), "<oov>"), inv_item.get(int(i), "<oov>"), hist))
    return rows


@pytest.mark.parametrize("max_len", [3, 10])
def test_positives_match_a_plain_reference(max_len: int) -> None:
    log, cate = _log()
    data = build_behavior_ctr(
        log, user_col="user", item_col="item", time_col="ts", item_features={"cate": cate}, max_len=max_len
    )
    ref = _reference(log, max_len)
    train_items = set(_reference_training_items(log))
    for split in ("train", "valid", "test"):
        got = sorted(_decode(data, split, "hist_item"))
        want = sorted(
            (u, i if i in train_items else "<oov>", tuple(h if h in train_items else "<oov>" for h in hist))
            for u, i, hist in ref[split]
        )
        assert got == want, split
        cols = getattr(data, split)
        assert cols["hist_item"].shape[1] == max_len
        # Left padding: once a real item appears, no padding follows.
        real = cols["hist_item"] != PAD
        assert not np.any(real[:, :-1] & ~real[:, 1:])
        # Categories follow their items; negative histories share the history's padding.
        assert np.array_equal(real, cols["hist_cate"] != PAD)
        assert np.array_equal(real, cols["neg_hist_item"] != PAD)


def _reference_training_items(log: pd.DataFrame) -> list[str]:
    keep = []
    for _, g in log.groupby("user"):
        seq = list(g.sort_values("ts", kind="stable")["item"])
        n = len(seq)
        cut = n - 2 if n >= 3 else n - 1 if n == 2 else n
        keep += seq[:cut]
    return keep


def test_no_test_or_validation_interaction_reaches_training() -> None:
    """Each user's test (last) and validation (second-to-last) items are items that user never
    interacted with before; they appear in other users' training data (so they are in the
    vocabulary), yet never in that user's training histories or samples."""
    rows = []
    n_users = 10
    for u in range(n_users):
        own = [f"a{u}_{k}" for k in range(4)]
        held = [f"v{u}", f"t{u}"]  # validation, test
        borrowed = [f"v{(u + 1) % n_users}", f"t{(u + 1) % n_users}"]  # others' held-out items
        seq = own[:2] + borrowed + own[2:] + held
        rows += [(u, item, t) for t, item in enumerate(seq)]
    log = pd.DataFrame(rows, columns=["user", "item", "ts"])
    data = build_behavior_ctr(log, user_col="user", item_col="item", time_col="ts", n_neg=2, seed=1)
    vocab = data.vocabs["item"]
    assert all(f"t{u}" in vocab and f"v{u}" in vocab for u in range(n_users))
    train = data.train
    for u in range(n_users):
        rows_u = train["user"] == data.vocabs["user"][u]
        assert rows_u.any()
        held_ids = [vocab[f"v{u}"], vocab[f"t{u}"]]
        assert not np.isin(train["hist_item"][rows_u], held_ids).any()
        assert not np.isin(train["item"][rows_u & (train["label"] == 1)], held_ids).any()
    # Test histories end with the validation item, validation histories do not contain it.
    for u in range(n_users):
        t_row = np.flatnonzero((data.test["user"] == data.vocabs["user"][u]) & (data.test["label"] == 1))
        assert data.test["hist_item"][t_row[0], -1] == vocab[f"v{u}"]
        v_rows = data.valid["user"] == data.vocabs["user"][u]
        assert not np.isin(data.valid["hist_item"][v_rows], [vocab[f"v{u}"], vocab[f"t{u}"]]).any()


def test_vocabularies_are_fitted_on_training_interactions_only() -> None:
    # Training interactions: u0's a, b and u1's b; "c" is both users' validation item, "d" and
    # "only_test" their test items, so none of those (nor categories "y", "c_new") is known.
    log = pd.DataFrame(
        {
            "user": ["u0"] * 4 + ["u1"] * 3,
            "item": ["a", "b", "c", "only_test", "b", "c", "d"],
            "ts": [1, 2, 3, 4, 1, 2, 3],
        }
    )
    cate = {"a": "x", "b": "x", "c": "y", "d": "y", "only_test": "c_new"}
    data = build_behavior_ctr(
        log, user_col="user", item_col="item", time_col="ts", item_features={"cate": cate}
    )
    assert set(data.vocabs["item"]) == {"a", "b"}
    assert set(data.vocabs["cate"]) == {"x"}
    assert min(data.vocabs["item"].values()) == 2  # 0 padding, 1 OOV
    test_pos = data.test["label"] == 1
    u0 = data.test["user"] == data.vocabs["user"]["u0"]
    assert data.test["item"][test_pos & u0].tolist() == [OOV]
    assert data.test["cate"][test_pos & u0].tolist() == [OOV]
    assert data.vocab_size("item") == 4
    assert data.valid["item"][data.valid["label"] == 1].tolist() == [OOV, OOV]  # both users: "c"
    # Negatives come from the training catalogue, never padding or OOV.
    for split in (data.train, data.valid, data.test):
        assert (split["item"][split["label"] == 0] >= 2).all()


def test_negatives_avoid_positive_and_history() -> None:
    log, cate = _log(seed=3, n_users=40, n_items=60)
    data = build_behavior_ctr(
        log, user_col="user", item_col="item", time_col="ts", item_features={"cate": cate}, n_neg=3, seed=7
    )
    for cols in (data.train, data.valid, data.test):
        k = 4
        item = cols["item"].reshape(-1, k)
        assert (cols["label"].reshape(-1, k) == np.array([1, 0, 0, 0])).all()
        hist = cols["hist_item"].reshape(-1, k, cols["hist_item"].shape[1])[:, 0]
        negs = item[:, 1:]
        assert not (negs == item[:, :1]).any()
        assert not (negs[:, :, None] == hist[:, None, :]).any()
        real = cols["hist_item"] != PAD
        assert not ((cols["neg_hist_item"] == cols["hist_item"]) & real).any()
    specs = data.feature_specs(8)
    assert [f.name for f in specs.history_features] == ["hist_item", "hist_cate"]
    assert [f.name for f in specs.neg_history_features] == ["neg_hist_item", "neg_hist_cate"]


def test_bad_input_is_refused() -> None:
    log, _ = _log()
    with pytest.raises(KeyError, match="'when'"):
        build_behavior_ctr(log, user_col="user", item_col="item", time_col="when")
    with pytest.raises(ValueError, match="no value for any logged item"):
        build_behavior_ctr(
            log, user_col="user", item_col="item", time_col="ts", item_features={"cate": {1: 2}}
        )
    with pytest.raises(TypeError, match="item_features"):
        build_behavior_ctr(log, user_col="user", item_col="item", time_col="ts", item_features=[1, 2])  # type: ignore[arg-type]
