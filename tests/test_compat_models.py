"""Torch-RecHub 0.9.0's model constructor call shapes, as its example scripts write them, on
generated data: each model builds from the Torch-RecHub call and runs forward; recforge's own
call shapes keep working; where recforge differs the error names the argument."""

import numpy as np
import pytest
import torch

from recforge.basic.features import DenseFeature, SequenceFeature, SparseFeature
from recforge.models.matching import (
    MIND,
    NARM,
    SINE,
    STAMP,
    ComirecDR,
    ComirecSA,
    FaceBookDSSM,
    GRU4Rec,
    YoutubeDNN,
    YoutubeSBC,
)
from recforge.models.multi_task import ESMM
from recforge.models.ranking import DCN, DIEN, DIN, DeepFFM, DeepFM, FatDeepFFM, WideDeep

B, L, V = 8, 6, 20
G = torch.Generator().manual_seed(0)


def ids(high, *shape):
    return torch.randint(1, high, shape, generator=G)


# -- matching: the MovieLens scripts' feature lists (vocabularies as np.int64, like max() + 1) ----
MAX = {"user_id": np.int64(6), "movie_id": np.int64(V), "gender": np.int64(3), "cate_id": np.int64(5)}
USER = [SparseFeature(n, vocab_size=MAX[n], embed_dim=8) for n in ("user_id", "gender")]
HIST_MEAN = SequenceFeature(
    "hist_movie_id", vocab_size=MAX["movie_id"], embed_dim=8, pooling="mean", shared_with="movie_id"
)
HIST = SequenceFeature(
    "hist_movie_id", vocab_size=MAX["movie_id"], embed_dim=8, pooling="concat", shared_with="movie_id"
)
ITEM = SparseFeature("movie_id", vocab_size=MAX["movie_id"], embed_dim=8)
CATE = SparseFeature("cate_id", vocab_size=MAX["cate_id"], embed_dim=8)
NEG = SequenceFeature(
    "neg_items", vocab_size=MAX["movie_id"], embed_dim=8, pooling="concat", shared_with="movie_id"
)


def match_batch():
    hist = ids(V, B, L)
    hist[:, :2] = 0  # left padding
    return {
        "user_id": ids(6, B),
        "gender": ids(3, B),
        "movie_id": ids(V, B),
        "cate_id": ids(5, B),
        "hist_movie_id": hist,
        "neg_items": ids(V, B, 3),
        "neg_cate": ids(5, B, 3),
        "sample_weight": torch.rand(B, generator=G),
    }


def towers(model, batch):
    out = model(batch)
    negatives = model.negative_batch(batch)
    if negatives is not None:
        assert model.item_tower(negatives).shape == (B, 3, out.item.shape[-1])
    return out


def test_youtube_dnn_takes_neg_item_feature_third():
    model = YoutubeDNN([*USER, HIST_MEAN], [ITEM], [NEG], user_params={"dims": [32, 8]}, temperature=0.02)
    out = towers(model, match_batch())
    assert out.user.shape == (B, 8) and model.neg_item_features == (NEG,)
    assert torch.allclose(out.user.norm(dim=-1), torch.ones(B))  # L2-normalised, as Torch-RecHub


def test_youtube_dnn_keeps_recforge_positional_user_params():
    model = YoutubeDNN([*USER, HIST_MEAN], [ITEM], {"dims": [8]})
    assert model.neg_item_features == () and model.negative_batch(match_batch()) is None
    assert towers(model, match_batch()).user.shape == (B, 8)


def test_facebook_dssm_negative_columns_map_to_item_features_by_position():
    negs = [
        SparseFeature("neg_items", vocab_size=MAX["movie_id"], embed_dim=8),
        SparseFeature("neg_cate", vocab_size=MAX["cate_id"], embed_dim=8),
    ]
    model = FaceBookDSSM(
        [*USER, HIST_MEAN],
        [ITEM, CATE],
        negs,
        temperature=0.02,
        user_params={"dims": [16, 8]},
        item_params={"dims": [16, 8]},
    )
    batch = match_batch()
    assert set(model.negative_batch(batch)) == {"movie_id", "cate_id"}
    towers(model, batch)


def test_neg_item_feature_must_cover_the_item_features():
    with pytest.raises(ValueError, match="neg_item_feature"):
        FaceBookDSSM(
            [*USER, HIST_MEAN],
            [ITEM, CATE],
            [SparseFeature("neg_items", vocab_size=V, embed_dim=8)],
            {"dims": [8]},
            {"dims": [8]},
        )


def test_youtube_sbc_accepts_sample_weight_batch_size_and_n_neg():
    model = YoutubeSBC(
        [*USER, HIST_MEAN], [ITEM, CATE], [DenseFeature("sample_weight")],
        user_params={"dims": [16, 8]}, item_params={"dims": [16, 8]}, batch_size=512, n_neg=3, temperature=0.02,
    )  # fmt: skip
    assert model.n_neg == 3 and towers(model, match_batch()).item.shape == (B, 8)


@pytest.mark.parametrize("cls", [MIND, ComirecDR])
def test_capsule_models_take_neg_item_feature_and_max_length(cls):
    model = cls(USER, [HIST], [ITEM], [NEG], max_length=50, temperature=0.02)
    out = towers(model, match_batch())
    assert out.user.shape == (B, 4, 8) and model.normalize  # Torch-RecHub's form: cosine scores


def test_capsule_models_positional_order_of_torch_rechub():
    model = MIND(USER, [HIST], [ITEM], [NEG], 50, 0.5, 2)
    assert model.interest_num == 2 and model.temperature == 0.5


def test_capsule_models_without_max_length_name_it():
    with pytest.raises(TypeError, match="max_length"):
        MIND(USER, [HIST], [ITEM], [NEG])


def test_comirec_sa_without_max_length_adds_no_positions():
    model = ComirecSA(USER, [HIST], [ITEM], [NEG], temperature=0.02)
    assert model.positions is None and towers(model, match_batch()).user.shape == (B, 4, 8)
    assert ComirecSA(USER, [HIST], [ITEM], max_length=L).positions is not None


@pytest.mark.parametrize("keywords", [False, True])
def test_gru4rec_torch_rechub_form(keywords):
    if keywords:
        model = GRU4Rec(
            user_features=USER,
            history_features=[HIST],
            item_features=[ITEM],
            neg_item_feature=[NEG],
            user_params={"dims": [16, 8], "num_layers": 2},
            temperature=0.02,
        )
        assert model.gru.gru.num_layers == 2
    else:
        model = GRU4Rec(USER, [HIST], [ITEM], [NEG], {"dims": [16, 8]}, temperature=0.02)
    out = towers(model, match_batch())
    assert out.user.shape == (B, 8) and model.normalize
    assert model.sequence_tower(match_batch()).shape == (B, L, 8)


def test_gru4rec_recforge_form_unchanged():
    model = GRU4Rec([HIST], [ITEM], dropout=0.1)
    assert not model.normalize and model.fuse is None
    assert model.user_tower(match_batch()).shape == (B, 8)


def test_sine_from_column_names():
    model = SINE(
        ["hist_movie_id"], ["movie_id"], ["neg_items"], np.int64(V), 8, 16, 10, 2, L, temperature=0.1
    )
    assert model.neg_item_features[0].name == "neg_items"
    assert towers(model, match_batch()).user.shape == (B, 8)


def test_sine_refuses_several_heads():
    with pytest.raises(ValueError, match="num_heads"):
        SINE(["hist_movie_id"], ["movie_id"], ["neg_items"], V, 8, 16, 10, 2, L, 2)


@pytest.mark.parametrize("cls,args", [(NARM, (16, 0.25, 0.5)), (STAMP, (0.05, 0.002))])
def test_session_models_from_one_history_feature(cls, args):
    hist = SequenceFeature("hist_item_id", vocab_size=np.int64(V), embed_dim=8, pooling="concat")
    model = cls(hist, *args)
    assert model.item_id == "item_id" and model.history.shared_with == "item_id"
    batch = {"hist_item_id": ids(V, B, L)}
    assert model.user_tower(batch).shape == (B, 8)
    assert model(batch).shape == (B, V)  # Torch-RecHub's forward: logits of every item
    assert not cls([model.history], model.item_features).catalog_logits  # recforge's form: towers


# -- ranking ---------------------------------------------------------------------------------------
def ranking_batch(sparse, dense=()):
    batch = {f.name: ids(f.vocab_size, B) for f in sparse}
    batch.update({name: torch.rand(B, generator=G) for name in dense})
    batch["label"] = torch.randint(0, 2, (B,), generator=G).float()
    return batch


def test_deepffm_with_the_criteo_scripts_linear_and_cross_lists():
    sparse = [SparseFeature(f"C{i}", vocab_size=np.int64(7 + i), embed_dim=16) for i in range(4)]
    linear = [SparseFeature(f.name, vocab_size=f.vocab_size, embed_dim=1) for f in sparse]
    cross = [SparseFeature(f.name, vocab_size=f.vocab_size * len(sparse), embed_dim=10) for f in sparse]
    params = {"dims": [16, 16], "dropout": 0.5, "activation": "relu"}
    for model in (
        DeepFFM(linear_features=linear, cross_features=cross, embed_dim=10, mlp_params=params),
        FatDeepFFM(
            linear_features=linear, cross_features=cross, embed_dim=10, reduction_ratio=1, mlp_params=params
        ),
    ):
        assert [f.vocab_size for f in model.cross_features] == [f.vocab_size for f in sparse]  # V, not V * F
        assert model(ranking_batch(sparse)).shape == (B,)


def test_a_column_declared_dense_and_sparse():
    """Torch-RecHub's Avazu script: f1 is a (scaled) dense column and also a sparse feature."""
    dense = [DenseFeature("f1")]
    sparse = [
        SparseFeature("f1", vocab_size=np.int64(5), embed_dim=8),
        SparseFeature("f4", vocab_size=5, embed_dim=8),
    ]
    batch = ranking_batch(sparse[1:], dense=["f1"])
    for model in (
        WideDeep(wide_features=dense, deep_features=sparse, mlp_params={"dims": [8]}),
        DeepFM(deep_features=dense, fm_features=sparse, mlp_params={"dims": [8]}),
        DCN(features=dense + sparse, n_cross_layers=2, mlp_params={"dims": [8]}),
    ):
        with pytest.warns(UserWarning, match="'f1': float values used as embedding ids are truncated"):
            assert model(batch).shape == (B,)


def test_din_with_the_amazon_scripts_target_list():
    """Its target_features list also holds user_id: histories pair with targets by shared table."""
    features = [
        SparseFeature("target_item_id", vocab_size=V, embed_dim=8),
        SparseFeature("target_cate_id", vocab_size=5, embed_dim=8),
        SparseFeature("user_id", vocab_size=6, embed_dim=8),
    ]
    history = [
        SequenceFeature(
            "hist_item_id", vocab_size=V, embed_dim=8, pooling="concat", shared_with="target_item_id"
        ),
        SequenceFeature(
            "hist_cate_id", vocab_size=5, embed_dim=8, pooling="concat", shared_with="target_cate_id"
        ),
    ]
    model = DIN(
        features=features,
        history_features=history,
        target_features=features,
        mlp_params={"dims": [16]},
        attention_mlp_params={"dims": [16]},
    )
    assert [f.name for f in model.target_features] == ["target_item_id", "target_cate_id"]
    batch = ranking_batch(features)
    batch.update(hist_item_id=ids(V, B, L), hist_cate_id=ids(5, B, L))
    assert model(batch).shape == (B,)


def test_behavior_models_name_unpairable_targets():
    hist = [SequenceFeature("hist_a", vocab_size=V, embed_dim=8, pooling="concat")]
    targets = [SparseFeature("a", vocab_size=V, embed_dim=8), SparseFeature("b", vocab_size=V, embed_dim=8)]
    with pytest.raises(ValueError, match="shared_with"):
        DIN(targets, hist, targets)


def test_dien_keywords_of_the_dien_script():
    target = [SparseFeature("target_item_id", vocab_size=V, embed_dim=8, padding_idx=0)]
    hist = [
        SequenceFeature(
            "hist_item_id",
            vocab_size=V,
            embed_dim=8,
            pooling="concat",
            shared_with="target_item_id",
            padding_idx=0,
        )
    ]
    neg = [
        SequenceFeature(
            "neg_hist_item_id",
            vocab_size=V,
            embed_dim=8,
            pooling="concat",
            shared_with="target_item_id",
            padding_idx=0,
        )
    ]
    model = DIEN(
        features=[SparseFeature("user_id", vocab_size=np.int64(6), embed_dim=8)],
        history_features=hist,
        neg_history_features=neg,
        target_features=target,
        mlp_params={"dims": [16]},
        alpha=0.2,
    )
    batch = {
        "user_id": ids(6, B),
        "target_item_id": ids(V, B),
        "hist_item_id": ids(V, B, L),
        "neg_hist_item_id": ids(V, B, L),
    }
    assert model(batch).logits.shape == (B,)


def test_esmm_takes_the_multi_task_scripts_arguments():
    user = [SparseFeature(c, np.int64(5), embed_dim=16) for c in ("u1", "u2")]
    item = [SparseFeature(c, np.int64(7), embed_dim=16) for c in ("i1",)]
    model = ESMM(user, item, cvr_params={"dims": [16, 8]}, ctr_params={"dims": [16, 8]})
    assert model(ranking_batch(user + item)).logits.shape == (B, 2)


# -- generative ------------------------------------------------------------------------------------
HSTU_ARGS = dict(
    vocab_size=np.int64(V), d_model=16, n_heads=1, n_layers=2, dqk=16, dv=16, max_seq_len=L, dropout=0.2,
    use_time_embedding=False, time_bucket_fn="log", time_bucket_divisor=0.301, time_bucket_unit="seconds",
    score_norm="l2", temperature=0.05, use_output_bias=False, scale_input_embedding=True,
)  # fmt: skip


def test_hstu_model_from_the_hstu_scripts_keywords():
    """run_hstu_movielens.py's constructor; ``model(seq_tokens, seq_time_diffs)`` gives the logits
    of every item after every position, and ``model.vocab_size`` exists."""
    from recforge.models.generative import HSTU, HSTUModel

    model = HSTUModel(**HSTU_ARGS)
    assert isinstance(model, HSTU) and model.vocab_size == V and model.normalize
    tokens = ids(V, B, L)
    tokens[:, :2] = 0
    assert model(tokens, torch.zeros(B, L)).shape == (B, L, V)
    assert model({"hist_item_id": tokens, "item_id": ids(V, B)}).user.shape == (B, 16)  # recforge's call
    timed = HSTUModel(vocab_size=V, d_model=16, n_heads=2, dqk=8, dv=8, max_seq_len=L)
    assert timed(tokens, torch.arange(L).expand(B, L).float()).shape == (B, L, V)


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"dqk": 8}, "dqk=16"),
        ({"tie_embeddings": False}, "tie_embeddings=True"),
        ({"score_norm": "cos"}, "score_norm"),
    ],
)
def test_hstu_model_names_what_differs(bad, match):
    from recforge.models.generative import HSTUModel

    with pytest.raises(ValueError, match=match):
        HSTUModel(**{**HSTU_ARGS, **bad})


@pytest.mark.parametrize("build", [
    lambda: GRU4Rec(USER, [HIST], [ITEM], [NEG], {"dims": [16, 8]}, temperature=0.02),
    lambda: MIND(USER, [HIST], [ITEM], [NEG], max_length=L),
    lambda: ComirecSA(USER, [HIST], [ITEM], max_length=L),
    lambda: SINE(["hist_movie_id"], ["movie_id"], ["neg_items"], V, 8, 16, 10, 2, L),
])  # fmt: skip
def test_histories_padded_at_the_end_give_the_same_user_vectors(build):
    """Torch-RecHub's gen_model_input(padding="post") and pad_sequence pad at the end."""
    model = build().eval()
    batch = match_batch()
    left = torch.zeros(B, L, dtype=torch.long)
    right = torch.zeros(B, L, dtype=torch.long)
    for row, n in enumerate(torch.randint(1, L + 1, (B,), generator=G).tolist()):
        items = ids(V, n)
        left[row, L - n :], right[row, :n] = items, items
    user_left = model.user_tower({**batch, "hist_movie_id": left})
    user_right = model.user_tower({**batch, "hist_movie_id": right})
    assert torch.allclose(user_left, user_right, atol=1e-5) and user_left.abs().sum() > 0
