"""Torch-RecHub's ``basic``/``utils`` helpers on generated data: the call shapes and result layouts
its scripts depend on, computed by recforge's own samplers, loaders, metrics and indexes."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from recforge.basic.metric import gauc_score, ndcg_score, topk_metrics
from recforge.data import BatchLoader
from recforge.metrics import full_ranking_metrics
from recforge.utils.data import (
    DataGenerator,
    MatchDataGenerator,
    SequenceDataGenerator,
    TorchDataset,
    array_replace_with_dict,
    create_seq_features,
    df_to_dict,
    generate_seq_feature,
    get_auto_embedding_dim,
)
from recforge.utils.match import (
    Annoy,
    Faiss,
    Milvus,
    gather_inbatch_logits,
    gen_model_input,
    generate_seq_feature_match,
    inbatch_negative_sampling,
    negative_sample,
)


def interactions(n_users=6, n_items=15, per_user=7, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        items = rng.choice(n_items, size=per_user, replace=False)
        for t, i in enumerate(items):
            rows.append(
                {"user_id": 100 + u, "item_id": 1000 + int(i), "time": 50 * u + t, "cate_id": int(i) % 3 + 7}
            )
    return pd.DataFrame(rows)


# -- topk_metrics --------------------------------------------------------------------------------
def test_topk_metrics_layout_and_values():
    y_pred = {"0": [0, 1], "1": [0, 1], "2": [2, 3]}
    y_true = {"0": [1, 2], "1": [0, 1, 2], "2": [2, 3]}
    out = topk_metrics(y_true, y_pred, topKs=(1, 2))
    # hand-computed (Torch-RecHub's own self-check values for NDCG, MRR, recall, precision)
    assert out["NDCG"] == ["NDCG@1: 0.6667", "NDCG@2: 0.7956"]
    assert out["MRR"][1] == "MRR@2: 0.8333"
    assert out["Recall"][1] == "Recall@2: 0.7222"
    assert out["Precision"][1] == "Precision@2: 0.8333"
    assert out["Hit"] == ["Hit@1: 0.6667", "Hit@2: 1.0"]  # hit rate (documented difference)
    assert ndcg_score(y_true, y_pred, topKs=[2]) == ["NDCG@2: 0.7956"]
    k, v = out["Recall"][0].split(":")  # run_sbr.py parses each entry this way
    assert k.strip() == "Recall@1" and float(v) == pytest.approx(0.2778)


def test_topk_metrics_agree_with_full_ranking_metrics():
    g = torch.Generator().manual_seed(1)
    user, items = torch.randn(5, 4, generator=g), torch.randn(12, 4, generator=g)
    scores = user @ items.T
    scores[:, 0] = -math.inf  # padding id
    targets = (torch.arange(5), torch.randint(1, 12, (5,), generator=g))
    ranked = scores.argsort(1, descending=True)[:, :5]
    y_pred = {u: ranked[u].tolist() for u in range(5)}
    y_true = {u: [int(targets[1][u])] for u in range(5)}
    ours = topk_metrics(y_true, y_pred, [5])
    ref = full_ranking_metrics(user, items, targets, ks=[5])
    assert float(ours["NDCG"][0].split(": ")[1]) == pytest.approx(ref["ndcg@5"], abs=1e-4)
    assert float(ours["Recall"][0].split(": ")[1]) == pytest.approx(ref["recall@5"], abs=1e-4)


def test_topk_metrics_refuses_a_scalar_cutoff():
    with pytest.raises(ValueError, match="topKs"):
        topk_metrics({"a": [1]}, {"a": [1]}, topKs=5)


def test_gauc_weights_are_refused_with_guidance():
    with pytest.raises(ValueError, match="weights=None"):
        gauc_score([0, 1], [0.1, 0.9], [1, 1], weights={1: 2.0})


# -- ranking samples -----------------------------------------------------------------------------
def test_generate_seq_feature_encodes_in_place_and_splits_leave_one_out():
    data = interactions()
    train, val, test = generate_seq_feature(
        data, "user_id", "item_id", "time", item_attribute_cols=["cate_id"], max_len=5
    )
    assert data["item_id"].min() == 1 and data["item_id"].max() == data["item_id"].nunique()  # in place
    assert list(train.columns) == [
        "label",
        "target_item_id",
        "user_id",
        "hist_item_id",
        "hist_cate_id",
        "target_cate_id",
    ]
    n_users = data["user_id"].nunique()
    assert len(test) == len(val) == 2 * n_users  # one positive and one negative per user
    assert len(train) == 2 * n_users * 4  # per_user 7: 6 targets, minus valid and test
    x = df_to_dict(train)
    assert x["hist_item_id"].shape == (len(train), 5)
    pos = train[train.label == 1]
    neg = train[train.label == 0]
    assert len(pos) == len(neg)
    seen = data.groupby("user_id")["item_id"].apply(set)
    assert all(
        t not in seen[u] for u, t in zip(neg.user_id, neg.target_item_id)
    )  # never an item the user had
    item2cate = dict(zip(data.item_id, data.cate_id))
    assert all(item2cate[i] == c for i, c in zip(train.target_item_id, train.target_cate_id))


def test_create_seq_features_layout():
    data = interactions().rename(columns={})
    train, _val, test = create_seq_features(data, max_len=4, drop_short=3)
    assert list(train.columns) == [
        "user_id",
        "history_item",
        "history_cate",
        "target_item",
        "target_cate",
        "label",
    ]
    assert len(test) == 2 * data["user_id"].nunique()


# -- matching samples ------------------------------------------------------------------------------
@pytest.mark.parametrize("mode,last", [(0, "label"), (1, "neg_items"), (2, "neg_items")])
def test_generate_seq_feature_match_modes(mode, last):
    data = interactions()
    before = data.copy()
    train, test = generate_seq_feature_match(
        data, "user_id", "item_id", time_col="time", sample_method=1, mode=mode, neg_ratio=3
    )
    pd.testing.assert_frame_equal(data, before)  # not modified
    assert list(train.columns) == ["user_id", "item_id", "hist_item_id", "histlen_item_id", last]
    n_users, n_targets = 6, 6 * 5  # 7 items per user: 6 targets, the last is the test row
    assert len(test) == n_users
    expected = {0: n_targets * 4, 1: n_targets, 2: n_targets}[mode]
    assert len(train) == expected
    assert all(len(h) == n for h, n in zip(train.hist_item_id, train.histlen_item_id))
    if mode == 2:
        assert all(len(n) == 3 for n in train.neg_items)
    if mode == 0:
        assert sorted(train.label.unique()) == [0, 1]
    users = data[["user_id"]].drop_duplicates().assign(age=1)
    items = data[["item_id", "cate_id"]].drop_duplicates("item_id")
    x = gen_model_input(
        train, users, "user_id", items, "item_id", seq_max_len=4, padding="post", truncating="post"
    )
    assert x["hist_item_id"].shape == (len(train), 4) and "cate_id" in x and "age" in x


def test_negative_sample_methods_draw_known_items():
    counts = {"a": 50, "b": 5, "c": 1}
    torch.manual_seed(0)
    for method in (0, 1, 2, 3):
        draw = negative_sample(counts, 300, method)
        assert set(draw) <= set(counts) and len(draw) == 300
    popular = negative_sample(counts, 2000, 1)
    assert (popular == "a").mean() > (popular == "c").mean()
    with pytest.raises(ValueError, match="method_id"):
        negative_sample(counts, 3, 7)


# -- loaders ---------------------------------------------------------------------------------------
def test_match_data_generator_keeps_test_and_item_order():
    x = {"user_id": np.arange(10), "movie_id": np.arange(10) + 1}
    test_user = {"user_id": np.arange(5)[::-1].copy()}
    items = {"movie_id": np.arange(1, 8)}
    train, test, item = MatchDataGenerator(x=x, y=np.zeros(10)).generate_dataloader(
        test_user, items, batch_size=4
    )
    assert isinstance(train, BatchLoader) and "label" in next(iter(train))
    assert torch.cat([b["user_id"] for b in test]).tolist() == [4, 3, 2, 1, 0]
    assert torch.cat([b["movie_id"] for b in item]).tolist() == list(range(1, 8))
    unlabelled = MatchDataGenerator(x=x).generate_dataloader(test_user, items, batch_size=4)[0]
    assert "label" not in next(iter(unlabelled))


def test_sequence_data_generator():
    n, length = 10, 6
    gen = SequenceDataGenerator(
        np.ones((n, length), dtype=np.int64),
        np.tile(np.arange(length), (n, 1)),
        np.arange(n),
        np.zeros((n, length)),
    )
    (loader,) = gen.generate_dataloader(batch_size=4)
    seq_tokens, _seq_positions, _seq_time_diffs, targets = next(iter(loader))  # as the HSTU scripts unpack
    assert seq_tokens.shape == (4, length) and targets.dtype == torch.long and len(loader.dataset) == n
    assert set(gen.dataset.columns) == {"seq_tokens", "seq_positions", "seq_time_diffs", "label"}
    parts = gen.generate_dataloader(batch_size=4, split_ratio=(0.6, 0.2, 0.2))
    assert [len(p.dataset) for p in parts] == [6, 2, 2]


def test_torch_dataset_with_a_collate_fn_for_ragged_lists():
    x = {"hist": [[1, 2], [3], [4, 5, 6]]}
    dl = torch.utils.data.DataLoader(
        TorchDataset(x, [7, 8, 9]),
        batch_size=3,
        collate_fn=lambda b: ({"hist": [r[0]["hist"] for r in b]}, torch.tensor([r[1] for r in b])),
    )
    xb, yb = next(iter(dl))
    assert xb["hist"][2] == [4, 5, 6] and yb.tolist() == [7, 8, 9]


def test_data_generator_is_recforges():
    train, val, _test = DataGenerator({"a": np.arange(10)}, np.zeros(10)).generate_dataloader(
        split_ratio=[0.7, 0.1], batch_size=4
    )
    assert len(train.dataset) == 7 and len(val.dataset) == 1


def test_small_helpers():
    assert array_replace_with_dict(np.array([[3, 1], [1, 2]]), {1: 10, 2: 20, 3: 30}).tolist() == [
        [30, 10],
        [10, 20],
    ]
    with pytest.raises(KeyError, match="no replacement"):
        array_replace_with_dict(np.array([4]), {1: 10})
    assert get_auto_embedding_dim(np.int64(10_000)) == 60


# -- vector search ---------------------------------------------------------------------------------
def test_annoy_angular_distances_nearest_first():
    g = np.random.default_rng(0)
    items = g.normal(size=(30, 6)).astype("float32")
    query = g.normal(size=6).astype("float32")
    annoy = Annoy(n_trees=10)
    annoy.fit(items)
    idx, dist = annoy.query(v=query, n=5)
    cos = items @ query / (np.linalg.norm(items, axis=1) * np.linalg.norm(query))
    assert idx == np.argsort(-cos)[:5].tolist()
    assert np.allclose(dist, np.sqrt(2 - 2 * cos[idx]), atol=1e-5)
    assert dist == sorted(dist)
    annoy.fit(torch.from_numpy(items))  # tensors as well (user embeddings are tensors)
    assert annoy.query(v=torch.from_numpy(query), n=5)[0] == idx


def test_faiss_wrapper_layout():
    pytest.importorskip("faiss")
    g = np.random.default_rng(0)
    items = g.normal(size=(40, 8)).astype("float32")
    index = Faiss(dim=8, index_type="flat", metric="l2")
    index.fit(items)
    idx, dist = index.query(items[:2], n=3)
    assert [row[0] for row in idx] == [0, 1] and np.allclose([row[0] for row in dist], 0.0, atol=1e-5)


def test_milvus_says_what_to_use_instead():
    with pytest.raises(NotImplementedError, match="Faiss"):
        Milvus(dim=8)


def test_in_batch_negatives():
    scores = torch.randn(5, 5, generator=torch.Generator().manual_seed(0))
    neg = inbatch_negative_sampling(scores, neg_ratio=2, generator=torch.Generator().manual_seed(1))
    assert neg.shape == (5, 2) and not (neg == torch.arange(5).unsqueeze(1)).any()
    hard = inbatch_negative_sampling(scores, neg_ratio=1, hard_negative=True)
    masked = scores.masked_fill(torch.eye(5, dtype=torch.bool), -math.inf)
    assert hard[:, 0].tolist() == masked.argmax(1).tolist()
    logits = gather_inbatch_logits(scores, neg)
    assert logits.shape == (5, 3) and torch.equal(logits[:, 0], scores.diagonal())
    assert inbatch_negative_sampling(scores).shape == (5, 4)
