"""Torch-RecHub 0.9.0's trainer call shapes, as its example scripts use them (the script is named in
each test). They pin what the trainers accept and return."""

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recforge.basic.features import DenseFeature, SequenceFeature, SparseFeature
from recforge.models.matching import NARM, FaceBookDSSM, YoutubeDNN, YoutubeSBC
from recforge.models.multi_task import ESMM
from recforge.models.ranking import DIEN
from recforge.trainers import CTRTrainer, MatchTrainer, MTLTrainer
from recforge.utils.data import DataGenerator, MatchDataGenerator, TorchDataset, df_to_dict
from recforge.utils.match import gen_model_input, generate_seq_feature_match

N_USERS, N_ITEMS = 12, 30


def movielens_like(seed=0):
    rng = np.random.default_rng(seed)
    rows = [
        {
            "user_id": u,
            "movie_id": int(i),
            "timestamp": 10 * u + t,
            "gender": u % 2 + 1,
            "cate_id": int(i) % 4 + 1,
        }
        for u in range(1, N_USERS + 1)
        for t, i in enumerate(rng.choice(np.arange(1, N_ITEMS), size=8, replace=False))
    ]
    return pd.DataFrame(rows)


def match_data(mode, neg_ratio=3):
    """The MovieLens scripts' pipeline (generate_seq_feature_match -> gen_model_input)."""
    data = movielens_like()
    users = data[["user_id", "gender"]].drop_duplicates("user_id")
    items = data[["movie_id", "cate_id"]].drop_duplicates("movie_id")
    train, test = generate_seq_feature_match(
        data,
        "user_id",
        "movie_id",
        time_col="timestamp",
        item_attribute_cols=[],
        sample_method=1,
        mode=mode,
        neg_ratio=neg_ratio,
    )
    x_train = gen_model_input(train, users, "user_id", items, "movie_id", seq_max_len=10)
    x_test = gen_model_input(test, users, "user_id", items, "movie_id", seq_max_len=10)
    return x_train, x_test, df_to_dict(items)


USER = [SparseFeature("user_id", N_USERS + 1, embed_dim=8), SparseFeature("gender", 3, embed_dim=8)]
HIST_MEAN = SequenceFeature("hist_movie_id", N_ITEMS, embed_dim=8, pooling="mean", shared_with="movie_id")
ITEM = SparseFeature("movie_id", N_ITEMS, embed_dim=8)
CATE = SparseFeature("cate_id", 5, embed_dim=8)
NEG = SequenceFeature("neg_items", N_ITEMS, embed_dim=8, pooling="concat", shared_with="movie_id")


def fit_and_embed(model, mode, x_train, y_train, x_test, all_item, tmp_path, **kwargs):
    dg = MatchDataGenerator(x=x_train, y=y_train)
    trainer = MatchTrainer(
        model,
        mode=mode,
        optimizer_params={"lr": 1e-3, "weight_decay": 1e-6},
        n_epoch=1,
        device="cpu",
        model_path=str(tmp_path),
        **kwargs,
    )
    train_dl, test_dl, item_dl = dg.generate_dataloader(x_test, all_item, batch_size=16)
    trainer.fit(train_dl)
    user = trainer.inference_embedding(
        model=model, mode="user", data_loader=test_dl, model_path=str(tmp_path)
    )
    item = trainer.inference_embedding(
        model=model, mode="item", data_loader=item_dl, model_path=str(tmp_path)
    )
    return user, item


# -- MatchTrainer ----------------------------------------------------------------------------------


def test_inference_embedding_takes_model_path_and_loads_model_pth(tmp_path):
    """run_ml_youtube_dnn.py (and every MovieLens script): ``fit`` writes ``model_path/model.pth``
    (the state dict); ``inference_embedding(model=, mode=, data_loader=, model_path=)`` loads it and
    returns the vectors of every row in loader order."""
    x_train, x_test, all_item = match_data(mode=2)
    model = YoutubeDNN([*USER, HIST_MEAN], [ITEM], [NEG], user_params={"dims": [16, 8]}, temperature=0.02)
    user, item = fit_and_embed(
        model, 2, x_train, np.zeros(len(x_train["user_id"])), x_test, all_item, tmp_path
    )
    assert (tmp_path / "model.pth").exists()
    state = torch.load(tmp_path / "model.pth", weights_only=True)
    assert set(state) == set(model.state_dict())
    assert user.shape == (len(x_test["user_id"]), 8) and item.shape == (len(all_item["movie_id"]), 8)


def test_mode_0_on_labelled_rows_needs_no_negatives_argument(tmp_path):
    """run_ml_dssm.py: ``MatchTrainer(model, mode=0)`` on point-wise rows that carry a 0/1 label
    (generate_seq_feature_match(mode=0)) trains point-wise on those labels (negatives="labelled")."""
    from recforge.models.matching import DSSM

    x_train, x_test, all_item = match_data(mode=0)
    model = DSSM(
        [*USER, HIST_MEAN],
        [ITEM, CATE],
        temperature=0.02,
        user_params={"dims": [16, 8]},
        item_params={"dims": [16, 8]},
    )
    user, item = fit_and_embed(model, 0, x_train, x_train["label"], x_test, all_item, tmp_path)
    assert user.shape[1] == item.shape[1] == 8


def test_youtube_sbc_trains_with_in_batch_negatives_by_default(tmp_path):
    """run_ml_youtube_sbc.py: ``MatchTrainer(YoutubeSBC, mode=2)`` on rows without negatives uses
    the batch's other rows (negatives="in_batch"), as Torch-RecHub's YoutubeSBC does."""
    x_train, x_test, all_item = match_data(mode=0, neg_ratio=0)
    model = YoutubeSBC(
        [*USER, HIST_MEAN],
        [ITEM, CATE],
        [DenseFeature("sample_weight")],
        user_params={"dims": [16, 8]},
        item_params={"dims": [16, 8]},
        batch_size=16,
        n_neg=3,
        temperature=0.02,
    )
    fit_and_embed(model, 2, x_train, np.zeros(len(x_train["user_id"])), x_test, all_item, tmp_path)


def test_pairwise_negatives_come_from_the_models_neg_item_features(tmp_path):
    """run_ml_facebook_dssm.py: mode=1 rows hold one negative per row, a scalar ``neg_items (B,)``
    and its ``neg_cate (B,)``; the negative's item-tower input is ``model.negative_batch(batch)``
    (every item feature), not just the id."""
    from recforge.utils.data import array_replace_with_dict

    x_train, x_test, all_item = match_data(mode=1)
    cate = dict(zip(all_item["movie_id"], all_item["cate_id"]))
    x_train["neg_cate"] = array_replace_with_dict(x_train["neg_items"], cate)
    negs = [SparseFeature("neg_items", N_ITEMS, embed_dim=8), SparseFeature("neg_cate", 5, embed_dim=8)]
    model = FaceBookDSSM(
        [*USER, HIST_MEAN],
        [ITEM, CATE],
        negs,
        temperature=0.02,
        user_params={"dims": [16, 8]},
        item_params={"dims": [16, 8]},
    )
    fit_and_embed(model, 1, x_train, np.zeros(len(x_train["user_id"])), x_test, all_item, tmp_path)


def test_session_model_trained_on_next_item_labels(tmp_path):
    """run_sbr.py: a ``DataLoader(TorchDataset(x, y), collate_fn=...)`` yields ``({hist_item_id},
    next item id)``; ``MatchTrainer(NARM(...), mode=2)`` trains a full softmax over every item with
    the label as the target (NARM's Torch-RecHub form returns logits of every item)."""
    g = torch.Generator().manual_seed(0)
    hist = [
        torch.randint(1, N_ITEMS, (int(n),), generator=g).tolist()
        for n in torch.randint(1, 6, (40,), generator=g)
    ]
    y = torch.randint(1, N_ITEMS, (40,), generator=g).tolist()

    def collate(rows):
        x = torch.nn.utils.rnn.pad_sequence(
            [torch.LongTensor(r[0]["hist_item_id"]) for r in rows], batch_first=True
        )
        return {"hist_item_id": x}, torch.LongTensor([r[1] for r in rows])

    dl = torch.utils.data.DataLoader(
        TorchDataset({"hist_item_id": hist}, y), batch_size=8, collate_fn=collate
    )
    model = NARM(
        SequenceFeature("hist_item_id", vocab_size=N_ITEMS, embed_dim=8, pooling="concat"), 8, 0.25, 0.5
    )
    MatchTrainer(
        model,
        mode=2,
        optimizer_params={"lr": 1e-3, "weight_decay": 0},
        n_epoch=1,
        device="cpu",
        model_path=str(tmp_path),
    ).fit(dl)


# -- CTRTrainer ------------------------------------------------------------------------------------
def dien_data(n=64):
    g = torch.Generator().manual_seed(0)
    x = {
        "user_id": torch.randint(1, 6, (n,), generator=g),
        "target_item_id": torch.randint(1, 20, (n,), generator=g),
        "hist_item_id": torch.randint(0, 20, (n, 6), generator=g),
        "neg_hist_item_id": torch.randint(1, 20, (n, 6), generator=g),
    }
    return x, torch.randint(0, 2, (n,), generator=g).float()


def dien_model():
    target = [SparseFeature("target_item_id", 20, embed_dim=8, padding_idx=0)]
    hist = [
        SequenceFeature(
            "hist_item_id", 20, embed_dim=8, pooling="concat", shared_with="target_item_id", padding_idx=0
        )
    ]
    neg = [
        SequenceFeature(
            "neg_hist_item_id", 20, embed_dim=8, pooling="concat", shared_with="target_item_id", padding_idx=0
        )
    ]
    return DIEN(
        features=[SparseFeature("user_id", 6, embed_dim=8)],
        history_features=hist,
        neg_history_features=neg,
        target_features=target,
        mlp_params={"dims": [16]},
        alpha=0.2,
    )


def test_ctr_trainer_takes_loss_mode(tmp_path):
    """run_dien.py: ``CTRTrainer(..., loss_mode=False)`` (the model returns its prediction and an
    extra loss, which is added) is accepted."""
    x, y = dien_data()
    train, val, _test = DataGenerator(x, y).generate_dataloader(
        x_val=x, y_val=y, x_test=x, y_test=y, batch_size=16
    )
    trainer = CTRTrainer(
        dien_model(),
        optimizer_params={"lr": 1e-3, "weight_decay": 1e-3},
        n_epoch=1,
        earlystop_patience=4,
        device="cpu",
        model_path=str(tmp_path),
        loss_mode=False,
    )
    trainer.fit(train, val)


def test_ctr_evaluate_formats_as_the_auc(tmp_path):
    """run_dien.py prints ``f"test auc: {auc:.4f}"`` with ``auc = trainer.evaluate(model, loader)``:
    the result formats (and converts) as the AUC, Torch-RecHub's return value, e.g. a dict of
    metrics whose ``__format__``/``__float__`` give ``auc``."""
    x, y = dien_data()
    train, val, test = DataGenerator(x, y).generate_dataloader(
        x_val=x, y_val=y, x_test=x, y_test=y, batch_size=16
    )
    trainer = CTRTrainer(dien_model(), n_epoch=1, device="cpu", model_path=str(tmp_path))
    trainer.fit(train, val)
    auc = trainer.evaluate(trainer.model, test)
    assert f"{auc:.4f}" == f"{auc['auc']:.4f}" and float(auc) == auc["auc"]


def test_ctr_fit_writes_model_pth(tmp_path):
    """Torch-RecHub's trainers save the best weights as ``model_path/model.pth`` (a state dict);
    users load it with ``model.load_state_dict(torch.load(path + "model.pth"))``."""
    x, y = dien_data()
    train, val, _ = DataGenerator(x, y).generate_dataloader(
        x_val=x, y_val=y, x_test=x, y_test=y, batch_size=16
    )
    model = dien_model()
    CTRTrainer(model, n_epoch=1, device="cpu", model_path=str(tmp_path)).fit(train, val)
    model.load_state_dict(torch.load(Path(tmp_path) / "model.pth", weights_only=True))


# -- MTLTrainer ------------------------------------------------------------------------------------


def test_esmm_with_three_task_types_and_labels(tmp_path):
    """run_ali_ccp_multi_task.py / run_census.py: ``MTLTrainer(ESMM, task_types=[3 x
    "classification"])`` with labels ``(N, 3) = [cvr, ctr, ctcvr]``: trains on CTR and CTCVR (the
    CVR tower only through the product, as ESMM) and evaluates all three tasks."""
    g = torch.Generator().manual_seed(0)
    n = 64
    user = [SparseFeature(c, 5, embed_dim=8) for c in ("u1", "u2")]
    item = [SparseFeature("i1", 7, embed_dim=8)]
    x = {
        "u1": torch.randint(1, 5, (n,), generator=g),
        "u2": torch.randint(1, 5, (n,), generator=g),
        "i1": torch.randint(1, 7, (n,), generator=g),
    }
    click = torch.randint(0, 2, (n,), generator=g)
    buy = click * torch.randint(0, 2, (n,), generator=g)
    y = torch.stack([buy, click, buy * click], 1).numpy()  # cvr_label, ctr_label, ctcvr_label
    train, val, test = DataGenerator(x, y).generate_dataloader(
        x_val=x, y_val=y, x_test=x, y_test=y, batch_size=16
    )
    model = ESMM(user, item, cvr_params={"dims": [16, 8]}, ctr_params={"dims": [16, 8]})
    trainer = MTLTrainer(
        model,
        task_types=["classification"] * 3,
        optimizer_params={"lr": 1e-3, "weight_decay": 1e-4},
        n_epoch=1,
        earlystop_patience=30,
        device="cpu",
        model_path=str(tmp_path),
    )
    trainer.fit(train, val)
    scores = trainer.evaluate(trainer.model, test)  # the scripts print it
    assert {"task0_auc", "task1_auc", "task2_auc"} <= set(scores)  # cvr, ctr, ctcvr all evaluated
    assert "task0_weight" not in scores  # cvr is not trained on its own


# -- SeqTrainer ------------------------------------------------------------------------------------


def test_seq_trainer_on_torch_rechub_sequence_batches(tmp_path):
    """run_hstu_movielens.py: ``SeqTrainer(HSTUModel(...), optimizer_fn=torch.optim.AdamW, ...)``
    trains on ``SequenceDataGenerator`` loaders (tuples ``(seq_tokens, seq_positions,
    seq_time_diffs, targets)``; the model's ``(B, L, V)`` logits predict the next token at every
    position) and ``evaluate(loader)`` (one argument) returns ``(loss, accuracy)``."""
    from recforge.models.generative import HSTUModel
    from recforge.trainers import SeqTrainer
    from recforge.utils.data import SequenceDataGenerator

    g = torch.Generator().manual_seed(0)
    n, length, vocab = 32, 8, 20
    tokens = torch.randint(1, vocab, (n, length), generator=g).numpy()
    gen = SequenceDataGenerator(
        tokens, np.tile(np.arange(length), (n, 1)), tokens[:, -1], np.zeros((n, length))
    )
    (loader,) = gen.generate_dataloader(batch_size=8, num_workers=0)
    model = HSTUModel(
        vocab_size=vocab,
        d_model=16,
        n_heads=1,
        n_layers=1,
        dqk=16,
        dv=16,
        max_seq_len=length,
        use_time_embedding=False,
        use_output_bias=False,
    )
    trainer = SeqTrainer(
        model,
        optimizer_fn=torch.optim.AdamW,
        optimizer_params={"lr": 1e-3, "weight_decay": 0.0, "betas": (0.9, 0.98)},
        n_epoch=1,
        earlystop_patience=10,
        device="cpu",
        model_path=str(tmp_path),
    )
    trainer.fit(loader, loader)
    loss, accuracy = trainer.evaluate(loader)
    assert loss > 0 and 0 <= accuracy <= 1
    model.eval()
    with torch.no_grad():  # the accuracy by hand: the top-1 item (padding excluded) is the target
        items = model.item_tower({model.item_id: torch.arange(trainer.sampler.num_items)})
        hits = 0
        for raw in loader:
            batch = trainer.to_batch(raw)
            scores = model.score(model.user_tower(batch), items)
            scores[:, 0] = -torch.inf
            hits += int((scores.argmax(1) == batch[model.item_id]).sum())
    assert accuracy == hits / n


def test_gpus_list_does_not_override_the_device(tmp_path):
    """run_ml_mind.py / run_ml_comirec.py / run_ml_gru4rec.py / run_ml_sine.py pass ``gpus=[0]``
    with ``device="cpu"``: Torch-RecHub trains on ``device`` (``gpus`` only picks DataParallel
    devices when it lists several), so a CPU-only machine runs them."""
    trainer = CTRTrainer(dien_model(), n_epoch=1, device="cpu", gpus=[0], model_path=str(tmp_path))
    assert trainer.device == torch.device("cpu")
