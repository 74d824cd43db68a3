"""Vector indexes: exact torch and faiss Flat equal the evaluator's top-K; IVF/HNSW recall; save/load."""

from __future__ import annotations

import builtins
import os

import pytest
import torch

from recforge.metrics import rank_targets
from recforge.retrieval import ExactIndex, FaissIndex, Metric, load_index


def _data(seed: int = 0, n: int = 500, d: int = 16, q: int = 40):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(q, d, generator=g)


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_exact_and_flat_equal_bruteforce(metric: str) -> None:
    x, q = _data()
    ids = torch.arange(100, 100 + len(x))
    exact = ExactIndex(metric, chunk=37, query_chunk=7).build(x, ids)
    flat = FaissIndex("flat", metric).build(x, ids)
    if metric == "ip":
        s = q @ x.T
    else:
        s = -torch.cdist(q.double(), x.double()).pow(2).float()
    want_s, want_i = torch.topk(s, 10, dim=1)
    for index in (exact, flat):
        got = index.search(q, 10)
        assert torch.equal(got.ids, ids[want_i])
        assert torch.allclose(got.scores, want_s, atol=1e-3)


def test_index_equals_evaluator_topk() -> None:
    x, q = _data(1)
    items = torch.cat([torch.zeros(1, x.shape[1]), x])  # row = item id, id 0 padding
    r = rank_targets(q, items, (torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)), max_k=20)
    ids = torch.arange(1, len(items))
    for index in (ExactIndex().build(x, ids), FaissIndex("flat").build(x, ids)):
        assert torch.equal(index.search(q, 20).ids, r.topk_ids)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_approximate_recall(kind: str, metric: str) -> None:
    x, q = _data(2, n=2000)
    exact = ExactIndex(metric).build(x).search(q, 10).ids
    approx = FaissIndex(kind, metric, nlist=16, nprobe=16, threads=1).build(x).search(q, 10).ids
    recall = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(approx, exact)) / exact.numel()
    assert recall > 0.9


@pytest.mark.parametrize(
    "make",
    [lambda: ExactIndex("l2"), lambda: FaissIndex("hnsw", "ip"), lambda: FaissIndex("ivf", "l2", nlist=4)],
)
def test_add_save_load_roundtrip(make, tmp_path) -> None:
    x, q = _data(3, n=300)
    index = make().build(x[:200], torch.arange(200) * 2)
    index.add(x[200:], torch.arange(200, 300) * 2)
    assert len(index) == 300
    before = index.search(q, 5)
    path = tmp_path / "sub" / "index.pt"
    index.save(path)
    assert os.listdir(path.parent) == ["index.pt"]  # no temporary file left behind
    loaded = load_index(path)
    after = loaded.search(q, 5)
    assert torch.equal(before.ids, after.ids) and torch.allclose(before.scores, after.scores)
    assert bool((before.ids % 2 == 0).all())


def test_padding_errors_and_metric_parse() -> None:
    index = ExactIndex().build(torch.randn(3, 4))
    r = index.search(torch.randn(2, 4), 5)
    assert r.ids[:, 3:].eq(-1).all() and torch.isinf(r.scores[:, 3:]).all()
    flat = FaissIndex("flat").build(torch.randn(3, 4))
    assert flat.search(torch.randn(2, 4), 5).ids[:, 3:].eq(-1).all()
    with pytest.raises(ValueError, match="dimension 4"):
        index.search(torch.randn(2, 3), 1)
    with pytest.raises(ValueError, match="metric"):
        Metric.parse("cosine")
    with pytest.raises(ValueError, match="kind"):
        FaissIndex("lsh")
    with pytest.raises(ValueError, match="ids"):
        ExactIndex().build(torch.randn(3, 4), torch.arange(2))


def test_missing_faiss_gives_clear_error(monkeypatch) -> None:
    real_import = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "faiss":
            raise ImportError("no faiss")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match=r"recforge\[faiss\]"):
        FaissIndex("flat")
