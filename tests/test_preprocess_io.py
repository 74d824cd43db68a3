"""FeaturePipeline inputs (pandas/Polars/Arrow/CSV/Parquet), persistence, and training end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recforge.preprocess import (
    VERSION,
    Categorical,
    FeaturePipeline,
    MultiValue,
    Numeric,
    SequenceColumn,
    read_table,
)


def _frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    items = rng.integers(1, 30, n)
    hist = [rng.integers(1, 40, rng.integers(0, 8)).tolist() for _ in range(n)]
    genres = [
        "|".join(rng.choice(["Drama", "Comedy", "Sci-Fi", "Horror"], rng.integers(1, 4))) for _ in range(n)
    ]
    age = rng.normal(35, 10, n).round(1)
    age[::7] = np.nan
    return pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in rng.integers(0, 12, n)],
            "item_id": items,
            "age": age,
            "genres": genres,
            "hist_item_id": hist,
            "label": (rng.random(n) < 0.4).astype(np.int64),
        }
    )


def _pipeline(**kwargs: object) -> FeaturePipeline:
    return FeaturePipeline(
        [
            Categorical("user_id", embed_dim=8, min_freq=2),
            Categorical("item_id", embed_dim=8),
            Numeric("age", fill="median", normalize="standard"),
            MultiValue("genres", sep="|", max_len=3, embed_dim=8),
            SequenceColumn("hist_item_id", max_len=5, shared_with="item_id", sep="|", **kwargs),  # type: ignore[arg-type]
        ],
        label="label",
    )


def _assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_pandas_polars_arrow_csv_parquet_give_identical_outputs(tmp_path: Path) -> None:
    pl = pytest.importorskip("polars")
    df = _frame()
    reference = _pipeline().fit(df)
    expected = reference.transform(df)

    csv = tmp_path / "t.csv"
    as_text = df.assign(hist_item_id=["|".join(map(str, h)) for h in df["hist_item_id"]])
    as_text.to_csv(csv, index=False)
    parquet = tmp_path / "t.parquet"
    df.to_parquet(parquet)
    sources = {
        "polars": pl.from_pandas(df),
        "arrow": pa.Table.from_pandas(df),
        "csv": csv,
        "csv-str": str(csv),
        "parquet": parquet,
        "arrow-from-parquet": pq.read_table(parquet),
    }
    for name, src in sources.items():
        fitted = _pipeline().fit(src)
        assert fitted.vocabulary("item_id") == reference.vocabulary("item_id"), name
        assert fitted.vocabulary("user_id") == reference.vocabulary("user_id"), name
        _assert_same(fitted.transform(src), expected)
        _assert_same(reference.transform(src), expected)


def test_read_table_selects_columns_and_rejects_unknown_inputs(tmp_path: Path) -> None:
    df = _frame(5)
    assert list(read_table(df, columns=["age", "item_id"]).columns) == ["age", "item_id"]
    with pytest.raises(KeyError, match=r"\['nope'\] not found"):
        read_table(df, columns=["nope"])
    with pytest.raises(ValueError, match="unknown table format"):
        (tmp_path / "t.xlsx").write_text("x")
        read_table(tmp_path / "t.xlsx")
    with pytest.raises(FileNotFoundError):
        read_table(tmp_path / "missing.csv")
    with pytest.raises(TypeError, match="expected a pandas or Polars DataFrame"):
        read_table(42)
    assert read_table({"a": [1, 2]})["a"].tolist() == [1, 2]
    records = read_table([{"a": 1, "h": [1, 2]}, {"a": 2, "h": []}])
    assert records["a"].tolist() == [1, 2] and records["h"].tolist() == [[1, 2], []]


def test_save_load_round_trip_gives_identical_transforms(tmp_path: Path) -> None:
    train, test = _frame(seed=1), _frame(seed=2)
    pipe = _pipeline().fit(train)
    path = pipe.save(tmp_path / "run")
    assert path == tmp_path / "run" / "pipeline.json"
    data = json.loads(path.read_text())  # plain JSON, no pickle
    assert data["version"] == VERSION
    loaded = FeaturePipeline.load(tmp_path / "run")
    assert loaded.features == pipe.features
    _assert_same(loaded.transform(test), pipe.transform(test))
    assert [p.name for p in tmp_path.joinpath("run").iterdir()] == ["pipeline.json"]  # no temp files left
    assert FeaturePipeline.load(pipe.save(tmp_path / "p.json")).features == pipe.features


def test_save_load_keeps_hashing_float_vocab_and_multi_task(tmp_path: Path) -> None:
    df = pd.DataFrame({"s": ["a", "b"], "f": [0.5, 1.5], "x": [1.0, 2.0], "y1": [0, 1], "y2": [1, 1]})
    pipe = FeaturePipeline(
        [
            Categorical("s", hash_buckets=50),
            Categorical("f"),
            Numeric("x", fill=0.0, normalize="minmax", log1p=True),
        ],
        labels=["y1", "y2"],
    ).fit(df)
    loaded = FeaturePipeline.load(pipe.save(tmp_path))
    _assert_same(loaded.transform(df), pipe.transform(df))
    assert loaded.labels == ["y1", "y2"] and loaded.multi_task


def test_loading_newer_or_foreign_files_fails_clearly(tmp_path: Path) -> None:
    pipe = _pipeline().fit(_frame(10))
    path = pipe.save(tmp_path)
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "version": VERSION + 1}))
    with pytest.raises(ValueError, match=f"format version {VERSION + 1}, newer than this recforge"):
        FeaturePipeline.load(tmp_path)
    path.write_text(json.dumps({**data, "version": "one"}))
    with pytest.raises(ValueError, match="invalid format version"):
        FeaturePipeline.load(tmp_path)
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not a saved FeaturePipeline"):
        FeaturePipeline.load(tmp_path)
    with pytest.raises(FileNotFoundError):
        FeaturePipeline.load(tmp_path / "nothing")


def test_label_constant_matches_the_data_package() -> None:
    from recforge.data import LABEL
    from recforge.preprocess.pipeline import LABEL as PREPROCESS_LABEL

    assert LABEL == PREPROCESS_LABEL


def test_pipeline_to_deepfm_trains_one_epoch(tmp_path: Path) -> None:
    import torch

    from recforge.data import BatchLoader, ColumnarDataset
    from recforge.models.ranking import DeepFM
    from recforge.trainers import CTRTrainer

    torch.manual_seed(0)
    train, valid = _frame(400, seed=3), _frame(100, seed=4)
    pipe = _pipeline(pooling="mean").fit(train)
    train_ds, valid_ds = (
        ColumnarDataset.from_pipeline(pipe, train),
        ColumnarDataset.from_pipeline(pipe, valid),
    )
    assert isinstance(train_ds, ColumnarDataset) and len(train_ds) == 400
    batch = next(iter(BatchLoader(train_ds, 64)))
    assert batch["hist_item_id"].dtype == torch.int64 and batch["hist_item_id"].shape == (64, 5)
    assert batch["age"].dtype == torch.float32 and batch["label"].dtype == torch.float32
    features = pipe.features
    model = DeepFM(
        features, [f for f in features if f.name != "age"], mlp_params={"dims": [16], "dropout": 0.1}
    )
    trainer = CTRTrainer(
        model, optimizer_params={"lr": 1e-2}, n_epoch=1, model_path=tmp_path, progress=False, plot=False
    )
    trainer.fit(BatchLoader(train_ds, 64, shuffle=True), BatchLoader(valid_ds, 100))
    metrics = trainer.evaluate(trainer.model, BatchLoader(valid_ds, 100))
    assert np.isfinite(metrics["logloss"]) and 0.0 <= metrics["auc"] <= 1.0
    assert trainer.predict(trainer.model, BatchLoader(valid_ds, 100)).shape == (100,)


def test_other_column_encodings_match_plain_pandas() -> None:
    pl = pytest.importorskip("polars")
    df = pd.DataFrame({"c": ["x", "y", "x"], "n": [1, 2, 3], "h": [[1, 2], [3, 4], [5, 6]]})
    pipe = FeaturePipeline([Categorical("c"), Categorical("n"), SequenceColumn("h", max_len=3)]).fit(df)
    expected = pipe.transform(df)
    variants = {
        "category dtype": df.assign(c=df["c"].astype("category")),
        "nullable Int64": df.assign(n=df["n"].astype("Int64")),
        "arrow-backed": df.convert_dtypes(dtype_backend="pyarrow"),
        "fixed-size lists": pa.table(
            {"c": df["c"], "n": df["n"], "h": pa.array(df["h"].tolist(), type=pa.list_(pa.int64(), 2))}
        ),
        "polars lazy": pl.from_pandas(df).lazy(),
    }
    for name, src in variants.items():
        got = pipe.transform(src)
        for k in expected:
            np.testing.assert_array_equal(got[k], expected[k], err_msg=f"{name}: {k}")


def test_transform_leaves_the_input_untouched() -> None:
    df = _frame(20)
    before = df.copy(deep=True)
    pipe = _pipeline().fit(df)
    pipe.transform(df)
    pd.testing.assert_frame_equal(df, before)


def test_iter_transform_streams_files_in_pieces_equal_to_the_whole(tmp_path: Path) -> None:
    df = _frame(50, seed=5)
    pipe = _pipeline().fit(df)
    whole = pipe.transform(df)
    parquet, csv = tmp_path / "t.parquet", tmp_path / "t.csv"
    df.to_parquet(parquet)
    df.assign(hist_item_id=["|".join(map(str, h)) for h in df["hist_item_id"]]).to_csv(csv, index=False)
    for src in (df, parquet, csv):
        pieces = list(pipe.iter_transform(src, batch_rows=16))
        assert [len(p["label"]) for p in pieces] == [16, 16, 16, 2]
        _assert_same({k: np.concatenate([p[k] for p in pieces]) for k in whole}, whole)
    with pytest.raises(ValueError, match="batch_rows must be a positive int"):
        next(pipe.iter_transform(df, batch_rows=0))


def test_empty_input_gives_empty_columns() -> None:
    from recforge.data import ColumnarDataset

    df = _frame(30)
    pipe = _pipeline().fit(df)
    out = pipe.transform(df.iloc[:0])
    assert (
        out["item_id"].shape == (0,) and out["hist_item_id"].shape == (0, 5) and out["genres"].shape == (0, 3)
    )
    assert out["age"].shape == (0,) and out["label"].shape == (0,)
    assert len(ColumnarDataset.from_pipeline(pipe, df.iloc[:0])) == 0
    bare = pipe.transform(
        pd.DataFrame({c: [] for c in ["user_id", "item_id", "age", "genres", "hist_item_id"]})
    )
    assert bare["hist_item_id"].shape == (0, 5) and "label" not in bare


def test_threads_give_identical_results_and_errors(tmp_path: Path) -> None:
    train, test = _frame(80, seed=6), _frame(40, seed=7)
    one = _pipeline().fit(train)
    many = FeaturePipeline(_pipeline().columns, label="label", num_threads=3).fit(train)
    assert many.to_dict() == one.to_dict()
    _assert_same(many.transform(test), one.transform(test))
    loaded = FeaturePipeline.load(one.save(tmp_path), num_threads=4)
    _assert_same(loaded.transform(test), one.transform(test))
    with pytest.raises(KeyError, match=r"\['genres'\] not found"):
        many.transform(test.drop(columns=["genres"]))
    with pytest.raises(TypeError, match=r"column 'age': Numeric expects numbers"):
        many.transform(test.assign(age="x"))
    with pytest.raises(ValueError, match="num_threads must be a positive int"):
        FeaturePipeline([Numeric("x")], num_threads=0)
