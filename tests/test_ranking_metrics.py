"""Full-ranking metrics against brute-force numpy references (ties, exclusion, chunking)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from _retrieval_helpers import IdTwoTower
from recforge.data import ItemCatalog, SeenItems, catalog_of
from recforge.metrics import RankingEvaluator, evaluate_retrieval, full_ranking_metrics, rank_targets

KS = (1, 3, 5, 10)


def _random_case(seed: int, *, n_users: int = 37, n_items: int = 41, dim: int = 4, ties: bool):
    rng = np.random.default_rng(seed)
    if ties:  # small integer vectors: many exactly tied scores
        users = rng.integers(-2, 3, (n_users, dim)).astype(np.float32)
        items = rng.integers(-2, 3, (n_items, dim)).astype(np.float32)
    else:
        users = rng.normal(size=(n_users, dim)).astype(np.float32)
        items = rng.normal(size=(n_items, dim)).astype(np.float32)
    gt = [sorted(set(rng.integers(1, n_items, rng.integers(0, 4)).tolist())) for _ in range(n_users)]
    seen = [sorted(set(rng.integers(1, n_items, rng.integers(0, 8)).tolist())) for _ in range(n_users)]
    return users, items, gt, seen


def _pairs(lists):
    rows = np.repeat(np.arange(len(lists)), [len(x) for x in lists])
    items = np.concatenate([np.asarray(x, dtype=np.int64) for x in lists]) if lists else np.zeros(0)
    return torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(items, dtype=torch.long)


def _reference(users, items, gt, seen, ks):
    """Pessimistic ranks by sorting each row's ranked items; metrics from those ranks."""
    scores = users.astype(np.float64) @ items.T.astype(np.float64)
    n_items = items.shape[0]
    out = {f"{m}@{k}": [] for m in ("recall", "hr", "ndcg", "mrr", "precision") for k in ks}
    for u in range(len(users)):
        if not gt[u]:
            continue
        allowed = [j for j in range(1, n_items) if j not in set(seen[u]) - set(gt[u])]
        order = sorted(allowed, key=lambda j: -scores[u, j])
        sorted_scores = [scores[u, j] for j in order]
        ranks = []
        for t in gt[u]:
            # position of the last ranked item scoring >= the target: ties rank above it
            ranks.append(max(i + 1 for i, s in enumerate(sorted_scores) if s >= scores[u, t]))
        for k in ks:
            hits = [r for r in ranks if r <= k]
            idcg = sum(1 / math.log2(i + 2) for i in range(min(len(gt[u]), k)))
            out[f"recall@{k}"].append(len(hits) / len(gt[u]))
            out[f"precision@{k}"].append(len(hits) / k)
            out[f"hr@{k}"].append(float(bool(hits)))
            out[f"ndcg@{k}"].append(sum(1 / math.log2(r + 1) for r in hits) / idcg)
            out[f"mrr@{k}"].append(1 / min(ranks) if min(ranks) <= k else 0.0)
    return {k: float(np.mean(v)) for k, v in out.items()}


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_full_ranking_matches_bruteforce(ties: bool, seed: int) -> None:
    users, items, gt, seen = _random_case(seed, ties=ties)
    ref = _reference(users, items, gt, seen, KS)
    got = full_ranking_metrics(
        torch.from_numpy(users).double(),
        torch.from_numpy(items).double(),
        _pairs(gt),
        ks=KS,
        exclude=_pairs(seen),
        user_chunk=7,
        item_chunk=9,
    )
    for name, value in ref.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name


def test_no_ties_matches_classic_topk_list_metrics() -> None:
    users, items, gt, seen = _random_case(3, ties=False)
    scores = users @ items.T
    scores[:, 0] = -np.inf
    for u, s in enumerate(seen):
        scores[u, [j for j in s if j not in gt[u]]] = -np.inf
    got = full_ranking_metrics(
        torch.from_numpy(users), torch.from_numpy(items), _pairs(gt), ks=(5,), exclude=_pairs(seen)
    )
    recalls, ndcgs, top_union = [], [], set()
    for u in range(len(users)):
        top = list(np.argsort(-scores[u], kind="stable")[:5])
        top_union |= set(top) if gt[u] else set()
        if not gt[u]:
            continue
        recalls.append(len(set(top) & set(gt[u])) / len(gt[u]))
        dcg = sum(1 / math.log2(i + 2) for i, j in enumerate(top) if j in gt[u])
        ndcgs.append(dcg / sum(1 / math.log2(i + 2) for i in range(min(5, len(gt[u])))))
    assert got["recall@5"] == pytest.approx(np.mean(recalls))
    assert got["ndcg@5"] == pytest.approx(np.mean(ndcgs))
    assert got["coverage@5"] == pytest.approx(len(top_union - {0}) / (items.shape[0] - 1))


def test_constant_scores_get_no_hits_pessimistic_ties() -> None:
    users = torch.ones(5, 3)
    items = torch.ones(20, 3)
    targets = (torch.arange(5), torch.tensor([1, 2, 3, 4, 5]))
    got = full_ranking_metrics(users, items, targets, ks=(10,))
    assert got["hr@10"] == 0.0 and got["ndcg@10"] == 0.0


def test_ranks_beyond_max_k_and_small_catalog() -> None:
    users = torch.tensor([[1.0]])
    items = torch.tensor([[0.0], [3.0], [2.0], [1.0]])  # id 0 padding, best 1 > 2 > 3
    r = rank_targets(users, items, (torch.tensor([0, 0, 0]), torch.tensor([1, 2, 3])), max_k=1)
    assert r.ranks.tolist() == [1.0, math.inf, math.inf]
    r = rank_targets(users, items, (torch.tensor([0, 0, 0]), torch.tensor([1, 2, 3])), max_k=10)
    assert r.ranks.tolist() == [1.0, 2.0, 3.0]
    # excluding item 1 moves the others up, but a target is never excluded
    r = rank_targets(
        users,
        items,
        (torch.tensor([0, 0]), torch.tensor([2, 3])),
        max_k=10,
        exclude=(torch.tensor([0, 0]), torch.tensor([1, 2])),
    )
    assert r.ranks.tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="padding"):
        rank_targets(users, items, (torch.tensor([0]), torch.tensor([0])), max_k=1)


def _model_case(seed: int = 0):
    torch.manual_seed(seed)
    n_users, n_items = 50, 70
    model = IdTwoTower(n_users, n_items, dim=8).eval()
    rng = np.random.default_rng(seed)
    gt = SeenItems.from_lists(
        [sorted(set(rng.integers(1, n_items, 3).tolist())) if u else [] for u in range(n_users)],
        num_items=n_items,
    )
    seen = SeenItems.from_lists(
        [sorted(set(rng.integers(1, n_items, 6).tolist())) for u in range(n_users)], num_items=n_items
    )
    return model, n_users, n_items, gt, seen


def test_evaluator_independent_of_batch_and_chunk_sizes() -> None:
    model, n_users, n_items, gt, seen = _model_case()
    users = torch.arange(1, n_users)
    results = []
    for bs, uc, ic, ib in [(49, 1024, 16384, 65536), (1, 3, 7, 5), (8, 5, 64, 13)]:
        ev = RankingEvaluator(
            catalog_of(n_items),
            ks=(5, 20),
            seen=seen,
            ground_truth=gt,
            user_chunk=uc,
            item_chunk=ic,
            item_batch_size=ib,
        )
        results.append(ev.evaluate(model, ({"user_id": users[a : a + bs]} for a in range(0, len(users), bs))))
    for r in results[1:]:
        assert r.keys() == results[0].keys()
        for k in r:
            assert r[k] == pytest.approx(results[0][k], abs=1e-12), k
    # the same numbers as the vector-level function
    with torch.no_grad():
        u = model.user_tower({"user_id": users})
        it = model.item_tower({"item_id": torch.arange(n_items)})
    rows, its = gt.pairs(users)
    er, ei = seen.pairs(users)
    direct = full_ranking_metrics(u, it, (rows, its), ks=(5, 20), exclude=(er, ei))
    for k, v in direct.items():
        assert results[0][k] == pytest.approx(v, abs=1e-12)


def test_single_target_column_and_sampled_evaluation_is_labelled() -> None:
    model, n_users, n_items, _, seen = _model_case(1)
    batch = {"user_id": torch.arange(1, n_users), "item_id": torch.randint(1, n_items, (n_users - 1,))}
    full = evaluate_retrieval(model, [batch], catalog_of(n_items), seen=seen, ks=(10,))
    sampled = evaluate_retrieval(model, [batch], catalog_of(n_items), seen=seen, ks=(10,), num_negatives=20)
    assert "recall@10" in full and "coverage@10" in full
    assert set(sampled) == {f"sampled_{m}@10" for m in ("recall", "hr", "ndcg", "mrr", "precision")}
    # ranking among 20 negatives is easier than among every item
    assert sampled["sampled_hr@10"] >= full["hr@10"]
    again = evaluate_retrieval(model, [batch], catalog_of(n_items), seen=seen, ks=(10,), num_negatives=20)
    assert again == sampled  # seeded


def test_sampled_ranks_match_bruteforce() -> None:
    from recforge.metrics import sampled_ranks

    torch.manual_seed(0)
    u, items = torch.randn(6, 3), torch.randn(15, 3)
    negs = torch.randint(1, 15, (6, 5))
    targets = (torch.tensor([0, 2, 2, 5]), torch.tensor([3, 4, 7, 1]))
    got = sampled_ranks(u, items, targets, negs)
    s = u @ items.T
    want = [1 + int((s[r, negs[r]] >= s[r, t]).sum()) for r, t in zip(*targets)]
    assert got.tolist() == want


def test_evaluator_errors() -> None:
    model, _, n_items, _, seen = _model_case()
    with pytest.raises(ValueError, match="num_items"):
        RankingEvaluator(catalog_of(n_items + 1), seen=seen)
    with pytest.raises(KeyError, match="item_id"):
        RankingEvaluator(catalog_of(n_items)).evaluate(model, [{"user_id": torch.tensor([1, 2])}])
    with pytest.raises(ValueError, match="ks"):
        RankingEvaluator(catalog_of(n_items), ks=(0,))
    cat = ItemCatalog({"item_id": torch.arange(n_items)})
    assert cat.num_items == n_items


def test_evaluator_normalize_ranks_by_cosine() -> None:
    model, n_users, n_items, gt, seen = _model_case(2)
    users = torch.arange(1, n_users)
    got = RankingEvaluator(catalog_of(n_items), ks=(5,), seen=seen, ground_truth=gt, normalize=True).evaluate(
        model, [{"user_id": users}]
    )
    with torch.no_grad():
        u = torch.nn.functional.normalize(model.user_tower({"user_id": users}), dim=-1)
        it = torch.nn.functional.normalize(model.item_tower({"item_id": torch.arange(n_items)}), dim=-1)
    want = full_ranking_metrics(u, it, gt.pairs(users), ks=(5,), exclude=seen.pairs(users))
    assert got == pytest.approx(want)
