"""``recforge evaluate RUN --data PATH``: a trained run's metrics on new data.

Ranking and multi-task runs score labelled rows (AUC, logloss per task). Retrieval and next-item
runs rank every item for each user of an interaction file read in the run's data format: the
user's interactions in the file are the targets, the run's known history of the user (training +
validation items, ``histories.pt``) is the input and is left out of the ranking. Users the run
never saw and items outside its catalogue cannot be ranked: they are counted and reported.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import pandas as pd
import torch

from recforge.config import Preset, parse_config
from recforge.data import BatchLoader, ColumnarDataset, SeenItems, bag_rows, recent_items, shortest_first
from recforge.metrics.ranking import ListModel, ListRankingEvaluator, RankingEvaluator
from recforge.preprocess import SequenceColumn
from recforge.preprocess.vocab import NUM_RESERVED
from recforge.runs.logs import item_catalog, read_log, side_columns
from recforge.runs.model import Run, load_run, read_source
from recforge.trainers import CTRTrainer, MTLTrainer


def evaluate_run(run_dir: str | os.PathLike[str], data: str, *, batch_size: int = 8192) -> dict[str, Any]:
    """Metrics of the run in ``run_dir`` on ``data`` (see the module docstring)."""
    run = load_run(run_dir)
    cfg = parse_config(run.config)
    preset = cfg.trainer.preset
    if not preset.needs_log:
        loader = run.loader(read_source(data), batch_size)
        if preset is Preset.MTL:
            labels = cfg.data.label if isinstance(cfg.data.label, list) else None
            trainer: Any = MTLTrainer(run.model, task_names=labels, model_path=run.path, progress=False)
        else:
            trainer = CTRTrainer(run.model, model_path=run.path, progress=False)
        return trainer.evaluate(run.model, loader)
    return _evaluate_log(run, cfg, data, batch_size)


def _evaluate_log(run: Run, cfg: Any, data: str, batch_size: int) -> dict[str, Any]:
    d, t = cfg.data, cfg.trainer
    if run.histories is None:
        raise FileNotFoundError(f"{str(run.path)!r}: no histories.pt (retrieval runs write one in training)")
    raw = read_log(dataclasses.replace(cfg, data=dataclasses.replace(d, path=data)))
    frame = raw.frame
    pipe = run.pipeline
    users = pipe.vocabulary(d.user).encode(frame[d.user], column=d.user)
    items = pipe.vocabulary(d.item).encode(frame[d.item], column=d.item)
    known_user, known_item = users >= NUM_RESERVED, items >= NUM_RESERVED
    keep = known_user & known_item
    h = run.histories
    targets = SeenItems.from_pairs(users[keep], items[keep], num_rows=h.num_users, num_items=h.num_items)
    ranked = np.unique(users[keep])
    cols: dict[str, torch.Tensor] = {d.user: torch.from_numpy(ranked)}
    history = next(
        (c for c in pipe.columns if isinstance(c, SequenceColumn) and c.shared_with == d.item), None
    )
    if history is not None:
        hist = (
            recent_items(h, ranked, history.max_len)
            if raw.ordered
            else bag_rows(h, ranked, history.max_len, seed=cfg.seed)["history"]
        )
        cols[history.name] = torch.from_numpy(hist)
    if d.user_columns:
        users_side = frame[[d.user, *d.user_columns]].drop_duplicates(d.user)
        table = side_columns(pipe, d.user, d.user_columns, users_side)
        cols.update({k: v[cols[d.user]] for k, v in table.items()})
    ks = t.evaluation.ks or ([20, 50] if t.preset is Preset.MATCH else [10, 50])
    seen = h.seen() if t.evaluation.exclude_seen else None
    if history is not None:
        cols = shortest_first(cols, history.name)
    loader = BatchLoader(ColumnarDataset(cols), batch_size)
    evaluator: RankingEvaluator | ListRankingEvaluator
    metrics: dict[str, Any]
    if isinstance(run.model, ListModel):  # generative retrieval (TIGER): its beam-search lists
        evaluator = ListRankingEvaluator(
            h.num_items, ks=ks, seen=seen, ground_truth=targets, user_column=d.user,
            generate_kwargs={"beam_width": t.generative.beam_width or max(ks)},
        )  # fmt: skip
        metrics = evaluator.evaluate(run.model, loader)
    else:
        items_raw = pd.read_parquet(run.layout.items) if run.layout.items.exists() else None
        normalize = t.evaluation.normalize if t.evaluation.normalize is not None else t.seq.l2_normalize
        evaluator = RankingEvaluator(
            item_catalog(pipe, d.item, d.item_columns, items_raw),
            ks=ks,
            seen=seen,
            ground_truth=targets,
            user_column=d.user,
            normalize=normalize and t.preset is Preset.SEQ,
        )
        metrics = evaluator.evaluate(run.model, loader)  # type: ignore[arg-type]
    metrics["users_evaluated"] = evaluator.users_evaluated
    metrics["users_total"] = len(pd.unique(frame[d.user]))
    metrics["users_unknown"] = len(pd.unique(frame[d.user][~known_user]))
    metrics["interactions_unknown_item"] = int((~known_item).sum())
    return metrics
