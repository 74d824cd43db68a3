"""End-to-end: MatchTrainer (modes 0/1/2, in-batch, shared, mixed, full softmax) trains a tiny
model on a learnable signal and beats its untrained metrics; bad combinations are refused before
training."""

from __future__ import annotations

import pytest
import torch

from _retrieval_helpers import IdTwoTower, clustered_log
from recforge.data import (
    BatchLoader,
    ColumnarDataset,
    NegativeSampler,
    catalog_of,
    leave_one_out_split,
)
from recforge.metrics import RankingEvaluator
from recforge.trainers import MatchTrainer, SeqTrainer


@pytest.fixture(scope="module")
def data():
    sp = leave_one_out_split(clustered_log())
    seen = sp.histories().seen()
    cols = lambda f: {"user_id": f.user_id.to_numpy(), "item_id": f.item_id.to_numpy()}  # noqa: E731
    return sp, seen, ColumnarDataset(cols(sp.train)), ColumnarDataset(cols(sp.test))


CASES = [
    dict(mode=0, negatives="sampled"),
    dict(mode=1, negatives="sampled"),
    dict(mode=1, negatives="sampled", pair_loss="hinge"),
    dict(mode=2, negatives="sampled"),
    dict(mode=2, negatives="in_batch"),
    dict(mode=2, negatives="shared"),
    dict(mode=2, negatives="mixed"),
    dict(mode=2, negatives="all"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_match_trainer_learns(case, data, tmp_path) -> None:
    sp, seen, train, test = data
    torch.manual_seed(0)
    model = IdTwoTower(sp.num_users, sp.num_items, dim=8)
    ev = RankingEvaluator(catalog_of(sp.num_items), ks=(5,), seen=seen)
    before = ev.evaluate(model, BatchLoader(test, 64))["ndcg@5"]
    counts = torch.bincount(torch.as_tensor(sp.train.item_id.to_numpy(copy=True)), minlength=sp.num_items)
    trainer = MatchTrainer(
        model,
        n_epoch=4,
        optimizer_params={"lr": 0.05},
        model_path=tmp_path,
        progress=False,
        plot=False,
        sampler=NegativeSampler(sp.num_items, seen=seen),
        catalog=catalog_of(sp.num_items),
        evaluator=ev,
        num_negatives=8,
        item_counts=counts,
        **case,
    )
    trainer.fit(BatchLoader(train, 64, shuffle=True), BatchLoader(test, 64))
    after = trainer.evaluate(model, BatchLoader(test, 64))
    assert after["ndcg@5"] > before + 0.2, (before, after)
    assert trainer.stopper.metric == "recall@5"


def test_labelled_pointwise_and_precomputed_negatives(data, tmp_path) -> None:
    sp, seen, train, test = data
    cols = train.columns
    n = len(train)
    neg = NegativeSampler(sp.num_items, seen=seen).sample(cols["item_id"], 1, users=cols["user_id"]).ids[:, 0]
    labelled = ColumnarDataset(
        {
            "user_id": torch.cat([cols["user_id"], cols["user_id"]]),
            "item_id": torch.cat([cols["item_id"], neg]),
        },
        labels=torch.cat([torch.ones(n), torch.zeros(n)]),
    )
    ev = RankingEvaluator(catalog_of(sp.num_items), ks=(5,), seen=seen)
    for mode, negatives, ds in [
        (0, "labelled", labelled),
        (2, "sampled", ColumnarDataset({**cols, "neg_items": torch.randint(1, sp.num_items, (n, 6))})),
    ]:
        torch.manual_seed(0)
        model = IdTwoTower(sp.num_users, sp.num_items, dim=8)
        before = ev.evaluate(model, BatchLoader(test, 64))["ndcg@5"]
        MatchTrainer(
            model,
            mode=mode,
            negatives=negatives,
            n_epoch=4,
            optimizer_params={"lr": 0.05},
            model_path=tmp_path,
            progress=False,
            plot=False,
        ).fit(BatchLoader(ds, 64, shuffle=True))
        assert ev.evaluate(model, BatchLoader(test, 64))["ndcg@5"] > before + 0.15


class _MultiInterest(IdTwoTower):
    def user_tower(self, batch):
        u = super().user_tower(batch)
        return torch.stack([u, -u], 1)  # (B, 2, D)


def test_refusals(data, tmp_path) -> None:
    sp, _, train, _ = data
    kw = dict(model_path=tmp_path, progress=False, plot=False, n_epoch=1)
    model = IdTwoTower(sp.num_users, sp.num_items)
    with pytest.raises(ValueError, match="needs negatives"):
        MatchTrainer(model, mode=1, **kw).fit(BatchLoader(train, 32))
    with pytest.raises(ValueError, match="list-wise"):
        MatchTrainer(model, mode=0, negatives="all", catalog=catalog_of(sp.num_items), **kw)
    with pytest.raises(ValueError, match="needs a sampler"):
        MatchTrainer(model, mode=2, negatives="shared", **kw)
    with pytest.raises(ValueError, match="negatives must be one of"):
        MatchTrainer(model, negatives="inbatch", **kw)
    with pytest.raises(ValueError, match="mode must be"):
        MatchTrainer(model, mode=3, **kw)
    with pytest.raises(ValueError, match="multi-interest"):
        MatchTrainer(
            _MultiInterest(sp.num_users, sp.num_items), mode=0, sampler=NegativeSampler(sp.num_items), **kw
        ).fit(BatchLoader(train, 32))
    with pytest.raises(TypeError, match="sequence_tower"):
        SeqTrainer(model, num_items=sp.num_items, **kw)
    # multi-interest list-wise is supported (best interest scores)
    MatchTrainer(_MultiInterest(sp.num_users, sp.num_items), mode=2, negatives="in_batch", **kw).fit(
        BatchLoader(train, 32)
    )


def test_inference_embedding(data, tmp_path) -> None:
    sp, _, _, test = data
    model = IdTwoTower(sp.num_users, sp.num_items, dim=8)
    trainer = MatchTrainer(model, negatives="in_batch", model_path=tmp_path, progress=False, plot=False)
    users = trainer.predict(model, BatchLoader(test, 16))
    assert users.shape == (len(test), 8)
    items = trainer.inference_embedding(model, "item", [{"item_id": torch.arange(sp.num_items)}])
    assert torch.equal(items, model.embedding.table_weight("item_id").detach())
    with pytest.raises(ValueError, match="'user' or 'item'"):
        trainer.inference_embedding(model, "query", [])
