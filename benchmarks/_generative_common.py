"""Shared protocol of the generative-retrieval benchmarks (``generative_beauty.py``,
``generative_movielens.py``): the config of one next-item run, its training and evaluation by the
library (``recforge.runs.train``), and the JSON rows -> markdown table step.

One run (``trainer.preset: seq``): leave-one-out split with vocabularies covering the whole
catalogue, all-position training (sampled softmax over shared uniform negatives, logQ-corrected,
L2-normalised vectors, temperature), validation NDCG@10 after every epoch with the best epoch's
weights restored (``--refit``: the epoch count chosen on validation, then a model refit on training +
validation sequences), then full ranking of the test targets over every item for every user with a
test item, the user's earlier items excluded (HR/NDCG@10/50).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from _retrieval_common import LibraryRun, run_directory, run_library

from recforge.models.defaults import default_config

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ID_MODELS = ("HSTU", "SASRec", "GRU4Rec", "NARM", "STAMP")
METRICS = ("hr@10", "ndcg@10", "hr@50", "ndcg@50")


def add_common_args(p: argparse.ArgumentParser, *, epochs: int, max_len: int) -> None:
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=1)
    p.add_argument("--max-len", type=int, default=max_len)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--position-embedding", action="store_true", help="HSTU: add learned absolute positions")
    p.add_argument("--negatives", type=int, default=256)
    p.add_argument(
        "--loss", choices=("sampled_softmax", "full", "bce"), default="sampled_softmax",
        help="full: cross-entropy over every item (the published anchors' loss; heavy on CPU)",
    )  # fmt: skip
    p.add_argument("--temperature", type=float, default=0.05)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--refit", action="store_true",
        help="choose the epoch count on validation, then refit on training + validation and test that",
    )  # fmt: skip
    p.add_argument("--out-dir", type=Path, default=RESULTS, help="results root (rows and table)")
    p.add_argument(
        "--run-dir", type=Path, default=None, help="keep the run directory here (default: temporary)"
    )


def id_model_section(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """``model`` for one of ``ID_MODELS``: its registry default (``recforge.models.defaults``; the
    history and the item id as feature groups) with the run's width, depth, heads, history length
    and dropout (the recurrent models use one GRU layer of width ``dim``; STAMP has no dropout) and
    L2-normalised vectors (the protocol's)."""
    params: dict[str, Any] = {
        "HSTU": {"num_layers": args.layers, "num_heads": args.heads, "dropout": args.dropout,
                 "position_embedding": args.position_embedding},
        "SASRec": {"max_len": args.max_len, "dropout_rate": args.dropout, "num_blocks": args.layers,
                   "num_heads": args.heads},
        "GRU4Rec": {"dropout": args.dropout},
        "NARM": {"hidden_dim": args.dim, "emb_dropout_p": args.dropout, "session_rep_dropout_p": args.dropout},
        "STAMP": {},
    }[name]  # fmt: skip
    section = default_config(name)
    section["params"] = {**section["params"], **params, "normalize": True}
    return section


def id_features(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The item id (embedding of width ``dim``) and the history sharing its table."""
    return [
        {"name": "item_id", "type": "categorical", "embed_dim": args.dim,
         "initializer": {"type": "RandomNormal", "std": 0.02}},
        {"name": "hist_item_id", "type": "sequence", "shared_with": "item_id", "max_len": args.max_len,
         "pooling": "concat"},
    ]  # fmt: skip


def seq_config(
    data: Mapping[str, Any],
    features: list[dict[str, Any]],
    model: Mapping[str, Any],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """A ``seq`` run config: leave-one-out on ``data``, the protocol of the module docstring; the best
    epoch by validation NDCG@10 over every epoch (no early stop)."""
    return {
        "seed": args.seed,
        "data": {"split": "leave_one_out", "batch_size": args.batch_size, "eval_batch_size": 1024, **data},
        "features": features,
        "model": dict(model),
        "trainer": {
            "preset": "seq",
            "n_epoch": args.epochs,
            "optimizer": "adam",
            "optimizer_params": {"lr": args.lr},
            "earlystop_patience": args.epochs,
            "earlystop_metric": "ndcg@10",
            "refit": args.refit,
            "num_threads": args.threads,
            "progress": False,
            "plot": False,
            "seq": {
                "loss": args.loss,
                "num_negatives": args.negatives,
                "temperature": args.temperature,
                "l2_normalize": True,
            },
            "evaluation": {"ks": [10, 50]},
        },
    }


def train_and_test(config: Mapping[str, Any], args: argparse.Namespace) -> tuple[LibraryRun, dict[str, Any]]:
    """Run ``config`` through the library; returns the run and the row fields it measured: test
    metrics, users evaluated / total / without history, ``best_epoch`` (1-based), ``valid_ndcg@10``
    per epoch of the validated run, ``epoch_s`` (median training seconds per epoch) and ``wall_s``
    (the whole run: data preparation, training, validation, refit, test)."""
    with run_directory(args.run_dir) as run_dir:
        run = run_library(config, run_dir)
    epoch_s = sorted(r["seconds"] for r in run.history)
    fields = {
        **{k: run.test[k] for k in METRICS},
        **run.users,
        "best_epoch": None if run.best_epoch is None else run.best_epoch + 1,
        "valid_ndcg@10": [round(r["val_ndcg@10"], 5) for r in run.selection],
        "epoch_s": epoch_s[len(epoch_s) // 2],
        "wall_s": run.wall_s,
        "refit_epochs": len(run.history) if args.refit else None,
    }
    return run, fields


def save_row(
    name: str, key: str, row: dict[str, object], write_table: Callable[[Path], None], root: Path = RESULTS
) -> None:
    """Write ``<root>/<name>/<key>.json`` atomically, then rebuild the table from every row."""
    print(json.dumps(row))
    out_dir = root / name
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp_path = out_dir / f".{key}.json.tmp"
    tmp_path.write_text(json.dumps(row, indent=1))
    os.replace(tmp_path, out_dir / f"{key}.json")
    write_table(out_dir)


def load_rows(out_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(f.read_text()) for f in sorted(out_dir.glob("*.json"))]


def users_cell(row: Mapping[str, Any], old_total: int | None) -> str:
    """``evaluated of total`` users; rows written before the library protocol (no ``users_total``)
    evaluated only users whose held-out item occurs in training: labelled "old protocol"."""
    if "users_total" in row:
        return f"{row['users_evaluated']:,} of {row['users_total']:,}"
    total = f"{old_total:,}" if old_total else "?"
    return f"old protocol: {row['users']:,} of {total}"


def write_markdown(path: Path, lines: list[str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
