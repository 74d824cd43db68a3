"""Shared protocol of the generative-retrieval benchmarks (``generative_beauty.py``,
``generative_movielens.py``): the id-based models, one training/evaluation run on a leave-one-out
split, and the JSON rows -> markdown table step.

One run: all-position training with ``SeqTrainer`` (sampled softmax over shared uniform negatives,
logQ-corrected, L2-normalised vectors, temperature), validation NDCG@10 after every epoch with the
best epoch's weights restored, then full ranking of the test targets over every item with the
user's earlier items excluded (HR/NDCG@10/50).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from recforge.data import (
    BatchLoader,
    ColumnarDataset,
    InteractionSplit,
    catalog_of,
    eval_samples,
    sequence_samples,
)
from recforge.metrics import RankingEvaluator
from recforge.trainers import SeqTrainer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ID_MODELS = ("HSTU", "SASRec", "GRU4Rec", "NARM", "STAMP")


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
    p.add_argument("--out-dir", type=Path, default=RESULTS, help="results root (rows and table)")


def build_id_model(name: str, num_items: int, args: argparse.Namespace) -> torch.nn.Module:
    """One of ``ID_MODELS`` with the run's width, depth, heads, history length and dropout (the
    recurrent models use one GRU layer of width ``dim``; STAMP has no dropout)."""
    from recforge.features import RandomNormal, SequenceFeature, SparseFeature
    from recforge.models import matching

    if name not in ID_MODELS:
        raise SystemExit(f"unknown model {name!r}: one of {ID_MODELS}")
    item = SparseFeature("item_id", num_items, args.dim, initializer=RandomNormal(std=0.02))
    hist = SequenceFeature("hist_item_id", num_items, args.dim, shared_with="item_id", max_len=args.max_len)
    if name == "HSTU":
        from recforge.models.generative import HSTU

        return HSTU([hist], [item], num_layers=args.layers, num_heads=args.heads, dropout=args.dropout,
                    position_embedding=args.position_embedding)  # fmt: skip
    if name == "GRU4Rec":
        return matching.GRU4Rec([hist], [item], dropout=args.dropout)
    if name == "NARM":
        return matching.NARM([hist], [item], hidden_dim=args.dim, emb_dropout_p=args.dropout,
                             session_rep_dropout_p=args.dropout)  # fmt: skip
    if name == "STAMP":
        return matching.STAMP([hist], [item])
    return matching.SASRec([hist], [item], max_len=args.max_len, dropout_rate=args.dropout,
                           num_blocks=args.layers, num_heads=args.heads)  # fmt: skip


def train_and_test(
    model: torch.nn.Module, sp: InteractionSplit, args: argparse.Namespace
) -> tuple[dict[str, float], dict[str, float]]:
    """Train on ``sp`` (best epoch by validation NDCG@10), test once (seed before building the model).

    Returns:
        ``(test metrics, facts)``: facts hold ``train_s`` (training + validation wall time),
        ``best_epoch``, ``test_users``, ``items``, ``valid_ndcg@10`` (one value per epoch).
    """
    train = ColumnarDataset(sequence_samples(sp.histories(), args.max_len))
    valid_h, test_h = sp.histories(), sp.histories("train", "valid")
    valid = ColumnarDataset(eval_samples(valid_h, sp.valid, args.max_len))
    test = ColumnarDataset(eval_samples(test_h, sp.test, args.max_len))
    cat = catalog_of(sp.num_items)
    ev_valid = RankingEvaluator(cat, ks=(10, 50), seen=valid_h.seen(), normalize=True)
    ev_test = RankingEvaluator(cat, ks=(10, 50), seen=test_h.seen(), normalize=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = SeqTrainer(
            model, num_items=sp.num_items, loss=args.loss, num_negatives=args.negatives,
            temperature=args.temperature,
            l2_normalize=True, n_epoch=args.epochs, optimizer_params={"lr": args.lr}, model_path=tmp,
            progress=False, plot=False, evaluator=ev_valid, earlystop_patience=args.epochs,
        )  # fmt: skip
        trainer.fit(
            BatchLoader(train, args.batch_size, shuffle=True, seed=args.seed), BatchLoader(valid, 1024)
        )
    train_s = time.perf_counter() - t0
    metrics = ev_test.evaluate(model, BatchLoader(test, 1024))
    facts = {
        "train_s": train_s,
        "best_epoch": trainer.stopper.best_epoch + 1,
        "test_users": len(test),
        "items": int(sp.num_items - 1),
        "valid_ndcg@10": [round(r["val_ndcg@10"], 5) for r in trainer.history],  # per epoch
    }
    return {k: metrics[k] for k in ("hr@10", "ndcg@10", "hr@50", "ndcg@50")}, facts


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


def load_rows(out_dir: Path) -> list[dict[str, object]]:
    return [json.loads(f.read_text()) for f in sorted(out_dir.glob("*.json"))]


def write_markdown(path: Path, lines: list[str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
