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
* a generative retrieval run (TIGER: its model generates items, ``ListModel``): ``recommend`` by
  beam search, no index;
* a serving directory with ``bundle.yaml`` naming both stages (a two-stage pipeline in one config)::

      retrieval: ../runs/dssm        # retrieval run with index.pt (paths relative to this file)
      ranking: ../runs/deepfm        # ranking run used to rerank the retrieved candidates
      items: items.parquet           # optional: raw item-side columns keyed by the item-id column
      rerank: 100                    # candidates retrieved, then reranked by the ranking model
      max_batch: 1024                # largest number of rows one call may score

The stages live in ``bundle.ranking`` (``RankingStage``), ``bundle.retrieval``
(``RetrievalStage``) and ``bundle.generative`` (``GenerativeStage``); ``bundle.rows`` holds the
request and result types.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from recforge.bundle.generative import GenerativeStage
from recforge.bundle.ranking import RankingStage
from recforge.bundle.retrieval import RetrievalStage
from recforge.bundle.rows import (
    Ranked,
    Recommendation,
    RecommendQuery,
    Rows,
    as_frame,
    as_records,
    per_request,
)
from recforge.layout import RunLayout
from recforge.metrics.ranking import ListModel
from recforge.models.matching.base import TwoTowerModel
from recforge.runs import Run, build_item_index, load_run
from recforge.runs.generative import AddedItems


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
        retrieval_item = (
            retriever.model.item_id
            if retriever is not None and isinstance(retriever.model, TwoTowerModel)
            else None
        )
        self.item_id = config.item_id or retrieval_item
        if items is not None and self.item_id is not None:
            if self.item_id not in items.columns:
                raise KeyError(f"item table: no item-id column {self.item_id!r}; has {sorted(items.columns)}")
            items = items.drop_duplicates(self.item_id, keep="last").set_index(self.item_id, drop=False)
        self.items = items
        self.ranking = (
            RankingStage(ranker, item_id=self.item_id, items=items, check_size=self._check_size)
            if ranker is not None
            else None
        )
        self.retrieval: RetrievalStage | GenerativeStage | None = None
        if retriever is not None and isinstance(retriever.model, ListModel):
            beam = ((retriever.config.get("trainer") or {}).get("generative") or {}).get("beam_width")
            self.retrieval = GenerativeStage(retriever, beam_width=beam)
        elif retriever is not None:
            self.retrieval = RetrievalStage(retriever, index, ranker=self.ranking, rerank_count=config.rerank)

    @property
    def can_recommend(self) -> bool:
        """Whether ``recommend`` works: a generative stage, or a retrieval stage with its index."""
        return isinstance(self.retrieval, GenerativeStage) or (
            self.retrieval is not None and self.index is not None
        )

    # -- description ---------------------------------------------------------------------------
    def input_columns(self, stage: str = "ranking") -> list[str]:
        """Raw columns a stage's pipeline reads (``"ranking"`` or ``"retrieval"``)."""
        run = self.ranker if stage == "ranking" else self.retriever
        return [] if run is None else [c.name for c in run.pipeline.columns]

    def user_columns(self) -> list[str]:
        """Raw columns ``recommend`` reads per user: the retrieval model's user-side columns."""
        return [] if self.retrieval is None else self.retrieval.user_columns()

    def required_user_columns(self) -> list[str]:
        """The user columns a ``recommend`` row must give (see ``RetrievalStage``)."""
        return [] if self.retrieval is None else self.retrieval.required_user_columns()

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
    def _require_ranking(self, method: str) -> RankingStage:
        if self.ranking is None:
            raise TypeError(f"{method}() needs a ranking model; bundle {self.path.name!r} holds none")
        return self.ranking

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
        return self._require_ranking("score").score_batch(requests)

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
        return self._require_ranking("rank").rank(user, candidates)

    # -- retrieval -----------------------------------------------------------------------------
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
        item-side columns encoded once at load. A run trained on an interaction log takes a known
        user by its id alone (its history is the run's).

        Args:
            users: raw user rows (user-side columns, e.g. id and history).
            k: items per user.
            exclude_seen: drop items present in the user's history.
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

    @property
    def can_add_items(self) -> bool:
        """Whether ``add_items`` works: a generative stage whose items get IDs from content (TIGER)."""
        return (
            isinstance(self.retrieval, GenerativeStage)
            and getattr(self.retrieval.model, "rqvae", None) is not None
        )

    def add_items(self, items: pd.DataFrame | Rows, *, persist: bool = False) -> AddedItems:
        """Put new items (raw id and content columns) in a generative run's catalogue without
        retraining: each gets a semantic ID from its content, and ``recommend`` can return it at
        once; ``persist`` also rewrites the run directory. See ``recforge.runs.generative.add_items``."""
        if not isinstance(self.retrieval, GenerativeStage):
            raise TypeError(
                "add_items: this bundle's retrieval stage cannot take new items without retraining "
                "(a TIGER run's can)"
            )
        return self.retrieval.add_items(items, persist=persist)

    def recommend_batch(self, queries: Sequence[RecommendQuery]) -> list[list[Recommendation] | Exception]:
        """``recommend`` for several independent queries with one user-tower call, one index
        search and one ranking-model call (the server's micro-batches).

        Each query is checked and encoded on its own, so its answer equals ``recommend`` of that
        query alone up to float32 rounding (docs/serving.md); a bad query gets its exception in its
        slot and the others are still answered.
        """
        stage = self.retrieval
        if stage is None or not self.can_recommend:
            raise TypeError(
                f"recommend() needs a retrieval model with an item index; bundle {self.path.name!r} has none "
                "(build one with recforge.bundle.build_item_index)"
            )
        flagged: list[tuple[RecommendQuery, bool] | Exception] = []
        for q in queries:
            rerank = (self.ranking is not None) if q.rerank is None else q.rerank
            bad = rerank and self.ranking is None
            flagged.append(
                TypeError("rerank=True needs a ranking model in the bundle") if bad else (q, rerank)
            )
        valid = [f for f in flagged if not isinstance(f, Exception)]
        done = iter(stage.prepare_batch(valid, check_size=self._check_size))
        prepared = [f if isinstance(f, Exception) else next(done) for f in flagged]
        return per_request(prepared, stage.recommend_prepared)


def load(path: str | os.PathLike[str], *, device: str = "cpu") -> Bundle:
    """Restore a run directory or a serving directory (``bundle.yaml``) for inference."""
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"{str(root)!r} does not exist")
    layout = RunLayout(root)
    if layout.bundle.exists():
        raw = yaml.safe_load(layout.bundle.read_text(encoding="utf-8")) or {}
        if not isinstance(raw, Mapping):
            raise ValueError(f"{layout.bundle}: expected a mapping")
        cfg = BundleConfig.parse(raw, str(layout.bundle))
        ranker = load_run(root / cfg.ranking, device=device) if cfg.ranking else None
        retriever = load_run(root / cfg.retrieval, device=device) if cfg.retrieval else None
        if ranker is not None and isinstance(ranker.model, TwoTowerModel):
            raise ValueError(f"{layout.bundle}: 'ranking' names a retrieval run ({cfg.ranking})")
        if retriever is not None and not isinstance(retriever.model, TwoTowerModel | ListModel):
            raise ValueError(f"{layout.bundle}: 'retrieval' names a non-retrieval run ({cfg.retrieval})")
        items_path = root / cfg.items if cfg.items else None
    else:
        run = load_run(root, device=device)
        retrieves = isinstance(run.model, TwoTowerModel | ListModel)
        ranker, retriever = (None, run) if retrieves else (run, None)
        cfg = BundleConfig()
        items_path = layout.items if layout.items.exists() else None
    index = None
    if retriever is not None and RunLayout(retriever.path).index.exists():
        from recforge.retrieval import load_index

        index = load_index(RunLayout(retriever.path).index)
    items = pd.read_parquet(items_path) if items_path is not None else None
    return Bundle(ranker=ranker, retriever=retriever, index=index, items=items, config=cfg, path=root)


__all__ = [
    "Bundle",
    "BundleConfig",
    "Ranked",
    "RecommendQuery",
    "Recommendation",
    "Rows",
    "as_frame",
    "as_records",
    "build_item_index",
    "load",
]
