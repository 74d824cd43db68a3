"""ParquetStream: every row once, sharded by rank x worker, shuffled reproducibly, list columns
padded like the in-memory path, usable as the Trainer's loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from recforge.data.streaming import ParquetStream, pad_lists

N_FILES, ROWS_PER_FILE, ROW_GROUP = 3, 50, 20  # row groups of 20, 20, 10 rows per file


def write_dir(root: Path) -> dict[str, np.ndarray]:
    """Spark-like layout: part files in a folder plus a _SUCCESS marker; returns all columns."""
    rng = np.random.default_rng(0)
    n = N_FILES * ROWS_PER_FILE
    data = {
        "row": np.arange(n, dtype=np.int64),
        "c1": rng.integers(1, 30, n),
        "x": rng.random(n).astype(np.float32),
        "clicked": rng.integers(0, 2, n),
    }
    hist = [list(rng.integers(1, 30, int(rng.integers(0, 6)))) for _ in range(n)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "_SUCCESS").write_text("")
    for f in range(N_FILES):
        sl = slice(f * ROWS_PER_FILE, (f + 1) * ROWS_PER_FILE)
        table = pa.table(
            {**{k: v[sl] for k, v in data.items()}, "hist": pa.array(hist[sl], pa.list_(pa.int64()))}
        )
        pq.write_table(table, root / f"part-{f:05d}.parquet", row_group_size=ROW_GROUP)
    data["hist"] = np.array([([0] * 4 + h)[-4:] for h in hist])  # left-padded to 4, last 4 kept
    return data


@pytest.fixture
def data_dir(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    return tmp_path / "parquet", write_dir(tmp_path / "parquet")


def collect(stream) -> dict[str, torch.Tensor]:
    batches = list(stream)
    return {k: torch.cat([b[k] for b in batches]) for k in batches[0]}


def test_reads_every_row_in_order_with_padded_lists(data_dir) -> None:
    path, data = data_dir
    s = ParquetStream(path, 16, label="clicked", list_lengths={"hist": 4})
    assert s.num_rows == 150 and len(s) == 10
    batches = list(s)
    assert [len(b["row"]) for b in batches] == [16] * 9 + [6]
    got = collect(s)
    assert got["row"].tolist() == list(range(150))
    assert torch.equal(got["hist"], torch.from_numpy(data["hist"]))
    assert got["label"].dtype == torch.float32 and torch.equal(
        got["label"], torch.from_numpy(data["clicked"]).float()
    )
    assert got["x"].dtype == torch.float32 and got["c1"].dtype == torch.int64


def test_pad_lists_matches_naive() -> None:
    rows = [[1, 2, 3, 4, 5], [], None, [7], [8, 9]]
    arr = pa.array(rows, pa.list_(pa.int32()))
    expected = [([0] * 3 + (r or []))[-3:] for r in rows]
    assert pad_lists("h", arr, 3).tolist() == expected


def test_rank_sharding_is_disjoint_complete_and_equal(data_dir) -> None:
    path, _ = data_dir
    parts = [
        collect(ParquetStream(path, 8, list_lengths={"hist": 4}, rank=r, world_size=2))["row"] for r in (0, 1)
    ]
    assert len(parts[0]) == len(parts[1])  # equal batch counts, as DDP needs
    assert not set(parts[0].tolist()) & set(parts[1].tolist())
    # row groups dealt round-robin: only the tail beyond the smaller slot's full batches is dropped
    assert len(parts[0]) + len(parts[1]) >= 150 - 2 * 8 - 30
    full = [
        collect(ParquetStream(path, 8, columns=["row"], rank=r, world_size=2, equalize=False))["row"]
        for r in (0, 1)
    ]
    assert sorted(torch.cat(full).tolist()) == list(range(150))  # validation keeps every row


def test_shuffle_is_a_reproducible_per_epoch_permutation(data_dir) -> None:
    path, _ = data_dir
    s = ParquetStream(path, 16, list_lengths={"hist": 4}, shuffle=True, shuffle_buffer=40, seed=1)
    a, b = collect(s)["row"], collect(s)["row"]
    assert torch.equal(a, b) and sorted(a.tolist()) == list(range(150))
    assert a.tolist() != list(range(150))
    s.set_epoch(1)
    c = collect(s)["row"]
    assert sorted(c.tolist()) == list(range(150)) and not torch.equal(a, c)


def test_dataloader_workers_share_the_rows(data_dir) -> None:
    path, _ = data_dir
    s = ParquetStream(path, 10, columns=["row", "x"])
    loader = torch.utils.data.DataLoader(s, batch_size=None, num_workers=2)
    rows = torch.cat([b["row"] for b in loader]).tolist()
    assert len(rows) == len(set(rows)) and len(rows) >= 150 - 2 * 10 - 30
    assert set(next(iter(loader))) == {"row", "x"}


class HashPipeline:
    """A stand-in fitted pipeline: ids modulo a vocabulary, the label renamed."""

    def transform(self, table: pa.Table) -> dict[str, np.ndarray]:
        return {
            "c1": table.column("c1").to_numpy() % 7,
            "x": table.column("x").to_numpy(),
            "label": table.column("clicked").to_numpy().astype(np.float32),
        }


def test_pipeline_is_applied_and_trainer_fits_on_the_stream(data_dir, tmp_path: Path) -> None:
    from recforge.features import DenseFeature, SparseFeature
    from recforge.models.ranking import DeepFM
    from recforge.trainers import CTRTrainer

    path, _ = data_dir
    s = ParquetStream(
        path, 32, pipeline=HashPipeline(), columns=["c1", "x", "clicked"], shuffle=True, shuffle_buffer=64
    )
    got = collect(s)
    assert set(got) == {"c1", "x", "label"} and int(got["c1"].max()) < 7
    feats = [SparseFeature("c1", vocab_size=7, embed_dim=4)]
    model = DeepFM([*feats, DenseFeature("x")], feats, mlp_params={"dims": [8]})
    trainer = CTRTrainer(model, n_epoch=2, model_path=tmp_path / "run", progress=False, plot=False)
    trainer.fit(s, s)
    assert [h["epoch"] for h in trainer.history] == [0, 1] and s.epoch == 1


def test_errors_name_the_problem(data_dir, tmp_path: Path) -> None:
    path, _ = data_dir
    with pytest.raises(ValueError, match="'hist'"):
        list(ParquetStream(path, 8))
    with pytest.raises(KeyError, match="'nope'"):
        ParquetStream(path, 8, columns=["nope"])
    with pytest.raises(FileNotFoundError):
        ParquetStream(tmp_path / "missing", 8)


def test_fitted_feature_pipeline_streams_like_the_in_memory_path(data_dir) -> None:
    from recforge.preprocess import Categorical, FeaturePipeline, Numeric, SequenceColumn

    path, _ = data_dir
    files = sorted(path.glob("*.parquet"))
    pipe = FeaturePipeline(
        [Categorical("c1"), Numeric("x"), SequenceColumn("hist", max_len=4, shared_with="c1")],
        label="clicked",
    ).fit(pq.read_table(files[0]))  # fit on one file (a sample), transform everything
    whole = pipe.transform(pa.concat_tables([pq.read_table(f) for f in files]))
    got = collect(ParquetStream(path, 16, pipeline=pipe))
    assert set(got) == set(whole)
    for k, v in whole.items():
        assert torch.equal(got[k], torch.as_tensor(v).to(got[k].dtype)), k


@pytest.mark.parametrize("buffer", [1, 7, 40, 1000])
def test_shuffle_buffer_of_any_size_yields_every_row_once(data_dir, buffer: int) -> None:
    path, data = data_dir
    s = ParquetStream(path, 16, list_lengths={"hist": 4}, shuffle=True, shuffle_buffer=buffer, seed=3)
    got = collect(s)
    order = got["row"].argsort()
    assert got["row"][order].tolist() == list(range(150))
    assert torch.equal(got["hist"][order], torch.from_numpy(data["hist"]))  # columns stay aligned
    assert got["row"].tolist() != list(range(150))


def test_pad_lists_of_a_sliced_list_array() -> None:
    rows = [[1, 2], [3, 4, 5, 6], [], [7, 8, 9]]
    arr = pa.array(rows, pa.list_(pa.int64())).slice(1)  # offsets no longer start at 0
    assert pad_lists("h", arr, 2).tolist() == [[5, 6], [0, 0], [8, 9]]
