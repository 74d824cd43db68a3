"""The retrieval stage of a bundle: raw user rows -> user vectors -> the item index's best items,
seen items left out, optionally reranked by a ranking stage. ``UserStage`` is what every
recommending stage shares (``bundle.generative.GenerativeStage`` too): raw user rows validated and
encoded, a known user's stored history filled in, the items to leave out."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from recforge.bundle.ranking import CandidateTable, RankingStage
from recforge.bundle.rows import Recommendation, RecommendQuery, as_records, concat, to_tensors
from recforge.features import SequenceFeature
from recforge.models.matching.base import TwoTowerModel
from recforge.preprocess import SequenceColumn
from recforge.preprocess.vocab import NUM_RESERVED
from recforge.runs import Run


@dataclass
class PreparedQuery:
    """A validated ``RecommendQuery`` with its users encoded (the per-request part of the work)."""

    k: int
    rerank: bool
    num_users: int  # B
    users: dict[str, np.ndarray]  # retrieval user columns, (B,) or (B, L)
    seen: list[set[int]]  # encoded item ids to leave out, per user
    rank_users: dict[str, np.ndarray] | None  # ranking columns taken from the users, when reranking


class UserStage:
    """Raw user rows of a run trained on users -> encoded columns and the items to leave out.

    Args:
        run: the run. item_column: its item-id column.
    """

    def __init__(self, run: Run, *, item_column: str) -> None:
        self.run, self.item_column = run, item_column
        self.vocab = run.pipeline.vocabulary(item_column)
        data = run.config.get("data") or {}
        self.user_column: str = data.get("user", "user_id")
        self.history = next(
            (
                c
                for c in run.pipeline.columns
                if isinstance(c, SequenceColumn) and c.shared_with == data.get("item", item_column)
            ),
            None,
        )
        self.ranker: RankingStage | None = None
        self.candidates: CandidateTable | None = None

    # -- columns -------------------------------------------------------------------------------
    def user_columns(self) -> list[str]:
        """Raw columns ``recommend`` reads per user: the user id and the history."""
        return [self.user_column, *([self.history.name] if self.history is not None else [])]

    def history_columns(self) -> list[str]:
        """The user columns whose values are items (left out of the user's recommendations)."""
        return [self.history.name] if self.history is not None else []

    def required_user_columns(self) -> list[str]:
        """The user columns a row must give: all of them, except that a run trained on an
        interaction log (it keeps its users' histories) takes a known user's id instead of the
        history (and a history instead of the id)."""
        cols = self.user_columns()
        if self.run.histories is None:
            return cols
        optional = {self.user_column} | ({self.history.name} if self.history is not None else set())
        return [c for c in cols if c not in optional]

    # -- encoding ------------------------------------------------------------------------------
    def _seen_ids(self, batch: Mapping[str, np.ndarray]) -> list[set[int]]:
        """Encoded item ids in each user's history columns (sequences sharing the item vocabulary)."""
        n = next(iter(batch.values())).shape[0]
        seen: list[set[int]] = [set() for _ in range(n)]
        for name in self.history_columns():
            for i, row in enumerate(batch[name].tolist()):
                seen[i].update(x for x in row if x >= NUM_RESERVED)
        return seen

    def _known_histories(
        self, rows: Sequence[Mapping[str, object]], users: dict[str, np.ndarray]
    ) -> dict[int, np.ndarray]:
        """Rows that name a known user and give no history get that user's stored items (the
        run's ``histories.pt``) as their history, most recent last. Returns those items per row."""
        h, hist = self.run.histories, self.history
        if h is None:
            return {}
        hist_name = hist.name if hist is not None else ""
        wanted = [
            i for i, r in enumerate(rows) if r.get(self.user_column) is not None and r.get(hist_name) is None
        ]
        if not wanted:
            return {}
        vocab = self.run.pipeline.vocabulary(self.user_column)
        ids = vocab.encode([rows[i][self.user_column] for i in wanted], column=self.user_column)
        out: dict[int, np.ndarray] = {}
        for i, uid in zip(wanted, ids.tolist()):
            if not NUM_RESERVED <= uid < h.num_users:
                continue  # an unknown user: no stored history
            items = h.items[h.indptr[uid] : h.indptr[uid + 1]]
            out[i] = items
            if hist_name in users:
                width = users[hist_name].shape[1]
                recent = items[-width:]
                users[hist_name][i] = 0
                if len(recent):
                    users[hist_name][i, width - len(recent) :] = recent
        return out

    def _rows(self, q: RecommendQuery, *, rerank: bool, check_size: Any) -> list[Mapping[str, object]]:
        """Validate ``q`` (``rerank``: whether it is reranked); its user rows, optional columns filled."""
        k = q.k
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if rerank and self.candidates is None:
            raise TypeError("reranking needs item ids that decode (the retrieval item vocabulary is hashed)")
        rows = as_records(q.users, what="users")
        check_size(len(rows), "recommend")
        if q.exclude is not None and len(q.exclude) != len(rows):
            raise ValueError(f"exclude: expected one list per user ({len(rows)}), got {len(q.exclude)}")
        optional = set(self.user_columns()) - set(self.required_user_columns())
        if optional:  # a known user's row may give only its id: the other columns start missing
            rows = [{**{c: None for c in optional}, **r} for r in rows]
        return list(rows)

    def _finish(
        self,
        q: RecommendQuery,
        rows: list[Mapping[str, object]],
        users: dict[str, np.ndarray],
        *,
        rerank: bool,
    ) -> PreparedQuery:
        """A query whose rows are encoded: known users' histories, the items to leave out."""
        known = self._known_histories(rows, users)
        seen = self._seen_ids(users) if q.exclude_seen else [set() for _ in rows]
        if q.exclude_seen:
            for i, items in known.items():
                seen[i].update(int(x) for x in items)
        if q.exclude is not None:
            for i, ex in enumerate(q.exclude):
                encoded = self.vocab.encode(list(ex), column=self.item_column)
                seen[i].update(int(x) for x in encoded if x >= NUM_RESERVED)
        rank_users = None
        if rerank:
            assert self.ranker is not None and self.candidates is not None
            rank_users = self.ranker.user_columns_for(self.candidates, rows)
        return PreparedQuery(q.k, rerank, len(rows), users, seen, rank_users)

    def prepare_batch(
        self, queries: Sequence[tuple[RecommendQuery, bool]], *, check_size: Any
    ) -> list[PreparedQuery | Exception]:
        """Validate and encode several ``(query, rerank)`` pairs, the rows of all of them in one
        encoding call; a bad query gets its exception in its slot (the others are unaffected)."""
        rows: list[list[Mapping[str, object]] | Exception] = []
        for q, rerank in queries:
            try:
                rows.append(self._rows(q, rerank=rerank, check_size=check_size))
            except Exception as e:  # handed back to that query's caller
                rows.append(e)
        todo = [(i, r) for i, r in enumerate(rows) if not isinstance(r, Exception) and r]
        encoded = self.run.pipeline.transform_record_groups([r for _, r in todo], columns=self.user_columns())
        users = {i: u for (i, _), u in zip(todo, encoded, strict=True)}
        out: list[PreparedQuery | Exception] = []
        for i, (q, rerank) in enumerate(queries):
            r = rows[i]
            u = users.get(i)
            if isinstance(r, Exception) or isinstance(u, Exception):
                out.append(r if isinstance(r, Exception) else u if isinstance(u, Exception) else ValueError())
            elif not r or u is None:
                out.append(PreparedQuery(q.k, rerank, 0, {}, [], None))
            else:
                try:
                    out.append(self._finish(q, r, u, rerank=rerank))
                except Exception as e:  # handed back to that query's caller
                    out.append(e)
        return out


class RetrievalStage(UserStage):
    """A retrieval run (its model a ``TwoTowerModel``) with its item index.

    Args:
        run: the retrieval run. index: its item vectors (``recforge.retrieval``), or None.
        ranker: a ranking stage that reranks the retrieved candidates, or None.
        rerank_count: candidates retrieved for a rerank.
    """

    def __init__(
        self, run: Run, index: Any | None, *, ranker: RankingStage | None = None, rerank_count: int = 100
    ) -> None:
        if not isinstance(run.model, TwoTowerModel):
            raise TypeError(f"a retrieval stage needs a TwoTowerModel run, got {type(run.model).__name__}")
        super().__init__(run, item_column=run.model.item_id)
        self.model, self.index = run.model, index
        self.ranker, self.rerank_count = ranker, rerank_count
        if ranker is not None and index is not None and self.vocab.hash_buckets is None:
            # hashed item ids cannot be decoded, nor reranked
            self.candidates = ranker.candidate_table(
                self.vocab.decode(np.arange(NUM_RESERVED, len(self.vocab))).tolist()
            )

    def user_columns(self) -> list[str]:
        """Raw columns ``recommend`` reads per user: the model's user-side columns."""
        return [f.name for f in self.model.user_features]

    def history_columns(self) -> list[str]:
        item = self.item_column
        return [
            f.name
            for f in self.model.user_features
            if isinstance(f, SequenceFeature) and (f.shared_with == item or f.name == item)
        ]

    # -- search ----------------------------------------------------------------------------------
    def recommend_prepared(self, queries: list[PreparedQuery]) -> list[list[Recommendation]]:
        """One user-tower call, one index search and one rerank call for every query."""
        assert self.index is not None
        live = [q for q in queries if q.num_users]
        if not live:
            return [[] for _ in queries]
        with torch.inference_mode():
            u = self.model.user_tower(
                to_tensors(concat([q.users for q in live]))
            ).float()  # (B, D) or (B, K, D)
        seen = [s for q in live for s in q.seen]
        want = [max(q.k, self.rerank_count) if q.rerank else q.k for q in live for _ in range(q.num_users)]
        fetch = min(max(w + len(s) for w, s in zip(want, seen)), len(self.index))
        if u.dim() == 3:  # multi-interest: search every interest, keep each item's best score
            b, n_int, d = u.shape
            res = self.index.search(u.reshape(b * n_int, d), fetch)  # (B*K, fetch)
            scores, ids = res.scores.reshape(b, n_int * fetch), res.ids.reshape(b, n_int * fetch)
        else:
            res = self.index.search(u, fetch)
            scores, ids = res.scores, res.ids  # (B, fetch)
        best: list[list[int]] = []  # per user: encoded item ids, best first
        best_scores: list[list[float]] = []
        for user_scores, user_ids, user_seen, n in zip(scores.tolist(), ids.tolist(), seen, want):
            picked: dict[int, float] = {}  # each item's best score (interests may repeat items)
            for sc, item in zip(user_scores, user_ids):
                if item < NUM_RESERVED or item in user_seen:
                    continue
                if item not in picked or sc > picked[item]:
                    picked[item] = sc
            top = sorted(picked, key=picked.__getitem__, reverse=True)[:n]  # stable for ties
            best.append(top)
            best_scores.append([picked[item] for item in top])
        offsets = np.cumsum([0, *(q.num_users for q in live)])  # each query's users: [start, stop)
        per_query = [range(a, b) for a, b in itertools.pairwise(offsets)]
        probs = self._rerank(live, [[best[i] for i in rows] for rows in per_query])
        out: list[list[Recommendation]] = []
        for q, rows, query_probs in zip(live, per_query, probs):
            recs = []
            for j, i in enumerate(rows):
                values = self.vocab.decode(best[i]).tolist() if best[i] else []
                if q.rerank and values:
                    p = query_probs[j]
                    order = np.argsort(-p, kind="stable")[: q.k]
                    recs.append(Recommendation([values[o] for o in order], [float(p[o]) for o in order]))
                else:
                    recs.append(Recommendation(values[: q.k], best_scores[i][: q.k]))
            out.append(recs)
        it = iter(out)
        return [next(it) if q.num_users else [] for q in queries]

    def _rerank(self, queries: list[PreparedQuery], best: list[list[list[int]]]) -> list[list[np.ndarray]]:
        """Ranking probabilities of the reranked queries' candidates (empty lists for the others)."""
        reranked = [i for i, q in enumerate(queries) if q.rerank]
        out: list[list[np.ndarray]] = [[] for _ in queries]
        if not reranked:
            return out
        assert self.ranker is not None and self.candidates is not None
        users = [queries[i].rank_users for i in reranked]
        probs = self.ranker.rerank_scores(self.candidates, users, [best[i] for i in reranked])  # type: ignore[arg-type]
        for i, p in zip(reranked, probs):
            out[i] = p
        return out
