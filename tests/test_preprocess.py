"""FeaturePipeline: vocabularies, hashing, numeric statistics, list columns, sharing, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.features import DenseFeature, Pooling, SequenceFeature, SparseFeature
from recforge.preprocess import (
    OOV,
    PAD,
    Categorical,
    FeaturePipeline,
    MultiValue,
    NotFittedError,
    Numeric,
    SequenceColumn,
    Vocabulary,
)

SRC = str(Path(__file__).resolve().parents[1] / "src")


# -- vocabularies ----------------------------------------------------------------------------------
def test_vocab_orders_by_frequency_then_value_and_reserves_pad_and_oov() -> None:
    train = pd.DataFrame({"c": ["b", "a", "c", "a", "b", "d", "a"]})  # a:3, b:2, c:1, d:1
    pipe = FeaturePipeline([Categorical("c")]).fit(train)
    vocab = pipe.vocabulary("c")
    assert vocab.values == ["a", "b", "c", "d"]
    assert len(vocab) == 6 and pipe.features[0].vocab_size == 6
    ids = pipe.transform(pd.DataFrame({"c": ["a", "b", "c", "d", "zzz"]}))["c"]
    assert ids.tolist() == [2, 3, 4, 5, OOV]
    assert ids.dtype == np.int64
    assert vocab.decode([PAD, OOV, 2, 5]).tolist() == [None, None, "a", "d"]
    assert vocab.encode(["d", "a", "nope"]).tolist() == [5, 2, OOV]
    handmade = Vocabulary([30, 10, 20])
    assert handmade.kind is not None and handmade.kind.value == "int"
    assert handmade.encode([10, 20, 30, 40]).tolist() == [3, 4, 2, OOV]
    with pytest.raises(ValueError, match="distinct"):
        Vocabulary(["a", "a"])


def test_vocab_extend_appends_new_values_after_every_old_id() -> None:
    vocab = Vocabulary([30, 10, 20])
    old = vocab.encode([10, 20, 30, 40])
    assert vocab.extend([40, 50], column="item").tolist() == [5, 6]
    assert vocab.encode([10, 20, 30, 40, 50]).tolist() == [*old[:3].tolist(), 5, 6]  # old ids unchanged
    assert vocab.decode([5, 6]).tolist() == [40, 50]
    with pytest.raises(ValueError, match="'item': 1 value\\(s\\) are already known"):
        vocab.extend([60, 10], column="item")
    with pytest.raises(ValueError, match="repeat"):
        vocab.extend([70, 70], column="item")
    with pytest.raises(TypeError, match="'item': the vocabulary holds int values"):
        vocab.extend(["x"], column="item")
    assert len(vocab) == 7  # a refused extension changes nothing
    vocab.truncate(5)  # undoes the extension
    assert len(vocab) == 5 and vocab.encode([40, 30]).tolist() == [1, old[2]]
    with pytest.raises(TypeError, match="hashed"):
        Vocabulary(hash_buckets=8).extend([1], column="item")


def test_vocab_is_deterministic_under_row_order() -> None:
    rng = np.random.default_rng(0)
    values = rng.integers(0, 50, 500)
    a = FeaturePipeline([Categorical("c")]).fit(pd.DataFrame({"c": values})).vocabulary("c")
    b = FeaturePipeline([Categorical("c")]).fit(pd.DataFrame({"c": values[::-1]})).vocabulary("c")
    assert a == b
    counts = pd.Series(values).value_counts()
    expected = sorted(counts.index, key=lambda v: (-counts[v], v))
    assert a.values == expected


def test_min_freq_and_max_size_send_cut_values_to_oov() -> None:
    train = pd.DataFrame({"c": ["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"]})
    test = pd.DataFrame({"c": ["a", "b", "c", "d"]})
    p = FeaturePipeline([Categorical("c", min_freq=2)]).fit(train)
    assert p.vocabulary("c").values == ["a", "b", "c"]
    assert p.transform(test)["c"].tolist() == [2, 3, 4, OOV]
    p = FeaturePipeline([Categorical("c", max_size=2)]).fit(train)
    assert p.vocabulary("c").values == ["a", "b"] and p.features[0].vocab_size == 4
    assert p.transform(test)["c"].tolist() == [2, 3, OOV, OOV]


def test_fill_value_replaces_missing_and_without_it_missing_is_an_error() -> None:
    train = pd.DataFrame({"c": ["a", None, "b", np.nan, "a"]})
    p = FeaturePipeline([Categorical("c", fill_value="<na>")]).fit(train)
    assert "<na>" in p.vocabulary("c").values
    ids = p.transform(train)["c"]
    assert ids[1] == ids[3] == 2 + p.vocabulary("c").values.index("<na>")
    with pytest.raises(ValueError, match=r"column 'c': 2 of 5 rows are missing"):
        FeaturePipeline([Categorical("c")]).fit(train)
    ok = FeaturePipeline([Categorical("c")]).fit(pd.DataFrame({"c": ["a", "b"]}))
    with pytest.raises(ValueError, match=r"column 'c': 1 of 2 rows are missing"):
        ok.transform(pd.DataFrame({"c": ["a", None]}))


def test_integer_ids_with_gaps_stay_integers() -> None:
    # a CSV reader turns an int column with NaN into float; filled, it must still match int data
    train = pd.DataFrame({"c": [1.0, 2.0, np.nan, 2.0]})
    p = FeaturePipeline([Categorical("c", fill_value=0)]).fit(train)
    assert p.vocabulary("c").values == [2, 0, 1]
    assert p.transform(pd.DataFrame({"c": [1, 2, 0, 7]}))["c"].tolist() == [4, 2, 3, OOV]


# -- hashing ---------------------------------------------------------------------------------------
_HASH_SNIPPET = """
import json, sys
import pandas as pd
from recforge.preprocess import Categorical, FeaturePipeline, Vocabulary
df = pd.DataFrame({"s": ["apple", "banana", "kiwi", "x" * 40, "日本"], "i": [0, 1, 12345678901, -5, 7]})
p = FeaturePipeline([Categorical("s", hash_buckets=97), Categorical("i", hash_buckets=1000)]).fit(df.head(1))
out = p.transform(df)
print(json.dumps({**{k: v.tolist() for k, v in out.items()}, "torch": "torch" in sys.modules,
                  "python_hash": hash("apple")}))
"""


def test_hashing_is_stable_across_processes_and_needs_no_fitting() -> None:
    seed = "1" if os.environ.get("PYTHONHASHSEED") != "1" else "2"
    env = {**os.environ, "PYTHONPATH": SRC, "PYTHONHASHSEED": seed}
    run = subprocess.run(
        [sys.executable, "-c", _HASH_SNIPPET],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    child = json.loads(run.stdout)
    assert child.pop("torch") is False  # preprocessing alone never imports torch
    assert child.pop("python_hash") != hash("apple")  # the two processes salt hash() differently...
    s = Vocabulary(hash_buckets=97).encode(["apple", "banana", "kiwi", "x" * 40, "日本"])
    i = Vocabulary(hash_buckets=1000).encode([0, 1, 12345678901, -5, 7])
    assert child == {
        "s": s.tolist(),
        "i": i.tolist(),
    }  # ...yet the ids agree, fitted pipeline or bare vocabulary
    assert s.min() >= 2 and s.max() <= 98 and i.min() >= 2 and i.max() <= 1001
    assert len(set(s.tolist())) > 1


def test_hashed_column_spec_has_bucket_count_plus_reserved() -> None:
    p = FeaturePipeline([Categorical("c", hash_buckets=10, embed_dim=4)]).fit(pd.DataFrame({"c": ["a"]}))
    assert p.features == [SparseFeature("c", 12, 4, padding_idx=0)]
    with pytest.raises(TypeError, match="cannot decode"):
        p.vocabulary("c").decode([2])


# -- numeric ---------------------------------------------------------------------------------------
def test_numeric_fill_and_standardise_use_training_statistics_only() -> None:
    train = pd.DataFrame({"x": [1.0, 2.0, np.nan, 5.0]})
    test = pd.DataFrame({"x": [100.0, np.nan, -3.0]})
    p = FeaturePipeline([Numeric("x", fill="mean", normalize="standard")]).fit(train)
    present = np.array([1.0, 2.0, 5.0])
    mean, std = present.mean(), present.std()
    out = p.transform(test)["x"]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, (np.array([100.0, mean, -3.0]) - mean) / std, rtol=1e-6)
    stats = p.numeric_stats("x")
    assert stats.fill == pytest.approx(mean) and stats.shift == pytest.approx(mean)


@pytest.mark.parametrize(
    ("fill", "expected_fill"), [("median", 2.0), ("zero", 0.0), (7.5, 7.5), ("MEAN", 8 / 3)]
)
def test_numeric_fill_choices(fill: str | float, expected_fill: float) -> None:
    train = pd.DataFrame({"x": [1.0, 2.0, 5.0, None]})
    p = FeaturePipeline([Numeric("x", fill=fill, normalize=None)]).fit(train)
    assert p.transform(train)["x"][3] == pytest.approx(expected_fill)


def test_numeric_minmax_and_log1p() -> None:
    train = pd.DataFrame({"x": [0, 3, 9], "y": [0.0, np.e - 1, np.e**2 - 1]})
    p = FeaturePipeline([Numeric("x", normalize="minmax"), Numeric("y", normalize=None, log1p=True)]).fit(
        train
    )
    out = p.transform(pd.DataFrame({"x": [0, 4.5, 18], "y": [np.e**3 - 1, 0.0, 0.0]}))
    np.testing.assert_allclose(out["x"], [0.0, 0.5, 2.0], rtol=1e-6)
    np.testing.assert_allclose(out["y"], [3.0, 0.0, 0.0], atol=1e-6)
    assert p.features[0] == DenseFeature("x")


def test_constant_column_does_not_divide_by_zero() -> None:
    p = FeaturePipeline([Numeric("x")]).fit(pd.DataFrame({"x": [3.0, 3.0]}))
    assert p.transform(pd.DataFrame({"x": [3.0, 4.0]}))["x"].tolist() == [0.0, 1.0]


# -- multi-value and sequences --------------------------------------------------------------------
def test_multivalue_strings_and_lists_pad_left_and_keep_the_last_values() -> None:
    train = pd.DataFrame({"g": ["a|b", "b|c|d", "", None, "b"]})
    p = FeaturePipeline([MultiValue("g", max_len=2, embed_dim=4)]).fit(train)
    v = p.vocabulary("g")
    assert v.values == ["b", "a", "c", "d"]  # b:3, then a, c, d once each
    out = p.transform(train)["g"]
    assert out.tolist() == [[2 + 1, 2 + 0], [2 + 2, 2 + 3], [0, 0], [0, 0], [0, 2]]
    spaced = pd.DataFrame({"g": [" a | b", "b|c| d ", " ", None, "b||"]})
    np.testing.assert_array_equal(p.transform(spaced)["g"], out)
    as_lists = pd.DataFrame({"g": [["a", "b"], ["b", "c", "d"], [], None, np.array(["b"])]})
    np.testing.assert_array_equal(p.transform(as_lists)["g"], out)
    assert p.features[0] == SequenceFeature("g", 6, 4, pooling=Pooling.MEAN, padding_idx=0, max_len=2)


def test_multivalue_max_len_defaults_to_longest_training_row() -> None:
    p = FeaturePipeline([MultiValue("g")]).fit(pd.DataFrame({"g": ["a", "a|b|c"]}))
    assert p.transform(pd.DataFrame({"g": ["a|b|c|b"]}))["g"].shape == (1, 3)
    assert p.features[0].max_len == 3


def test_sequence_keeps_most_recent_items_left_padded_and_unseen_items_are_oov() -> None:
    train = pd.DataFrame({"h": [[5, 6, 7, 8, 9], [5], []]})
    p = FeaturePipeline([SequenceColumn("h", max_len=3)]).fit(train)
    v = p.vocabulary("h")
    out = p.transform(pd.DataFrame({"h": [[5, 6, 7, 8, 9], [5], [], [42, 5]]}))["h"]
    e = v.encode
    assert out[0].tolist() == e([7, 8, 9]).tolist()  # the last three, most recent last
    assert out[1].tolist() == [0, 0, e([5])[0]]
    assert out[2].tolist() == [0, 0, 0]
    assert out[3].tolist() == [0, OOV, e([5])[0]]


def test_sequence_without_truncation_refuses_long_rows() -> None:
    p = FeaturePipeline([SequenceColumn("h", max_len=2, truncate=False)]).fit(pd.DataFrame({"h": [[1, 2]]}))
    with pytest.raises(ValueError, match=r"column 'h': row 1 has 4 items but max_len=2"):
        p.transform(pd.DataFrame({"h": [[1], [1, 2, 3, 4]]}))


def test_multivalue_without_truncation_refuses_long_rows() -> None:
    p = FeaturePipeline([MultiValue("g", max_len=2, truncate=False)]).fit(pd.DataFrame({"g": ["a|b"]}))
    with pytest.raises(ValueError, match=r"column 'g': row 0 has 3 items but max_len=2"):
        p.transform(pd.DataFrame({"g": ["a|b|c"]}))
    with pytest.raises(ValueError, match=r"column 'g': truncate must be a bool"):
        MultiValue("g", truncate="no")  # type: ignore[arg-type]


def test_sequence_from_delimited_strings_matches_lists() -> None:
    spec = SequenceColumn("h", max_len=4, sep="|")
    lists = pd.DataFrame({"h": [[3, 1, 2], [], [2]]})
    text = pd.DataFrame({"h": ["3|1|2", "", "2"]})
    a, b = FeaturePipeline([spec]).fit(lists), FeaturePipeline([spec]).fit(text)
    assert a.vocabulary("h") == b.vocabulary("h")
    np.testing.assert_array_equal(a.transform(text)["h"], b.transform(lists)["h"])


def test_shared_vocabulary_is_fit_on_the_union_of_both_columns() -> None:
    train = pd.DataFrame({"item_id": [1, 2, 2], "hist": [[3, 3, 3], [1], [4]]})
    p = FeaturePipeline(
        [Categorical("item_id", embed_dim=8), SequenceColumn("hist", max_len=2, shared_with="item_id")]
    ).fit(train)
    vocab = p.vocabulary("item_id")
    assert vocab is p.vocabulary("hist")
    assert vocab.values == [3, 1, 2, 4]  # 3:3, 1:2, 2:2, 4:1
    item, hist = p.features
    assert hist == SequenceFeature("hist", 6, 8, shared_with="item_id", padding_idx=0, max_len=2)
    assert item.vocab_size == hist.vocab_size
    out = p.transform(pd.DataFrame({"item_id": [4], "hist": [[4, 9]]}))
    assert out["item_id"].tolist() == [5] and out["hist"].tolist() == [[5, OOV]]


def test_multi_task_labels_and_optional_labels_at_transform() -> None:
    df = pd.DataFrame({"c": ["a", "b"], "click": [1, 0], "buy": [0.0, 1.0]})
    p = FeaturePipeline([Categorical("c")], labels=["click", "buy"]).fit(df)
    out = p.transform(df)
    assert out["label"].dtype == np.float32 and out["label"].tolist() == [[1, 0], [0, 1]]
    assert "label" not in p.transform(df[["c"]])  # serving data has no labels
    single = FeaturePipeline([Categorical("c")], label="click").fit(df)
    assert single.transform(df)["label"].tolist() == [1.0, 0.0]
    assert set(FeaturePipeline([Categorical("c")]).fit(df).transform(df)) == {"c"}


# -- errors ----------------------------------------------------------------------------------------
def test_missing_column_is_named_with_the_available_ones() -> None:
    p = FeaturePipeline([Categorical("user_id"), Numeric("age")])
    with pytest.raises(KeyError, match=r"\['age'\] not found.*available columns: \['user_id'\]"):
        p.fit(pd.DataFrame({"user_id": [1]}))
    p.fit(pd.DataFrame({"user_id": [1], "age": [3]}))
    with pytest.raises(KeyError, match=r"\['user_id'\] not found"):
        p.transform(pd.DataFrame({"age": [1]}))
    with pytest.raises(KeyError, match=r"\['y'\] not found"):
        FeaturePipeline([Numeric("age")], label="y").fit(pd.DataFrame({"age": [1]}))


def test_transform_before_fit() -> None:
    p = FeaturePipeline([Categorical("c")])
    for call in (
        lambda: p.transform(pd.DataFrame({"c": [1]})),
        lambda: p.features,
        lambda: p.vocabulary("c"),
    ):
        with pytest.raises(NotFittedError, match="not fitted"):
            call()


def test_wrong_dtypes_name_the_column() -> None:
    with pytest.raises(TypeError, match=r"column 'age': Numeric expects numbers.*'abc'"):
        FeaturePipeline([Numeric("age")]).fit(pd.DataFrame({"age": [1, "abc"]}))
    with pytest.raises(TypeError, match=r"column 'age': Numeric expects numbers"):
        FeaturePipeline([Numeric("age")]).fit(pd.DataFrame({"age": ["1", "2"]}))
    with pytest.raises(TypeError, match=r"column 'c': values must be all text or all numbers"):
        FeaturePipeline([Categorical("c")]).fit(pd.DataFrame({"c": pd.Series([1, "a"], dtype=object)}))
    with pytest.raises(TypeError, match=r"label column 'y': expected numbers"):
        FeaturePipeline([Numeric("x")], label="y").fit(pd.DataFrame({"x": [1.0], "y": ["yes"]}))


def test_spec_data_mismatches_name_the_column() -> None:
    with pytest.raises(
        TypeError, match=r"column 'h' holds lists; declare it as MultiValue or SequenceColumn"
    ):
        FeaturePipeline([Categorical("h")]).fit(pd.DataFrame({"h": [[1, 2], [3]]}))
    with pytest.raises(TypeError, match=r"column 'h' holds scalar int64 values"):
        FeaturePipeline([SequenceColumn("h")]).fit(pd.DataFrame({"h": [1, 2]}))
    numeric_csv = FeaturePipeline([SequenceColumn("h", sep="|")]).fit(pd.DataFrame({"h": [3.0, np.nan]}))
    assert numeric_csv.transform(pd.DataFrame({"h": ["3|3", "4"]}))["h"][:, -2:].tolist() == [[2, 2], [0, 1]]
    with pytest.raises(TypeError, match=r"column 'h' holds strings, not lists; set sep"):
        FeaturePipeline([SequenceColumn("h")]).fit(pd.DataFrame({"h": ["1,2"]}))
    p = FeaturePipeline([Categorical("c")]).fit(pd.DataFrame({"c": [1, 2]}))
    with pytest.raises(
        TypeError, match=r"column 'c': the vocabulary was fit on int values but the data holds str"
    ):
        p.transform(pd.DataFrame({"c": ["1", "2"]}))
    with pytest.raises(ValueError, match=r"column 'h': 1 missing values inside lists"):
        FeaturePipeline([SequenceColumn("h")]).fit(pd.DataFrame({"h": [[1.0, None]]}))
    with pytest.raises(TypeError, match=r"column 'c': fill_value='x' does not match"):
        FeaturePipeline([Categorical("c", fill_value="x")]).fit(pd.DataFrame({"c": [1.0, None]}))


def test_unknown_choices_list_the_valid_ones() -> None:
    with pytest.raises(
        ValueError, match=r"column 'x': fill must be one of 'mean', 'median', 'zero', got 'avg'"
    ):
        Numeric("x", fill="avg")
    with pytest.raises(ValueError, match=r"column 'x': normalize must be one of 'standard', 'minmax'"):
        Numeric("x", normalize="zscore")
    with pytest.raises(ValueError, match=r"feature 'h': pooling must be one of .*'concat'"):
        SequenceColumn("h", pooling="attention")
    with pytest.raises(ValueError, match=r"column 'c': max_size must be an int >= 0"):
        Categorical("c", max_size=-1)


def test_bad_pipeline_declarations() -> None:
    with pytest.raises(ValueError, match="column 'a' is declared twice"):
        FeaturePipeline([Categorical("a"), Numeric("a")])
    with pytest.raises(ValueError, match=r"column 'h': shared_with='item' names no declared column"):
        FeaturePipeline([SequenceColumn("h", shared_with="item")])
    with pytest.raises(ValueError, match="'x' is Numeric and has no vocabulary"):
        FeaturePipeline([Numeric("x"), SequenceColumn("h", shared_with="x")])
    with pytest.raises(ValueError, match=r"column 'h' \(embed_dim=4\) shares 'i' \(embed_dim=8\)"):
        FeaturePipeline([Categorical("i", embed_dim=8), SequenceColumn("h", embed_dim=4, shared_with="i")])
    with pytest.raises(ValueError, match=r"column 'h' shares the vocabulary of 'i'; set min_freq"):
        FeaturePipeline([Categorical("i"), SequenceColumn("h", shared_with="i", min_freq=3)])
    with pytest.raises(ValueError, match="'label' is reserved"):
        FeaturePipeline([Categorical("label")])
    with pytest.raises(ValueError, match="'y' is both a feature and a label"):
        FeaturePipeline([Numeric("y")], label="y")


def test_features_list_every_column_in_order() -> None:
    df = pd.DataFrame({"u": ["a", "b"], "x": [1.0, 2.0], "g": ["p|q", "q"]})
    p = FeaturePipeline([Categorical("u"), Numeric("x"), MultiValue("g", pooling="sum")]).fit(df)
    names = [f.name for f in p.features]
    assert names == ["u", "x", "g"]
    assert isinstance(p.features[0], SparseFeature) and p.features[0].embed_dim is not None
    assert p.features[2].pooling is Pooling.SUM


# -- vectorised paths against plain-Python references ---------------------------------------------
def _reference_pad(rows: list[list[int]], max_len: int) -> list[list[int]]:
    out = []
    for r in rows:
        kept = r[-max_len:] if r else []
        out.append([0] * (max_len - len(kept)) + kept)
    return out


@pytest.mark.parametrize("max_len", [1, 3, 8])
def test_list_parsing_and_padding_match_a_python_reference(max_len: int) -> None:
    from recforge.preprocess import flatten, pad_left

    rng = np.random.default_rng(max_len)
    rows = [rng.integers(0, 100, rng.integers(0, 12)).tolist() for _ in range(300)]
    for column in (pd.Series(rows, dtype=object), pd.Series(["|".join(map(str, r)) for r in rows])):
        flat = flatten("h", column, "|")
        assert flat.lengths.tolist() == [len(r) for r in rows]
        ids = np.asarray(flat.values) + 1  # any per-item map; +1 keeps 0 free for padding
        got = pad_left(ids, flat.lengths, max_len)
        assert got.tolist() == _reference_pad([[v + 1 for v in r] for r in rows], max_len)


def test_vocabulary_fit_matches_a_counter_reference() -> None:
    from collections import Counter

    rng = np.random.default_rng(1)
    words = [f"w{int(i)}" for i in rng.zipf(1.5, 2000) % 300]
    counts = Counter(words)
    for min_freq, max_size in [(1, None), (3, None), (1, 10), (2, 25)]:
        p = FeaturePipeline([Categorical("w", min_freq=min_freq, max_size=max_size)])
        vocab = p.fit(pd.DataFrame({"w": words})).vocabulary("w")
        ref = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        assert vocab.values == ref[:max_size]
        ids = vocab.encode(words)
        expected = [ref.index(w) + 2 if w in ref[:max_size] else OOV for w in words]
        assert ids.tolist() == expected
