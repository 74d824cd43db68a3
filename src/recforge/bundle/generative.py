"""The generative stage of a bundle: raw user rows -> a generative retriever's beam search (TIGER,
``ListModel.generate``) -> its best items, seen items excluded inside the search. No item index:
the model generates item ids itself. A known user's history is the run's (``histories.pt``); a new
user's comes in the request."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from recforge.bundle.retrieval import PreparedQuery, UserStage
from recforge.bundle.rows import Recommendation, RecommendQuery, concat, to_tensors
from recforge.metrics.ranking import ListModel
from recforge.preprocess.vocab import NUM_RESERVED
from recforge.runs import Run
from recforge.runs.generative import AddedItems, add_items_to_run, save_items


class GenerativeStage(UserStage):
    """A run whose model generates ranked items (``generate(batch, k, exclude=...)``).

    Args:
        run: the run. beam_width: beams of the search (default: ``k``; at least ``k``).
    """

    def __init__(self, run: Run, *, beam_width: int | None = None) -> None:
        model = run.model
        if not isinstance(model, ListModel) or not isinstance(model, nn.Module):
            raise TypeError(
                f"a generative stage needs a model with generate(batch, k), got {type(model).__name__}"
            )
        item = (run.config.get("data") or {}).get("item", "item_id")
        super().__init__(run, item_column=item)
        self.model: ListModel = model
        self.beam_width = beam_width

    def add_items(
        self, items: pd.DataFrame | Sequence[Mapping[str, object]], *, persist: bool = False
    ) -> AddedItems:
        """New items in the catalogue, IDs from their content (``recforge.runs.generative.add_items_to_run``;
        nothing is retrained); ``persist`` also rewrites the run directory (``save_items``)."""
        table = items if isinstance(items, pd.DataFrame) else pd.DataFrame([dict(r) for r in items])
        added = add_items_to_run(self.run, table)
        if persist:
            save_items(self.run)
        return added

    def user_columns(self) -> list[str]:
        """Raw columns encoded per user: the history (the user id is optional, see ``prepare``)."""
        return self.history_columns()

    def _rows(self, q: RecommendQuery, *, rerank: bool, check_size: Any) -> list[Mapping[str, object]]:
        if rerank:
            raise TypeError("a generative stage does not rerank (rerank=False)")
        return super()._rows(q, rerank=False, check_size=check_size)

    def _finish(
        self,
        q: RecommendQuery,
        rows: list[Mapping[str, object]],
        users: dict[str, np.ndarray],
        *,
        rerank: bool,
    ) -> PreparedQuery:
        """``UserStage._finish`` plus each row's encoded user id (0 for a row without one or an
        unknown user: the model's unknown-user token)."""
        prepared = super()._finish(q, rows, users, rerank=False)
        raw = [r.get(self.user_column) for r in rows]
        ids = np.zeros(len(raw), np.int64)
        given = [i for i, v in enumerate(raw) if v is not None]
        if given:
            vocab = self.run.pipeline.vocabulary(self.user_column)
            ids[given] = vocab.encode([raw[i] for i in given], column=self.user_column)
        prepared.users[self.user_column] = np.where(ids >= NUM_RESERVED, ids, 0)
        return prepared

    def recommend_prepared(self, queries: list[PreparedQuery]) -> list[list[Recommendation]]:
        """One beam search for every user of every query (seen items never generated)."""
        live = [q for q in queries if q.num_users]
        if not live:
            return [[] for _ in queries]
        batch = to_tensors(concat([q.users for q in live]))
        seen = [s for q in live for s in q.seen]
        rows = torch.tensor([i for i, s in enumerate(seen) for _ in s], dtype=torch.long)
        items = torch.tensor([x for s in seen for x in s], dtype=torch.long)
        k = max(q.k for q in live)
        with torch.inference_mode():
            ids, scores = self.model.generate(
                batch, k, beam_width=max(k, self.beam_width or k), exclude=(rows, items)
            )  # (B, k)
        out: list[list[Recommendation]] = []
        start = 0
        for q in live:
            recs = []
            for i in range(start, start + q.num_users):
                picked = [
                    (int(x), float(v))
                    for x, v in zip(ids[i].tolist(), scores[i].tolist())
                    if x >= NUM_RESERVED
                ]
                picked = picked[: q.k]
                values = self.vocab.decode([x for x, _ in picked]).tolist() if picked else []
                recs.append(Recommendation(values, [v for _, v in picked]))
            out.append(recs)
            start += q.num_users
        it = iter(out)
        return [next(it) if q.num_users else [] for q in queries]
