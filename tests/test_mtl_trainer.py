"""MTLTrainer and the task weightings: each changes weights/gradients as its paper says."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recforge.data import BatchLoader, ColumnarDataset, DataGenerator
from recforge.features import SparseFeature
from recforge.models.multi_task import AITM, ESMM, MMOE, PLE, SharedBottom
from recforge.objectives.multitask import (
    GradNorm,
    MetaBalance,
    MultiTaskObjective,
    UncertaintyWeighting,
    build_weighting,
)
from recforge.outputs import TaskType
from recforge.trainers import MTLTrainer

FEATS = [SparseFeature("a", vocab_size=12, embed_dim=4), SparseFeature("b", vocab_size=12, embed_dim=4)]
CLS, REG = TaskType.CLASSIFICATION, TaskType.REGRESSION


def data(n: int = 400, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    a, b = rng.integers(1, 12, n), rng.integers(1, 12, n)
    y0 = (a > 6).astype("float32")
    y1 = y0 * (b > 5)
    return {"a": a, "b": b}, np.stack([y0, y1], 1).astype("float32")


def loader(n: int = 400, batch_size: int = 8, seed: int = 0) -> BatchLoader:
    x, y = data(n, seed)
    return BatchLoader(ColumnarDataset(x, y), batch_size, shuffle=True, seed=seed)


def trainer(model: torch.nn.Module, tmp_path, **kw) -> MTLTrainer:
    return MTLTrainer(model, None, n_epoch=1, progress=False, plot=False, model_path=tmp_path, **kw)


# -- uncertainty weighting ------------------------------------------------------------------------
def test_uwl_log_variances_reach_their_optimum() -> None:
    """Kendall et al.: d/ds [c e^-s L + s/2] = 0 at s = log(2 c L): log(2L) for classification
    (c = 1), log(L) for regression (c = 1/2)."""
    w = UncertaintyWeighting([CLS, REG])
    losses = torch.tensor([0.3, 4.0])
    opt = torch.optim.Adam(w.parameters(), lr=0.05)
    for _ in range(800):
        opt.zero_grad()
        w.combine(losses).backward()
        opt.step()
    torch.testing.assert_close(w.log_vars.detach(), torch.log(torch.tensor([0.6, 4.0])), atol=1e-2, rtol=0)


def test_uwl_trainer_moves_log_variances(tmp_path) -> None:
    torch.manual_seed(0)
    t = trainer(
        SharedBottom(FEATS, task_types=[CLS, CLS], bottom_params={"dims": [8]}),
        tmp_path,
        adaptive_params={"method": "uwl"},
    )
    before = t.weighting.log_vars.detach().clone()
    t.fit(loader())
    assert not torch.allclose(before, t.weighting.log_vars.detach())
    assert len(t.current_weights()) == 2


# -- GradNorm -----------------------------------------------------------------------------------------
def test_gradnorm_balances_gradient_norms_and_keeps_sum() -> None:
    """With equal training rates, GradNorm's target is the mean norm: w_t ||grad L_t|| equalise."""
    torch.manual_seed(0)
    shared = torch.nn.Parameter(torch.randn(5))
    x = torch.randn(5)
    gn = GradNorm(2, alpha=1.5, lr=0.05)

    def step() -> tuple[float, float]:
        shared.grad = None
        h = shared @ x
        losses = torch.stack([(10 * h) ** 2, h**2])  # task 0's gradient is 100x task 1's
        gn.backward(gn.combine(losses), losses, [shared])
        hx = abs(float(h.detach())) * float(x.norm())
        g = torch.tensor([200 * hx, 2 * hx])
        weighted = gn.weights.detach() * g
        return float(weighted.max() / weighted.min()), float(gn.weights.detach().sum())

    first_ratio, _ = step()
    for _ in range(150):
        ratio, total = step()
        assert math.isclose(total, 2.0, rel_tol=1e-5)
    assert ratio < 0.1 * first_ratio
    assert gn.weights[0] < gn.weights[1]  # the task with the larger gradient is down-weighted


def test_gradnorm_favours_the_slower_task() -> None:
    """Equal gradients, but task 0's loss has halved while task 1's has not: task 1's inverse
    training rate is higher, so its target norm and hence its weight grow."""
    shared = torch.nn.Parameter(torch.ones(3))
    gn = GradNorm(2, alpha=1.0, lr=0.05)
    x = torch.ones(3)
    for offset in (9.0, *([0.0] * 60)):
        shared.grad = None
        h = shared @ x  # 3: both losses start at 18
        losses = torch.stack([h**2 + offset, h**2 + 9.0])
        gn.backward(gn.combine(losses), losses, [shared])
    assert gn.weights[1] > 1.2 > 0.8 > gn.weights[0]


# -- MetaBalance ----------------------------------------------------------------------------------------
def _two_task_graph() -> tuple[torch.nn.Parameter, torch.nn.Parameter, torch.Tensor]:
    shared = torch.nn.Parameter(torch.tensor([1.0, 2.0, -1.0]))
    own = torch.nn.Parameter(torch.tensor(0.5))
    a, b = torch.tensor([0.1, 0.0, 0.2]), torch.tensor([3.0, -4.0, 0.0])
    losses = torch.stack([shared @ a + own, 10 * (shared @ b)])  # aux gradient much larger
    return shared, own, losses


def test_metabalance_rescales_auxiliary_gradient_to_target_norm() -> None:
    mb = MetaBalance(2, target_task=0, relax_factor=1.0, beta=0.0)
    shared, own, losses = _two_task_graph()
    mb.backward(mb.combine(losses), losses, [shared, own])
    g_main = torch.tensor([0.1, 0.0, 0.2])
    g_aux = 10 * torch.tensor([3.0, -4.0, 0.0])
    expected = g_main + g_aux * g_main.norm() / g_aux.norm()
    torch.testing.assert_close(shared.grad, expected)
    torch.testing.assert_close(own.grad, torch.tensor(1.0))  # not shared: plain gradient


def test_metabalance_relax_factor_interpolates() -> None:
    mb = MetaBalance(2, relax_factor=0.5, beta=0.0)
    shared, own, losses = _two_task_graph()
    mb.backward(mb.combine(losses), losses, [shared, own])
    g_main = torch.tensor([0.1, 0.0, 0.2])
    aux = shared.grad - g_main
    assert math.isclose(float(aux.norm()), 0.5 * float(g_main.norm()) + 0.5 * 50.0, rel_tol=1e-5)


def test_metabalance_enlarge_strategy_leaves_larger_aux_alone() -> None:
    mb = MetaBalance(2, relax_factor=1.0, beta=0.0, strategy="enlarge")
    shared, own, losses = _two_task_graph()
    mb.backward(mb.combine(losses), losses, [shared, own])
    torch.testing.assert_close(
        shared.grad, torch.tensor([0.1, 0.0, 0.2]) + 10 * torch.tensor([3.0, -4.0, 0.0])
    )


# -- end to end ------------------------------------------------------------------------------------------
MODELS = {
    "SharedBottom": lambda: SharedBottom(FEATS, task_types=[CLS, CLS], bottom_params={"dims": [8]}),
    "MMOE": lambda: MMOE(FEATS, task_types=[CLS, CLS], n_expert=2, expert_params={"dims": [8]}),
    "PLE": lambda: PLE(
        FEATS,
        task_types=[CLS, CLS],
        n_level=2,
        n_expert_specific=1,
        n_expert_shared=1,
        expert_params={"dims": [8]},
    ),
    "ESMM": lambda: ESMM(FEATS[:1], FEATS[1:], cvr_params={"dims": [8]}, ctr_params={"dims": [8]}),
    "AITM": lambda: AITM(FEATS, n_task=2, bottom_params={"dims": [8]}),
}


@pytest.mark.parametrize("method", [None, "uwl", "gradnorm", "metabalance"])
def test_every_method_finite_over_50_steps(method: str | None, tmp_path) -> None:
    torch.manual_seed(0)
    model = MODELS["MMOE"]() if method != "gradnorm" else MODELS["PLE"]()
    params = None if method is None else {"method": method}
    t = trainer(model, tmp_path, adaptive_params=params, optimizer_params={"lr": 1e-2})
    steps = loader(400, 8)
    assert len(steps) == 50
    t.fit(steps)
    assert math.isfinite(t.history[-1]["train_loss"])
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(torch.isfinite(p).all() for p in t.weighting.parameters())
    if method == "gradnorm":
        assert math.isclose(float(t.weighting.weights.detach().sum()), 2.0, rel_tol=1e-5)
        assert not torch.allclose(t.weighting.weights.detach(), torch.ones(2))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fit_evaluate_predict_every_model(name: str, tmp_path) -> None:
    torch.manual_seed(0)
    x, y = data(300)
    train, val, test = DataGenerator(x, y).generate_dataloader(split_ratio=[0.6, 0.2], batch_size=32)
    t = MTLTrainer(
        MODELS[name](), None, n_epoch=2, earlystop_taskid="mean", progress=False, plot=False,
        model_path=tmp_path, task_names=["click", "buy"],
    )  # fmt: skip
    t.fit(train, val)
    metrics = t.evaluate(t.model, test)
    assert {"click_auc", "click_logloss", "buy_auc", "buy_logloss", "mean_auc"} <= set(metrics)
    assert "val_click_auc" in t.history[0]
    prob = t.predict(t.model, test)
    assert prob.shape == (len(test.dataset), 2) and ((prob >= 0) & (prob <= 1)).all()
    # A plain list of (features, labels) pairs is a loader too.
    pairs = [({k: torch.as_tensor(v[:10]) for k, v in x.items()}, torch.as_tensor(y[:10]))]
    assert t.predict(t.model, pairs).shape == (10, 2)


def test_regression_task_metrics_and_early_stop_mode(tmp_path) -> None:
    x, y = data(200)
    y = np.stack([y[:, 0], x["a"] / 10.0], 1).astype("float32")
    ds = ColumnarDataset(x, y)
    model = MMOE(FEATS, task_types=[CLS, REG], n_expert=2, expert_params={"dims": [8]})
    t = MTLTrainer(
        model,
        ["classification", "regression"],
        earlystop_taskid=1,
        n_epoch=2,
        progress=False,
        plot=False,
        model_path=tmp_path,
    )
    assert t.stopper.metric == "task1_mse" and t.stopper.mode == "min"
    t.fit(BatchLoader(ds, 32, shuffle=True), BatchLoader(ds, 64))
    m = t.evaluate(t.model, BatchLoader(ds, 64))
    assert {"task0_auc", "task1_mse", "task1_mae", "mean_loss"} <= set(m)
    pred = t.predict(t.model, BatchLoader(ds, 64))
    with torch.no_grad():
        raw = t.model.eval()(ds.columns).numpy()
    np.testing.assert_allclose(pred[:, 0], 1 / (1 + np.exp(-raw[:, 0])), rtol=1e-5)  # probability
    np.testing.assert_allclose(pred[:, 1], raw[:, 1], rtol=1e-5)  # raw regression value


def test_bad_configuration_is_refused(tmp_path) -> None:
    model = MMOE(FEATS, task_types=[CLS, CLS], n_expert=2, expert_params={"dims": [8]})
    with pytest.raises(ValueError, match="gradnorm"):
        build_weighting([CLS, CLS], {"method": "gradnrom"})
    with pytest.raises(ValueError, match="unknown adaptive_params"):
        build_weighting([CLS, CLS], {"method": "uwl", "alpha": 1.0})
    with pytest.raises(ValueError, match="differ from the model"):
        MTLTrainer(model, ["classification", "regression"], model_path=tmp_path)
    with pytest.raises(ValueError, match="earlystop_taskid"):
        MTLTrainer(model, None, earlystop_taskid=5, model_path=tmp_path)
    obj = MultiTaskObjective([CLS, CLS], build_weighting([CLS, CLS], None))
    with pytest.raises(ValueError, match="one column per task"):
        obj(torch.zeros(4, 2), {"label": torch.zeros(4)})


@pytest.mark.parametrize("method", ["uwl", "gradnorm", "metabalance"])
def test_resume_restores_the_weighting_state(method: str, tmp_path) -> None:
    torch.manual_seed(0)
    t = trainer(
        PLE(
            FEATS,
            task_types=[CLS, CLS],
            n_level=1,
            n_expert_specific=1,
            n_expert_shared=1,
            expert_params={"dims": [8]},
        ),
        tmp_path,
        adaptive_params={"method": method},
    )
    t.fit(loader(80))
    saved = {k: v.clone() for k, v in t.weighting.state_dict().items() if isinstance(v, torch.Tensor)}
    torch.manual_seed(1)
    model = PLE(
        FEATS,
        task_types=[CLS, CLS],
        n_level=1,
        n_expert_specific=1,
        n_expert_shared=1,
        expert_params={"dims": [8]},
    )
    r = MTLTrainer(model, None, adaptive_params={"method": method}, n_epoch=1, progress=False, plot=False,
                   model_path=tmp_path, resume=True)  # fmt: skip
    r._load_checkpoint(tmp_path / "checkpoint.pt")
    for k, v in saved.items():
        torch.testing.assert_close(r.weighting.state_dict()[k], v)
    if method == "metabalance":
        assert r.weighting._norms.keys() == t.weighting._norms.keys()
