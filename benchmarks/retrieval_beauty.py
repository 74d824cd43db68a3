"""Next-item retrieval on Amazon Beauty (BERT4Rec's ``beauty.txt``): GRU4Rec, NARM, STAMP, SASRec.

Protocol: the file lists ``uid iid`` in time order; per user the last item is the test target, the
second-last the validation target, the rest is training (``leave_one_out_split``; vocabularies on
train only, so a validation/test item never seen in training is dropped and counted). Training
predicts the next item at every position (``SeqTrainer``) with the loss chosen by ``--loss``:
``sampled_softmax`` (``--num-negatives`` uniform items shared by the batch, logQ-corrected, the
default on CPU) or ``full`` (cross-entropy over all items). Evaluation is full ranking over every
item; the headline numbers exclude the user's earlier items (``seen``), and the numbers with
nothing excluded with ``--no-exclusion-too``. Early stopping on validation NDCG@10 over ``--val-users``
sampled users (or ``--time-budget``); test on every user with the best epoch's weights.

Example: PYTHONPATH=src python benchmarks/retrieval_beauty.py --model SASRec --epochs 50
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _retrieval_common import command_line, default_data_dir, peak_rss_mb, write_result

from recforge.data.catalog import catalog_of
from recforge.data.dataset import BatchLoader, ColumnarDataset
from recforge.data.interactions import eval_samples, leave_one_out_split, sequence_samples
from recforge.features import RandomNormal, SequenceFeature, SparseFeature
from recforge.metrics.ranking import RankingEvaluator
from recforge.models.matching import NARM, STAMP, GRU4Rec, SASRec
from recforge.trainers.seq import SeqTrainer

MODELS = ("SASRec", "GRU4Rec", "NARM", "STAMP")


def build(name: str, num_items: int, dim: int, max_len: int, dropout: float) -> torch.nn.Module:
    item = SparseFeature("item_id", num_items, dim, initializer=RandomNormal(std=0.02))
    hist = SequenceFeature(
        "hist_item_id", num_items, dim, pooling="concat", shared_with="item_id", max_len=max_len
    )
    if name == "SASRec":
        return SASRec([hist], [item], max_len=max_len, dropout_rate=dropout, num_blocks=2, num_heads=1)
    if name == "GRU4Rec":
        return GRU4Rec([hist], [item], dropout=dropout)
    if name == "NARM":
        return NARM([hist], [item], hidden_dim=dim, emb_dropout_p=dropout, session_rep_dropout_p=dropout)
    if name == "STAMP":
        return STAMP([hist], [item])
    raise ValueError(f"unknown model {name!r}; valid: {MODELS}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, default=default_data_dir())
    p.add_argument("--model", choices=MODELS, default="SASRec")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--embed-dim", type=int, default=64)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--loss", choices=("sampled_softmax", "full", "bce"), default="sampled_softmax")
    p.add_argument("--num-negatives", type=int, default=2048)
    p.add_argument("--val-users", type=int, default=5000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-exclusion-too", action="store_true", help="also evaluate with nothing excluded")
    p.add_argument(
        "--time-budget", type=float, default=0.0, help="minutes; stop after the epoch that ends past it"
    )
    p.add_argument("--tag", default="")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    t0 = time.perf_counter()
    raw = pd.read_csv(
        args.data_dir / "sequential/bert4rec_amazon_beauty/beauty.txt", sep=" ", names=["user_id", "item_id"]
    )
    raw["time"] = np.arange(len(raw))
    split = leave_one_out_split(raw)
    n_items = split.num_items
    train_h, full_h = split.histories("train"), split.histories("train", "valid")
    train = sequence_samples(train_h, args.max_len)
    rng = np.random.default_rng(args.seed)
    val_rows = split.valid.iloc[np.sort(rng.permutation(len(split.valid))[: args.val_users])]
    val = eval_samples(train_h, val_rows, args.max_len)
    test = eval_samples(full_h, split.test, args.max_len)
    catalog = catalog_of(n_items)
    prep_s = time.perf_counter() - t0

    model = build(args.model, n_items, args.embed_dim, args.max_len, args.dropout)
    train_loader = BatchLoader(ColumnarDataset(train), args.batch_size, shuffle=True, seed=args.seed)
    val_loader = BatchLoader(ColumnarDataset(val), 1024)
    history: list[dict[str, float]] = []
    best: tuple[float, int, dict[str, torch.Tensor]] = (-1.0, -1, {})
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = SeqTrainer(
            model,
            optimizer_params={"lr": args.lr},
            n_epoch=args.epochs,
            model_path=run_dir,
            num_items=n_items,
            loss=args.loss,
            num_negatives=args.num_negatives,
            evaluator=RankingEvaluator(catalog, ks=(10, 20), seen=train_h.seen()),
            progress=False,
            plot=False,
            seed=args.seed,
        )
        start = time.perf_counter()
        for epoch in range(args.epochs):
            train_loader.set_epoch(epoch)
            te = time.perf_counter()
            loss = trainer.train_one_epoch(train_loader, epoch)
            seconds = time.perf_counter() - te
            val_ndcg = trainer.evaluate(model, val_loader)["ndcg@10"]
            history.append({"epoch": epoch, "train_loss": loss, "seconds": seconds, "val_ndcg@10": val_ndcg})
            print(f"epoch {epoch}: loss={loss:.4f} val_ndcg@10={val_ndcg:.4f} {seconds:.0f}s", flush=True)
            if val_ndcg > best[0]:
                best = (val_ndcg, epoch, copy.deepcopy(model.state_dict()))
            elif epoch - best[1] >= args.patience:
                break
            if args.time_budget and time.perf_counter() - start > args.time_budget * 60:
                print(f"time budget of {args.time_budget} min reached after {epoch + 1} epochs", flush=True)
                break
    model.load_state_dict(best[2])
    t1 = time.perf_counter()
    test_loader = BatchLoader(ColumnarDataset(test), 1024)
    excl = RankingEvaluator(catalog, ks=(10, 20), seen=full_h.seen()).evaluate(model, test_loader)
    incl = (
        RankingEvaluator(catalog, ks=(10, 20)).evaluate(model, test_loader) if args.no_exclusion_too else None
    )
    eval_s = time.perf_counter() - t1
    epoch_s = [r["seconds"] for r in history]
    record = {
        "dataset": "amazon_beauty",
        "model": args.model,
        "command": command_line(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "users": int(split.num_users - 1),
        "items": int(n_items - 1),
        "train_rows": int(train["hist_item_id"].shape[0]),
        "dropped": split.dropped,
        "epochs_run": len(history),
        "best_epoch": best[1],
        "best_val_ndcg@10": best[0],
        "median_epoch_s": float(np.median(epoch_s)),
        "prep_s": prep_s,
        "test_eval_s": eval_s,
        "peak_rss_mb": peak_rss_mb(),
        "test_seen_excluded": excl,
        "test_nothing_excluded": incl,
        "history": history,
    }
    path = write_result(f"beauty_{args.model}{args.tag}", record)
    print(f"{args.model}: HR@10={excl['hr@10']:.4f} NDCG@10={excl['ndcg@10']:.4f} -> {path}")


if __name__ == "__main__":
    main()
