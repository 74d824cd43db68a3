"""Columnar in-memory data: batches are slices of whole tensors, never per-row collation.

A batch is ``dict[str, Tensor]``: ids int64 ``(B,)``, dense float32 ``(B,)`` or ``(B, d)``,
sequences int64 ``(B, L)`` padded with 0, and the target(s) under ``"label"``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import TypeAlias

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from recforge import kernels
from recforge.features import LABEL
from recforge.preprocess import FeaturePipeline
from recforge.preprocess.io import TableLike

Batch = dict[str, Tensor]
ArrayLike: TypeAlias = Tensor | np.ndarray | Sequence[object] | pd.Series


def to_tensor(name: str, values: ArrayLike) -> Tensor:
    """One column as a tensor: integers -> int64, floats/bools -> float32, lists -> padded int64."""
    if isinstance(values, Tensor):
        t = values
    else:
        if isinstance(values, pd.Series):
            values = values.to_numpy()
        arr = np.asarray(values) if not isinstance(values, np.ndarray) else values
        if arr.dtype == object:
            arr = _stack_lists(name, arr)
        if arr.dtype.kind in "US":
            raise TypeError(
                f"column {name!r}: strings must be encoded to ids first "
                "(recforge.preprocess.FeaturePipeline does that)"
            )
        if arr.dtype.kind not in "biuf":
            raise TypeError(
                f"column {name!r}: unsupported dtype {arr.dtype}; expected numbers or lists of ids"
            )
        arr = np.ascontiguousarray(arr)
        # Share the buffer rather than copy it, also when it is flagged read-only (pandas'
        # copy-on-write columns): recforge never writes to dataset columns, and a copy of a large
        # table would double its memory.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            t = torch.from_numpy(arr)
    if t.dtype in (torch.int8, torch.int16, torch.int32, torch.uint8):
        t = t.long()
    elif t.dtype in (torch.float64, torch.float16, torch.bfloat16) or t.dtype == torch.bool:
        t = t.float()
    if t.is_floating_point() and bool(torch.isnan(t).any()):
        raise ValueError(f"column {name!r}: contains NaN; fill or drop missing values first")
    return t


def _stack_lists(name: str, arr: np.ndarray) -> np.ndarray:
    """An object column of equal-length lists/arrays -> a 2-D array (left as is: the caller pads)."""
    if len(arr) == 0:
        return np.zeros((0, 0), dtype=np.int64)
    first = arr[0]
    if isinstance(first, str):
        raise TypeError(
            f"column {name!r}: strings must be encoded to ids first "
            "(recforge.preprocess.FeaturePipeline does that)"
        )
    try:
        lengths = {len(v) for v in arr}
    except TypeError:
        raise TypeError(f"column {name!r}: object column is neither numbers nor lists") from None
    if len(lengths) != 1:
        raise ValueError(
            f"column {name!r}: sequences have different lengths {sorted(lengths)[:5]}...; "
            "pad them first (recforge.preprocess pads and truncates)"
        )
    return np.stack([np.asarray(v) for v in arr])


class ColumnarDataset(torch.utils.data.Dataset[Batch]):
    """Columns held as whole tensors of one length ``N``.

    Works with ``BatchLoader`` (fast: whole-batch slicing) and with ``torch.utils.data.DataLoader``
    (``__getitems__`` returns a whole batch; pass ``collate_fn=passthrough``).

    Args:
        columns: name -> values (tensor, array, list, Series) or a DataFrame.
        labels: optional targets stored under ``"label"`` (``(N,)`` or ``(N, T)``).
    """

    def __init__(
        self, columns: Mapping[str, ArrayLike] | pd.DataFrame, labels: ArrayLike | None = None
    ) -> None:
        if isinstance(columns, pd.DataFrame):
            columns = {c: columns[c] for c in columns.columns}
        self.columns: Batch = {str(k): to_tensor(str(k), v) for k, v in columns.items()}
        if labels is not None:
            self.columns[LABEL] = to_tensor(LABEL, labels).float()
        lengths = {k: v.shape[0] for k, v in self.columns.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"columns have different lengths: {lengths}")
        self._n = next(iter(lengths.values()), 0)

    @classmethod
    def from_pipeline(cls, pipeline: FeaturePipeline, data: TableLike) -> ColumnarDataset:
        """``pipeline.transform(data)`` as a dataset (what a ``BatchLoader`` iterates)."""
        return cls(pipeline.transform(data))

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: int) -> Batch:
        return {k: v[index] for k, v in self.columns.items()}

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return {k: v.index_select(0, idx) for k, v in self.columns.items()}

    def take(self, index: Tensor | slice) -> Batch:
        """Rows ``index`` of every column (a view when ``index`` is a slice).

        A row index gathers every column in one pass where recforge's C kernels load (rows
        prefetched ahead: a shuffled batch reads rows scattered far beyond the caches), else one
        ``index_select`` per column (several times faster than advanced indexing)."""
        if isinstance(index, Tensor) and index.dtype == torch.int64 and index.dim() == 1:
            cols = list(self.columns.values())
            native = kernels.get() if len(cols) > 1 and index.device.type == "cpu" else None
            if native is not None and all(c.device.type == "cpu" and c.is_contiguous() for c in cols):
                return dict(zip(self.columns, native.take_rows(cols, index.contiguous()), strict=True))
            return {k: v.index_select(0, index) for k, v in self.columns.items()}
        return {k: v[index] for k, v in self.columns.items()}

    def subset(self, index: Tensor | slice) -> ColumnarDataset:
        out = ColumnarDataset.__new__(ColumnarDataset)
        out.columns = {k: v[index] for k, v in self.columns.items()}
        out._n = next(iter(out.columns.values())).shape[0] if out.columns else 0
        return out


def passthrough(batch: Batch) -> Batch:
    """``collate_fn`` for ``DataLoader`` over a ``ColumnarDataset`` (the batch is already whole)."""
    return batch


class BatchLoader:
    """Iterates a ``ColumnarDataset`` in batches by slicing whole tensors.

    Shuffling uses a generator seeded with ``seed + epoch`` so that a run resumed at epoch ``e``
    sees exactly the batches it would have seen; the trainer calls ``set_epoch``. ``rank`` and
    ``world_size`` give each distributed process a disjoint, equal-sized share of every epoch.
    """

    def __init__(
        self,
        dataset: ColumnarDataset,
        batch_size: int = 256,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, world_size={world_size}), got {rank}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def for_rank(self, rank: int, world_size: int) -> BatchLoader:
        """This loader restricted to one of ``world_size`` training processes: every rank gets
        ``N // world_size`` rows of each epoch's shuffled order (equal batch counts, as DDP needs).
        A loader already sharded, or a single process, keeps itself."""
        if self.world_size > 1 or world_size == 1:
            return self
        return BatchLoader(
            self.dataset,
            self.batch_size,
            shuffle=self.shuffle,
            drop_last=self.drop_last,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
        )

    def block_for_rank(self, rank: int, world_size: int) -> BatchLoader:
        """Rank ``rank``'s contiguous block of the (unshuffled) rows, for evaluation: the blocks
        cover every row, so the ranks' outputs concatenated in rank order are the single-process
        output."""
        if self.world_size > 1 or world_size == 1:
            return self
        n = len(self.dataset)
        start, end = rank * n // world_size, (rank + 1) * n // world_size
        return BatchLoader(self.dataset.subset(slice(start, end)), self.batch_size)

    def _indices(self) -> Tensor | None:
        n = len(self.dataset)
        if not self.shuffle and self.world_size == 1:
            return None
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        if self.world_size > 1:
            per_rank = n // self.world_size
            order = order[self.rank * per_rank : (self.rank + 1) * per_rank]
        return order

    def _rows(self) -> int:
        n = len(self.dataset)
        return n // self.world_size if self.world_size > 1 else n

    def __len__(self) -> int:
        n = self._rows()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        order = self._indices()
        n = self._rows()
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            end = min(start + self.batch_size, n)
            if order is None:
                yield self.dataset.take(slice(start, end))  # type: ignore[arg-type]
            else:
                yield self.dataset.take(order[start:end])


def split_batch(batch: object) -> Batch:
    """Normalise what a loader yields into one dict: ``(x, y)`` tuples become ``{**x, "label": y}``."""
    if isinstance(batch, Mapping):
        return dict(batch)
    if isinstance(batch, tuple | list) and len(batch) == 2 and isinstance(batch[0], Mapping):
        x, y = batch
        out = dict(x)
        out[LABEL] = y if isinstance(y, Tensor) else torch.as_tensor(y)
        return out
    raise TypeError(
        f"a loader must yield dict batches or (features_dict, labels) pairs, got {type(batch).__name__}"
    )
