import numpy as np
import pandas as pd
import pytest
import torch

from recforge.data import BatchLoader, ColumnarDataset, DataGenerator, passthrough, split_batch
from recforge.utils.data import df_to_dict, pad_sequences


def dataset(n=10):
    return ColumnarDataset(
        {"a": np.arange(n), "x": np.linspace(0, 1, n), "h": np.arange(3 * n).reshape(n, 3)},
        labels=np.arange(n) % 2,
    )


def test_columns_get_canonical_dtypes():
    ds = dataset()
    assert ds.columns["a"].dtype == torch.int64
    assert ds.columns["x"].dtype == torch.float32
    assert ds.columns["h"].shape == (10, 3)
    assert ds.columns["label"].dtype == torch.float32


def test_loader_covers_every_row_once_and_reshuffles_by_epoch():
    loader = BatchLoader(dataset(), batch_size=3, shuffle=True, seed=1)
    first = torch.cat([b["a"] for b in loader])
    assert sorted(first.tolist()) == list(range(10))
    assert torch.equal(first, torch.cat([b["a"] for b in loader]))  # same epoch, same order
    loader.set_epoch(1)
    assert not torch.equal(first, torch.cat([b["a"] for b in loader]))
    assert len(loader) == 4


def test_loader_drop_last_and_rank_shards_are_disjoint():
    ds = dataset(11)
    assert len(BatchLoader(ds, 3, drop_last=True)) == 3
    shards = [
        torch.cat([b["a"] for b in BatchLoader(ds, 2, shuffle=True, rank=r, world_size=2)]) for r in (0, 1)
    ]
    assert len(shards[0]) == len(shards[1]) == 5
    assert not set(shards[0].tolist()) & set(shards[1].tolist())


def test_works_with_torch_dataloader():
    dl = torch.utils.data.DataLoader(dataset(), batch_size=4, collate_fn=passthrough)
    batches = list(dl)
    assert [len(b["a"]) for b in batches] == [4, 4, 2]
    torch.testing.assert_close(batches[0]["h"], dataset().columns["h"][:4])


def test_bad_columns_are_named():
    with pytest.raises(ValueError, match="'x': contains NaN"):
        ColumnarDataset({"x": [1.0, np.nan]})
    with pytest.raises(TypeError, match="'c': strings must be encoded"):
        ColumnarDataset({"c": np.array(["a", "b"])})
    with pytest.raises(ValueError, match="different lengths"):
        ColumnarDataset({"a": [1, 2], "b": [1, 2, 3]})
    with pytest.raises(ValueError, match="'h': sequences have different lengths"):
        ColumnarDataset({"h": pd.Series([[1, 2], [3]])})


def test_data_generator_split_ratio_and_tuple_batches():
    x = pd.DataFrame({"a": np.arange(100), "b": np.arange(100) % 7})
    train, val, test = DataGenerator(x, np.arange(100) % 2).generate_dataloader(
        split_ratio=[0.7, 0.1], batch_size=16
    )
    sizes = [sum(len(b["a"]) for b in dl) for dl in (train, val, test)]
    assert sizes == [70, 10, 20]
    rows = torch.cat([b["a"] for dl in (train, val, test) for b in dl])
    assert sorted(rows.tolist()) == list(range(100))
    merged = split_batch(({"a": torch.arange(3)}, torch.ones(3)))
    assert set(merged) == {"a", "label"}


def test_rechub_helpers():
    assert pad_sequences([[1, 2, 3], [4]], maxlen=2).tolist() == [[2, 3], [0, 4]]
    assert pad_sequences([[1, 2, 3]], maxlen=2, padding="post", truncating="post").tolist() == [[1, 2]]
    d = df_to_dict(pd.DataFrame({"a": [1, 2], "h": [[1, 2], [3, 4]]}))
    assert d["h"].shape == (2, 2)
