"""Contract tests for every model in the matching registry (no skip list).

Synthetic data: left-padded histories over a small catalog; the target of a row is a fixed function
of its last history item, so next-item signal is learnable. The loss is a full softmax over the
catalog computed through ``item_tower`` on a catalog batch and ``score``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from recforge.features import RandomNormal, SequenceFeature, SparseFeature
from recforge.models.matching import MODELS, TwoTowerModel
from recforge.outputs import TowerOutput

V, U, L, D, K = 30, 20, 6, 8, 3
MAX_LEN = L + 4
INIT = RandomNormal(std=0.1)
ITEM = SparseFeature("item_id", V, D, initializer=INIT)
CATE = SparseFeature("item_cate", 5, D, initializer=INIT)
USER = SparseFeature("user_id", U, D, initializer=INIT)
HIST_MEAN = SequenceFeature("hist_item_id", V, D, pooling="mean", shared_with="item_id", max_len=MAX_LEN)
HIST = SequenceFeature("hist_item_id", V, D, pooling="concat", shared_with="item_id", max_len=MAX_LEN)
MLP2 = {"dims": [16, D]}


def cate_of(ids: torch.Tensor) -> torch.Tensor:
    return torch.where(ids > 0, ids % 4 + 1, torch.zeros_like(ids))


BUILDERS: dict[str, Callable[[], TwoTowerModel]] = {
    "DSSM": lambda: MODELS["DSSM"]([USER, HIST_MEAN], [ITEM, CATE], MLP2, MLP2, temperature=0.2),
    "FacebookDSSM": lambda: MODELS["FacebookDSSM"](
        [USER, HIST_MEAN], [ITEM, CATE], MLP2, MLP2, temperature=0.2
    ),
    "YoutubeDNN": lambda: MODELS["YoutubeDNN"]([USER, HIST_MEAN], [ITEM], MLP2, temperature=0.2),
    "YoutubeSBC": lambda: MODELS["YoutubeSBC"]([USER, HIST_MEAN], [ITEM, CATE], MLP2, MLP2, temperature=0.2),
    "MIND": lambda: MODELS["MIND"](
        [USER], [HIST], [ITEM], max_length=MAX_LEN, interest_num=K, dynamic_interest=True
    ),
    "ComirecDR": lambda: MODELS["ComirecDR"]([], [HIST], [ITEM], max_length=MAX_LEN, interest_num=K),
    "ComirecSA": lambda: MODELS["ComirecSA"]([USER], [HIST], [ITEM], max_length=MAX_LEN, interest_num=K),
    "SINE": lambda: MODELS["SINE"](
        [HIST], [ITEM], num_concept=6, num_intention=K, hidden_dim=8, seq_max_len=MAX_LEN
    ),
    "GRU4Rec": lambda: MODELS["GRU4Rec"]([HIST], [ITEM], hidden_dim=12),
    "NARM": lambda: MODELS["NARM"](
        [HIST], [ITEM], hidden_dim=12, emb_dropout_p=0.0, session_rep_dropout_p=0.0
    ),
    "STAMP": lambda: MODELS["STAMP"]([HIST], [ITEM], weight_std=0.1),
    "SASRec": lambda: MODELS["SASRec"]([HIST], [ITEM], max_len=MAX_LEN, dropout_rate=0.0, num_heads=2),
}
NAMES = sorted(BUILDERS)


def test_every_registered_model_is_tested() -> None:
    assert set(BUILDERS) == set(MODELS)


def make_batch(n: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    hist = torch.randint(1, V, (n, L), generator=g)
    lengths = torch.randint(1, L + 1, (n,), generator=g)
    hist = hist.masked_fill(torch.arange(L).unsqueeze(0) < (L - lengths).unsqueeze(1), 0)  # left padding
    target = (hist[:, -1] * 7 + 3) % (V - 1) + 1
    return {
        "user_id": torch.randint(1, U, (n,), generator=g),
        "hist_item_id": hist,
        "item_id": target,
        "item_cate": cate_of(target),
    }


def items_batch(ids: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"item_id": ids, "item_cate": cate_of(ids)}


CATALOG = items_batch(torch.arange(V))


def build(name: str, seed: int = 0) -> TwoTowerModel:
    torch.manual_seed(seed)
    return BUILDERS[name]()


def full_softmax_loss(model: TwoTowerModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    out = model(batch)
    assert isinstance(out, TowerOutput)
    logits = model.score(out.user, model.item_tower(CATALOG))  # (B, V)
    logits = logits.masked_fill(torch.arange(V) == 0, float("-inf"))  # id 0 is padding
    return F.cross_entropy(logits, batch["item_id"])


@pytest.mark.parametrize("name", NAMES)
def test_shapes(name: str) -> None:
    model = build(name).eval()
    b = make_batch(5, 1)
    user = model.user_tower(b)
    assert user.shape in {(5, D), (5, K, D)}
    assert model.item_tower(items_batch(b["item_id"])).shape == (5, D)
    cands = torch.randint(1, V, (5, 7))
    items = model.item_tower(items_batch(cands))
    assert items.shape == (5, 7, D)
    assert model.item_tower(CATALOG).shape == (V, D)
    assert model.score(user, items).shape == (5, 7)
    assert model.score(user, model.item_tower(CATALOG)).shape == (5, V)
    out = model(b)
    assert out.user.shape == user.shape and out.item.shape == (5, D)
    assert model.item_id == "item_id"
    names = {f.name for f in model.features}
    assert {"item_id", "hist_item_id"} <= names
    if hasattr(model, "sequence_tower"):
        seq = model.sequence_tower(b)
        assert seq.shape == (5, L, D)
        torch.testing.assert_close(seq[:, -1], user)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("training", [False, True])
def test_catalog_vectors_equal_scoring_vectors(name: str, training: bool) -> None:
    model = build(name).train(training)
    b = make_batch(6, 2)
    with torch.no_grad():
        user = model.user_tower(b)
        cands = torch.randint(1, V, (6, 5))
        direct = model.score(user, model.item_tower(items_batch(cands)))  # (B, N)
        full = model.score(user, model.item_tower(CATALOG))  # (B, V)
    torch.testing.assert_close(full.gather(1, cands), direct, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_loss_finite_and_gradients_reach_every_parameter(name: str) -> None:
    model = build(name).train()
    loss = full_softmax_loss(model, make_batch(32, 3))
    assert torch.isfinite(loss)
    loss.backward()
    for pname, p in model.named_parameters():
        if not p.requires_grad:
            continue
        assert p.grad is not None, f"{name}: no gradient reaches {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient in {pname}"
        assert p.grad.abs().sum() > 0, f"{name}: zero gradient in {pname}"


@pytest.mark.parametrize("name", NAMES)
def test_loss_falls_on_learnable_signal(name: str) -> None:
    model = build(name).train()
    batch = make_batch(64, 4)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = full_softmax_loss(model, batch)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], f"{name}: loss {losses[0]:.3f} -> {losses[-1]:.3f}"


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_and_eval_determinism(name: str) -> None:
    model = build(name, seed=0).eval()
    other = build(name, seed=1).eval()
    other.load_state_dict(model.state_dict())
    b = make_batch(8, 5)
    with torch.no_grad():
        u1, u2, u3 = model.user_tower(b), model.user_tower(b), other.user_tower(b)
        i1, i3 = model.item_tower(CATALOG), other.item_tower(CATALOG)
    torch.testing.assert_close(u1, u2, rtol=0, atol=0)
    torch.testing.assert_close(u1, u3)
    torch.testing.assert_close(i1, i3)


@pytest.mark.parametrize("name", NAMES)
def test_left_padding_does_not_change_outputs(name: str) -> None:
    model = build(name).eval()
    b = make_batch(8, 6)
    padded = dict(b, hist_item_id=F.pad(b["hist_item_id"], (3, 0)))  # (B, L + 3)
    with torch.no_grad():
        torch.testing.assert_close(model.user_tower(padded), model.user_tower(b), rtol=1e-5, atol=1e-5)
        if hasattr(model, "sequence_tower"):
            seq = model.sequence_tower(padded)
            torch.testing.assert_close(seq[:, 3:], model.sequence_tower(b), rtol=1e-5, atol=1e-5)
            assert seq[:, :3].abs().max() == 0
