"""Contract tests for every model in the matching registry (no skip list).

Synthetic data: left-padded histories over a small catalog; the target of a row is a fixed function
of its last history item, so next-item signal is learnable. The generic checks come from
``tests/contract.py`` with an in-batch softmax objective; the tower-specific ones (shapes, catalog
vectors equal scoring vectors, ``sequence_tower`` padding) are here.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from contract import check_model_contract
from recforge.features import RandomNormal, SequenceFeature, SparseFeature
from recforge.models.defaults import ColumnRoles, default_model, feature_groups
from recforge.models.matching import MODELS, TwoTowerModel
from recforge.models.matching.sequential import SequentialModel
from recforge.models.matching.towers import without_leading_padding
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


ROLES = ColumnRoles(user="user_id", item="item_id", item_columns=("item_cate",))
MEAN_GROUPS = feature_groups([USER, HIST_MEAN, ITEM, CATE], ROLES)  # pooled-history towers
GROUPS = feature_groups([USER, HIST, ITEM, CATE], ROLES)
MEAN_HISTORY = ("DSSM", "FacebookDSSM", "YoutubeDNN", "YoutubeSBC")

# Small sizes over the registry defaults (``recforge.models.defaults``); a model without an entry
# here is built from its default as it is.
SMALL: dict[str, dict[str, object]] = {
    "DSSM": {"user_params": MLP2, "item_params": MLP2, "temperature": 0.2},
    "FacebookDSSM": {"user_params": MLP2, "item_params": MLP2, "temperature": 0.2},
    "YoutubeDNN": {"user_params": MLP2, "temperature": 0.2},
    "YoutubeSBC": {"user_params": MLP2, "item_params": MLP2, "temperature": 0.2},
    "MIND": {"max_length": MAX_LEN, "interest_num": K, "dynamic_interest": True},
    "ComirecDR": {"max_length": MAX_LEN, "interest_num": K},
    "ComirecSA": {"max_length": MAX_LEN, "interest_num": K},
    "SINE": {"num_concept": 6, "num_intention": K, "hidden_dim": 8},
    "GRU4Rec": {"hidden_dim": 12},
    "NARM": {"hidden_dim": 12, "emb_dropout_p": 0.0, "session_rep_dropout_p": 0.0},
    "STAMP": {"weight_std": 0.1},
    "SASRec": {"dropout_rate": 0.0, "num_heads": 2},
}


def builder(name: str) -> Callable[[], TwoTowerModel]:
    groups = MEAN_GROUPS if name in MEAN_HISTORY else GROUPS
    return lambda: default_model(name, groups, **SMALL.get(name, {}))


BUILDERS: dict[str, Callable[[], TwoTowerModel]] = {name: builder(name) for name in MODELS}
NAMES = sorted(BUILDERS)


def test_the_small_sizes_name_registered_models() -> None:
    assert set(SMALL) <= set(MODELS) and set(MEAN_HISTORY) <= set(MODELS)


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


def in_batch_softmax(out: TowerOutput, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Every row's user against every row's item (best interest for multi-interest users); copies of
    a row's own target in other rows are masked."""
    s = out.user @ out.item.T  # (B, B) or (B, K, B)
    if s.dim() == 3:
        s = s.amax(1)  # (B, B)
    ids = batch["item_id"]
    dup = (ids.unsqueeze(0) == ids.unsqueeze(1)) & ~torch.eye(len(ids), dtype=torch.bool)
    return F.cross_entropy(s.masked_fill(dup, -1e9), torch.arange(len(ids)))


@pytest.mark.parametrize("name", NAMES)
def test_model_contract(name: str) -> None:
    """Finite loss, gradients on every parameter, loss falls on a learnable signal, eval
    determinism, state_dict round trip and left-padding invariance (``tests/contract.py``)."""
    check_model_contract(
        BUILDERS[name],
        make_batch(32, 3),
        in_batch_softmax,
        learnable=make_batch(64, 4),
        sequence_columns=["hist_item_id"],
        steps=40,
        lr=2e-2,
        min_rel_drop=0.1,
    )


@pytest.mark.parametrize("name", NAMES)
def test_left_padding_does_not_change_towers(name: str) -> None:
    model = build(name).eval()
    b = make_batch(8, 6)
    padded = dict(b, hist_item_id=F.pad(b["hist_item_id"], (3, 0)))  # (B, L + 3)
    with torch.no_grad():
        torch.testing.assert_close(model.user_tower(padded), model.user_tower(b), rtol=1e-5, atol=1e-5)
        if hasattr(model, "sequence_tower"):
            seq = model.sequence_tower(padded)
            torch.testing.assert_close(seq[:, 3:], model.sequence_tower(b), rtol=1e-5, atol=1e-5)
            assert seq[:, :3].abs().max() == 0


@pytest.mark.parametrize("name", sorted(n for n in MODELS if issubclass(MODELS[n], SequentialModel)))
def test_user_tower_on_short_histories_equals_the_full_width_pass(name: str) -> None:
    """The user tower drops all-padding leading columns: the state is that of the full-width pass."""
    torch.manual_seed(0)
    model = BUILDERS[name]().eval()
    batch = make_batch(12, 5)
    batch["hist_item_id"][:, : L - 2] = 0  # every history at most 2 items: 4 all-padding columns
    assert without_leading_padding(batch, "hist_item_id")["hist_item_id"].shape == (12, 2)
    with torch.no_grad():
        got = model.user_tower(batch)
        full = model.sequence_tower(batch)[:, -1]
    torch.testing.assert_close(got, full, rtol=1e-5, atol=1e-6)


def test_shortest_first_orders_rows_by_history_length_and_keeps_rows_together() -> None:
    from recforge.data import shortest_first

    cols = {
        "user_id": torch.tensor([7, 8, 9]),
        "hist_item_id": torch.tensor([[0, 3, 4], [0, 0, 5], [6, 7, 8]]),
    }
    out = shortest_first(cols, "hist_item_id")
    assert out["user_id"].tolist() == [8, 7, 9]
    assert out["hist_item_id"].tolist() == [[0, 0, 5], [0, 3, 4], [6, 7, 8]]
