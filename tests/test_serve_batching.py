"""Micro-batching: batched answers equal one-by-one answers; a bad request fails alone."""

import asyncio
import json

import httpx
import numpy as np
import pandas as pd
import pytest

import recforge
from recforge.bundle import Bundle, RecommendQuery
from recforge.bundle.rows import per_request as _per_request
from recforge.models import matching
from recforge.serve import Batching, MicroBatcher, create_app
from serving_runs import ITEMS, LiveServer, TinyTwoTower, histories, make_two_stage


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setitem(matching.MODELS, "TinyTwoTower", TinyTwoTower)
    yield recforge.load(make_two_stage(tmp_path_factory.mktemp("batching")))
    mp.undo()


def users(n: int, seed: int) -> list[dict]:
    return histories(n, seed)[["user_id", "hist_item_id", "age"]].to_dict("records")


def assert_same(got, want) -> None:
    assert [r.items for r in got] == [r.items for r in want]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.scores, w.scores, rtol=1e-5, atol=1e-6)


# -- the batched bundle calls ------------------------------------------------------------------
def test_recommend_batch_equals_recommend_one_query_at_a_time(bundle):
    u = users(9, 5)
    u[0]["user_id"] = "never-seen"
    queries = [
        RecommendQuery(u[0:1], k=5),
        RecommendQuery(u[1:4], k=3, rerank=False),
        RecommendQuery(u[4:5], k=7, exclude_seen=False, exclude=[["i0", "i2", "unknown-item"]]),
        RecommendQuery(u[5:6], k=1),
        RecommendQuery(u[6:9], k=20),
        RecommendQuery([], k=4),
        RecommendQuery(u[0:1], k=0),  # invalid: its slot holds the error
        RecommendQuery([{"user_id": "u1", "hist_item_id": "i1"}], k=3),  # no age: the reranker needs it
        RecommendQuery(u[0:2], k=3, exclude=[["i1"]]),  # one exclusion list for two users
    ]
    got = bundle.recommend_batch(queries)
    for q, g in zip(queries[:6], got[:6]):
        want = bundle.recommend(q.users, q.k, exclude_seen=q.exclude_seen, rerank=q.rerank, exclude=q.exclude)
        assert_same(g, want)
    assert isinstance(got[6], ValueError) and "k must be" in str(got[6])
    assert isinstance(got[7], KeyError) and "age" in str(got[7])
    assert isinstance(got[8], ValueError) and "exclude" in str(got[8])
    # the rerank equals the DataFrame reference, Bundle.rank, on the retrieved candidates
    plain = bundle.recommend(u[6:9], k=20, rerank=False)
    for user, rec, cands in zip(u[6:9], got[4], plain):
        ranked = bundle.rank(user, cands.items)
        assert rec.items == ranked.candidates
        np.testing.assert_allclose(rec.scores, ranked.scores, rtol=1e-5, atol=1e-6)


def test_rerank_fills_item_table_gaps_with_the_user_value(bundle):
    """Item-side cells missing from the item table take the user's value, as ``rank`` does."""
    items = pd.DataFrame(
        {
            "item_id": ITEMS,
            "cat": ["good" if j % 2 == 0 else "bad" for j in range(len(ITEMS))],
            "age": [
                np.nan if j % 3 else 60.0 + j for j in range(len(ITEMS))
            ],  # an item-side number with gaps
        }
    )
    gaps = Bundle(
        ranker=bundle.ranker,
        retriever=bundle.retriever,
        index=bundle.index,
        items=items,
        config=bundle.config,
        path=bundle.path,
    )
    u = users(4, 8)
    got = gaps.recommend(u, k=8)
    plain = gaps.recommend(u, k=20, rerank=False)
    for user, rec, cands in zip(u, got, plain):
        ranked = gaps.rank(user, cands.items)
        assert rec.items == ranked.candidates[:8]
        np.testing.assert_allclose(rec.scores, ranked.scores[:8], rtol=1e-5, atol=1e-6)
    assert [r.scores for r in got] != [r.scores for r in bundle.recommend(u, k=8)]  # item ages count
    without_age = gaps.recommend([{k: v for k, v in user.items() if k != "age"} for user in u], k=8)
    assert all(len(r.items) == 8 for r in without_age)  # "age" is item-side now: not needed


def test_score_batch_isolates_bad_requests(bundle):
    rows = histories(6, 2)[["user_id", "item_id", "cat", "age"]].to_dict("records")
    got = bundle.score_batch([rows[:2], [dict(rows[2], age="old")], rows[2:6], []])
    np.testing.assert_allclose(got[0], bundle.score(rows[:2]), atol=1e-6)
    assert isinstance(got[1], TypeError) and "age" in str(got[1])
    np.testing.assert_allclose(got[2], bundle.score(rows[2:6]), atol=1e-6)
    assert got[3].shape == (0,)


def test_score_batch_encodes_its_record_requests_in_one_call(bundle, monkeypatch):
    rows = histories(6, 3)[["user_id", "item_id", "cat", "age"]].to_dict("records")
    pipe = bundle.ranker.pipeline
    calls = []
    original = pipe.transform_records
    monkeypatch.setattr(
        pipe, "transform_records", lambda r, columns=None: calls.append(len(r)) or original(r, columns)
    )
    got = bundle.score_batch([rows[:1], rows[1:3], rows[3:6]])
    assert calls == [6]
    for g, part in zip(got, [rows[:1], rows[1:3], rows[3:6]]):
        np.testing.assert_allclose(g, bundle.score(part), atol=1e-6)


def test_a_request_missing_a_column_fails_alone_though_others_have_it(bundle):
    rows = histories(4, 4)[["user_id", "item_id", "cat", "age"]].to_dict("records")
    no_age = [{k: v for k, v in r.items() if k != "age"} for r in rows[2:]]
    got = bundle.score_batch([rows[:2], no_age])
    np.testing.assert_allclose(got[0], bundle.score(rows[:2]), atol=1e-6)
    assert isinstance(got[1], KeyError) and "age" in str(got[1])


def test_recommend_batch_encodes_every_query_in_one_call(bundle, monkeypatch):
    pipe = bundle.retriever.pipeline
    calls = []
    original = pipe.transform_records
    monkeypatch.setattr(
        pipe, "transform_records", lambda r, columns=None: calls.append(len(r)) or original(r, columns)
    )
    queries = [RecommendQuery(users(2, 1), k=5), RecommendQuery(users(3, 2), k=5), RecommendQuery([], k=5)]
    got = bundle.recommend_batch(queries)
    assert calls == [5]
    monkeypatch.undo()
    for g, q in zip(got[:2], queries[:2]):
        assert_same(g, bundle.recommend_batch([q])[0])
    assert got[2] == []


def test_a_failing_joint_run_is_retried_request_by_request():
    def run(batch: list[int]) -> list[int]:
        if 13 in batch:
            raise RuntimeError("13 breaks whatever batch it is in")
        return [x * 2 for x in batch]

    got = _per_request([1, ValueError("bad"), 13, 4], run)
    assert got[0] == 2 and got[3] == 8
    assert isinstance(got[1], ValueError) and isinstance(got[2], RuntimeError)


# -- the batcher -------------------------------------------------------------------------------
def test_micro_batcher_groups_requests_and_hands_back_each_answer():
    seen: list[list[int]] = []

    def run(batch: list[int]) -> list[int | Exception]:
        seen.append(list(batch))
        return [ValueError(f"no {x}") if x == 3 else x * 10 for x in batch]

    async def main() -> list[object]:
        batcher = MicroBatcher(run, lambda x: 2, Batching(max_rows=8, max_wait_ms=50), name="test")
        try:
            return await asyncio.gather(*(batcher.submit(x) for x in range(10)), return_exceptions=True)
        finally:
            await batcher.close()

    results = asyncio.run(main())
    assert [r for i, r in enumerate(results) if i != 3] == [x * 10 for x in range(10) if x != 3]
    assert isinstance(results[3], ValueError) and str(results[3]) == "no 3"
    assert [len(b) for b in seen] == [4, 4, 2]  # max_rows=8 at 2 rows per request
    assert sorted(x for b in seen for x in b) == list(range(10))


def test_batching_settings_are_checked():
    with pytest.raises(ValueError, match="max_rows"):
        Batching(max_rows=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        Batching(max_wait_ms=-1)


# -- over HTTP ---------------------------------------------------------------------------------
async def post_all(url: str, path: str, bodies: list[dict]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await asyncio.gather(*(client.post(path, json=b) for b in bodies))


def test_concurrent_http_requests_are_batched_and_equal_sequential_answers(bundle):
    u = users(12, 9)
    bodies = [{"users": [x], "k": 4} for x in u[:8]]
    bodies.append({"users": u[8:10], "k": 6, "rerank": False})
    bad = [
        {"users": [{"user_id": "u1", "hist_item_id": "i1|i2"}], "k": 4},  # no age for the reranker
        {"users": u[10:12], "k": 4, "exclude": [["i1"]]},  # one exclusion list for two users
        {"users": [dict(u[0], hist_item_id=7)], "k": 4},  # fails validation before batching
    ]
    with LiveServer(create_app(bundle, batching=Batching(max_rows=64, max_wait_ms=100))) as url:
        responses = asyncio.run(post_all(url, "/recommend", bodies + bad))
        stats = httpx.get(f"{url}/metadata").json()["batching"]
    for body, r in zip(bodies, responses):
        assert r.status_code == 200, r.text
        want = bundle.recommend(body["users"], body["k"], rerank=body.get("rerank"))
        got = r.json()["results"]
        assert [g["items"] for g in got] == [w.items for w in want]
        np.testing.assert_allclose([g["scores"] for g in got], [w.scores for w in want], atol=1e-6)
    for r, field in zip(responses[len(bodies) :], ["age", "exclude", "hist_item_id"]):
        assert r.status_code == 422, r.text
        assert field in r.json()["detail"]
    answered = len(bodies) + 2  # the third bad request never reached the batcher
    assert stats["recommend"]["requests"] == answered
    assert stats["recommend"]["batches"] < answered  # requests were answered together
    assert stats["max_rows"] == 64 and stats["max_wait_ms"] == 100


def test_concurrent_score_requests_over_http(bundle):
    rows = histories(10, 4)[["user_id", "item_id", "cat", "age"]].to_dict("records")
    bodies = [{"rows": rows[i : i + 2]} for i in range(0, 10, 2)] + [{"rows": [dict(rows[0], cat=5)]}]
    with LiveServer(create_app(bundle, batching=Batching(max_wait_ms=100))) as url:
        responses = asyncio.run(post_all(url, "/score", bodies))
    for body, r in zip(bodies[:-1], responses):
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["probabilities"], bundle.score(body["rows"]), atol=1e-6)
    assert responses[-1].status_code == 422 and "cat" in responses[-1].json()["detail"]
    assert json.loads(responses[0].content)  # plain JSON body
