"""FeaturePipeline.fit_stream: one pass over batches gives exactly the in-memory fit (same JSON)."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recforge.preprocess import Bucketize, Categorical, FeaturePipeline, MultiValue, Numeric, SequenceColumn
from recforge.preprocess.numeric import ExactMoments
from recforge.preprocess.vocab import ValueCounter, ValueKind

N_FILES, ROWS = 4, 60


def specs() -> list:
    return [
        Numeric("x", fill="mean", normalize="standard"),
        Numeric("y", fill="median", normalize="minmax"),
        Numeric("z", fill="zero", normalize="standard", log1p=True),
        # ties at the max_size cut: 'a'..'f' are drawn equally often in every file
        Categorical("tied", max_size=3),
        Categorical("city", min_freq=3, fill_value="unknown"),
        Categorical("code", fill_value=-1),
        Categorical("score"),  # whole floats in some files, fractions in one: a float vocabulary
        Categorical("hashed", hash_buckets=17),
        Categorical("item", min_freq=2),
        SequenceColumn("hist", max_len=4, shared_with="item"),
        MultiValue("tags", sep="|", max_size=5),
        MultiValue("genres", sep=None),
        Bucketize("age", bins=6),  # quantile edges: every training value is kept below the cap
        Bucketize("clicks", bins=8),  # mostly zeros: merged edges, fewer buckets
        Bucketize("price", bins=5, strategy="uniform"),
        Bucketize("rank", boundaries=[1, 10, 100]),
    ]


def write_dir(root: Path) -> list[pa.Table]:
    rng = np.random.default_rng(3)
    root.mkdir(parents=True)
    (root / "_SUCCESS").write_text("")
    tables = []
    for f in range(N_FILES):
        n = ROWS
        x = rng.normal(10, 3, n)
        x[rng.random(n) < 0.2] = np.nan
        y = rng.integers(0, 9, n).astype(np.float64)
        y[rng.random(n) < 0.1] = np.nan
        z = rng.lognormal(0, 1, n)
        z[rng.random(n) < 0.1] = np.nan
        city = rng.choice(["paris", "oslo", "lima", "rome", "kyiv"], n, p=[0.5, 0.3, 0.1, 0.06, 0.04]).astype(
            object
        )
        city[rng.random(n) < 0.1] = None
        code = pa.array(rng.integers(0, 7, n), mask=rng.random(n) < 0.1)
        score = rng.integers(0, 5, n).astype(np.float64) + (0.5 if f == 2 else 0.0) * (rng.random(n) < 0.3)
        items = rng.integers(0, 40, n)
        hist = [rng.integers(0, 40, int(k)).tolist() if k >= 0 else None for k in rng.integers(-1, 7, n)]
        tags = ["|".join(rng.choice(list("pqrstuvw"), int(k))) if k else None for k in rng.integers(0, 4, n)]
        genres = [rng.choice(["drama", "comedy", "noir"], int(k)).tolist() for k in rng.integers(0, 3, n)]
        table = pa.table(
            {
                "x": x,
                "y": y,
                "z": pa.array(z, from_pandas=True),
                "tied": np.tile(list("abcdef"), n // 6),
                "city": pa.array(city, pa.string()),
                "code": code,
                "score": score,
                "hashed": rng.integers(0, 1000, n),
                "item": items,
                "hist": pa.array(hist, pa.list_(pa.int64())),
                "tags": pa.array(tags, pa.string()),
                "genres": pa.array(genres, pa.list_(pa.string())),
                "label": rng.integers(0, 2, n),
                "age": pa.array(
                    np.where(rng.random(n) < 0.1, np.nan, rng.normal(40, 12, n)), from_pandas=True
                ),
                "clicks": np.where(rng.random(n) < 0.7, 0, rng.integers(1, 50, n)),
                "price": rng.lognormal(2, 1, n),
                "rank": rng.integers(0, 300, n),
            }
        )
        pq.write_table(table, root / f"part-{f:05d}.parquet", row_group_size=25)
        tables.append(table)
    return tables


@pytest.fixture
def parquet_dir(tmp_path: Path) -> tuple[Path, pa.Table]:
    tables = write_dir(tmp_path / "train")
    return tmp_path / "train", pa.concat_tables(tables)


def fitted_json(pipe: FeaturePipeline) -> str:
    return json.dumps(pipe.to_dict(), sort_keys=False)


@pytest.mark.parametrize("batch_rows", [7, 25, 1000])
def test_stream_fit_equals_in_memory_fit(parquet_dir, batch_rows: int) -> None:
    path, table = parquet_dir
    in_memory = FeaturePipeline(specs(), label="label").fit(table)
    streamed = FeaturePipeline(specs(), label="label").fit_stream(path, batch_rows=batch_rows)
    assert fitted_json(streamed) == fitted_json(in_memory)
    # the pandas path agrees too, and the fit is not trivial
    assert fitted_json(FeaturePipeline(specs(), label="label").fit(table.to_pandas())) == fitted_json(
        in_memory
    )
    assert streamed.vocabulary("tied").values == ["a", "b", "c"]  # equal counts: value order decides
    assert streamed.vocabulary("score").kind is ValueKind.FLOAT
    assert streamed.vocabulary("hist") is streamed.vocabulary("item")
    assert streamed.max_len(MultiValue("genres", sep=None)) == 2
    assert streamed.num_buckets("age") == 6 and 1 < streamed.num_buckets("clicks") < 8
    out = streamed.transform(table)
    ref = in_memory.transform(table.to_pandas())
    assert out.keys() == ref.keys()
    for k in ref:
        np.testing.assert_array_equal(out[k], ref[k], err_msg=k)


def test_stream_fit_from_record_batches_in_any_order(parquet_dir) -> None:
    _, table = parquet_dir
    in_memory = FeaturePipeline(specs(), label="label").fit(table)
    batches = table.to_batches(max_chunksize=11)[::-1]  # reversed: counts and exact sums are order-free
    streamed = FeaturePipeline(specs(), label="label").fit_stream(iter(batches))
    assert fitted_json(streamed) == fitted_json(in_memory)


def test_stream_fit_errors_name_the_problem(parquet_dir, tmp_path: Path) -> None:
    _, table = parquet_dir
    with pytest.raises(ValueError, match="no training batches"):
        FeaturePipeline(specs(), label="label").fit_stream([])
    with pytest.raises(KeyError, match=r"\['nope'\] not found in training batch 0"):
        FeaturePipeline([Categorical("nope")]).fit_stream(table.to_batches())
    first = pa.table({"c": ["a", "b"]})
    with pytest.raises(TypeError, match="column 'c': earlier batches held str values, this one int"):
        FeaturePipeline([Categorical("c")]).fit_stream([first, pa.table({"c": [1, 2]})])
    with pytest.raises(FileNotFoundError):
        FeaturePipeline([Categorical("c")]).fit_stream(tmp_path / "missing")


def test_exact_moments_match_rational_arithmetic_for_any_batching() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [rng.normal(-5, 1e4, 3000), rng.lognormal(0, 6, 2000), [5e-324, -1e-310, 0.0, -0.0, 1e20]]
    )
    whole = ExactMoments(squares=True)
    whole.add(x)
    exact = [Fraction(v) for v in x]
    s1, s2, n = sum(exact), sum(v * v for v in exact), len(exact)
    assert whole.mean() == float(s1 / n)
    assert whole.std() == math.sqrt(float(s2 / n - (s1 / n) ** 2))
    assert whole.std() == pytest.approx(x.std(), rel=1e-12)
    parts = ExactMoments(squares=True)
    for piece in np.array_split(rng.permutation(x), 9):
        parts.add(piece)
    assert (parts.n, parts.total, parts.total_sq) == (whole.n, whole.total, whole.total_sq)


def test_value_counter_memory_follows_distinct_values_not_rows() -> None:
    counter = ValueCounter("c")
    rng = np.random.default_rng(0)
    for _ in range(200):
        counter.add(pa.array(rng.integers(0, 1000, 5000)), ValueKind.INT)
        assert counter._held <= 4 * 1000 + 65_536 + 1000  # one batch's counts beyond the bound at most
    table = counter.table()
    assert len(table) == 1000 and int(pa.compute.sum(table["count"]).as_py()) == 200 * 5000


def test_median_fill_from_counts_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    for n in (1, 2, 7, 10):
        x = rng.integers(0, 5, n).astype(np.float64)
        df = pd.DataFrame({"v": np.append(x, np.nan)})
        pipe = FeaturePipeline([Numeric("v", fill="median", normalize=None)]).fit_stream(
            [df.iloc[i : i + 3] for i in range(0, len(df), 3)]
        )
        assert pipe.numeric_stats("v").fill == np.median(x)


def test_arrow_input_is_encoded_like_pandas_input() -> None:
    # Arrow keeps NaN apart from null; the Arrow path must treat NaN as missing, as pandas does
    nan = float("nan")
    table = pa.table(
        {
            "f": pa.array([1.0, nan, 3.0, 1.0]),
            "g": pa.array([0.5, 2.0, nan, None]),
            "s": pa.array(["a", None, "b", "a"]),
            "lst": pa.array([[1, 2], None, [], [2, 2, 3]], pa.list_(pa.int32())),
        }
    )
    cols = [
        Categorical("f", fill_value=0),
        Numeric("g"),
        Categorical("s", fill_value="?"),
        MultiValue("lst", sep=None),
    ]
    a = FeaturePipeline(cols).fit(table)
    b = FeaturePipeline(cols).fit(table.to_pandas())
    assert fitted_json(a) == fitted_json(b)
    for k, v in b.transform(table.to_pandas()).items():
        np.testing.assert_array_equal(a.transform(table)[k], v, err_msg=k)
    with pytest.raises(ValueError, match="column 'f': 1 of 4 rows are missing"):
        FeaturePipeline([Categorical("f")]).fit(table)
    with pytest.raises(TypeError, match="column 's': Numeric expects numbers"):
        FeaturePipeline([Numeric("s")]).fit(table)


def test_stream_fit_reads_a_csv_file_in_chunks(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    df = pd.DataFrame(
        {
            "u": rng.choice(["ann", "bob", "cy", "dee"], 500),
            "v": rng.integers(0, 50, 500),
            "w": np.where(rng.random(500) < 0.1, np.nan, rng.normal(0, 1, 500)),
            "tags": ["|".join(rng.choice(list("xyz"), int(k))) for k in rng.integers(1, 4, 500)],
        }
    )
    path = tmp_path / "train.csv"
    df.to_csv(path, index=False)
    cols = [Categorical("u"), Categorical("v", min_freq=12), Numeric("w"), MultiValue("tags")]
    whole = FeaturePipeline(cols).fit(path)
    assert fitted_json(FeaturePipeline(cols).fit_stream(path, batch_rows=64)) == fitted_json(whole)
