"""Bucketize: numeric columns cut into buckets that encode as categorical ids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from recforge.preprocess import OOV, Bucketize, FeaturePipeline, Numeric
from recforge.preprocess.buckets import BucketAccumulator


def _frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(40, 12, n)
    x[rng.random(n) < 0.1] = np.nan
    gain = np.where(rng.random(n) < 0.8, 0.0, rng.integers(100, 10_000, n)).astype(np.float64)
    return pd.DataFrame(
        {"age": x, "gain": gain, "hours": rng.integers(1, 80, n), "label": rng.integers(0, 2, n)}
    )


def test_quantile_boundaries_are_the_inner_numpy_quantiles() -> None:
    df = _frame()
    pipe = FeaturePipeline([Bucketize("age", bins=5)]).fit(df)
    present = df["age"].dropna().to_numpy()
    expected = np.nextafter(np.quantile(present, np.linspace(0, 1, 6))[1:-1], np.inf)  # right-closed
    np.testing.assert_array_equal(pipe.bucket_boundaries("age"), expected)
    q = np.quantile(present, 0.2)  # a value equal to a quantile stays in the bucket ending there
    assert pipe.encode_column("age", [q, np.nextafter(q, np.inf)]).tolist() == [2, 3]
    assert pipe.num_buckets("age") == 5
    assert pipe.features[0].vocab_size == 5 + 2  # padding and missing included


def test_uniform_boundaries_are_equal_widths_on_the_training_range() -> None:
    df = _frame()
    pipe = FeaturePipeline([Bucketize("hours", bins=4, strategy="uniform")]).fit(df)
    lo, hi = df["hours"].min(), df["hours"].max()
    np.testing.assert_array_equal(pipe.bucket_boundaries("hours"), np.linspace(lo, hi, 5)[1:-1])


def test_ids_of_edges_below_above_and_missing_values() -> None:
    pipe = FeaturePipeline([Bucketize("x", boundaries=[0, 10, 100])]).fit(pd.DataFrame({"x": [1.0]}))
    values = [-5.0, 0.0, 5.0, 10.0, 99.9, 100.0, 1e9, np.inf, -np.inf, np.nan, None]
    ids = pipe.encode_column("x", values)
    # bucket i is [b[i-1], b[i]): an edge value opens the next bucket, as tf bucketized_column
    assert ids.tolist() == [2, 3, 3, 4, 4, 5, 5, 5, 2, OOV, OOV]
    assert ids.dtype == np.int64
    assert pipe.num_buckets("x") == 4


def test_repeated_values_merge_edges_into_fewer_buckets() -> None:
    df = _frame(1000)
    pipe = FeaturePipeline([Bucketize("gain", bins=10)]).fit(df)
    # inner quantiles: 0 (80% of rows) and the 90% quantile
    inner = np.unique(np.quantile(df["gain"], np.linspace(0, 1, 11)[1:-1]))
    assert pipe.bucket_boundaries("gain") == tuple(np.nextafter(inner, np.inf))
    assert pipe.num_buckets("gain") == len(inner) + 1 < 10
    assert pipe.encode_column("gain", [0.0, 1.0]).tolist() == [2, 3]  # zero keeps a bucket of its own
    assert pipe.features[0].vocab_size == pipe.num_buckets("gain") + 2
    ids = pipe.transform(df)["gain"]
    assert set(np.unique(ids)) == set(range(2, pipe.num_buckets("gain") + 2))  # every bucket is used
    constant = FeaturePipeline([Bucketize("c", bins=3)]).fit(pd.DataFrame({"c": [7, 7, 7]}))
    assert (
        constant.bucket_boundaries("c") == () and constant.encode_column("c", [1, 7, 9]).tolist() == [2] * 3
    )


@pytest.mark.parametrize("strategy", ["quantile", "uniform"])
def test_fit_stream_equals_fit(strategy: str) -> None:
    df = _frame(500, seed=1)
    specs = [Bucketize("age", bins=7, strategy=strategy), Bucketize("gain", strategy=strategy)]
    table = pa.Table.from_pandas(df, preserve_index=False)
    in_memory = FeaturePipeline(specs).fit(df)
    streamed = FeaturePipeline(specs).fit_stream(reversed(table.to_batches(max_chunksize=37)))
    assert json.dumps(streamed.to_dict()) == json.dumps(in_memory.to_dict())


def test_reservoir_is_exact_up_to_its_capacity_and_a_seeded_sample_beyond() -> None:
    rng = np.random.default_rng(5)
    x = rng.exponential(3, 1000)
    spec = Bucketize("x", bins=4)
    exact = BucketAccumulator(spec, capacity=1000)
    for part in np.array_split(x, 7):
        exact.add(part)
    assert exact.boundaries() == tuple(np.nextafter(np.quantile(x, [0.25, 0.5, 0.75]), np.inf))

    def sampled() -> tuple[float, ...]:
        acc = BucketAccumulator(spec, capacity=200)
        for part in np.array_split(x, 9):
            acc.add(part)
        assert acc._reservoir is not None and len(acc._reservoir) == 200
        assert np.isin(acc._reservoir, x).all()
        return acc.boundaries()

    assert sampled() == sampled()  # seeded: the same data gives the same edges
    np.testing.assert_allclose(sampled(), np.quantile(x, [0.25, 0.5, 0.75]), rtol=0.3)


def test_transform_records_and_encode_column_agree_with_transform() -> None:
    df = _frame(300)
    specs = [Bucketize("age", bins=6), Bucketize("gain", bins=5, strategy="uniform"), Bucketize("hours")]
    pipe = FeaturePipeline(specs).fit(df)
    rows: list[dict[str, object]] = [
        {"age": v if i % 4 else None, "gain": g, "hours": int(h)}
        for i, (v, g, h) in enumerate(zip(df["age"], df["gain"], df["hours"]))
    ]
    rows[3]["gain"] = 1e12  # above the training range
    rows[4]["hours"] = -3  # below it
    del rows[5]["age"]  # an absent key is a missing value
    frame = pd.DataFrame.from_records(rows)
    ref = pipe.transform(frame)
    for n in (1, 17, 300):  # small lists parse in Python, longer ones through Arrow
        out = pipe.transform_records(rows[:n])
        for name in ref:
            np.testing.assert_array_equal(out[name], ref[name][:n], err_msg=name)
            np.testing.assert_array_equal(
                pipe.encode_column(name, [r.get(name) for r in rows[:n]]), ref[name][:n], err_msg=name
            )
    assert ref["age"][0] == OOV and ref["gain"][3] == pipe.num_buckets("gain") + 1 and ref["hours"][4] == 2


def test_save_load_round_trip_and_old_files_still_load(tmp_path: Path) -> None:
    df = _frame()
    specs = [Bucketize("age", bins=4, embed_dim=6), Bucketize("gain", boundaries=[1, 1000]), Numeric("hours")]
    pipe = FeaturePipeline(specs, label="label").fit(df)
    loaded = FeaturePipeline.load(pipe.save(tmp_path))
    assert loaded.columns == pipe.columns and loaded.features == pipe.features
    assert loaded.to_dict() == pipe.to_dict()
    out, ref = loaded.transform(df), pipe.transform(df)
    for k in ref:
        np.testing.assert_array_equal(out[k], ref[k])
    old = FeaturePipeline([Numeric("hours")]).fit(df).to_dict()
    del old["buckets"]  # a file written before Bucketize existed
    assert FeaturePipeline.from_dict(old).numeric_stats("hours") is not None
    broken = pipe.to_dict()
    del broken["buckets"]
    with pytest.raises(ValueError, match=r"no bucket boundaries for column\(s\) \['age', 'gain'\]"):
        FeaturePipeline.from_dict(broken)


def test_bad_arguments_and_values_name_the_column() -> None:
    with pytest.raises(ValueError, match=r"column 'a': bins must be an int >= 1, got 0"):
        Bucketize("a", bins=0)
    with pytest.raises(ValueError, match=r"column 'a': boundaries must be strictly increasing"):
        Bucketize("a", boundaries=[1, 1, 2])
    with pytest.raises(ValueError, match=r"column 'a': boundaries must be finite numbers"):
        Bucketize("a", boundaries=[0, np.inf])
    with pytest.raises(ValueError, match=r"column 'a': boundaries must be a non-empty list"):
        Bucketize("a", boundaries=[])
    with pytest.raises(ValueError, match=r"column 'a': strategy must be one of 'quantile', 'uniform'"):
        Bucketize("a", strategy="quantiles")
    with pytest.raises(TypeError, match=r"column 'a': Bucketize expects numbers .* e\.g\. 'x'"):
        FeaturePipeline([Bucketize("a")]).fit(pd.DataFrame({"a": [1.0, "x"]}))
    with pytest.raises(ValueError, match=r"column 'a': no non-missing training values"):
        FeaturePipeline([Bucketize("a")]).fit(pd.DataFrame({"a": [np.nan, np.nan]}))
    with pytest.raises(ValueError, match=r"column 'a': 1 infinite values"):
        FeaturePipeline([Bucketize("a")]).fit(pd.DataFrame({"a": [1.0, np.inf]}))
    pipe = FeaturePipeline([Bucketize("a", bins=2)]).fit(pd.DataFrame({"a": [1.0, 2.0, 3.0]}))
    with pytest.raises(TypeError, match=r"column 'a': Bucketize expects numbers"):
        pipe.transform_records([{"a": "3"}])
    with pytest.raises(KeyError, match=r"column 'a' is Bucketize and has no vocabulary"):
        pipe.vocabulary("a")


def test_bucketized_feature_trains_in_deepfm() -> None:
    import torch

    from recforge.models.ranking import DeepFM

    df = _frame(64)
    pipe = FeaturePipeline(
        [
            Bucketize("age", bins=4, embed_dim=8),
            Bucketize("gain", embed_dim=8),
            Bucketize("hours", embed_dim=8),
        ],
        label="label",
    ).fit(df)
    batch = {k: torch.as_tensor(v) for k, v in pipe.transform(df).items()}
    torch.manual_seed(0)
    model = DeepFM(pipe.features, pipe.features, mlp_params={"dims": [8]})
    logits = model(batch)
    assert logits.shape == (64,) and torch.isfinite(logits).all()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["label"])
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
