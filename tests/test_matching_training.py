"""Matching models under the library's objectives and trainers: every registry model trains with
``MatchTrainer`` (all negative sources it supports) and the next-item models with ``SeqTrainer``;
YoutubeSBC's streaming logQ plugs into the in-batch softmax."""

from __future__ import annotations

import pytest
import torch

from recforge.data.catalog import ItemCatalog
from recforge.data.interactions import SeenItems
from recforge.data.sampling import NegativeSampler
from recforge.metrics.ranking import RankingEvaluator
from recforge.models.matching import MODELS, YoutubeSBC
from recforge.objectives.matching import in_batch_softmax_loss
from recforge.trainers.match import MatchMode, MatchObjective, NegativeSource, PairLoss
from recforge.trainers.seq import SeqTrainer
from test_contract_matching import BUILDERS, CATE, HIST_MEAN, ITEM, MLP2, USER, U, V, cate_of, make_batch

CATALOG = ItemCatalog({"item_id": torch.arange(V), "item_cate": cate_of(torch.arange(V))})


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize(("mode", "negatives"), [(2, "mixed"), (0, "sampled")])
def test_match_objectives_give_finite_losses_and_gradients(name: str, mode: int, negatives: str) -> None:
    torch.manual_seed(0)
    model = BUILDERS[name]().train()
    objective = MatchObjective(
        model,
        mode=MatchMode(mode),
        negatives=NegativeSource(negatives),
        sampler=NegativeSampler(V),
        catalog=CATALOG,
        num_negatives=5,
    )
    batch = make_batch(16, 0)
    loss = objective(model(batch), batch)
    assert torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_facebook_dssm_trains_pair_wise_with_hinge() -> None:
    torch.manual_seed(0)
    model = BUILDERS["FacebookDSSM"]().train()
    objective = MatchObjective(
        model,
        mode=MatchMode.PAIRWISE,
        negatives=NegativeSource.SAMPLED,
        sampler=NegativeSampler(V),
        catalog=CATALOG,
        num_negatives=3,
        pair_loss=PairLoss.HINGE,
        margin=0.3,
    )
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    batch = make_batch(64, 3)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = objective(model(batch), batch)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize("name", sorted(n for n, m in MODELS.items() if hasattr(m, "sequence_tower")))
def test_seq_trainer_trains_next_item_models(name: str, tmp_path: object) -> None:
    torch.manual_seed(0)
    model = BUILDERS[name]()
    b = make_batch(64, 1)
    hist = b["hist_item_id"]
    target = torch.cat([hist[:, 1:], b["item_id"].unsqueeze(1)], 1) * (hist > 0)  # next item per position
    rows = [
        {"hist_item_id": hist[i : i + 16], "target_item_id": target[i : i + 16]} for i in range(0, 64, 16)
    ]
    trainer = SeqTrainer(
        model, n_epoch=1, model_path=tmp_path, num_items=V, num_negatives=8, progress=False, plot=False
    )
    before = trainer.evaluate(model, rows)["loss"]
    for epoch in range(15):
        trainer.train_one_epoch(rows, epoch)
    assert trainer.evaluate(model, rows)["loss"] < before
    metrics = RankingEvaluator(CATALOG, ks=(5,)).evaluate(
        model, [{"hist_item_id": hist, "item_id": b["item_id"]}]
    )
    assert 0.0 <= metrics["hr@5"] <= 1.0


def test_youtube_sbc_log_q_corrects_in_batch_softmax() -> None:
    torch.manual_seed(0)
    model = YoutubeSBC([USER, HIST_MEAN], [ITEM, CATE], user_params=MLP2, item_params=MLP2).train()
    for step in range(30):  # item 1 in every batch, item 2 in every third
        model.frequency.update(torch.tensor([1, 2]) if step % 3 == 0 else torch.tensor([1]))
    q = model.item_log_q(torch.tensor([1, 2, 3])).exp()
    assert q[0] > q[1] > q[2]
    batch = make_batch(32, 2)
    out = model(batch)  # records the batch's items
    log_q = model.item_log_q(batch["item_id"])  # (B,)
    assert log_q.shape == (32,) and torch.isfinite(log_q).all()
    logits = model.score(out.user, out.item)  # (B, B)
    plain = in_batch_softmax_loss(logits, batch["item_id"])
    corrected = in_batch_softmax_loss(logits, batch["item_id"], log_q)
    assert torch.isfinite(corrected) and not torch.isclose(plain, corrected)


def test_match_objective_uses_youtube_sbc_streaming_log_q_in_batch() -> None:
    torch.manual_seed(0)
    model = YoutubeSBC([USER, HIST_MEAN], [ITEM, CATE], user_params=MLP2, item_params=MLP2).train()
    for step in range(20):  # skew the estimate so the correction is far from uniform
        model.frequency.update(torch.arange(1, 4) if step % 2 else torch.arange(1, V))
    batch = make_batch(32, 4)
    out = model(batch)
    ids = batch["item_id"]
    logits = model.score(out.user, out.item)  # (B, B)
    expected = in_batch_softmax_loss(logits, ids, model.item_log_q(ids))
    plain = in_batch_softmax_loss(logits, ids)
    kw = dict(mode=MatchMode.LISTWISE, negatives=NegativeSource.IN_BATCH)
    got = MatchObjective(model, **kw)(out, batch)  # type: ignore[arg-type]
    assert torch.allclose(got, expected, atol=1e-6) and not torch.isclose(got, plain)
    off = MatchObjective(model, logq=False, **kw)(out, batch)  # type: ignore[arg-type]
    assert torch.allclose(off, plain, atol=1e-6)


def test_in_batch_and_shared_negatives_mask_items_the_user_has_seen() -> None:
    """With ``NegativeSampler(seen=...)`` no user is pushed away from an item it trained on, whatever
    the source of the negative: the masks equal a brute-force check of every (row, candidate)."""
    torch.manual_seed(0)
    model = BUILDERS["YoutubeDNN"]().train()
    g = torch.Generator().manual_seed(3)
    lists = [sorted(set(torch.randint(1, V, (8,), generator=g).tolist())) for _ in range(U)]
    seen = SeenItems.from_lists(lists, num_items=V)
    sampler = NegativeSampler(V, seen=seen)
    batch = make_batch(16, 5)
    out = model(batch)
    for masked in (False, True):
        objective = MatchObjective(
            model, mode=MatchMode.LISTWISE, negatives=NegativeSource.MIXED,
            sampler=sampler if masked else NegativeSampler(V), catalog=CATALOG, num_negatives=12,
        )  # fmt: skip
        torch.manual_seed(1)
        c = objective.candidates(out, batch)
        torch.manual_seed(1)
        shared = sampler.sample_shared(12).ids
        cand = torch.cat([batch["item_id"], shared]).tolist()
        expected = torch.tensor(
            [
                [
                    j != row and c_id != pos and not (masked and c_id in lists[user])
                    for j, c_id in enumerate(cand)
                ]
                for row, (user, pos) in enumerate(zip(batch["user_id"].tolist(), batch["item_id"].tolist()))
            ]
        )
        assert c.valid is not None and torch.equal(c.valid, expected)
    assert not expected.all()  # the check had seen items to mask
