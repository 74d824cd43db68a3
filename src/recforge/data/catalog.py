"""The item catalog: item-side feature columns indexed by item id.

Row ``i`` holds item id ``i``; row 0 is padding (and, for ids from ``recforge.preprocess``, row 1
the out-of-vocabulary id: ``reserved=2``). Objectives use it to look up the item-side columns of
sampled negatives, the evaluator to compute every item vector once and rank ids ``reserved ..``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pandas as pd
import torch
from torch import Tensor

from recforge.data.dataset import ArrayLike, Batch, to_tensor


class ItemCatalog:
    """Item feature columns, row ``i`` = item id ``i`` (row 0 = padding).

    Args:
        columns: item-side columns (name -> values of length ``num_items``, or a DataFrame); must
            include ``item_id`` unless ``num_items`` is given, in which case ``item_id`` is
            ``arange(num_items)`` and other columns are optional.
        item_id: name of the item-id column (``model.item_id``).
        num_items: catalog size including padding id 0 (optional when ``columns`` has ``item_id``).
        reserved: ids below this are not items (never ranked): 1 (padding) by default, 2 for ids
            encoded by a ``FeaturePipeline`` vocabulary (padding and OOV).

    Use ``ItemCatalog.from_frame`` to build from a DataFrame with one row per item in any order.
    """

    def __init__(
        self,
        columns: Mapping[str, ArrayLike] | pd.DataFrame | None = None,
        *,
        item_id: str = "item_id",
        num_items: int | None = None,
        reserved: int = 1,
    ) -> None:
        if isinstance(columns, pd.DataFrame):
            columns = {str(c): columns[c] for c in columns.columns}
        cols: Batch = {str(k): to_tensor(str(k), v) for k, v in (columns or {}).items()}
        if item_id not in cols:
            if num_items is None:
                raise ValueError(
                    f"ItemCatalog: columns must contain the item-id column {item_id!r} or num_items"
                )
            cols[item_id] = torch.arange(num_items)
        ids = cols[item_id]
        if ids.dim() != 1 or ids.dtype != torch.int64:
            raise TypeError(
                f"ItemCatalog: column {item_id!r} must be 1-D int ids, got {ids.dtype} {tuple(ids.shape)}"
            )
        if not torch.equal(ids, torch.arange(len(ids))):
            raise ValueError(
                f"ItemCatalog: row i must hold item id i (column {item_id!r} must equal arange); "
                "use ItemCatalog.from_frame for unordered rows"
            )
        n = len(ids)
        if num_items is not None and n != num_items:
            raise ValueError(f"ItemCatalog: num_items={num_items} but column {item_id!r} has {n} rows")
        for k, v in cols.items():
            if v.shape[0] != n:
                raise ValueError(
                    f"ItemCatalog: column {k!r} has {v.shape[0]} rows, expected {n} (one per item id)"
                )
        if isinstance(reserved, bool) or not isinstance(reserved, int) or reserved < 1:
            raise ValueError(f"ItemCatalog: reserved must be an int >= 1, got {reserved!r}")
        if n <= reserved:
            raise ValueError(f"ItemCatalog: needs at least one real item besides the {reserved} reserved ids")
        self.item_id = item_id
        self.columns = cols
        self.reserved = reserved

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame | Mapping[str, ArrayLike],
        *,
        item_id: str = "item_id",
        num_items: int | None = None,
        reserved: int = 1,
    ) -> ItemCatalog:
        """Catalog from one row per item (any order, ids in ``[1, num_items)``); missing ids get zeros."""
        data = {str(k): to_tensor(str(k), v) for k, v in frame.items()}
        if item_id not in data:
            raise KeyError(f"ItemCatalog.from_frame: no item-id column {item_id!r}; columns: {sorted(data)}")
        ids = data[item_id]
        if ids.numel() and int(ids.min()) < 0:
            raise ValueError(f"ItemCatalog.from_frame: column {item_id!r} has negative ids")
        n = num_items if num_items is not None else int(ids.max()) + 1
        if ids.numel() and int(ids.max()) >= n:
            raise ValueError(
                f"ItemCatalog.from_frame: ids of {item_id!r} reach {int(ids.max())} >= num_items={n}"
            )
        if len(torch.unique(ids)) != len(ids):
            raise ValueError(f"ItemCatalog.from_frame: column {item_id!r} has duplicate ids")
        cols: Batch = {item_id: torch.arange(n)}
        for k, v in data.items():
            if k == item_id:
                continue
            full = torch.zeros((n, *v.shape[1:]), dtype=v.dtype)
            full[ids] = v
            cols[k] = full
        return cls(cols, item_id=item_id, reserved=reserved)

    @property
    def num_items(self) -> int:
        """Catalog size including padding id 0."""
        return int(self.columns[self.item_id].shape[0])

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def to(self, device: torch.device | str) -> ItemCatalog:
        out = ItemCatalog.__new__(ItemCatalog)
        out.item_id, out.reserved = self.item_id, self.reserved
        out.columns = {k: v.to(device) for k, v in self.columns.items()}
        return out

    def batch(self, ids: Tensor) -> Batch:
        """Item-side columns for ``ids`` of any shape ``S``: each column ``S + column.shape[1:]``."""
        if ids.dtype != torch.int64:
            raise TypeError(f"ItemCatalog.batch: ids must be int64, got {ids.dtype}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.num_items):
            raise IndexError(
                f"ItemCatalog.batch: ids must lie in [0, {self.num_items}), got [{int(ids.min())}, {int(ids.max())}]"
            )
        flat = ids.reshape(-1)
        out: Batch = {}
        for k, v in self.columns.items():
            v = v.to(ids.device) if v.device != ids.device else v
            out[k] = v.index_select(0, flat).reshape(*ids.shape, *v.shape[1:])
        return out

    def all(self, batch_size: int = 65_536) -> Iterator[Batch]:
        """Catalog batches covering ids ``0 .. num_items - 1`` in order (padding row included, so
        concatenated item vectors are indexed by item id)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for start in range(0, self.num_items, batch_size):
            yield {k: v[start : start + batch_size] for k, v in self.columns.items()}

    def __len__(self) -> int:
        return self.num_items


def catalog_of(num_items: int, *, item_id: str = "item_id", reserved: int = 1) -> ItemCatalog:
    """An id-only catalog (item towers that read nothing but the id)."""
    return ItemCatalog(item_id=item_id, num_items=num_items, reserved=reserved)
