"""Serving bundles: a trained run directory (or a two-stage serving directory) restored for inference.

```python
import recforge
bundle = recforge.load("runs/adult_deepfm")
bundle.score([{"age": 39, "workclass": "State-gov", ...}])      # probabilities, shape (N,)
bundle.rank({"age": 39, ...}, [{"occupation": "Sales"}, {"occupation": "Tech-support"}])
bundle.recommend([{"user_id": "u7", "hist_item_id": "i3|i9"}], k=10)   # needs a retrieval stage
```

Inputs are RAW rows (a DataFrame, one dict or a list of dicts) holding the original column values;
the run's fitted ``FeaturePipeline`` encodes them exactly as in training, so users, items and
categories never seen in training map to the out-of-vocabulary id and still get scores.

A directory is one of:

* a ranking run (``recforge train`` output): ``score`` and ``rank``;
* a retrieval run (its model is a ``TwoTowerModel``) holding ``index.pt`` (item vectors, see
  ``build_item_index``): ``recommend``;
* a serving directory with ``bundle.yaml`` naming both stages (a two-stage pipeline in one config)::

      retrieval: ../runs/dssm        # retrieval run with index.pt (paths relative to this file)
      ranking: ../runs/deepfm        # ranking run used to rerank the retrieved candidates
      items: items.parquet           # optional: raw item-side columns keyed by the item-id column
      rerank: 100                    # candidates retrieved, then reranked by the ranking model
      max_batch: 1024                # largest number of rows one call may score
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeAlias, TypeVar

import numpy as np
import pandas as pd
import torch
import yaml
from torch import Tensor

from recforge.features import SequenceFeature
from recforge.models.matching.base import TwoTowerModel
from recforge.outputs import logits_of
from recforge.preprocess import Categorical, SequenceColumn, ValueKind
from recforge.preprocess.vocab import NUM_RESERVED
from recforge.runs import Run, load_run

BUNDLE_FILE = "bundle.yaml"
INDEX_FILE = "index.pt"
ITEMS_FILE = "items.parquet"

Rows: TypeAlias = pd.DataFrame | Mapping[str, object] | Sequence[Mapping[str, object]]


class Recommendation(NamedTuple):
    """Top-K items of one user: original item ids, best first, with their scores."""

    items: list[object]
    scores: list[float]


class Ranked(NamedTuple):
    """Candidates sorted by descending probability (original values) with their probabilities."""

    candidates: list[object]
    scores: list[float]


def as_frame(rows: Rows, *, what: str = "rows") -> pd.DataFrame:
    """Raw rows as a DataFrame: a DataFrame, one mapping (one row) or a sequence of mappings."""
    if isinstance(rows, pd.DataFrame):
        return rows
    if isinstance(rows, Mapping):
        rows = [rows]
    if isinstance(rows, str | bytes) or not isinstance(rows, Sequence):
        raise TypeError(f"{what}: expected a DataFrame, a dict or a list of dicts, got {type(rows).__name__}")
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping):
            raise TypeError(f"{what}[{i}]: expected a dict of column -> value, got {type(r).__name__}")
    return pd.DataFrame.from_records(list(rows))


def as_records(rows: Rows, *, what: str = "rows") -> list[Mapping[str, object]]:
    """Raw rows as a list of dicts: a DataFrame, one mapping (one row) or a sequence of mappings."""
    if isinstance(rows, pd.DataFrame):
        return rows.to_dict("records")  # type: ignore[return-value]
    if isinstance(rows, Mapping):
        return [rows]
    if isinstance(rows, str | bytes) or not isinstance(rows, Sequence):
        raise TypeError(f"{what}: expected a DataFrame, a dict or a list of dicts, got {type(rows).__name__}")
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping):
            raise TypeError(f"{what}[{i}]: expected a dict of column -> value, got {type(r).__name__}")
    return list(rows)


@dataclass(frozen=True)
class RecommendQuery:
    """The arguments of one ``Bundle.recommend`` call; ``recommend_batch`` runs several at once."""

    users: Rows
    k: int = 10
    exclude_seen: bool = True
    rerank: bool | None = None
    exclude: Sequence[Sequence[object]] | None = None


@dataclass(frozen=True)
class BundleConfig:
    """``bundle.yaml``: which runs make the stages (paths relative to the file's directory)."""

    ranking: str | None = None
    retrieval: str | None = None
    items: str | None = None
    item_id: str | None = None
    rerank: int = 100
    max_batch: int = 1024

    @classmethod
    def parse(cls, raw: Mapping[str, Any], where: str) -> BundleConfig:
        known = {"ranking", "retrieval", "items", "item_id", "rerank", "max_batch"}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; valid: {sorted(known)}")
        cfg = cls(**dict(raw))
        if cfg.ranking is None and cfg.retrieval is None:
            raise ValueError(f"{where}: name at least one of 'ranking' or 'retrieval'")
        for key in ("rerank", "max_batch"):
            v = getattr(cfg, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{where}: {key} must be a positive int, got {v!r}")
        return cfg


def _to_tensors(arrays: Mapping[str, np.ndarray]) -> dict[str, Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items() if k != "label"}


def _rows_to_batch(run: Run, df: pd.DataFrame) -> dict[str, Tensor]:
    return _to_tensors(run.pipeline.transform(df))


def _concat(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Column-wise concatenation of encoded batches with the same columns."""
    if len(parts) == 1:
        return dict(parts[0])
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


@dataclass(frozen=True)
class _CandidateTable:
    """The ranking pipeline's item-side columns encoded once for every retrievable item.

    Row ``j`` holds the item with retrieval id ``j + 2`` (ids 0 and 1 are padding and OOV), so a
    rerank gathers rows instead of building and encoding a DataFrame per request. ``fallback``
    marks cells missing in the item table, which take the user's value of that column when the
    request gives one (as ``Bundle.rank`` does).
    """

    encoded: dict[str, np.ndarray]  # column -> (V - 2,) or (V - 2, L)
    fallback: dict[str, np.ndarray]  # column -> (V - 2,) bool


@dataclass
class _PreparedQuery:
    """A validated ``RecommendQuery`` with its users encoded (the per-request part of the work)."""

    k: int
    rerank: bool
    num_users: int  # B
    users: dict[str, np.ndarray]  # retrieval user columns, (B,) or (B, L)
    seen: list[set[int]]  # encoded item ids to leave out, per user
    rank_users: dict[str, np.ndarray] | None  # ranking columns taken from the users, when reranking


def _predict_logits(run: Run, df: pd.DataFrame) -> Tensor:
    batch = _rows_to_batch(run, df)
    with torch.inference_mode():
        return logits_of(run.model(batch)).float()


class Bundle:
    """A ranking and/or retrieval stage ready for inference. Build it with ``recforge.load``.

    Attributes:
        ranker: the ranking run (``score``, ``rank``, reranking in ``recommend``), or None.
        retriever: the retrieval run (``recommend``), or None.
        index: the item vector index of the retrieval run, or None.
        items: raw item-side columns, one row per item, indexed by the item-id column, or None.
        config: the stages' settings.
    """

    def __init__(
        self,
        *,
        ranker: Run | None,
        retriever: Run | None,
        index: Any | None = None,
        items: pd.DataFrame | None = None,
        config: BundleConfig,
        path: Path,
    ) -> None:
        self.ranker, self.retriever, self.index, self.config, self.path = (
            ranker,
            retriever,
            index,
            config,
            path,
        )
        self.item_id = config.item_id or (
            retriever.model.item_id if retriever is not None else None  # type: ignore[union-attr]
        )
        if items is not None and self.item_id is not None:
            if self.item_id not in items.columns:
                raise KeyError(f"item table: no item-id column {self.item_id!r}; has {sorted(items.columns)}")
            items = items.drop_duplicates(self.item_id, keep="last").set_index(self.item_id, drop=False)
        self.items = items
        two_stage = ranker is not None and retriever is not None and index is not None
        self._candidates = self._candidate_table() if two_stage else None

    # -- description ---------------------------------------------------------------------------
    def input_columns(self, stage: str = "ranking") -> list[str]:
        """Raw columns a stage's pipeline reads (``"ranking"`` or ``"retrieval"``)."""
        run = self.ranker if stage == "ranking" else self.retriever
        if run is None:
            return []
        return [c.name for c in run.pipeline.columns]

    def user_columns(self) -> list[str]:
        """Raw columns ``recommend`` needs per user: the retrieval model's user-side columns."""
        if self.retriever is None:
            return []
        model: TwoTowerModel = self.retriever.model  # type: ignore[assignment]
        return [f.name for f in model.user_features]

    def required_user_columns(self) -> list[str]:
        """The user columns a ``recommend`` row must give: all of ``user_columns()``, except that a
        run trained on an interaction log (it keeps its users' histories) takes either the user id
        of a known user or the history itself."""
        cols = self.user_columns()
        run = self.retriever
        if run is None or run.histories is None:
            return cols
        data = run.config.get("data") or {}
        item = data.get("item", "item_id")
        optional = {data.get("user", "user_id")} | {
            c.name for c in run.pipeline.columns if isinstance(c, SequenceColumn) and c.shared_with == item
        }
        return [c for c in cols if c not in optional]

    def metadata(self) -> dict[str, Any]:
        from recforge._version import __version__

        def stage(run: Run | None) -> dict[str, Any] | None:
            if run is None:
                return None
            return {
                "model": type(run.model).__name__,
                "features": [
                    {"name": c.name, "type": type(c).__name__.lower()} for c in run.pipeline.columns
                ],
                "num_parameters": sum(p.numel() for p in run.model.parameters()),
            }

        return {
            "recforge_version": __version__,
            "name": self.path.name,  # never the server's absolute path: /metadata shows this
            "ranking": stage(self.ranker),
            "retrieval": stage(self.retriever),
            "item_id": self.item_id,
            "num_items": len(self.index) if self.index is not None else None,
            "rerank": self.config.rerank if self.ranker and self.retriever else None,
            "max_batch": self.config.max_batch,
        }

    def _check_size(self, n: int, what: str) -> None:
        if n > self.config.max_batch:
            raise ValueError(f"{what}: {n} rows exceed max_batch={self.config.max_batch}")

    # -- ranking -------------------------------------------------------------------------------
    def _require_ranker(self, method: str) -> Run:
        if self.ranker is None:
            raise TypeError(f"{method}() needs a ranking model; bundle {self.path.name!r} holds none")
        return self.ranker

    def score(self, rows: Rows) -> np.ndarray:
        """Probabilities ``(N,)`` (float32) of raw ``rows`` under the ranking model."""
        result = self.score_batch([rows])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def score_batch(self, requests: Sequence[Rows]) -> list[np.ndarray | Exception]:
        """``score`` of several independent row sets in one model call (the server's micro-batches).

        Each request is checked and encoded on its own: a bad one gets its exception in its slot
        and the others are still scored.
        """
        run = self._require_ranker("score")
        encoded: list[dict[str, np.ndarray] | Exception] = []
        for rows in requests:
            try:
                if isinstance(rows, pd.DataFrame):
                    self._check_size(len(rows), "score")
                    arrays = run.pipeline.transform(rows)
                    arrays.pop("label", None)
                else:
                    records = as_records(rows)
                    self._check_size(len(records), "score")
                    arrays = run.pipeline.transform_records(records) if records else {}
                encoded.append(arrays)
            except Exception as e:  # handed back to that request's caller
                encoded.append(e)

        def run_all(parts: list[dict[str, np.ndarray]]) -> list[np.ndarray | Exception]:
            sizes = [len(next(iter(p.values()))) if p else 0 for p in parts]
            full = [p for p in parts if p]
            if not full:
                return [np.zeros(0, dtype=np.float32) for _ in parts]
            with torch.inference_mode():
                logits = logits_of(run.model(_to_tensors(_concat(full)))).float()
            probs = torch.sigmoid(logits).numpy()
            return list(np.split(probs, np.cumsum(sizes)[:-1]))

        return _per_request(encoded, run_all)

    def _candidate_frame(self, candidates: Rows | Sequence[object]) -> tuple[pd.DataFrame, list[object]]:
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
            return self._candidate_frame(pd.DataFrame.from_records(cands))
        if self.item_id is None:
            raise TypeError(
                "candidates: plain ids need an item-id column (set item_id in bundle.yaml); "
                "pass candidate rows (dicts of item-side columns) instead"
            )
        if any(isinstance(c, Mapping) for c in cands):
            raise TypeError("candidates: give either all ids or all dicts, not a mix")
        if self.items is not None:
            known = self.items.reindex(cands)
            known[self.item_id] = cands
            df = known.reset_index(drop=True)
            if self.ranker is not None:  # items missing from the table: their columns become OOV
                df = _fill_unknown_categoricals(self.ranker, df)
        else:
            df = pd.DataFrame({self.item_id: cands})
        return df, cands

    def rank(self, user: Mapping[str, object], candidates: Rows | Sequence[object]) -> Ranked:
        """Score ``candidates`` for one ``user`` with the ranking model, best first.

        Args:
            user: the user's raw columns (one dict).
            candidates: item ids (original values; their item-side columns come from the item
                table when the bundle has one) or candidate rows (dicts/DataFrame of item-side
                columns). Candidate columns override same-named user columns.
        Returns:
            ``Ranked(candidates, scores)`` sorted by descending probability.
        """
        run = self._require_ranker("rank")
        if not isinstance(user, Mapping):
            raise TypeError(f"user: expected a dict of column -> value, got {type(user).__name__}")
        cands, labels = self._candidate_frame(candidates)
        self._check_size(len(cands), "rank")
        return self._rank(run, user, cands, labels)

    def _rank(
        self, run: Run, user: Mapping[str, object], cands: pd.DataFrame, labels: list[object]
    ) -> Ranked:
        if len(cands) == 0:
            return Ranked([], [])
        rows = cands.copy()
        for k, v in user.items():
            if k not in rows.columns:
                rows[k] = [v] * len(rows)
        fill = [c for c in rows.columns if rows[c].isna().any() and c in user]
        for c in fill:  # candidate without a value for a column the user gives: take the user's
            rows[c] = rows[c].where(rows[c].notna(), user[c])
        p = torch.sigmoid(_predict_logits(run, rows)).numpy()
        order = np.argsort(-p, kind="stable")
        return Ranked([labels[i] for i in order], [float(p[i]) for i in order])

    # -- retrieval -----------------------------------------------------------------------------
    def _seen_ids(self, run: Run, batch: Mapping[str, np.ndarray]) -> list[set[int]]:
        """Encoded item ids in each user's history columns (sequences sharing the item vocabulary)."""
        model: TwoTowerModel = run.model  # type: ignore[assignment]
        item = model.item_id
        n = next(iter(batch.values())).shape[0]
        seen: list[set[int]] = [set() for _ in range(n)]
        for f in model.user_features:
            if isinstance(f, SequenceFeature) and (f.shared_with == item or f.name == item):
                for i, row in enumerate(batch[f.name].tolist()):
                    seen[i].update(x for x in row if x > 1)
        return seen

    def _known_histories(
        self, run: Run, rows: Sequence[Mapping[str, object]], users: dict[str, np.ndarray]
    ) -> dict[int, np.ndarray]:
        """For a retrieval run trained on an interaction log (it keeps ``histories.pt``): rows that
        name a known user and give no history get that user's stored training items as their
        history (most recent last). Returns the stored items per such row (also excluded as seen)."""
        if run.histories is None:
            return {}
        data = run.config.get("data") or {}
        user_col, item_col = data.get("user", "user_id"), data.get("item", "item_id")
        hist = next(
            (c for c in run.pipeline.columns if isinstance(c, SequenceColumn) and c.shared_with == item_col),
            None,
        )
        wanted = [
            i
            for i, r in enumerate(rows)
            if r.get(user_col) is not None and r.get(hist.name if hist else "") is None
        ]
        if not wanted:
            return {}
        ids = run.pipeline.vocabulary(user_col).encode([rows[i][user_col] for i in wanted], column=user_col)
        h = run.histories
        out: dict[int, np.ndarray] = {}
        for i, uid in zip(wanted, ids.tolist()):
            if NUM_RESERVED <= uid < h.num_users:
                items = h.items[h.indptr[uid] : h.indptr[uid + 1]]
                out[i] = items
                if hist is not None and hist.name in users:
                    width = users[hist.name].shape[1]
                    recent = items[-width:]
                    users[hist.name][i] = 0
                    if len(recent):
                        users[hist.name][i, width - len(recent) :] = recent
        return out

    def recommend(
        self,
        users: Rows,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        rerank: bool | None = None,
        exclude: Sequence[Sequence[object]] | None = None,
    ) -> list[Recommendation]:
        """Top-``k`` items for each raw user row.

        The retrieval model's user tower embeds each user; the vector index returns the best items
        (``rerank`` of them when a ranking stage reranks, else ``k`` plus room for exclusions);
        the ranking model rescoring them is optional (default: on when the bundle has one).
        Reranking equals ``rank(user, candidates)`` on the retrieved candidates, computed from
        item-side columns encoded once at load.

        Args:
            users: raw user rows (user-side columns, e.g. id and history).
            k: items per user.
            exclude_seen: drop items present in the user's history columns.
            rerank: rerank with the ranking model (default: when present).
            exclude: per-user item ids (original values) to drop as well.
        Returns:
            One ``Recommendation(items, scores)`` per user; scores are retrieval logits, or ranking
            probabilities after a rerank.
        """
        query = RecommendQuery(users, k, exclude_seen=exclude_seen, rerank=rerank, exclude=exclude)
        result = self.recommend_batch([query])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def recommend_batch(self, queries: Sequence[RecommendQuery]) -> list[list[Recommendation] | Exception]:
        """``recommend`` for several independent queries with one user-tower call, one index
        search and one ranking-model call (the server's micro-batches).

        Each query is checked and encoded on its own, so its answer equals ``recommend`` of that
        query alone up to float32 rounding (docs/serving.md); a bad query gets its exception in its
        slot and the others are still answered.
        """
        run = self.retriever
        if run is None or self.index is None:
            raise TypeError(
                f"recommend() needs a retrieval model with an item index; bundle {self.path.name!r} has none "
                "(build one with recforge.bundle.build_item_index)"
            )
        prepared: list[_PreparedQuery | Exception] = []
        for q in queries:
            try:
                prepared.append(self._prepare(run, q))
            except Exception as e:  # handed back to that query's caller
                prepared.append(e)
        return _per_request(prepared, lambda ps: self._recommend_prepared(run, ps))

    def _prepare(self, run: Run, q: RecommendQuery) -> _PreparedQuery:
        k = q.k
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        do_rerank = (self.ranker is not None) if q.rerank is None else q.rerank
        if do_rerank and self.ranker is None:
            raise TypeError("rerank=True needs a ranking model in the bundle")
        if do_rerank and self._candidates is None:
            raise TypeError("reranking needs item ids that decode (the retrieval item vocabulary is hashed)")
        rows = as_records(q.users, what="users")
        self._check_size(len(rows), "recommend")
        if q.exclude is not None and len(q.exclude) != len(rows):
            raise ValueError(f"exclude: expected one list per user ({len(rows)}), got {len(q.exclude)}")
        if not rows:
            return _PreparedQuery(k, do_rerank, 0, {}, [], None)
        model: TwoTowerModel = run.model  # type: ignore[assignment]
        optional = set(self.user_columns()) - set(self.required_user_columns())
        if optional:  # a known user's row may give only its id: the other columns start missing
            rows = [{**{c: None for c in optional}, **r} for r in rows]
        users = run.pipeline.transform_records(rows, columns=self.user_columns())
        known = self._known_histories(run, rows, users)
        seen = self._seen_ids(run, users) if q.exclude_seen else [set() for _ in rows]
        if q.exclude_seen:
            for i, items in known.items():
                seen[i].update(int(x) for x in items)
        if q.exclude is not None:
            vocab = run.pipeline.vocabulary(model.item_id)
            for i, ex in enumerate(q.exclude):
                seen[i].update(int(x) for x in vocab.encode(list(ex), column=model.item_id) if x > 1)
        rank_users = None
        if do_rerank:
            assert self.ranker is not None and self._candidates is not None
            table = self._candidates
            # user values for the ranking columns the item table lacks, and for those with gaps
            present = {key for r in rows for key in r}
            names = [
                c.name
                for c in self.ranker.pipeline.columns
                if c.name not in table.encoded or (c.name in table.fallback and c.name in present)
            ]
            rank_users = self.ranker.pipeline.transform_records(rows, columns=names)
        return _PreparedQuery(k, do_rerank, len(rows), users, seen, rank_users)

    def _recommend_prepared(self, run: Run, queries: list[_PreparedQuery]) -> list[list[Recommendation]]:
        assert self.index is not None
        model: TwoTowerModel = run.model  # type: ignore[assignment]
        vocab = run.pipeline.vocabulary(model.item_id)
        live = [q for q in queries if q.num_users]
        if not live:
            return [[] for _ in queries]
        batch = _to_tensors(_concat([q.users for q in live]))
        with torch.inference_mode():
            u = model.user_tower(batch).float()  # (B, D) or (B, K, D)
        seen = [s for q in live for s in q.seen]
        want = [max(q.k, self.config.rerank) if q.rerank else q.k for q in live for _ in range(q.num_users)]
        fetch = min(max(w + len(s) for w, s in zip(want, seen)), len(self.index))
        if u.dim() == 3:  # multi-interest: search every interest, keep each item's best score
            b, n_int, d = u.shape
            res = self.index.search(u.reshape(b * n_int, d), fetch)  # (B*K, fetch)
            scores = res.scores.reshape(b, n_int * fetch)  # (B, K*fetch)
            ids = res.ids.reshape(b, n_int * fetch)  # (B, K*fetch)
        else:
            res = self.index.search(u, fetch)
            scores, ids = res.scores, res.ids  # (B, fetch)
        all_scores, all_ids = scores.tolist(), ids.tolist()
        best: list[list[int]] = []  # per user: encoded item ids, best first
        best_scores: list[list[float]] = []
        for i in range(len(seen)):
            picked: dict[int, float] = {}  # each item's best score (interests may repeat items)
            for sc, item in zip(all_scores[i], all_ids[i]):
                if item <= 1 or item in seen[i]:
                    continue
                if item not in picked or sc > picked[item]:
                    picked[item] = sc
            top = sorted(picked, key=picked.__getitem__, reverse=True)[: want[i]]  # stable for ties
            best.append(top)
            best_scores.append([picked[item] for item in top])
        probs = self._rerank_scores(live, best)
        out: list[list[Recommendation]] = []
        pos = 0
        for q in live:
            recs = []
            for _ in range(q.num_users):
                top, k = best[pos], q.k
                values = vocab.decode(top).tolist() if top else []
                if q.rerank and values:
                    p = probs[pos]
                    order = np.argsort(-p, kind="stable")[:k]
                    recs.append(Recommendation([values[j] for j in order], [float(p[j]) for j in order]))
                else:
                    recs.append(Recommendation(values[:k], best_scores[pos][:k]))
                pos += 1
            out.append(recs)
        it = iter(out)
        return [next(it) if q.num_users else [] for q in queries]

    def _rerank_scores(self, queries: list[_PreparedQuery], best: list[list[int]]) -> list[np.ndarray]:
        """Ranking probabilities of every reranked user's candidates, from one model call."""
        if self.ranker is None or self._candidates is None or not any(q.rerank for q in queries):
            return []
        table, pipe = self._candidates, self.ranker.pipeline
        parts: list[dict[str, np.ndarray]] = []
        sizes: list[int] = []
        pos = 0
        for q in queries:
            n_users = q.num_users
            if not q.rerank:
                sizes += [0] * n_users
                pos += n_users
                continue
            assert q.rank_users is not None
            lists = [np.asarray(best[pos + i], dtype=np.int64) - NUM_RESERVED for i in range(n_users)]
            pos += n_users
            counts = [len(x) for x in lists]
            sizes += counts
            rows = np.concatenate(lists)  # (N,) table rows of every candidate of this query
            owner = np.repeat(np.arange(n_users), counts)  # (N,) the user of each candidate
            cols: dict[str, np.ndarray] = {}
            for spec in pipe.columns:
                name = spec.name
                if name not in table.encoded:  # a user-side column: the user's value on every row
                    cols[name] = q.rank_users[name][owner]
                    continue
                col = table.encoded[name][rows]
                if name in q.rank_users:  # item-table gaps take the user's value
                    gap = table.fallback[name][rows]
                    col[gap] = q.rank_users[name][owner[gap]]
                cols[name] = col
            parts.append(cols)
        if not any(sizes):
            return [np.zeros(0, dtype=np.float32) for _ in sizes]
        with torch.inference_mode():
            logits = logits_of(self.ranker.model(_to_tensors(_concat(parts)))).float()
        probs = torch.sigmoid(logits).numpy()
        return list(np.split(probs, np.cumsum(sizes)[:-1]))

    def _candidate_table(self) -> _CandidateTable | None:
        """Encode the ranking pipeline's item-side columns for every retrievable item, once."""
        assert self.ranker is not None and self.retriever is not None
        model: TwoTowerModel = self.retriever.model  # type: ignore[assignment]
        vocab = self.retriever.pipeline.vocabulary(model.item_id)
        if vocab.hash_buckets is not None:  # hashed item ids cannot be decoded, nor reranked
            return None
        values = vocab.decode(np.arange(NUM_RESERVED, len(vocab))).tolist()
        frame, _ = self._candidate_frame(values)
        encoded: dict[str, np.ndarray] = {}
        fallback: dict[str, np.ndarray] = {}
        for spec in self.ranker.pipeline.columns:
            if spec.name not in frame.columns:
                continue
            column = frame[spec.name]
            encoded[spec.name] = self.ranker.pipeline.encode_column(spec.name, column)
            gaps = column.isna().to_numpy()
            if gaps.any():
                fallback[spec.name] = gaps
        return _CandidateTable(encoded, fallback)


_T = TypeVar("_T")
_R = TypeVar("_R")


def _per_request(
    prepared: Sequence[_T | Exception], run: Callable[[list[_T]], list[_R]]
) -> list[_R | Exception]:
    """Run the valid requests of a batch together; errors stay in their slots.

    Should the joint run fail, each request is run alone, so a failure caused by one request
    cannot fail the others.
    """
    valid = [p for p in prepared if not isinstance(p, Exception)]
    if not valid:
        return list(prepared)  # type: ignore[arg-type]
    try:
        results: list[_R | Exception] = list(run(valid))
    except Exception as e:  # handed back to the callers
        if len(valid) == 1:
            results = [e]
        else:
            results = []
            for p in valid:
                try:
                    results.extend(run([p]))
                except Exception as e1:
                    results.append(e1)
    it = iter(results)
    return [p if isinstance(p, Exception) else next(it) for p in prepared]


def _oov_value(run: Run, column: str) -> object:
    """A value of the column's type that is not in its vocabulary (so it encodes to OOV)."""
    vocab = run.pipeline.vocabulary(column)
    if vocab.kind is None or vocab.kind is ValueKind.STR:
        return "\x00recforge:unknown"
    numbers = [v for v in vocab.values if isinstance(v, int | float)]
    return (int(min(numbers)) if numbers else 0) - 1


def _fill_unknown_categoricals(run: Run, df: pd.DataFrame) -> pd.DataFrame:
    for spec in run.pipeline.columns:
        if isinstance(spec, Categorical) and spec.name in df.columns and df[spec.name].isna().any():
            fill = spec.fill_value if spec.fill_value is not None else _oov_value(run, spec.name)
            df[spec.name] = df[spec.name].astype(object).where(df[spec.name].notna(), fill)
    return df


def _rows_to_batch_subset(run: Run, df: pd.DataFrame, names: Sequence[str]) -> dict[str, Tensor]:
    """Encode only the columns in ``names`` (user-side columns) with the run's pipeline."""
    pipe = run.pipeline
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise KeyError(f"missing column(s) {missing}; needed: {list(names)}")
    out: dict[str, Tensor] = {}
    for spec in pipe.columns:
        if spec.name not in names:
            continue
        arr = pipe.encode_column(spec.name, df[spec.name])
        out[spec.name] = torch.from_numpy(np.ascontiguousarray(arr))
    return out


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
        path: where to save (default ``run.path / "index.pt"``).
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
        frame = pd.DataFrame({item: vocab.decode(np.arange(2, len(vocab))).tolist()})
    else:
        frame = items.drop_duplicates(item, keep="last").reset_index(drop=True)
    vectors, ids = [], []
    for start in range(0, len(frame), batch_size):
        part = frame.iloc[start : start + batch_size]
        batch = _rows_to_batch_subset(run, part, names)
        with torch.inference_mode():
            vectors.append(model.item_tower(batch).float())
        ids.append(batch[item])
    all_ids = torch.cat(ids)
    keep = all_ids > 1  # OOV rows (items outside the vocabulary) cannot be served
    index = ExactIndex(metric).build(torch.cat(vectors)[keep], all_ids[keep])
    index.save(path if path is not None else run.path / INDEX_FILE)
    return index


def _is_retrieval(run: Run) -> bool:
    return isinstance(run.model, TwoTowerModel)


def load(path: str | os.PathLike[str], *, device: str = "cpu") -> Bundle:
    """Restore a run directory or a serving directory (``bundle.yaml``) for inference."""
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"{str(root)!r} does not exist")
    if (root / BUNDLE_FILE).exists():
        raw = yaml.safe_load((root / BUNDLE_FILE).read_text(encoding="utf-8")) or {}
        if not isinstance(raw, Mapping):
            raise ValueError(f"{root / BUNDLE_FILE}: expected a mapping")
        cfg = BundleConfig.parse(raw, str(root / BUNDLE_FILE))
        ranker = load_run(root / cfg.ranking, device=device) if cfg.ranking else None
        retriever = load_run(root / cfg.retrieval, device=device) if cfg.retrieval else None
        if ranker is not None and _is_retrieval(ranker):
            raise ValueError(f"{root / BUNDLE_FILE}: 'ranking' names a retrieval run ({cfg.ranking})")
        if retriever is not None and not _is_retrieval(retriever):
            raise ValueError(f"{root / BUNDLE_FILE}: 'retrieval' names a non-retrieval run ({cfg.retrieval})")
        items_path = root / cfg.items if cfg.items else None
    else:
        run = load_run(root, device=device)
        ranker, retriever = (None, run) if _is_retrieval(run) else (run, None)
        cfg = BundleConfig()
        items_path = root / ITEMS_FILE if (root / ITEMS_FILE).exists() else None
    index = None
    if retriever is not None and (retriever.path / INDEX_FILE).exists():
        from recforge.retrieval import load_index

        index = load_index(retriever.path / INDEX_FILE)
    items = pd.read_parquet(items_path) if items_path is not None else None
    return Bundle(ranker=ranker, retriever=retriever, index=index, items=items, config=cfg, path=root)
