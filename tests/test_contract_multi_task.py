"""Registry contract for every multi-task model, plus ESMM's and PLE's structural identities."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from contract import (
    check_eval_determinism,
    check_finite_loss,
    check_gradients,
    check_learns,
    check_state_dict_roundtrip,
    synthetic_batch,
)
from recforge.features import DenseFeature, SparseFeature
from recforge.models.defaults import ColumnRoles, default_model, feature_groups
from recforge.models.multi_task import MMOE, MODELS, PLE
from recforge.models.multi_task.esmm import product_logit
from recforge.objectives.multitask import FixedWeights, MultiTaskObjective
from recforge.outputs import ESMMOutput, MultiTaskOutput, task_logits

FEATS = [SparseFeature("a", vocab_size=12, embed_dim=4), SparseFeature("b", vocab_size=12, embed_dim=4)]
DENSE = DenseFeature("x")
CLS2 = ["classification", "classification"]
EXPERT = {"dims": [16]}
TOWER = [{"dims": [8]}, {"dims": [8]}]

# Small sizes over the registry defaults (``recforge.models.defaults``); a model without an entry
# here is built from its default as it is.
SMALL: dict[str, dict[str, object]] = {
    "SharedBottom": {"bottom_params": {"dims": [16]}, "tower_params_list": TOWER},
    "ESMM": {"cvr_params": {"dims": [16]}, "ctr_params": {"dims": [16]}},
    "MMOE": {"n_expert": 3, "expert_params": EXPERT, "tower_params_list": TOWER},
    "PLE": {"n_expert_shared": 1, "expert_params": EXPERT, "tower_params_list": TOWER},
    "AITM": {"bottom_params": EXPERT, "tower_params_list": TOWER},
}
GROUPS = feature_groups([*FEATS, DENSE], ColumnRoles(user="a", item="b", item_columns=("x",)))


def case(name: str) -> Callable[[], nn.Module]:
    return lambda: default_model(name, GROUPS, **SMALL.get(name, {}))


CASES: dict[str, Callable[[], nn.Module]] = {name: case(name) for name in MODELS}


def test_the_small_sizes_name_registered_models() -> None:
    assert set(SMALL) <= set(MODELS)


def make_batch(n: int = 256, seed: int = 0) -> dict[str, Tensor]:
    """``contract.synthetic_batch`` with two planted targets, the second made a funnel step of the
    first (``y1 <- y0 * y1``, as click -> conversion; ESMM and AITM assume it)."""
    batch = synthetic_batch([*FEATS, DENSE], n, seed=seed, labels=("click", "buy"))
    batch["label"][:, 1] *= batch["label"][:, 0]
    return batch


def objective() -> MultiTaskObjective:
    return MultiTaskObjective(CLS2, FixedWeights([1.0, 1.0]))


@pytest.mark.parametrize("name", sorted(CASES))
def test_model_contract(name: str) -> None:
    """Per-task output shapes, then contract.py's checks: finite loss, gradients on every parameter,
    loss falls on a learnable signal, eval determinism, state_dict round trip."""
    factory = CASES[name]
    batch = make_batch(256)
    torch.manual_seed(0)
    model = factory().eval()
    with torch.no_grad():
        out = model(batch)
    assert task_logits(out).shape == (256, 2), name
    assert len(model.task_types) == 2
    if isinstance(out, ESMMOutput):
        assert out.cvr_logits.shape == (256,)
    if isinstance(out, MultiTaskOutput):
        assert out.aux_loss.dim() == 0
    obj = objective()
    check_finite_loss(model, batch, obj)
    check_gradients(model, batch, obj)
    check_learns(model, batch, obj, steps=60, min_rel_drop=0.3)
    check_eval_determinism(model, batch)
    check_state_dict_roundtrip(model, factory, batch)


def test_bad_task_types_are_refused() -> None:
    with pytest.raises(ValueError, match="classification"):
        MODELS["MMOE"](FEATS, task_types=["classificaton", "regression"], n_expert=2, expert_params=EXPERT)
    with pytest.raises(ValueError, match="tower_params_list"):
        MODELS["SharedBottom"](
            FEATS, task_types=CLS2, bottom_params={"dims": [8]}, tower_params_list=[{"dims": [4]}]
        )


def test_regression_heads_train() -> None:
    torch.manual_seed(0)
    batch = make_batch(128)
    batch["label"] = torch.stack([batch["label"][:, 0], 3.0 * batch["x"] + 1.0], 1)
    model = MODELS["MMOE"](
        [*FEATS, DENSE],
        task_types=["classification", "regression"],
        n_expert=2,
        expert_params=EXPERT,
        tower_params_list=TOWER,
    )
    obj = MultiTaskObjective(["classification", "regression"], FixedWeights([1.0, 1.0]))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = obj.task_losses(model(batch), batch).detach()
    for _ in range(80):
        opt.zero_grad()
        obj(model(batch), batch).backward()
        opt.step()
    last = obj.task_losses(model(batch), batch).detach()
    assert last[1] < 0.2 * first[1]  # MSE of the regression head falls


# -- ESMM -----------------------------------------------------------------------------------------
def test_esmm_ctcvr_is_ctr_times_cvr() -> None:
    torch.manual_seed(0)
    model = CASES["ESMM"]()
    out = model(make_batch(64))
    ctr, ctcvr = out.logits.sigmoid().unbind(1)
    torch.testing.assert_close(ctcvr, ctr * out.cvr_logits.sigmoid(), rtol=1e-5, atol=1e-7)
    # The product logit is exact and finite far into both tails, with finite gradients.
    a = torch.tensor([-40.0, -5.0, 0.0, 5.0, 40.0, 40.0, -40.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([-40.0, 3.0, 0.0, -2.0, 40.0, -40.0, 40.0], dtype=torch.float64)
    z = product_logit(a, b)
    torch.testing.assert_close(z.sigmoid(), a.sigmoid() * b.sigmoid(), rtol=1e-9, atol=1e-300)
    z.sum().backward()
    assert torch.isfinite(z).all() and torch.isfinite(a.grad).all()


def test_esmm_cvr_learns_from_unclicked_impressions() -> None:
    """Entire space: impressions without a click still carry a CVR-tower gradient (via CTCVR)."""
    torch.manual_seed(0)
    model = CASES["ESMM"]()
    batch = make_batch(64)
    batch["label"] = torch.zeros(64, 2)  # no clicks at all
    objective()(model(batch), batch).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.cvr.parameters())


# -- PLE degenerate cases ---------------------------------------------------------------------------
def test_ple_one_level_without_shared_experts_is_independent_towers() -> None:
    """n_level=1, n_expert_shared=0, n_expert_specific=1: each task's gate has one expert (weight 1),
    so task t's logit is tower_t(expert_t(embeddings)) and no other task's parameters reach it."""
    torch.manual_seed(0)
    model = PLE(
        [*FEATS, DENSE],
        task_types=CLS2,
        n_level=1,
        n_expert_specific=1,
        n_expert_shared=0,
        expert_params=EXPERT,
        tower_params_list=TOWER,
    )
    batch = make_batch(32)
    level = model.levels[0]
    assert level.shared is None and level.shared_gate is None
    x = model.embedding.flatten(batch, model.features)
    for t in range(2):
        gate = level.task_gates[t](x)
        torch.testing.assert_close(gate, torch.ones_like(gate))
        manual = model.towers[t](level.specific[t](x)[:, 0]).squeeze(1)
        torch.testing.assert_close(model(batch)[:, t], manual)
    model(batch)[:, 0].sum().backward()
    for p in [*level.specific[1].parameters(), *model.towers[1].parameters()]:
        assert p.grad is None or not p.grad.any()
    assert all(p.grad is not None for p in level.specific[0].parameters())


def test_ple_one_level_with_only_shared_experts_equals_mmoe() -> None:
    torch.manual_seed(0)
    ple = PLE(
        [*FEATS, DENSE],
        task_types=CLS2,
        n_level=1,
        n_expert_specific=0,
        n_expert_shared=3,
        expert_params=EXPERT,
        tower_params_list=TOWER,
    )
    mmoe = MMOE([*FEATS, DENSE], task_types=CLS2, n_expert=3, expert_params=EXPERT, tower_params_list=TOWER)
    state = {
        k.replace("levels.0.shared.", "moe.experts.").replace("levels.0.task_gates.", "moe.gates."): v
        for k, v in ple.state_dict().items()
    }
    mmoe.load_state_dict(state)
    batch = make_batch(16)
    torch.testing.assert_close(ple(batch), mmoe(batch))
