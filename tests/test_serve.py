"""The real HTTP server (uvicorn on a free loopback port) talked to with httpx."""

import httpx
import numpy as np
import pytest

import recforge
from recforge.serve import create_app
from serving_runs import LiveServer, interactions, train_ranking_run


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return recforge.load(train_ranking_run(tmp_path_factory.mktemp("serve")))


@pytest.fixture(scope="module")
def url(bundle):
    with LiveServer(create_app(bundle)) as base:
        yield base


ROW = {"user_id": "u1", "item_id": "i2", "cat": "good", "age": 33.0}


def test_health_metadata_and_openapi(url):
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    meta = httpx.get(f"{url}/metadata").json()
    assert meta["ranking"]["model"] == "DeepFM"
    assert [f["name"] for f in meta["ranking"]["features"]] == ["user_id", "item_id", "cat", "age"]
    assert meta["recforge_version"] == recforge.__version__
    schema = httpx.get(f"{url}/openapi.json").json()
    assert {"/score", "/rank", "/healthz", "/metadata"} <= set(schema["paths"])
    assert "/recommend" not in schema["paths"]  # no retrieval stage in this bundle
    row_schema = schema["components"]["schemas"]["RankingRow"]
    assert set(row_schema["required"]) == {"user_id", "item_id", "cat", "age"}


def test_score_over_http_equals_the_bundle(url, bundle):
    rows = interactions(20, 5).drop(columns=["label"]).to_dict("records")
    rows.append(dict(ROW, user_id="stranger", cat="never-seen"))  # OOV still scores
    r = httpx.post(f"{url}/score", json={"rows": rows})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["probabilities"], bundle.score(rows), atol=1e-6)


def test_rank_over_http(url, bundle):
    cands = [{"item_id": "i2", "cat": "good"}, {"item_id": "i3", "cat": "bad"}]
    r = httpx.post(f"{url}/rank", json={"user": {"user_id": "u1", "age": 30.0}, "candidates": cands})
    assert r.status_code == 200, r.text
    body = r.json()
    want = bundle.rank({"user_id": "u1", "age": 30.0}, cands)
    assert body["candidates"] == want.candidates
    np.testing.assert_allclose(body["scores"], want.scores, atol=1e-6)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rows": [{k: v for k, v in ROW.items() if k != "cat"}]}, "cat"),  # missing feature
        ({"rows": [dict(ROW, cat=7)]}, "cat"),  # wrong type: the vocabulary holds text
        ({"rows": [dict(ROW, age="old")]}, "age"),  # wrong type: numeric
        ({"rows": [ROW] * 1025}, "rows"),  # oversized batch (max_batch 1024)
        ({"rows": []}, "rows"),
        ({"nothing": 1}, "rows"),
        ({"user": {"age": 3.0}, "candidates": [{"item_id": "i1", "cat": "good"}]}, "user_id"),
    ],
)
def test_invalid_requests_get_422_naming_the_field(url, body, field):
    path = "/rank" if "user" in body else "/score"
    r = httpx.post(f"{url}{path}", json=body)
    assert r.status_code == 422, r.text
    assert field in r.json()["detail"]
    assert "Traceback" not in r.text


def test_malformed_json_and_internal_errors_do_not_crash_or_leak(url, bundle, monkeypatch):
    r = httpx.post(f"{url}/score", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422

    def boom(requests):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(bundle, "score_batch", boom)  # what the server's micro-batches call
    r = httpx.post(f"{url}/score", json={"rows": [ROW]})
    assert r.status_code == 500
    assert r.json() == {"detail": "internal server error"}
    assert "secret" not in r.text
    monkeypatch.undo()
    assert httpx.post(f"{url}/score", json={"rows": [ROW]}).status_code == 200  # still serving
