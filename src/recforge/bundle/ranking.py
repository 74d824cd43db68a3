"""The ranking stage of a bundle: probabilities of raw rows (``score``), candidates for one user
(``rank``), and the reranking of retrieved candidates from item-side columns encoded once."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from recforge.bundle.rows import (
    Ranked,
    Rows,
    as_frame,
    as_records,
    concat,
    per_request,
    split_sizes,
    to_tensors,
)
from recforge.outputs import logits_of
from recforge.preprocess import Categorical, ValueKind
from recforge.preprocess.vocab import NUM_RESERVED
from recforge.runs import Run

SizeCheck = Callable[[int, str], None]


@dataclass(frozen=True)
class CandidateTable:
    """The ranking pipeline's item-side columns encoded once for every retrievable item.

    Row ``j`` holds the item with retrieval id ``j + NUM_RESERVED`` (the lower ids are padding and
    OOV), so a rerank gathers rows instead of building and encoding a DataFrame per request.
    ``fallback`` marks cells missing in the item table, which take the user's value of that column
    when the request gives one (as ``rank`` does).
    """

    encoded: dict[str, np.ndarray]  # column -> (V - NUM_RESERVED,) or (V - NUM_RESERVED, L)
    fallback: dict[str, np.ndarray]  # column -> (V - NUM_RESERVED,) bool


class RankingStage:
    """A ranking run ready for inference.

    Args:
        run: the ranking run.
        item_id: the item-id column (for candidates given as ids), if any.
        items: raw item-side columns indexed by ``item_id``, if any.
        check_size: refuses a call with too many rows (the bundle's ``max_batch``).
    """

    def __init__(
        self, run: Run, *, item_id: str | None, items: pd.DataFrame | None, check_size: SizeCheck
    ) -> None:
        self.run, self.item_id, self.items, self.check_size = run, item_id, items, check_size

    @property
    def columns(self) -> list[str]:
        return [c.name for c in self.run.pipeline.columns]

    def _probabilities(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            logits = logits_of(self.run.model(to_tensors(arrays))).float()
        return torch.sigmoid(logits).numpy()

    def score_batch(self, requests: Sequence[Rows]) -> list[np.ndarray | Exception]:
        """Probabilities of several independent row sets in one model call; each request is
        checked and encoded on its own (a bad one gets its exception in its slot)."""
        pipe = self.run.pipeline
        encoded: list[dict[str, np.ndarray] | Exception] = []
        pending: dict[int, list[Mapping[str, object]]] = {}  # request -> its records
        for i, rows in enumerate(requests):
            try:
                if isinstance(rows, pd.DataFrame):
                    self.check_size(len(rows), "score")
                    arrays = pipe.transform(rows)
                    arrays.pop("label", None)
                    encoded.append(arrays)
                else:
                    records = as_records(rows)
                    self.check_size(len(records), "score")
                    if records:
                        pending[i] = list(records)
                    encoded.append({})
            except Exception as e:  # handed back to that request's caller
                encoded.append(e)
        # the record requests (the serving path) are encoded together: one call per column
        for i, arrays_or_error in zip(
            pending, pipe.transform_record_groups(list(pending.values())), strict=True
        ):
            encoded[i] = arrays_or_error

        def run_all(parts: list[dict[str, np.ndarray]]) -> list[np.ndarray | Exception]:
            sizes = [len(next(iter(p.values()))) if p else 0 for p in parts]
            full = [p for p in parts if p]
            if not full:
                return [np.zeros(0, dtype=np.float32) for _ in parts]
            return list(split_sizes(self._probabilities(concat(full)), sizes))

        return per_request(encoded, run_all)

    # -- candidates --------------------------------------------------------------------------------
    def candidate_frame(self, candidates: Rows | Sequence[object]) -> tuple[pd.DataFrame, list[object]]:
        """Candidate rows and how to report each candidate (its id, or its row as a dict)."""
        if isinstance(candidates, pd.DataFrame | Mapping):
            df = as_frame(candidates, what="candidates")
            labels = (
                df[self.item_id].tolist()
                if self.item_id is not None and self.item_id in df.columns
                else df.to_dict("records")
            )
            return df.reset_index(drop=True), labels
        cands = list(candidates)  # type: ignore[arg-type]
        if cands and all(isinstance(c, Mapping) for c in cands):
            return self.candidate_frame(pd.DataFrame.from_records(cands))
        if self.item_id is None:
            raise TypeError(
                "candidates: plain ids need an item-id column (set item_id in bundle.yaml); "
                "pass candidate rows (dicts of item-side columns) instead"
            )
        if any(isinstance(c, Mapping) for c in cands):
            raise TypeError("candidates: give either all ids or all dicts, not a mix")
        if self.items is None:
            return pd.DataFrame({self.item_id: cands}), cands
        known = self.items.reindex(cands)
        known[self.item_id] = cands
        return self._fill_unknown_categoricals(known.reset_index(drop=True)), cands

    def rank(self, user: Mapping[str, object], candidates: Rows | Sequence[object]) -> Ranked:
        """``candidates`` for one ``user``, best first (see ``Bundle.rank``)."""
        if not isinstance(user, Mapping):
            raise TypeError(f"user: expected a dict of column -> value, got {type(user).__name__}")
        cands, labels = self.candidate_frame(candidates)
        self.check_size(len(cands), "rank")
        if len(cands) == 0:
            return Ranked([], [])
        rows = cands.copy()
        for k, v in user.items():
            if k not in rows.columns:
                rows[k] = [v] * len(rows)
        fill = [c for c in rows.columns if rows[c].isna().any() and c in user]
        for c in fill:  # candidate without a value for a column the user gives: take the user's
            rows[c] = rows[c].where(rows[c].notna(), user[c])
        p = self._probabilities(self.run.pipeline.transform(rows))
        order = np.argsort(-p, kind="stable")
        return Ranked([labels[i] for i in order], [float(p[i]) for i in order])

    def _oov_value(self, column: str) -> object:
        """A value of the column's type that is not in its vocabulary (so it encodes to OOV)."""
        vocab = self.run.pipeline.vocabulary(column)
        if vocab.kind is None or vocab.kind is ValueKind.STR:
            return "\x00recforge:unknown"
        numbers = [v for v in vocab.values if isinstance(v, int | float)]
        return (int(min(numbers)) if numbers else 0) - 1

    def _fill_unknown_categoricals(self, df: pd.DataFrame) -> pd.DataFrame:
        """Items missing from the item table: their categorical columns become OOV (or the fill)."""
        for spec in self.run.pipeline.columns:
            if isinstance(spec, Categorical) and spec.name in df.columns and df[spec.name].isna().any():
                fill = spec.fill_value if spec.fill_value is not None else self._oov_value(spec.name)
                df[spec.name] = df[spec.name].astype(object).where(df[spec.name].notna(), fill)
        return df

    # -- reranking retrieved items ---------------------------------------------------------------
    def candidate_table(self, item_values: Sequence[object]) -> CandidateTable:
        """Encode this stage's item-side columns for ``item_values`` (the retrieval ids
        ``NUM_RESERVED ..`` decoded), once."""
        frame, _ = self.candidate_frame(list(item_values))
        encoded: dict[str, np.ndarray] = {}
        fallback: dict[str, np.ndarray] = {}
        for spec in self.run.pipeline.columns:
            if spec.name not in frame.columns:
                continue
            column = frame[spec.name]
            encoded[spec.name] = self.run.pipeline.encode_column(spec.name, column)
            gaps = column.isna().to_numpy()
            if gaps.any():
                fallback[spec.name] = gaps
        return CandidateTable(encoded, fallback)

    def user_columns_for(
        self, table: CandidateTable, rows: Sequence[Mapping[str, object]]
    ) -> dict[str, np.ndarray]:
        """The ranking columns taken from the users: those the item table lacks, and those with
        gaps in it when the users give them."""
        present = {key for r in rows for key in r}
        names = [
            c.name
            for c in self.run.pipeline.columns
            if c.name not in table.encoded or (c.name in table.fallback and c.name in present)
        ]
        return self.run.pipeline.transform_records(rows, columns=names)

    def rerank_scores(
        self,
        table: CandidateTable,
        users: Sequence[dict[str, np.ndarray]],
        candidates: Sequence[Sequence[list[int]]],
    ) -> list[list[np.ndarray]]:
        """Probabilities of every query's users' retrieved ``candidates`` (encoded retrieval ids),
        from one model call. ``users[q]`` holds query ``q``'s user columns (``user_columns_for``)."""
        parts: list[dict[str, np.ndarray]] = []
        sizes: list[list[int]] = []
        for user_cols, lists in zip(users, candidates):
            ids = [np.asarray(x, dtype=np.int64) - NUM_RESERVED for x in lists]
            counts = [len(x) for x in ids]
            sizes.append(counts)
            if not sum(counts):
                continue
            rows = np.concatenate(ids)  # (N,) table rows of every candidate of this query
            owner = np.repeat(np.arange(len(ids)), counts)  # (N,) the user of each candidate
            cols: dict[str, np.ndarray] = {}
            for spec in self.run.pipeline.columns:
                name = spec.name
                if name not in table.encoded:  # a user-side column: the user's value on every row
                    cols[name] = user_cols[name][owner]
                    continue
                col = table.encoded[name][rows]
                if name in user_cols:  # item-table gaps take the user's value
                    gap = table.fallback[name][rows]
                    col[gap] = user_cols[name][owner[gap]]
                cols[name] = col
            parts.append(cols)
        flat = self._probabilities(concat(parts)) if parts else np.zeros(0, dtype=np.float32)
        per_query = split_sizes(flat, [sum(c) for c in sizes])
        return [split_sizes(p, c) for p, c in zip(per_query, sizes)]
