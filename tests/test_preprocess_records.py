"""FeaturePipeline.transform_records (dict rows, no DataFrame) equals transform on the same rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from recforge.preprocess import Categorical, FeaturePipeline, MultiValue, Numeric, SequenceColumn

ITEMS = [f"i{j}" for j in range(30)]


def _train(n: int, rng: np.random.Generator) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user": rng.choice([f"u{j}" for j in range(20)], n),
            "item": rng.choice(ITEMS, n),
            "code": rng.integers(100, 120, n),  # integer ids
            "ratio": rng.choice([0.5, 1.5, 2.25], n),  # float ids
            "city": rng.choice(["a", "b", None], n),  # filled categorical
            "bucket": rng.choice(["x", "y", "z"], n),  # hashed
            "age": rng.integers(18, 70, n).astype(float),
            "income": rng.lognormal(3, 1, n),
            "tags": ["|".join(rng.choice(["t1", "t2", "t3", "t4"], rng.integers(0, 4))) for _ in range(n)],
            "hist": [list(rng.choice(ITEMS, rng.integers(0, 6))) for _ in range(n)],
            "clicks": ["|".join(map(str, rng.integers(1, 40, rng.integers(0, 5)))) for _ in range(n)],
        }
    )


def _pipeline(train: pd.DataFrame) -> FeaturePipeline:
    return FeaturePipeline(
        [
            Categorical("user", min_freq=2),
            Categorical("item"),
            Categorical("code"),
            Categorical("ratio"),
            Categorical("city", fill_value="none"),
            Categorical("bucket", hash_buckets=7),
            Numeric("age", fill="median"),
            Numeric("income", log1p=True, normalize="minmax"),
            MultiValue("tags", sep="|", max_len=3),
            SequenceColumn("hist", max_len=4, shared_with="item"),
            SequenceColumn("clicks", max_len=3, sep="|"),
        ]
    ).fit(train)


def _random_rows(n: int, rng: np.random.Generator, variant: str = "json") -> list[dict[str, object]]:
    """Serving-like rows: unseen values, None and absent keys for missing values, lists as text or
    lists. ``variant``: "json" (plain Python values), "numpy" (NumPy scalars, NaN for missing
    numbers) or "lists" (list columns as Python lists)."""
    rows: list[dict[str, object]] = []
    for i in range(n):
        hist_len = int(rng.integers(0, 8))
        row: dict[str, object] = {
            "user": str(rng.choice([f"u{j}" for j in range(25)])),  # u20.. are unseen
            "item": str(rng.choice([*ITEMS, "new-item"])),
            "code": int(rng.integers(95, 125)),
            "ratio": float(rng.choice([0.5, 1.5, 2.25, 9.75])),
            "city": [None, "a", "b", "elsewhere"][i % 4],
            "bucket": str(rng.choice(["x", "y", "z", "w"])),
            "age": [None, float(rng.integers(10, 90)), int(rng.integers(10, 90))][i % 3],
            "income": float(rng.lognormal(3, 1)) if i % 5 else None,
            "tags": ["t1|t2", "", "t4 | t9 |t3|t1", None, "t2"][i % 5],
            "hist": [str(v) for v in rng.choice([*ITEMS, "gone"], hist_len)] if i % 6 else None,
            "clicks": "|".join(map(str, rng.integers(1, 50, int(rng.integers(0, 6))))),
        }
        if i % 8 == 5:
            row["ratio"] = [2.0, 1, 2.25][i % 3]  # whole floats and ints in a float vocabulary
        if variant == "numpy":
            row["code"] = np.int64(row["code"])  # type: ignore[call-overload]
            row["age"] = np.nan if row["age"] is None else np.float64(row["age"])  # type: ignore[arg-type]
            row["income"] = np.float32(row["income"]) if row["income"] is not None else np.nan
        elif variant == "lists":
            row["tags"] = (
                None if row["tags"] is None else [t.strip() for t in str(row["tags"]).split("|") if t.strip()]
            )
            row["clicks"] = [int(t) for t in str(row["clicks"]).split("|") if t]
        if i % 7 == 3:
            del row["age"]  # absent key: a missing value, as in a DataFrame built from the rows
        if i % 9 == 4:
            del row["hist"]
        rows.append(row)
    return rows


# 1-17 rows: parsed in Python; 300: through Arrow, dict lookups; 3000: Arrow lookups as well
@pytest.mark.parametrize("n", [1, 2, 17, 300, 3000])
@pytest.mark.parametrize("variant", ["json", "numpy", "lists"])
def test_transform_records_equals_the_dataframe_path(n: int, variant: str) -> None:
    rng = np.random.default_rng(n)
    pipe = _pipeline(_train(2000, rng))
    rows = _random_rows(n, rng, variant)
    want = pipe.transform(pd.DataFrame.from_records(rows))
    got = pipe.transform_records(rows)
    assert list(got) == [c.name for c in pipe.columns]
    for name, arr in want.items():
        assert got[name].dtype == arr.dtype and got[name].shape == arr.shape, name
        np.testing.assert_array_equal(got[name], arr, err_msg=name)
    if n > 100:
        assert (got["user"] == 1).any() and (got["item"] == 1).any()  # unseen values reached OOV


def test_transform_records_subset_and_encode_column() -> None:
    rng = np.random.default_rng(0)
    pipe = _pipeline(_train(500, rng))
    rows = _random_rows(12, rng)
    full = pipe.transform(pd.DataFrame.from_records(rows))
    part = pipe.transform_records(rows, columns=["hist", "age"])
    assert list(part) == ["hist", "age"]
    np.testing.assert_array_equal(part["hist"], full["hist"])
    np.testing.assert_array_equal(pipe.encode_column("income", [r["income"] for r in rows]), full["income"])
    series = pd.DataFrame.from_records(rows)["tags"]
    np.testing.assert_array_equal(pipe.encode_column("tags", series), full["tags"])


def test_transform_records_errors_name_the_column() -> None:
    rng = np.random.default_rng(1)
    pipe = _pipeline(_train(500, rng))
    row = _random_rows(1, rng)[0]
    assert row["city"] is None  # a lone missing value of a filled column: encoded as the fill
    assert (
        pipe.transform_records([row])["city"].tolist()
        == pipe.transform_records([dict(row, city="none")])["city"].tolist()
    )
    with pytest.raises(KeyError, match="'user'"):
        pipe.transform_records([{k: v for k, v in row.items() if k != "user"}])
    with pytest.raises(KeyError, match="nope"):
        pipe.transform_records([row], columns=["nope"])
    with pytest.raises(TypeError, match=r"'age'.*str"):
        pipe.transform_records([dict(row, age="old")])
    with pytest.raises(TypeError, match="'code'"):
        pipe.transform_records([dict(row, code="c1")])  # text for an integer vocabulary
    with pytest.raises(TypeError, match=r"'item'.*text or all numbers"):
        pipe.transform_records([row, dict(row, item=5)])
    with pytest.raises(ValueError, match=r"'user'.*missing"):
        pipe.transform_records([dict(row, user=None)])
    with pytest.raises(TypeError, match="'hist'"):
        pipe.transform_records([dict(row, hist="i1|i2")])  # text but no separator declared


@pytest.mark.parametrize(
    "values",
    [
        ["a", "b", "a"],
        [3, -7, 2**62],
        [1.0, 2.0, -0.0],  # whole floats become ints
        [1, 2.5],
        [0.5, float("inf")],
        [2.0**60, 1.0],  # whole but past 2**53: stays float
        [2**54 + 1, 0.5],  # an int Arrow would round: left to Arrow
        [2**64],  # out of int64: left to Arrow (which refuses it)
        [True, False],
        ["a", None],
        [1, "a"],
    ],
)
def test_canonical_list_equals_canonical_values(values: list[object]) -> None:
    from recforge.preprocess import canonical_values
    from recforge.preprocess.vocab import canonical_list

    small = canonical_list(values)
    if small is None:
        return  # left to the general path, which is canonical_values itself
    arr, kind = canonical_values("c", pa.array(values))
    assert small[1] is kind
    assert small[0] == arr.to_pylist()
    assert [type(v) for v in small[0]] == [type(v) for v in arr.to_pylist()]


@pytest.mark.parametrize("sep", ["|", ", "])
def test_small_list_parsing_equals_arrow(sep: str) -> None:
    from recforge.preprocess import flatten

    rows: list[object] = [
        f"a{sep} b {sep}\u3000c\u2003{sep}{sep}",  # unicode spaces trimmed, empty tokens dropped
        None,
        "",
        f" -0{sep}007{sep}12",
        f"9223372036854775808{sep}1",  # past int64: the row stays text
        float("nan"),
    ]
    for part in (rows, rows[3:4], rows[4:5], [["x", "y"], None, []], [[1, 2], [3]], [None]):
        small = flatten("c", list(part), sep)
        big = flatten("c", pd.Series(part, dtype=object), sep)
        assert small.kind is big.kind, part
        assert list(small.values) == big.values.to_pylist(), part
        np.testing.assert_array_equal(small.lengths, big.lengths)
