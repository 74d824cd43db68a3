"""Streaming Parquet: iterate a directory of Parquet files larger than memory in columnar batches.

``ParquetStream`` is a ``torch.utils.data.IterableDataset`` that yields ready batches
(``dict[str, Tensor]``), so it serves directly as the Trainer's loader or inside a
``DataLoader(stream, batch_size=None, num_workers=K)``.

* Work units are Parquet row groups (e.g. Spark's ``part-*.parquet`` files, any nesting).
  Units are dealt round-robin to ``rank × worker`` slots; with ``shuffle`` their order is
  re-drawn every epoch from ``seed + epoch`` (the Trainer calls ``set_epoch``).
* Each row group is read with only the needed columns, passed through ``pipeline.transform``
  (a fitted ``recforge.preprocess.FeaturePipeline`` or anything with that method) and goes to a
  shuffle buffer of ``shuffle_buffer`` rows, from which batches are cut by tensor slicing.
* Without a pipeline, number columns become tensors as they are and list columns (Parquet
  ``list<int>``) are left-padded with 0 to ``list_lengths[column]`` (most recent items kept).
* With more than one slot and ``equalize=True`` (the default), every slot stops after the same
  number of batches (the smallest slot's count, known from the Parquet metadata), so DDP ranks run
  equal step counts. Validation streams take ``equalize=False`` to keep every row (evaluation
  runs no collectives until the outputs are gathered).

Memory: at most ``shuffle_buffer + rows of one row group`` rows are held per slot.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from recforge.data.dataset import LABEL, Batch, to_tensor
from recforge.preprocess.io import list_parquet_files as list_files
from recforge.preprocess.lists import pad_left


class Transform(Protocol):
    """What the stream needs of a fitted feature pipeline."""

    def transform(self, data: pa.Table) -> Mapping[str, np.ndarray]: ...


def pad_lists(name: str, column: pa.Array | pa.ChunkedArray, length: int) -> np.ndarray:
    """A Parquet list column -> int64 ``(N, length)``, left-padded with 0, last ``length`` items kept."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not pa.types.is_list(column.type) and not pa.types.is_large_list(column.type):
        raise TypeError(f"column {name!r}: expected a list column, got {column.type}")
    if column.null_count:
        column = column.fill_null(pa.scalar([], type=column.type))
    offsets = column.offsets.to_numpy().astype(np.int64)
    flat = column.flatten().to_numpy(zero_copy_only=False)
    if flat.dtype.kind not in "iu":
        raise TypeError(f"column {name!r}: list items must be integer ids, got {flat.dtype}")
    return pad_left(flat, np.diff(offsets), length)


def _concat(parts: Sequence[Batch]) -> Batch:
    if len(parts) == 1:
        return parts[0]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


class ParquetStream(torch.utils.data.IterableDataset[Batch]):
    """Batches from Parquet files, sharded by ``rank × worker``, shuffled through a buffer.

    Args:
        path: a Parquet file or a directory of them.
        batch_size: rows per batch.
        columns: columns to read (default: all; with a pipeline, what its ``transform`` needs).
        pipeline: a fitted ``FeaturePipeline`` (or any object with ``transform(pa.Table)``).
        label: without a pipeline, the column output as ``"label"`` (float32).
        list_lengths: without a pipeline, the padded width of each list column.
        shuffle: shuffle row-group order per epoch and rows through the buffer.
        shuffle_buffer: rows held for shuffling (0: none; batches follow file order).
        seed: base seed; epoch ``e`` uses ``seed + e``.
        drop_last: drop a final short batch (always dropped when slots are equalised).
        rank, world_size: this process's share; default: from ``recforge.distributed``.
        equalize: with several slots, stop every slot at the smallest slot's batch count.
    """

    def __init__(
        self,
        path: str | Path,
        batch_size: int = 4096,
        *,
        columns: Sequence[str] | None = None,
        pipeline: Transform | None = None,
        label: str | None = None,
        list_lengths: Mapping[str, int] | None = None,
        shuffle: bool = False,
        shuffle_buffer: int = 0,
        seed: int = 0,
        drop_last: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        equalize: bool = True,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be >= 0, got {shuffle_buffer}")
        self.files = list_files(path)
        self.batch_size = batch_size
        self.columns = list(columns) if columns is not None else None
        self.pipeline = pipeline
        self.label = label
        self.list_lengths = dict(list_lengths or {})
        self.shuffle = shuffle
        self.shuffle_buffer = shuffle_buffer if shuffle else 0
        self.seed = seed
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.equalize = equalize
        self.epoch = 0
        schema = pq.read_schema(self.files[0])
        if self.columns is not None:
            missing = [c for c in self.columns if c not in schema.names]
            if missing:
                raise KeyError(f"columns {missing} are not in {str(self.files[0])!r}; it has {schema.names}")
        # (file index, row group, rows) of every row group, from the footers only
        self.units: list[tuple[int, int, int]] = []
        for i, f in enumerate(self.files):
            meta = pq.ParquetFile(f).metadata
            self.units.extend((i, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups))
        self.num_rows = sum(u[2] for u in self.units)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    # -- sharding --------------------------------------------------------------------------------
    def _slots(self) -> tuple[int, int]:
        """``(this slot, number of slots)`` over ``rank × DataLoader worker``."""
        from recforge import distributed

        rank = self.rank if self.rank is not None else distributed.rank()
        world = self.world_size if self.world_size is not None else distributed.world_size()
        if not 0 <= rank < world:
            raise ValueError(f"rank must lie in [0, world_size={world}), got {rank}")
        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        return rank * workers + worker, world * workers

    def _order(self) -> list[tuple[int, int, int]]:
        if not self.shuffle:
            return list(self.units)
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return [self.units[i] for i in torch.randperm(len(self.units), generator=g).tolist()]

    def slot_units(self, slot: int, slots: int) -> list[tuple[int, int, int]]:
        return self._order()[slot::slots]

    def _max_batches(self, slots: int) -> int | None:
        if slots == 1 or not self.equalize:
            return None
        order = self._order()
        fewest = min(sum(u[2] for u in order[s::slots]) for s in range(slots))
        return fewest // self.batch_size

    def __len__(self) -> int:
        """Batches of this process over all its workers (an upper bound without equalisation)."""
        slot, slots = self._slots()
        cap = self._max_batches(slots)
        if cap is not None:
            return cap
        rows = sum(u[2] for u in self.slot_units(slot, slots))
        return rows // self.batch_size if self.drop_last else math.ceil(rows / self.batch_size)

    # -- reading ---------------------------------------------------------------------------------
    def _read(self, unit: tuple[int, int, int]) -> Batch:
        f, group, _ = unit
        table = pq.ParquetFile(self.files[f]).read_row_group(group, columns=self.columns)
        if self.pipeline is not None:
            cols = self.pipeline.transform(table)
            return {k: to_tensor(k, v) for k, v in cols.items()}
        out: Batch = {}
        for name in table.column_names:
            col = table.column(name)
            if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
                if name not in self.list_lengths:
                    raise ValueError(
                        f"list column {name!r}: give its padded width in list_lengths "
                        "(or use a FeaturePipeline, which learns it)"
                    )
                out[name] = torch.from_numpy(pad_lists(name, col, self.list_lengths[name]))
                continue
            if col.null_count:
                raise ValueError(f"column {name!r}: has missing values; fill them or use a FeaturePipeline")
            key = LABEL if name == self.label else name
            out[key] = to_tensor(name, col.to_numpy())
            if key == LABEL:
                out[key] = out[key].float()
        return out

    def _shuffled(self, chunks: Iterator[Batch], g: torch.Generator) -> Iterator[Batch]:
        """Rows of ``chunks`` through a shuffle buffer of ``shuffle_buffer`` rows.

        Once the buffer is full, each arriving chunk swaps its rows into the buffer at uniformly
        drawn positions and the rows it displaces leave (in that random order): every row is
        copied in and out once, however large the buffer. At the end the rest leaves permuted.
        """
        cap = self.shuffle_buffer
        buffer: Batch = {}
        filled = 0
        for chunk in chunks:
            n = next(iter(chunk.values())).shape[0]
            if not buffer:
                buffer = {k: torch.empty((cap, *v.shape[1:]), dtype=v.dtype) for k, v in chunk.items()}
            pos = 0
            if filled < cap:
                k = min(cap - filled, n)
                for name, v in chunk.items():
                    buffer[name][filled : filled + k] = v[:k]
                filled, pos = filled + k, k
            while pos < n:
                k = min(cap, n - pos)
                slots = torch.randperm(cap, generator=g)[:k]
                out = {name: b[slots] for name, b in buffer.items()}
                for name, v in chunk.items():
                    buffer[name][slots] = v[pos : pos + k]
                pos += k
                yield out
        if filled:
            perm = torch.randperm(filled, generator=g)
            yield {name: b[:filled][perm] for name, b in buffer.items()}

    def __iter__(self) -> Iterator[Batch]:
        slot, slots = self._slots()
        cap = self._max_batches(slots)
        g = torch.Generator().manual_seed((self.seed + self.epoch) * 7919 + slot)
        chunks = (self._read(unit) for unit in self.slot_units(slot, slots))
        pieces = self._shuffled(chunks, g) if self.shuffle_buffer else chunks
        size = self.batch_size
        emitted = 0
        carry: Batch | None = None  # fewer than batch_size rows left over from earlier pieces
        for piece in pieces:
            n = next(iter(piece.values())).shape[0]
            start = 0
            if carry is not None:
                need = size - next(iter(carry.values())).shape[0]
                if n < need:
                    carry = _concat([carry, piece])
                    continue
                head = {k: v[:need] for k, v in piece.items()}
                batch, carry, start = _concat([carry, head]), None, need
                if cap is not None and emitted >= cap:
                    return
                yield batch
                emitted += 1
            while start + size <= n:
                if cap is not None and emitted >= cap:
                    return
                yield {k: v[start : start + size] for k, v in piece.items()}
                emitted += 1
                start += size
            if start < n:
                carry = {k: v[start:] for k, v in piece.items()}
        if carry is None or self.drop_last or cap is not None:
            return
        yield carry
