import numpy as np
import pandas as pd
import pytest
import yaml

import recforge
from recforge.trainers import CTRTrainer
from serving_runs import interactions, train_ranking_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train_ranking_run(tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="module")
def bundle(run_dir):
    return recforge.load(run_dir)


def test_import_recforge_stays_light():
    import subprocess
    import sys

    code = "import sys, recforge; print('torch' in sys.modules); print(callable(recforge.load))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_score_raw_rows_matches_the_training_path(bundle, run_dir):
    test = pd.read_parquet(run_dir.parent / "test.parquet")
    run = bundle.ranker
    want = CTRTrainer(run.model, model_path=run_dir / "eval", progress=False).predict(
        run.model, run.loader(test, 128)
    )
    want = np.asarray(want, dtype=np.float32).reshape(-1)
    got = bundle.score(test.drop(columns=["label"]))
    assert got.shape == (len(test),)
    np.testing.assert_allclose(got, want, atol=1e-6)
    # the same rows as a list of dicts, and one dict
    records = test.drop(columns=["label"]).head(3).to_dict("records")
    np.testing.assert_allclose(bundle.score(records), got[:3], atol=1e-6)
    np.testing.assert_allclose(bundle.score(records[0]), got[:1], atol=1e-6)


def test_unseen_values_map_to_oov_and_still_score(bundle):
    row = {"user_id": "never-seen", "item_id": "i0", "cat": "brand-new", "age": 30.0}
    p = bundle.score(row)
    assert p.shape == (1,) and 0.0 < p[0] < 1.0
    # every unseen value is the same OOV id, so two different unseen users score the same
    q = bundle.score(dict(row, user_id="another-stranger", cat="other-new"))
    assert q[0] == pytest.approx(p[0], abs=1e-7)


def test_score_errors_name_the_column(bundle):
    with pytest.raises(KeyError, match="cat"):
        bundle.score({"user_id": "u1", "item_id": "i0", "age": 30.0})
    with pytest.raises(TypeError, match="cat"):
        bundle.score({"user_id": "u1", "item_id": "i0", "cat": 3, "age": 30.0})
    with pytest.raises(TypeError, match="dict"):
        bundle.score("not rows")
    with pytest.raises(ValueError, match="max_batch"):
        bundle.score(pd.concat([interactions(600, 3)] * 2))


def test_rank_sorts_candidates_with_the_learnt_signal(bundle):
    user = {"user_id": "u3", "age": 40.0}
    cands = [{"item_id": f"i{j}", "cat": "good" if j % 2 == 0 else "bad"} for j in range(10)]
    ranked = bundle.rank(user, cands)
    assert sorted(ranked.scores, reverse=True) == ranked.scores
    # without an item-id column configured, candidates come back as the rows given
    ids = [c["item_id"] for c in ranked.candidates]
    assert set(ids[:5]) == {f"i{j}" for j in range(0, 10, 2)}  # 'good' items first
    # scores equal score() of the joined rows
    rows = [dict(user, **c) for c in cands]
    by_id = dict(zip(ids, ranked.scores))
    np.testing.assert_allclose([by_id[c["item_id"]] for c in cands], bundle.score(rows), atol=1e-6)


def test_rank_ids_through_the_item_table(run_dir, bundle):
    serve = run_dir.parent / "serve"
    serve.mkdir(exist_ok=True)
    (serve / "bundle.yaml").write_text(
        yaml.safe_dump({"ranking": "../ranking", "items": "../items.parquet", "item_id": "item_id"})
    )
    b = recforge.load(serve)
    user = {"user_id": "u3", "age": 40.0}
    ranked = b.rank(user, ["i1", "i2", "i3", "i4", "unknown-item"])
    assert len(ranked.candidates) == 5
    assert set(ranked.candidates[:2]) == {"i2", "i4"}
    want = bundle.rank(user, [{"item_id": "i2", "cat": "good"}])
    assert dict(zip(ranked.candidates, ranked.scores))["i2"] == pytest.approx(want.scores[0], abs=1e-6)
    with pytest.raises(TypeError, match="retrieval"):
        b.recommend([user])


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        recforge.load(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"model\.json"):
        recforge.load(tmp_path)
    (tmp_path / "bundle.yaml").write_text("rerank: 5\n")
    with pytest.raises(ValueError, match="ranking"):
        recforge.load(tmp_path)
    (tmp_path / "bundle.yaml").write_text("ranking: x\nrerunk: 5\n")
    with pytest.raises(ValueError, match="rerunk"):
        recforge.load(tmp_path)


def test_score_is_deterministic(bundle):
    rows = interactions(50, 9).drop(columns=["label"])
    a = bundle.score(rows)
    np.testing.assert_array_equal(a, bundle.score(rows))


@pytest.mark.parametrize("kind", ["str", "int", "float"])
def test_small_batch_vocabulary_path_equals_the_bulk_path(kind):
    from recforge.preprocess import Vocabulary
    from recforge.preprocess.vocab import SMALL_BATCH

    rng = np.random.default_rng(0)
    known = {
        "str": [f"v{i}" for i in range(300)],
        "int": list(range(-50, 250)),
        "float": [i / 4 for i in range(300)],
    }[kind]
    vocab = Vocabulary(known)
    pool = known + ({"str": ["zz", "v-1"], "int": [999, -51], "float": [0.3, 1e9]}[kind])
    values = [pool[i] for i in rng.integers(0, len(pool), 3 * SMALL_BATCH)]
    bulk = vocab.encode(values)  # > SMALL_BATCH: Arrow index_in
    small = np.concatenate([vocab.encode(values[i : i + 100]) for i in range(0, len(values), 100)])
    np.testing.assert_array_equal(small, bulk)
    assert (bulk == 1).any() and (bulk > 1).any()
    if kind == "float":  # whole floats are canonicalised the same way on both paths
        np.testing.assert_array_equal(vocab.encode([2.0, 2.5]), vocab.encode([2.0, 2.5] * SMALL_BATCH)[:2])
