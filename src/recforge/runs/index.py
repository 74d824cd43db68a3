"""The item index of a retrieval run: every catalogue item through the item tower, once."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
import torch

from recforge.layout import RunLayout
from recforge.models.matching.base import TwoTowerModel
from recforge.preprocess.vocab import NUM_RESERVED
from recforge.runs.model import Run


def build_item_index(
    run: Run,
    *,
    items: pd.DataFrame | None = None,
    metric: str = "ip",
    path: str | os.PathLike[str] | None = None,
    batch_size: int = 65_536,
) -> Any:
    """Embed every known item with the retrieval run's item tower and save the index.

    Args:
        run: a retrieval run (its model is a ``TwoTowerModel``).
        items: raw item-side columns, one row per item (needed when the item tower reads more
            than the item id); default: every value in the item-id vocabulary.
        metric: ``"ip"`` or ``"l2"``.
        path: where to save (default the run's ``index.pt``).
    Returns:
        The built ``recforge.retrieval`` index (ids are the encoded item ids).
    """
    from recforge.retrieval import ExactIndex

    model = run.model
    if not isinstance(model, TwoTowerModel):
        raise TypeError(f"build_item_index needs a TwoTowerModel run, got {type(model).__name__}")
    item = model.item_id
    names = [f.name for f in model.item_features]
    if items is None:
        extra = [n for n in names if n != item]
        if extra:
            raise ValueError(f"the item tower also reads {extra}; pass items= with those columns")
        vocab = run.pipeline.vocabulary(item)
        frame = pd.DataFrame({item: vocab.decode(np.arange(NUM_RESERVED, len(vocab))).tolist()})
    else:
        missing = [n for n in names if n not in items.columns]
        if missing:
            raise KeyError(f"item table: missing column(s) {missing}; the item tower reads {names}")
        frame = items.drop_duplicates(item, keep="last").reset_index(drop=True)
    vectors, ids = [], []
    for start in range(0, len(frame), batch_size):
        part = frame.iloc[start : start + batch_size]
        encoded = run.pipeline.transform_records(part.to_dict("records"), columns=names)
        batch = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in encoded.items()}
        with torch.inference_mode():
            vectors.append(model.item_tower(batch).float())
        ids.append(batch[item])
    all_ids = torch.cat(ids)
    keep = all_ids >= NUM_RESERVED  # OOV rows (items outside the vocabulary) cannot be served
    index = ExactIndex(metric).build(torch.cat(vectors)[keep], all_ids[keep])
    index.save(path if path is not None else RunLayout(run.path).index)
    return index
