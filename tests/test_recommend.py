"""Bundle.recommend: retrieval through the saved index (exact), seen items excluded, ranking rerank."""

import numpy as np
import pandas as pd
import pytest
import torch

import recforge
from recforge.bundle import build_item_index
from recforge.models import matching
from recforge.runs import load_run
from serving_runs import ITEMS, TinyTwoTower, histories, make_two_stage


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setitem(matching.MODELS, "TinyTwoTower", TinyTwoTower)
    root = tmp_path_factory.mktemp("recommend")
    make_two_stage(root)
    yield root
    mp.undo()


def brute_force(run, users: pd.DataFrame, k: int, exclude_seen: bool):
    """Every item's vector against every user, in plain pandas/torch, for reference."""
    items = pd.read_parquet(run.path.parent / "items.parquet")
    enc = run.pipeline.transform(
        pd.concat([users.iloc[:1]] * len(items), ignore_index=True).assign(
            item_id=items["item_id"].to_numpy(), cat=items["cat"].to_numpy()
        )
    )
    with torch.no_grad():
        iv = run.model.item_tower({k2: torch.from_numpy(enc[k2]) for k2 in ("item_id", "cat")})
        uenc = run.pipeline.transform(users.assign(item_id="i0", cat="good"))
        uv = run.model.user_tower({k2: torch.from_numpy(uenc[k2]) for k2 in ("user_id", "hist_item_id")})
    scores = (uv @ iv.T).numpy()
    out = []
    for i in range(len(users)):
        seen = set(str(users["hist_item_id"].iloc[i]).split("|")) if exclude_seen else set()
        order = [j for j in np.argsort(-scores[i], kind="stable") if items["item_id"].iloc[j] not in seen]
        out.append(([items["item_id"].iloc[j] for j in order[:k]], scores[i][order[:k]]))
    return out


def test_recommend_equals_brute_force_and_excludes_seen(root):
    bundle = recforge.load(root / "retrieval")  # retrieval stage only
    assert bundle.ranker is None and len(bundle.index) == len(ITEMS)
    users = histories(6, 11)[["user_id", "hist_item_id"]]
    users.loc[0, "user_id"] = "brand-new-user"  # unseen user: OOV, still served
    recs = bundle.recommend(users, k=5)
    want = brute_force(bundle.retriever, users, 5, exclude_seen=True)
    for rec, (ids, scores) in zip(recs, want):
        assert rec.items == ids
        np.testing.assert_allclose(rec.scores, scores, rtol=1e-5, atol=1e-5)
    for rec, hist in zip(recs, users["hist_item_id"]):
        assert not set(rec.items) & set(hist.split("|"))
    # exclude_seen=False may return history items; explicit exclusions are honoured
    keep = bundle.recommend(users, k=5, exclude_seen=False)
    assert [r.items for r in keep] == [w[0] for w in brute_force(bundle.retriever, users, 5, False)]
    excl = bundle.recommend(users.iloc[:1], k=5, exclude_seen=False, exclude=[keep[0].items[:2]])
    assert excl[0].items[:3] == keep[0].items[2:5]


def test_two_stage_rerank(root):
    bundle = recforge.load(root / "serve")
    users = histories(3, 12)[["user_id", "hist_item_id", "age"]]
    recs = bundle.recommend(users, k=5)
    plain = bundle.recommend(users, k=20, rerank=False)
    for i, rec in enumerate(recs):
        assert len(rec.items) == 5
        assert sorted(rec.scores, reverse=True) == rec.scores
        assert set(rec.items) <= set(plain[i].items)  # reranked from the retrieved top-20
        ranked = bundle.rank(users.iloc[i].to_dict(), plain[i].items)
        assert rec.items == ranked.candidates[:5]
        # the ranking model learnt that 'good' (even-numbered) items are clicked
        assert all(int(item[1:]) % 2 == 0 for item in rec.items[:3])
    meta = bundle.metadata()
    assert meta["retrieval"]["model"] == "TinyTwoTower" and meta["ranking"]["model"] == "DeepFM"
    assert meta["num_items"] == len(ITEMS) and meta["rerank"] == 20


def test_recommend_errors(root):
    bundle = recforge.load(root / "serve")
    users = histories(2, 3)
    with pytest.raises(ValueError, match="k must be"):
        bundle.recommend(users, k=0)
    with pytest.raises(KeyError, match="hist_item_id"):
        bundle.recommend(users.drop(columns=["hist_item_id"]))
    with pytest.raises(ValueError, match="exclude"):
        bundle.recommend(users, exclude=[["i1"]])


def test_recommend_over_http(root):
    import httpx

    from recforge.serve import create_app
    from serving_runs import LiveServer

    bundle = recforge.load(root / "serve")
    users = histories(2, 13)[["user_id", "hist_item_id", "age"]]
    with LiveServer(create_app(bundle)) as url:
        body = {"users": users.to_dict("records"), "k": 4}
        r = httpx.post(f"{url}/recommend", json=body)
        assert r.status_code == 200, r.text
        want = bundle.recommend(users, k=4)
        got = r.json()["results"]
        assert [g["items"] for g in got] == [w.items for w in want]
        np.testing.assert_allclose([g["scores"] for g in got], [w.scores for w in want], atol=1e-6)
        schema = httpx.get(f"{url}/openapi.json").json()
        assert set(schema["components"]["schemas"]["UserRow"]["required"]) == {"user_id", "hist_item_id"}
        for bad, field in [
            (dict(body, k=0), "k"),
            (dict(body, k=5000), "k"),
            (dict(body, users=[{"hist_item_id": "i1"}]), "user_id"),
            (dict(body, users=[{"user_id": "u1", "hist_item_id": 5}]), "hist_item_id"),
            (dict(body, users=[{"user_id": "u1", "hist_item_id": "i1"}]), "age"),  # rerank needs it
        ]:
            r = httpx.post(f"{url}/recommend", json=bad)
            assert r.status_code == 422, (bad, r.text)
            assert field in r.json()["detail"], r.text


def test_export_both_towers_with_dynamic_batch_and_sequence(root):
    import json

    import onnxruntime as ort

    from recforge.runs import export_run

    run = load_run(root / "retrieval")
    paths = export_run(root / "retrieval")
    assert [p.name for p in paths] == ["user_tower.onnx", "item_tower.onnx"]
    manifest = json.loads((root / "retrieval" / "export" / "manifest.json").read_text())
    assert manifest["graphs"]["user_tower"]["inputs"] == ["user_id", "hist_item_id"]
    users = histories(37, 21)
    enc = run.pipeline.transform(users)
    batch = {k: torch.from_numpy(v) for k, v in enc.items()}
    with torch.no_grad():
        want_user = run.model.user_tower(batch).numpy()
        want_item = run.model.item_tower(batch).numpy()
    user = ort.InferenceSession(str(paths[0]), providers=["CPUExecutionProvider"])
    got = user.run(None, {"user_id": enc["user_id"], "hist_item_id": enc["hist_item_id"]})[0]
    np.testing.assert_allclose(got, want_user, atol=1e-5)
    # a different history length than the export example: the sequence axis is dynamic
    short = enc["hist_item_id"][:, -2:]
    with torch.no_grad():
        want_short = run.model.user_tower(dict(batch, hist_item_id=torch.from_numpy(short))).numpy()
    got = user.run(None, {"user_id": enc["user_id"], "hist_item_id": short})[0]
    np.testing.assert_allclose(got, want_short, atol=1e-5)
    item = ort.InferenceSession(str(paths[1]), providers=["CPUExecutionProvider"])
    got = item.run(None, {"item_id": enc["item_id"], "cat": enc["cat"]})[0]
    np.testing.assert_allclose(got, want_item, atol=1e-5)


REAL = {
    # registry name -> (history pooling, inputs(by feature name), params)
    "DSSM": (
        "mean",
        lambda by: {
            "user_features": [by["user_id"], by["hist_item_id"]],
            "item_features": [by["item_id"], by["cat"]],
        },
        {"user_params": {"dims": [16, 8]}, "item_params": {"dims": [16, 8]}, "temperature": 0.2},
    ),
    "ComirecSA": (  # multi-interest: (B, K, D) user vectors
        "concat",
        lambda by: {
            "user_features": [by["user_id"]],
            "history_features": [by["hist_item_id"]],
            "item_features": [by["item_id"]],
        },
        {"max_length": 5, "interest_num": 3},
    ),
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_recommend_with_registry_models(name, tmp_path):
    from recforge.preprocess import Categorical, FeaturePipeline, SequenceColumn
    from recforge.runs import save_model_spec

    pooling, inputs_of, params = REAL[name]
    torch.manual_seed(0)
    pipe = FeaturePipeline(
        [
            Categorical("user_id", embed_dim=8),
            Categorical("item_id", embed_dim=8),
            Categorical("cat", embed_dim=8),
            SequenceColumn("hist_item_id", max_len=5, shared_with="item_id", sep="|", pooling=pooling),
        ]
    ).fit(histories(1000, 0))
    inputs = inputs_of({f.name: f for f in pipe.features})
    model = matching.MODELS[name](**inputs, **params).eval()
    pipe.save(tmp_path / "pipeline")
    save_model_spec(tmp_path, name, inputs, params)
    torch.save({"model": model.state_dict()}, tmp_path / "best.pt")
    items = pd.DataFrame(
        {"item_id": ITEMS, "cat": ["good" if j % 2 == 0 else "bad" for j in range(len(ITEMS))]}
    )
    build_item_index(load_run(tmp_path), items=items)
    bundle = recforge.load(tmp_path)
    users = histories(5, 4)[["user_id", "hist_item_id"]]
    recs = bundle.recommend(users, k=6)
    # reference: the model's own score over every item, seen items removed
    enc = pipe.transform(histories(5, 4).assign(cat="good"))
    ienc = pipe.transform(items.assign(user_id="u1", hist_item_id=""))
    with torch.no_grad():
        u = model.user_tower({k: torch.from_numpy(enc[k]) for k in ("user_id", "hist_item_id")})
        iv = model.item_tower({k: torch.from_numpy(ienc[k]) for k in ("item_id", "cat")})
        scores = model.score(u, iv).numpy()  # (B, N)
    for i, rec in enumerate(recs):
        seen = set(users["hist_item_id"].iloc[i].split("|"))
        order = [ITEMS[j] for j in np.argsort(-scores[i], kind="stable") if ITEMS[j] not in seen]
        assert rec.items == order[:6]
