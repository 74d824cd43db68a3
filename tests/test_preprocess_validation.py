"""Input validation at the edge (issue 20): one error naming the column, never silent training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from recforge.preprocess import Categorical, FeaturePipeline, LabelType, MultiValue, Numeric, read_table


def frame(n: int = 8, **cols) -> pd.DataFrame:
    df = pd.DataFrame(
        {"c": ["a", "b"] * (n // 2), "x": np.arange(n, dtype=float), "label": [0, 1] * (n // 2)}
    )
    for k, v in cols.items():
        df[k] = v
    return df


def pipe(**kw) -> FeaturePipeline:
    return FeaturePipeline([Categorical("c"), Numeric("x")], **{"label": "label", **kw})


# -- labels ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("labels", [[-1, 1] * 4, [0, 2] * 4, [0.0, 0.5] * 4, [0, 1, 0, 1, 0, 1, 0, 3]])
def test_binary_labels_must_be_0_or_1_at_fit_and_transform(labels):
    with pytest.raises(ValueError, match="label column 'label': binary labels must be 0 or 1"):
        pipe().fit(frame(label=labels))
    fitted = pipe().fit(frame())
    with pytest.raises(ValueError, match="label column 'label'"):
        fitted.transform(frame(label=labels))  # e.g. `recforge evaluate` on {0, 2}


def test_booleans_are_binary_labels():
    out = pipe().fit(frame(label=[False, True] * 4)).transform(frame(label=[True, False] * 4))
    assert out["label"].tolist() == [1.0, 0.0] * 4


def test_soft_and_regression_labels_are_declared():
    soft = frame(label=[0.0, 0.25, 0.5, 1.0] * 2)
    assert pipe(label_types="soft").fit(soft).transform(soft)["label"].tolist() == soft["label"].tolist()
    with pytest.raises(ValueError, match=r"soft labels must lie in \[0, 1\]"):
        pipe(label_types=LabelType.SOFT).fit(frame(label=[0.0, 1.5] * 4))
    reg = frame(label=[-3.0, 1e6] * 4)
    assert pipe(label_types="regression").fit(reg).transform(reg)["label"].tolist() == [-3.0, 1e6] * 4
    with pytest.raises(ValueError, match="finite"):
        pipe(label_types="regression").fit(frame(label=[1.0, np.inf] * 4))
    with pytest.raises(ValueError, match="label_types must be one of"):
        pipe(label_types="probability")


def test_multi_task_label_types_per_column_are_saved(tmp_path: Path):
    df = frame(click=[0, 1] * 4, dwell=[3.5, 10.0] * 4)
    p = FeaturePipeline([Categorical("c")], labels=["click", "dwell"], label_types=["binary", "regression"])
    loaded = FeaturePipeline.load(p.fit(df).save(tmp_path))
    assert loaded.label_types == [LabelType.BINARY, LabelType.REGRESSION]
    with pytest.raises(ValueError, match="label column 'click'"):
        loaded.transform(df.assign(click=[0, 2] * 4))
    with pytest.raises(ValueError, match="one type per label column"):
        FeaturePipeline([Categorical("c")], labels=["click", "dwell"], label_types=["binary"])
    with pytest.raises(ValueError, match="label column 'dwell'"):  # binary is the default
        FeaturePipeline([Categorical("c")], labels=["click", "dwell"]).fit(df)


def test_a_pipeline_saved_before_label_types_still_loads(tmp_path: Path):
    path = pipe(label_types="regression").fit(frame()).save(tmp_path)
    data = json.loads(path.read_text())
    del data["label_types"]
    path.write_text(json.dumps(data))
    loaded = FeaturePipeline.load(tmp_path)
    assert loaded.transform(frame(label=[0.5, 7.0] * 4))["label"].tolist() == [0.5, 7.0] * 4
    with pytest.raises(ValueError, match="finite"):
        loaded.transform(frame(label=[np.inf, 0.0] * 4))


# -- numbers ---------------------------------------------------------------------------------------
def test_a_value_beyond_float32_in_training_is_refused_naming_the_column():
    with pytest.raises(
        ValueError, match=r"column 'x': 1 value\(s\) lie beyond float32's range .* in the training data"
    ):
        pipe().fit(frame(x=[1e300, 1, 2, 3, 4, 5, 6, 7]))


def test_log1p_brings_a_heavy_tail_back_in_range_and_statistics_stay_finite(tmp_path: Path):
    p = FeaturePipeline([Numeric("x", log1p=True)], label="label").fit(frame(x=[1e300, 1, 2, 3, 4, 5, 6, 7]))
    stats = p.numeric_stats("x")
    assert all(np.isfinite([stats.fill, stats.shift, stats.scale]))
    text = p.save(tmp_path).read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert np.isfinite(p.transform(frame())["x"]).all()


def test_a_value_beyond_float32_after_scaling_is_refused_at_transform():
    fitted = pipe().fit(frame())
    with pytest.raises(ValueError, match=r"column 'x'.*after scaling"):
        fitted.transform(frame(x=[1e300] + [1.0] * 7))
    with pytest.raises(ValueError, match=r"column 'x'.*after scaling"):
        fitted.transform_records([{"c": "a", "x": 1e300}])
    with pytest.raises(ValueError, match=r"column 'x'.*infinite"):
        fitted.transform_records([{"c": "a", "x": 10**400}])  # beyond float64 too
    out = fitted.transform_records([{"c": "a", "x": 2**70}])  # large, but representable
    assert np.isfinite(out["x"]).all()


# -- ids -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "ids",
    [
        np.array([2**64 - 1, 1, 2, 3], dtype=np.uint64),
        [2**63, 1, 2, 3],
        [2**70, 1, 2, 3],
        [-(2**63) - 1, 1, 2, 3],
        pa.array([2**64 - 1, 1, 2, 3], pa.uint64()),
    ],
)
def test_ids_beyond_int64_are_refused_naming_the_column(ids):
    data = (
        pa.table({"u": ids})
        if isinstance(ids, pa.Array)
        else pd.DataFrame({"u": pd.Series(list(ids) if isinstance(ids, list) else ids)})
    )
    with pytest.raises(ValueError, match=r"column 'u': id -?\d+ lies outside the int64 range"):
        FeaturePipeline([Categorical("u")]).fit(data)


def test_uint64_ids_within_int64_encode():
    ids = np.array([2**63 - 1, 5, 5], dtype=np.uint64)
    p = FeaturePipeline([Categorical("u")]).fit(pd.DataFrame({"u": ids}))
    assert p.transform(pd.DataFrame({"u": ids}))["u"].tolist() == [3, 2, 2]
    with pytest.raises(ValueError, match=r"column 'u'.*int64"):
        p.transform_records([{"u": 2**64}])


def test_huge_ids_in_lists_are_refused_naming_the_column():
    p = FeaturePipeline([MultiValue("m")]).fit(pd.DataFrame({"m": [[1, 2], [3]]}))
    with pytest.raises(ValueError, match=r"column 'm'.*int64"):
        p.transform_records([{"m": [1, 2**64]}])
    with pytest.raises(ValueError, match=r"column 'm'.*int64"):
        p.transform(pd.DataFrame({"m": pd.Series([[1, 2**64]] * 300, dtype=object)}))


# -- tables ----------------------------------------------------------------------------------------
def test_duplicated_column_names_are_refused():
    df = pd.DataFrame([[1, "a", 0], [2, "b", 1]], columns=["x", "c", "x"])
    with pytest.raises(ValueError, match=r"column\(s\) \['x'\] appear more than once"):
        pipe().fit(df.assign(label=[0, 1]))
    table = pa.table([pa.array([1, 2]), pa.array(["a", "b"]), pa.array([0, 1])], names=["c", "c", "label"])
    with pytest.raises(ValueError, match=r"\['c'\] appear more than once"):
        FeaturePipeline([Categorical("c")], label="label").fit(table)


def test_a_duplicated_csv_header_is_refused_not_renamed(tmp_path: Path):
    path = tmp_path / "t.csv"
    path.write_text("c,x,x,label\na,1,2,0\nb,3,4,1\n")
    with pytest.raises(ValueError, match=r"\['x'\] appear more than once in the header of .*t.csv"):
        read_table(path)
    with pytest.raises(ValueError, match="appear more than once"):
        pipe().fit_stream(path)


def test_empty_files_and_header_only_files_say_so(tmp_path: Path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match="the file is empty"):
        pipe().fit(empty)
    header = tmp_path / "header.csv"
    header.write_text("c,x,label\n")
    with pytest.raises(ValueError, match="the training data has no rows"):
        pipe().fit(header)
    fitted = pipe().fit(frame())
    out = fitted.transform(header)  # an empty test split encodes to empty arrays
    assert out["label"].shape == (0,) and out["x"].shape == (0,)


def test_a_one_row_dataset_fits():
    one = frame(2).iloc[:1]
    out = pipe(label_types="binary").fit(one).transform(one)
    assert out["c"].tolist() == [2] and out["label"].tolist() == [0.0]
