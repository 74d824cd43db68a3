"""Two-tower retrieval on Gowalla (the LightGCN/BARS ``gowalla_m1`` split): DSSM, YoutubeDNN, MIND,
ComirecDR, ComirecSA, trained by the library (``recforge.runs.train``) from a config this script
builds out of its flags. Recall@20, NDCG@20, HR@20 by full ranking over every item for every user
with a test item, each user's training items excluded; the given train/test split is used as is.

Flag -> config key (the config is stored in the record and in the run directory's config.yaml):

- ``--history`` -> ``data.samples.max_len``: every training interaction ``(u, i)`` is one sample
  whose target is ``i`` and whose history is a bag of the user's *other* training items (all of them
  up to ``--history``, else that many drawn at random, redrawn every epoch: ``recforge.data.
  BagSamples``), so the target never leaks into its own input; ``--history-dropout`` ->
  ``data.samples.dropout`` drops each bag item with that probability (at least one kept);
  ``--max-per-user`` -> ``data.samples.max_per_user`` trains each epoch on at most that many targets
  per user (YoutubeDNN's "fixed number of training examples per user", Covington et al. 2016, 4.1).
- ``--eval-history`` -> the history feature's ``max_len``: at validation and test the history is the
  user's known items (at most that many, a fixed seeded subset beyond it: ``recforge.data.bag_rows``).
- ``--dims`` -> ``model.params.user_params.dims`` (YoutubeDNN, DSSM; DSSM's item tower too); with no
  value the user vector is the mean history embedding itself (BARS' ``user_hidden_units: null``).
  ``--user-id`` adds a ``user_id`` embedding to the user tower; ``--init-std`` is the embedding
  initialiser; ``--temperature``, ``--dot`` (``normalize: false``), ``--interests`` are model params.
- ``--negatives`` / ``--num-negatives`` / ``--neg-alpha`` (``trainer.match.sampling: popularity``,
  ``alpha``) / ``--exclude-seen`` -> ``trainer.match``: list-wise sampled softmax (mode 2) over
  shared uniform negatives (uniform logQ is a constant), ``mixed`` adds the other rows' positives
  (logQ-corrected by training frequency), ``in_batch`` uses those only, ``all`` is the full softmax;
  each row's own target is masked out of its negatives, with ``--exclude-seen`` every item its user
  has trained on.
- ``--lr`` / ``--weight-decay`` -> ``trainer.optimizer_params``; ``--cosine-lr`` ->
  ``trainer.scheduler: cosine`` (annealed to 0 over the epochs trained).
- ``--valid-fraction f`` -> ``data.valid_fraction``: a seeded fraction ``f`` of every user's training
  items (users with at least 3) is held out (``recforge.data.holdout_mask``); Recall@20 on it after
  every epoch, early stop after ``--patience`` epochs without improvement, the best epoch's weights
  tested (history and exclusions: all training items). ``--refit`` -> ``trainer.refit``: the epoch
  count chosen on validation, then a new model trained on all training items for that many epochs
  is tested. Without ``--valid-fraction`` all ``--epochs`` run and the last epoch is tested.

The record (``<out-dir>/<dataset>_<model><tag>.json``) holds the command, the flags, the config, the
test metrics with ``users_evaluated`` / ``users_total``, every epoch's record (``metrics.jsonl``),
the selected epoch and peak RSS. The data set is part of the file name, so a run on other data never
overwrites another data set's rows (and rows written by this script never overwrite the rows of its
pre-library version, ``gowalla_<model><tag>.json``).

Example (the YoutubeDNN row ``_seenx60s0`` of ``results/retrieval.md``; ~50 min on one CPU thread):
    PYTHONPATH=src python benchmarks/retrieval_gowalla.py --model YoutubeDNN --batch-size 1024 \
        --history 50 --eval-history 1000 --num-negatives 2048 --epochs 60 --lr 1e-2 --cosine-lr \
        --history-dropout 0.5 --dims --temperature 0.08 --exclude-seen --seed 0 --tag _seenx60s0
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
from _retrieval_common import (
    RESULTS,
    command_line,
    default_data_dir,
    peak_rss_mb,
    reject_dropped,
    run_directory,
    run_library,
    write_result,
)

MODELS = ("YoutubeDNN", "DSSM", "MIND", "ComirecDR", "ComirecSA")
MULTI_INTEREST = ("MIND", "ComirecDR", "ComirecSA")
DROPPED = {
    "--own-history-table": "a run config takes the history column to be the sequence feature "
    "shared_with the item column, so the history bag always shares the item embedding table",
    "--valid-users": "recforge.runs.train validates on every user with a validation item "
    "(no subsample option)",
}


def model_section(args: argparse.Namespace) -> dict[str, Any]:
    """``model``: registry name, feature lists and constructor parameters."""
    user = ["user_id"] if args.user_id else []
    common = {"temperature": args.temperature, "normalize": not args.dot}
    if args.model in MULTI_INTEREST:
        params: dict[str, Any] = {
            "max_length": max(args.history, args.eval_history),
            "interest_num": args.interests,
            **common,
        }
        if args.model == "ComirecSA":
            params["add_pos"] = False  # a bag has no order
        inputs = {"user_features": user, "history_features": ["hist_item_id"], "item_features": ["item_id"]}
        return {"name": args.model, "inputs": inputs, "params": params}
    tower = {"dims": [args.embed_dim] if args.dims is None else list(args.dims)}
    params = {"user_params": tower, **common}
    if args.model == "DSSM":
        params["item_params"] = dict(tower)
    inputs = {"user_features": [*user, "hist_item_id"], "item_features": ["item_id"]}
    return {"name": args.model, "inputs": inputs, "params": params}


def build_config(args: argparse.Namespace) -> dict[str, Any]:
    """The run config the flags describe (see the module docstring)."""
    init = {"type": "RandomNormal", "std": args.init_std}
    pooling = "concat" if args.model in MULTI_INTEREST else "mean"
    features: list[dict[str, Any]] = [
        {"name": "item_id", "type": "categorical", "embed_dim": args.embed_dim, "initializer": init},
        {"name": "hist_item_id", "type": "sequence", "shared_with": "item_id", "max_len": args.eval_history,
         "pooling": pooling},
    ]  # fmt: skip
    if args.user_id:
        features.append(
            {"name": "user_id", "type": "categorical", "embed_dim": args.embed_dim, "initializer": init}
        )
    match: dict[str, Any] = {
        "mode": 2,
        "negatives": args.negatives,
        "num_negatives": args.num_negatives,
        "exclude_seen": args.exclude_seen,
    }
    if args.neg_alpha:
        match.update(sampling="popularity", alpha=args.neg_alpha)
    trainer: dict[str, Any] = {
        "preset": "match",
        "n_epoch": args.epochs,
        "optimizer": "adam",
        "optimizer_params": {"lr": args.lr, "weight_decay": args.weight_decay},
        "earlystop_patience": args.patience,
        "refit": args.refit,
        "num_threads": args.threads,
        "progress": False,
        "plot": False,
        "match": match,
        "evaluation": {"ks": [20]},
    }
    if args.cosine_lr:
        trainer["scheduler"] = "cosine"
    return {
        "seed": args.seed,
        "data": {
            "format": "lightgcn",
            "path": str(args.data_dir / "retrieval" / "gowalla_m1"),
            "split": "given",
            "valid_fraction": args.valid_fraction,
            "samples": {
                "kind": "bag",
                "max_len": args.history,
                "dropout": args.history_dropout,
                "max_per_user": args.max_per_user,
            },
            "batch_size": args.batch_size,
            "eval_batch_size": 2048,
        },
        "features": features,
        "model": model_section(args),
        "trainer": trainer,
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--data-dir", type=Path, default=default_data_dir(), help="holds retrieval/gowalla_m1")
    p.add_argument(
        "--dataset", default="gowalla_m1", help="the data set's name in the record and its file name"
    )
    p.add_argument("--model", choices=MODELS, default="YoutubeDNN")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--history", type=int, default=50, help="training bag size (data.samples.max_len)")
    p.add_argument("--eval-history", type=int, default=100, help="the history feature's max_len")
    p.add_argument("--embed-dim", type=int, default=64)
    p.add_argument(
        "--dims", type=int, nargs="*", default=None,
        help="user (and DSSM item) tower widths (default: one linear layer of --embed-dim; "
        "no value: no MLP, the pooled history is the user vector)",
    )  # fmt: skip
    p.add_argument("--user-id", action="store_true", help="add a user-id embedding to the user tower")
    p.add_argument("--interests", type=int, default=4)
    p.add_argument("--temperature", type=float, default=0.1)
    p.add_argument("--dot", action="store_true", help="raw dot-product scores (no L2 normalisation)")
    p.add_argument("--num-negatives", type=int, default=2048)
    p.add_argument(
        "--negatives", choices=("shared", "mixed", "in_batch", "all"), default="shared",
        help="shared: --num-negatives uniform items per batch; mixed: plus the other rows' "
        "positives (logQ-corrected by training frequency); in_batch: those positives only; "
        "all: full softmax over every item (--num-negatives unused)",
    )  # fmt: skip
    p.add_argument(
        "--neg-alpha", type=float, default=0.0,
        help="draw sampled negatives by training popularity**alpha (logQ-corrected); 0: uniform",
    )  # fmt: skip
    p.add_argument(
        "--exclude-seen", action="store_true",
        help="mask negatives the row's user has trained on (not only its own target)",
    )  # fmt: skip
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--cosine-lr", action="store_true", help="anneal the lr to 0 over the epochs (cosine)")
    p.add_argument("--history-dropout", type=float, default=0.0, help="drop bag items in training")
    p.add_argument(
        "--max-per-user", type=int, default=0,
        help="at most this many training targets per user and epoch, redrawn each epoch (0: all)",
    )  # fmt: skip
    p.add_argument("--init-std", type=float, default=0.1)
    p.add_argument("--valid-fraction", type=float, default=0.0, help="hold out for epoch selection")
    p.add_argument("--patience", type=int, default=3)
    p.add_argument(
        "--refit", action="store_true",
        help="choose the epoch count on --valid-fraction, then retrain on all training items and test that",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="")
    p.add_argument("--out-dir", type=Path, default=RESULTS, help="where the JSON record goes")
    p.add_argument(
        "--run-dir", type=Path, default=None, help="keep the run directory here (default: temporary)"
    )
    reject_dropped(argv, DROPPED)
    args = p.parse_args(argv)
    if args.refit and not args.valid_fraction:
        p.error("--refit chooses the epoch count on validation: give --valid-fraction too")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    config = build_config(args)
    with run_directory(args.run_dir) as run_dir:
        run = run_library(config, run_dir)
    epoch_s = [r["seconds"] for r in run.history]
    last = run.history[-1]
    record = {
        "dataset": args.dataset,
        "model": args.model,
        "command": command_line(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "config": config,
        **run.users,
        "samples_per_epoch": round(last["samples_per_s"] * last["seconds"]),
        "epochs_run": len(run.history),
        "best_epoch": run.best_epoch,
        "median_epoch_s": float(np.median(epoch_s)),
        "wall_s": run.wall_s,
        "peak_rss_mb": peak_rss_mb(),
        "test": run.test,
        "history": run.history,
        **({"selection_history": run.selection} if args.refit else {}),
    }
    path = write_result(f"{args.dataset}_{args.model}{args.tag}", record, args.out_dir)
    m = run.test
    print(
        f"{args.model}: recall@20={m['recall@20']:.4f} ndcg@20={m['ndcg@20']:.4f} hr@20={m['hr@20']:.4f} "
        f"({run.users.get('users_evaluated')} of {run.users.get('users_total')} users) -> {path}"
    )


if __name__ == "__main__":
    main()
