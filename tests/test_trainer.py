import json

import numpy as np
import pytest
import torch

from recforge.data import BatchLoader, ColumnarDataset
from recforge.features import DenseFeature, SparseFeature
from recforge.models.ranking import DeepFM, WideDeep
from recforge.trainers import CTRTrainer, Trainer

SPARSE = [SparseFeature(f"c{i}", 20, embed_dim=4) for i in range(3)]
DENSE = [DenseFeature("d")]


def data(n=600, seed=0):
    rng = np.random.default_rng(seed)
    cols = {f"c{i}": rng.integers(0, 20, n) for i in range(3)}
    cols["d"] = rng.normal(size=n).astype("float32")
    logit = 2.0 * ((cols["c0"] % 2) * 2 - 1) + cols["d"]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("float32")
    return ColumnarDataset(cols, y)


def model(sparse=False):
    torch.manual_seed(0)
    return DeepFM(DENSE + SPARSE, SPARSE, mlp_params={"dims": [16], "dropout": 0.1}, sparse=sparse)


def loaders():
    return BatchLoader(data(), 64, shuffle=True, seed=3), BatchLoader(data(200, seed=1), 128)


def test_fit_learns_and_writes_the_run_directory(tmp_path):
    train, val = loaders()
    t = CTRTrainer(model(), optimizer_params={"lr": 0.01}, n_epoch=3, model_path=tmp_path, progress=False)
    t.fit(train, val)
    metrics = t.evaluate(t.model, val)
    assert metrics["auc"] > 0.75
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1, 2]
    assert {"train_loss", "val_auc", "val_logloss", "lr", "samples_per_s"} <= set(lines[0])
    assert (tmp_path / "best.pt").exists() and (tmp_path / "checkpoint.pt").exists()
    assert (tmp_path / "learning_curve.png").stat().st_size > 1000
    probs = t.predict(t.model, val)
    assert probs.shape == (200,) and ((probs > 0) & (probs < 1)).all()


def test_early_stopping_restores_the_best_weights(tmp_path):
    train, val = loaders()
    t = CTRTrainer(
        model(),
        optimizer_params={"lr": 0.3},
        n_epoch=8,
        earlystop_patience=1,
        earlystop_metric="logloss",
        model_path=tmp_path,
        progress=False,
    )
    t.fit(train, val)
    history = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    best = min(history, key=lambda r: r["val_logloss"])
    assert t.evaluate(t.model, val)["logloss"] == pytest.approx(best["val_logloss"], rel=1e-6)
    assert len(history) < 8 or t.stopper.best_epoch == 7


@pytest.mark.parametrize("sparse", [False, True])
def test_resume_is_exact(tmp_path, sparse):
    train, _val = loaders()
    kw = dict(
        optimizer_params={"lr": 0.01},
        scheduler_fn=torch.optim.lr_scheduler.StepLR,
        scheduler_params={"step_size": 1, "gamma": 0.5},
        progress=False,
        plot=False,
    )
    full = CTRTrainer(model(sparse), n_epoch=4, model_path=tmp_path / "full", **kw)
    full.fit(train, None)
    part = CTRTrainer(model(sparse), n_epoch=2, model_path=tmp_path / "part", **kw)
    part.fit(train, None)
    resumed = CTRTrainer(model(sparse), n_epoch=4, model_path=tmp_path / "part", resume=True, **kw)
    torch.manual_seed(123)  # the checkpoint's RNG state must win over whatever came before
    resumed.fit(train, None)
    for (n, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=n)
    assert resumed.optimizer.lr == pytest.approx(0.01 * 0.5**4)


def test_sparse_embeddings_get_a_sparse_optimizer(tmp_path):
    t = CTRTrainer(model(sparse=True), n_epoch=1, model_path=tmp_path, progress=False)
    kinds = [type(o).__name__ for o in t.optimizer.optimizers]
    assert kinds == ["Adam", "LazyAdam"]
    train, val = loaders()
    t.fit(train, val)
    assert t.evaluate(t.model, val)["auc"] > 0.6


def test_clipping_regularisation_and_plateau_scheduler(tmp_path):
    train, val = loaders()
    t = CTRTrainer(
        WideDeep(SPARSE, DENSE + SPARSE, mlp_params={"dims": [8]}),
        optimizer_params={"lr": 0.01},
        regularization_params={"embedding_l2": 1e-4, "dense_l2": 1e-4},
        max_grad_norm=1.0,
        scheduler_fn=torch.optim.lr_scheduler.ReduceLROnPlateau,
        scheduler_params={"mode": "max"},
        n_epoch=2,
        model_path=tmp_path,
        progress=False,
    )
    t.fit(train, val)
    assert np.isfinite(t.history[-1]["train_loss"])
    with pytest.raises(ValueError, match="unknown regularization_params"):
        CTRTrainer(model(), regularization_params={"l2": 1.0}, model_path=tmp_path)


def test_bad_settings_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="n_epoch"):
        CTRTrainer(model(), n_epoch=0)
    with pytest.raises(TypeError, match="objective"):
        Trainer(model())
    train, val = loaders()
    t = CTRTrainer(model(), n_epoch=1, earlystop_metric="ndcg", model_path=tmp_path, progress=False)
    with pytest.raises(KeyError, match="'ndcg' is not among the validation metrics"):
        t.fit(train, val)


def test_non_finite_loss_stops_training(tmp_path):
    ds = data()
    ds.columns["d"][0] = float("inf")
    t = CTRTrainer(model(), n_epoch=1, model_path=tmp_path, progress=False)
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        t.fit(BatchLoader(ds, 64), None)
