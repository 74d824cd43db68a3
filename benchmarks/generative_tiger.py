"""TIGER (RQ-VAE semantic IDs + generative retrieval) against SASRec on Amazon Beauty (S3-Rec 5-core
file, the TIGER paper's data): leave-one-out, every user evaluated, the item vocabulary covering every
item of the log, seen items excluded, Recall/NDCG@5/10/50; optional cold start (a share of the items
held out of training entirely); cost (training s/epoch, decoding users/s at K=10/50 on 1 and 2
threads beside SASRec's full-ranking pass, peak RSS).

Each invocation runs one model and writes one JSON row under ``benchmarks/results/tiger/`` (the
file name starts with the data set, so rows of other data sets are never overwritten); the markdown
``benchmarks/results/tiger.md`` is rebuilt from every row present.

    # SASRec first: its row, and its item vectors (the "collaborative" content of TIGER)
    PYTHONPATH=src python benchmarks/generative_tiger.py --data-dir /work/shared/data --model SASRec
    PYTHONPATH=src python benchmarks/generative_tiger.py --data-dir /work/shared/data --model TIGER \\
        --content attributes+collaborative
    # cold start: 5% of the items never trained on (content: attributes only)
    PYTHONPATH=src python benchmarks/generative_tiger.py --data-dir /work/shared/data --model SASRec --cold 0.05
    PYTHONPATH=src python benchmarks/generative_tiger.py --data-dir /work/shared/data --model TIGER \\
        --content attributes --cold 0.05
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from _generative_common import RESULTS, ROOT, load_rows, save_row, write_markdown
from _retrieval_common import command_line, peak_rss_mb
from torch import Tensor

from recforge.data import (
    BatchLoader,
    ColumnarDataset,
    InteractionSplit,
    LengthBucketedLoader,
    attribute_embeddings,
    catalog_of,
    eval_samples,
    load_item_attributes,
    model_item_embeddings,
    next_item_samples,
    sequence_samples,
)
from recforge.features import RandomNormal, SequenceFeature, SparseFeature
from recforge.metrics import ListRankingEvaluator, RankingAccumulator, RankingEvaluator, list_ranks
from recforge.models.generative import RQVAE, TIGER, SemanticIDs
from recforge.models.matching import SASRec
from recforge.objectives import rqvae_losses
from recforge.precision import cpu_info
from recforge.preprocess import Vocabulary
from recforge.preprocess.vocab import NUM_RESERVED
from recforge.trainers import GenerativeTrainer, SeqTrainer, train_rqvae

KS = (5, 10, 20, 50)
CONTENTS = ("attributes", "collaborative", "attributes+collaborative")
DATASETS = {"beauty": ("sequential/s3rec_amazon_beauty/Beauty.txt", "Beauty_item2attributes.json")}
PUBLISHED = "TIGER paper (Beauty): TIGER Recall@10 0.0648 / NDCG@10 0.0384; SASRec 0.0605 / 0.0318."
log = logging.getLogger("recforge")


# -- data ------------------------------------------------------------------------------------------
def load_log(data_dir: Path, dataset: str) -> pd.DataFrame:
    """``uid i1 i2 ...`` per line (time order) -> ``user_id, item_id, time``."""
    users, items, times = [], [], []
    for line in (data_dir / DATASETS[dataset][0]).read_text().splitlines():
        parts = line.split()
        if parts:
            seq = [int(i) for i in parts[1:]]
            users += [int(parts[0])] * len(seq)
            items += seq
            times += range(len(seq))
    return pd.DataFrame({"user_id": users, "item_id": items, "time": times})


def catalogue_split(log_df: pd.DataFrame, *, cold: float, seed: int) -> tuple[InteractionSplit, int]:
    """Leave-one-out with the item vocabulary covering every item of the log (no user dropped).

    With ``cold > 0`` that share of the items is held out of training entirely (their training
    interactions are removed) and renumbered last, so they are the catalogue's newest items.

    Returns:
        ``(split, first_cold_id)``: cold items have ids ``>= first_cold_id``.
    """
    raw_items = np.sort(log_df["item_id"].unique())
    rng = np.random.default_rng(seed)
    cold_raw = rng.choice(raw_items, round(cold * len(raw_items)), replace=False) if cold else raw_items[:0]
    order = np.r_[np.setdiff1d(raw_items, cold_raw), np.sort(cold_raw)]  # warm first, then cold
    item_id = pd.Index(order).get_indexer(log_df["item_id"]) + NUM_RESERVED
    user_vocab = np.sort(log_df["user_id"].unique())
    f = pd.DataFrame({
        "user_id": pd.Index(user_vocab).get_indexer(log_df["user_id"]) + NUM_RESERVED,
        "item_id": item_id,
        "time": log_df["time"].to_numpy(),
    }).sort_values(["user_id", "time"], kind="mergesort").reset_index(drop=True)  # fmt: skip
    n = f.groupby("user_id")["user_id"].transform("size").to_numpy()
    from_end = f.groupby("user_id").cumcount(ascending=False).to_numpy()
    test, valid = (n >= 3) & (from_end == 0), (n >= 3) & (from_end == 1)
    first_cold = len(order) - len(cold_raw) + NUM_RESERVED
    train = f[~(test | valid)]
    train = train[train["item_id"] < first_cold].reset_index(drop=True)
    sp = InteractionSplit(
        train, f[valid].reset_index(drop=True), f[test].reset_index(drop=True), "user_id", "item_id", "time",
        Vocabulary(user_vocab), Vocabulary(order), {"valid": 0, "test": 0},
    )  # fmt: skip
    return sp, first_cold


def content_vectors(args: argparse.Namespace, sp: InteractionSplit) -> np.ndarray:
    """``(num_items, D)`` content rows (row = item id) for ``args.content``."""
    parts = []
    if "attributes" in args.content:
        attrs = load_item_attributes(
            Path(args.data_dir) / Path(DATASETS[args.dataset][0]).parent / DATASETS[args.dataset][1]
        )
        raw_to_id = {int(r): i + NUM_RESERVED for i, r in enumerate(sp.items.values)}
        attrs = {raw_to_id[k]: v for k, v in attrs.items() if k in raw_to_id}
        parts.append(attribute_embeddings(attrs, sp.num_items))
    if "collaborative" in args.content:
        path = collaborative_path(args)
        if not path.exists():
            raise SystemExit(f"{path} is missing: run --model SASRec with the same --cold/--seed first")
        parts.append(np.load(path, allow_pickle=False) * args.collaborative_weight)
    return np.concatenate(parts, 1).astype(np.float32)


def collaborative_path(args: argparse.Namespace) -> Path:
    return Path(args.cache_dir) / f"{args.dataset}_sasrec_items_cold{args.cold}_seed{args.seed}.npy"


def subset(columns: Mapping[str, Tensor], rows: Tensor) -> dict[str, Tensor]:
    return {k: v[rows] for k, v in columns.items()}


# -- models ----------------------------------------------------------------------------------------
def train_tokenizer(
    content: np.ndarray, first_cold: int, args: argparse.Namespace
) -> tuple[RQVAE, dict[str, Any]]:
    """RQ-VAE on the warm items' content (``recforge.trainers.train_rqvae``) and its facts."""
    t0 = time.perf_counter()
    rq = train_rqvae(
        torch.from_numpy(content[:first_cold]), exclude_rows=range(NUM_RESERVED), beta=args.rq_beta, n_epoch=args.rq_epochs,
        lr=args.rq_lr, seed=args.seed,
        rqvae={"latent_dim": args.rq_latent, "num_codes": args.rq_codes, "num_levels": args.rq_levels},
    )  # fmt: skip
    x = torch.from_numpy(content[NUM_RESERVED:first_cold])
    with torch.no_grad():
        parts = rqvae_losses(rq({"embedding": x}))
    facts = {
        "rq_s": time.perf_counter() - t0,
        "rq_reconstruction": float(parts.reconstruction),
        "rq_quantisation": float(parts.commitment),
        "rq_perplexity": [round(p, 1) for p in rq.code_perplexity(x)],
    }
    return rq, facts


def decode_speed(model: TIGER, rows: Mapping[str, Tensor], seen: Any) -> dict[str, float]:
    """Users/s of ``generate`` (beam = K) on 1 and 2 threads, seen items excluded."""
    out = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for k in (10, 50):
            t0 = time.perf_counter()
            n = len(rows["user_id"])
            for a in range(0, n, 256):
                b = subset(rows, torch.arange(a, min(a + 256, n)))
                model.generate(b, k, beam_width=k, exclude=seen.pairs(b["user_id"]))
            out[f"decode_k{k}_t{threads}"] = n / (time.perf_counter() - t0)
    return out


def rank_speed(model: torch.nn.Module, ev: RankingEvaluator, rows: Mapping[str, Tensor]) -> dict[str, float]:
    out = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        ev.evaluate(model, BatchLoader(ColumnarDataset(rows), 256))  # type: ignore[arg-type]
        out[f"rank_t{threads}"] = len(rows["user_id"]) / (time.perf_counter() - t0)
    return out


def sasrec(num_items: int, args: argparse.Namespace) -> SASRec:
    """SASRec with the run's width, depth, heads, history length and dropout."""
    item = SparseFeature("item_id", num_items, args.dim, initializer=RandomNormal(std=0.02))
    hist = SequenceFeature("hist_item_id", num_items, args.dim, shared_with="item_id", max_len=args.max_len)
    return SASRec([hist], [item], max_len=args.max_len, dropout_rate=args.dropout, num_blocks=args.layers,
                  num_heads=args.heads)  # fmt: skip


def run_sasrec(sp: InteractionSplit, first_cold: int, args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    model = sasrec(sp.num_items, args)
    train = ColumnarDataset(sequence_samples(sp.histories(), args.max_len))
    valid_h, test_h = sp.histories(), sp.histories("train", "valid")
    cat = catalog_of(sp.num_items)
    ev_valid = RankingEvaluator(cat, ks=(10,), seen=valid_h.seen(), normalize=True)
    ev_test = RankingEvaluator(cat, ks=KS, seen=test_h.seen(), normalize=True)
    valid = ColumnarDataset(eval_samples(valid_h, sp.valid, args.max_len))
    test_rows = eval_samples(test_h, sp.test, args.max_len)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = SeqTrainer(
            model, num_items=sp.num_items, loss=args.loss, num_negatives=args.negatives,
            temperature=args.temperature, l2_normalize=True, n_epoch=args.epochs,
            optimizer_params={"lr": args.lr}, model_path=tmp, progress=False, plot=False,
            evaluator=ev_valid, earlystop_patience=args.patience,
        )  # fmt: skip
        trainer.fit(
            BatchLoader(train, args.batch_size, shuffle=True, seed=args.seed), BatchLoader(valid, 1024)
        )
    train_s = time.perf_counter() - t0
    metrics = ev_test.evaluate(model, BatchLoader(ColumnarDataset(test_rows), 1024))
    cold_rows = torch.nonzero(test_rows["item_id"] >= first_cold).squeeze(1)
    cold = {}
    if cold_rows.numel():
        ev_cold = RankingEvaluator(cat, ks=KS, seen=test_h.seen(), normalize=True)
        cold = ev_cold.evaluate(model, BatchLoader(ColumnarDataset(subset(test_rows, cold_rows)), 1024))
    vecs = model_item_embeddings(model, sp.num_items, progress=False)
    vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    np.save(collaborative_path(args), vecs.astype(np.float32), allow_pickle=False)
    speed = rank_speed(model, ev_test, subset(test_rows, torch.arange(min(2048, len(test_rows["user_id"])))))
    torch.set_num_threads(args.threads)
    return {
        **{k: metrics[k] for k in metric_keys()}, **{f"cold_{k}": cold[k] for k in metric_keys() if k in cold},
        "cold_users": int(cold_rows.numel()), "train_s": train_s, "epochs_run": len(trainer.history),
        "best_epoch": trainer.stopper.best_epoch + 1, "s_per_epoch": float(np.mean([r["seconds"] for r in trainer.history])),
        "valid_ndcg@10": [round(r["val_ndcg@10"], 5) for r in trainer.history], **speed,
    }  # fmt: skip


def generate_all(model: TIGER, rows: Mapping[str, Tensor], seen: Any, k: int) -> Tensor:
    """Top-``k`` lists ``(N, k)`` of every row (beam ``k``, seen items excluded), in row order;
    batches of similar history length decode fastest."""
    n = len(rows["user_id"])
    out = torch.zeros(n, k, dtype=torch.long)
    for b in LengthBucketedLoader({**rows, "row": torch.arange(n)}, 256, key="hist_item_id", window=10**6):
        out[b["row"]] = model.generate(b, k, beam_width=k, exclude=seen.pairs(b["user_id"])).item_ids
    return out


def list_metrics(
    lists: Tensor, rows: Mapping[str, Tensor], pick: Tensor, seen: Any, num_items: int
) -> dict[str, float]:
    """Full-ranking definitions on the ranked lists of the rows ``pick`` (``list_ranks`` + ``RankingAccumulator``)."""
    acc = RankingAccumulator(KS, num_items)
    exclude = seen.pairs(rows["user_id"][pick])
    r = list_ranks(lists[pick], (torch.arange(len(pick)), rows["item_id"][pick]), exclude=exclude)
    acc.update(r.ranks, torch.arange(len(pick)), len(pick), r.topk_ids)
    return acc.result()


def blend_new_items(
    lists: Tensor, codes: Tensor, first_new: int, seen: Any, users: Tensor, eps: float
) -> Tensor:
    """The TIGER paper's cold-start retrieval: walking each generated list, the new items (ids
    ``>= first_new``, never trained on) whose first C - 1 codes equal a generated ID's are put
    right before it, at most ``eps * K`` new items per list; the list keeps its length K."""
    k = lists.shape[1]
    quota = int(eps * k)
    prefix: dict[tuple[int, ...], list[int]] = {}
    for item in range(first_new, codes.shape[0]):
        prefix.setdefault(tuple(codes[item, :-1].tolist()), []).append(item)
    out = torch.zeros_like(lists)
    for r, row in enumerate(lists.tolist()):
        seen_items = set(seen.indices[seen.indptr[users[r]] : seen.indptr[users[r] + 1]].tolist())
        picked: list[int] = []
        new = 0
        for item in row:
            if item == 0 or len(picked) >= k:
                break
            for cand in prefix.get(tuple(codes[item, :-1].tolist()), []):
                if new < quota and cand not in seen_items and cand not in picked and len(picked) < k:
                    picked.append(cand)
                    new += 1
            if item >= first_new:  # a new item the beam found itself
                if new >= quota or item in picked:
                    continue
                new += 1
            if len(picked) < k and item not in picked:
                picked.append(item)
        out[r, : len(picked)] = torch.tensor(picked[:k], dtype=torch.long)
    return out


def run_tiger(sp: InteractionSplit, first_cold: int, args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    content = content_vectors(args, sp)
    rq, rq_facts = train_tokenizer(content, first_cold, args)
    codes = rq.encode(torch.from_numpy(content[NUM_RESERVED:first_cold]))  # reserved ids get no ID
    need = SemanticIDs.from_codes(codes, num_codes=rq.num_codes, first_item=NUM_RESERVED).num_codes[-1]
    cap = need * 2 if first_cold < sp.num_items else need
    table = SemanticIDs.from_codes(codes, num_codes=rq.num_codes, capacity=cap, first_item=NUM_RESERVED)
    before, after = table.stats_before(), table.stats_after()
    log.info("semantic IDs: %s before, %s after disambiguation", before, after)
    table.save(Path(args.cache_dir) / f"{row_key(args)}_semantic_ids.json")
    model = TIGER(
        table, max_len=args.max_len, num_user_buckets=args.user_buckets, rqvae=rq,
        transformer=dict(embed_dim=args.dim, num_encoder_layers=args.layers, num_decoder_layers=args.layers,
                         num_heads=args.heads, ffn_dim=args.ffn, dropout=args.dropout,
                         attention_dropout=args.attention_dropout),
    )  # fmt: skip
    train = next_item_samples(sp.histories(), args.max_len, user_column="user_id")
    valid_h, test_h = sp.histories(), sp.histories("train", "valid")
    valid_all = eval_samples(valid_h, sp.valid, args.max_len)
    g = torch.Generator().manual_seed(args.seed)
    pick = torch.randperm(len(valid_all["user_id"]), generator=g)[: args.valid_users].sort().values
    valid = ColumnarDataset(subset(valid_all, pick))
    ev_valid = ListRankingEvaluator(sp.num_items, ks=(10,), seen=valid_h.seen())
    sched = torch.optim.lr_scheduler.CosineAnnealingLR if args.cosine else None
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = GenerativeTrainer(
            model, evaluator=ev_valid, n_epoch=args.epochs, optimizer_params={"lr": args.lr, "weight_decay": args.weight_decay},
            optimizer_fn=torch.optim.AdamW, scheduler_fn=sched, scheduler_params={"T_max": args.epochs} if sched else None,
            model_path=tmp, progress=False, plot=False, earlystop_patience=args.patience, max_grad_norm=1.0,
        )  # fmt: skip
        trainer.fit(
            LengthBucketedLoader(train, args.batch_size, key="hist_item_id", seed=args.seed, window=50),
            BatchLoader(valid, 512),
        )
    train_s = time.perf_counter() - t0
    if first_cold < sp.num_items:  # the new items get IDs from their content; TIGER is not retrained
        model.add_items(torch.from_numpy(content[first_cold:]))
    test_rows = eval_samples(test_h, sp.test, args.max_len)
    seen = test_h.seen()
    t1 = time.perf_counter()
    lists = generate_all(model, test_rows, seen, args.beam)  # (N, beam) one decoding pass
    test_s = time.perf_counter() - t1
    every = torch.arange(len(test_rows["user_id"]))
    metrics = list_metrics(lists, test_rows, every, seen, sp.num_items)
    cold_rows = torch.nonzero(test_rows["item_id"] >= first_cold).squeeze(1)
    cold = {}
    if cold_rows.numel():
        cold = list_metrics(lists, test_rows, cold_rows, seen, sp.num_items)
        for eps in args.cold_share:  # the paper's epsilon: new items sharing a generated ID's prefix
            blended = blend_new_items(lists, model.item_codes, first_cold, seen, test_rows["user_id"], eps)
            for name, rows in (("", every), ("cold_", cold_rows)):
                m = list_metrics(blended, test_rows, rows, seen, sp.num_items)
                cold.update({f"eps{eps}_{name}{k}": m[k] for k in metric_keys()})
    speed = decode_speed(model, subset(test_rows, torch.arange(min(args.speed_users, len(test_rows["user_id"])))),
                         test_h.seen()) if args.speed_users else {}  # fmt: skip
    torch.set_num_threads(args.threads)
    return {
        **{k: metrics[k] for k in metric_keys()}, **{f"cold_{k}": cold[k] for k in metric_keys() if k in cold},
        **{k: v for k, v in cold.items() if k.startswith("eps")},
        "cold_users": int(cold_rows.numel()), "train_s": train_s, "test_s": test_s, "epochs_run": len(trainer.history),
        "best_epoch": trainer.stopper.best_epoch + 1, "s_per_epoch": float(np.mean([r["seconds"] for r in trainer.history])),
        "valid_ndcg@10": [round(r["val_ndcg@10"], 5) for r in trainer.history],
        "train_loss": [round(r["train_loss"], 4) for r in trainer.history],
        "collision_rate_before": before.collision_rate, "max_bucket": before.max_bucket, "unique_tuples": before.unique,
        "collision_rate_after": after.collision_rate, "id_codes": list(table.num_codes),
        "params": sum(p.numel() for p in model.parameters() if p.requires_grad), **rq_facts, **speed,
    }  # fmt: skip


def metric_keys() -> list[str]:
    return [f"{m}@{k}" for m in ("recall", "ndcg") for k in KS]


def row_key(args: argparse.Namespace) -> str:
    if args.model == "SASRec":
        tag = f"SASRec_{args.epochs}ep_d{args.dim}_l{args.layers}_drop{args.dropout}_{args.negatives}neg"
    else:
        tag = (f"TIGER_{args.content.replace('+', '-')}_{args.epochs}ep_d{args.dim}_l{args.layers}_h{args.heads}"
               f"_ffn{args.ffn}_drop{args.dropout}_lr{args.lr}_rq{args.rq_levels}x{args.rq_codes}_beam{args.beam}"
               + (f"_attdrop{args.attention_dropout}" if args.attention_dropout else "")
               + ("_cosine" if args.cosine else ""))  # fmt: skip
    return f"{args.dataset}_{tag}_cold{args.cold}_seed{args.seed}" + (
        f"_users{args.users}" if args.users else ""
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--dataset", default="beauty", choices=sorted(DATASETS))
    p.add_argument("--model", default="TIGER", choices=("TIGER", "SASRec"))
    p.add_argument("--content", default="attributes+collaborative", choices=CONTENTS)
    p.add_argument(
        "--collaborative-weight", type=float, default=1.0, help="scale of the SASRec vectors in the content"
    )
    p.add_argument("--cold", type=float, default=0.0, help="share of items held out of training (cold start)")
    p.add_argument("--epochs", type=int, default=None, help="default: 30 (SASRec), 20 (TIGER)")
    p.add_argument("--patience", type=int, default=100)
    p.add_argument("--dim", type=int, default=None, help="default: 64 (SASRec), 128 (TIGER)")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=None, help="default: 1 (SASRec), 4 (TIGER)")
    p.add_argument("--ffn", type=int, default=512, help="TIGER feed-forward width")
    p.add_argument("--max-len", type=int, default=None, help="history items; default 50 (SASRec), 20 (TIGER)")
    p.add_argument("--dropout", type=float, default=None, help="default: 0.5 (SASRec), 0.1 (TIGER)")
    p.add_argument(
        "--attention-dropout",
        type=float,
        default=0.0,
        help="TIGER: dropout on attention probabilities (slow on CPU; the paper's T5 uses --dropout)",
    )
    p.add_argument("--lr", type=float, default=None, help="default: 0.003 (SASRec), 0.001 (TIGER)")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--cosine", action="store_true", help="TIGER: cosine learning-rate decay over --epochs")
    p.add_argument("--batch-size", type=int, default=None, help="default: 128 (SASRec), 256 (TIGER)")
    p.add_argument("--negatives", type=int, default=2048)
    p.add_argument("--loss", default="sampled_softmax")
    p.add_argument("--temperature", type=float, default=0.05)
    p.add_argument("--user-buckets", type=int, default=2000)
    p.add_argument("--beam", type=int, default=50, help="beam width of the test decoding (>= 50 for @50)")
    p.add_argument("--valid-users", type=int, default=2000, help="validation users decoded per epoch")
    p.add_argument(
        "--cold-share",
        type=float,
        nargs="*",
        default=[0.1],
        help="cold start: the paper's epsilon, max share of new items put in each list",
    )
    p.add_argument("--rq-levels", type=int, default=3)
    p.add_argument("--rq-codes", type=int, default=256)
    p.add_argument("--rq-latent", type=int, default=32)
    p.add_argument("--rq-beta", type=float, default=0.25)
    p.add_argument("--rq-epochs", type=int, default=150)
    p.add_argument("--rq-lr", type=float, default=1e-3)
    p.add_argument(
        "--speed-users", type=int, default=1024, help="users timed for decoding throughput (0: skip)"
    )
    p.add_argument("--users", type=int, default=0, help="smoke runs: keep only the first N users (0: all)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=str(ROOT / "benchmarks" / ".cache" / "tiger"))
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    args = p.parse_args()
    sas = args.model == "SASRec"
    for name, a, b in (("epochs", 30, 20), ("dim", 64, 128), ("heads", 1, 4), ("max_len", 50, 20),
                       ("dropout", 0.5, 0.1), ("lr", 0.003, 0.001), ("batch_size", 128, 256)):  # fmt: skip
        if getattr(args, name) is None:
            setattr(args, name, a if sas else b)
    if args.cold and "collaborative" in args.content and not sas:
        raise SystemExit("cold start needs content that exists for new items: --content attributes")
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    Path(args.cache_dir).mkdir(parents=True, exist_ok=True)
    raw = load_log(Path(args.data_dir), args.dataset)
    if args.users:  # a smoke run on the first users (not a result: rows get "_users<N>" in the key)
        raw = raw[raw["user_id"].isin(np.sort(raw["user_id"].unique())[: args.users])].reset_index(drop=True)
    sp, first_cold = catalogue_split(raw, cold=args.cold, seed=args.seed)
    total_users = raw["user_id"].nunique()
    print(f"{len(raw)} interactions, {total_users} users, {sp.num_items - 1} items; evaluated users: "
          f"{len(sp.test)} / {total_users} (dropped: {sp.dropped}); cold items: {sp.num_items - first_cold}")  # fmt: skip
    load_before = os.getloadavg()[0]
    facts = run_sasrec(sp, first_cold, args) if sas else run_tiger(sp, first_cold, args)
    row = {
        "dataset": args.dataset, "model": args.model, "content": "ids" if sas else args.content, "cold": args.cold,
        "epochs": args.epochs, "dim": args.dim, "layers": args.layers, "heads": args.heads,
        "ffn": None if sas else args.ffn, "attention_dropout": None if sas else args.attention_dropout, "max_len": args.max_len, "dropout": args.dropout, "lr": args.lr,
        "batch_size": args.batch_size, "seed": args.seed, "threads": args.threads,
        "users": len(sp.test), "total_users": int(total_users), "items": sp.num_items - 1,
        "cold_items": sp.num_items - first_cold, **facts, "peak_rss_mb": peak_rss_mb(),
        "load_1min_start": load_before, "load_1min_end": os.getloadavg()[0], "command": command_line(),
    }  # fmt: skip
    save_row("tiger", row_key(args), row, write_table, args.out_dir)


def _f(row: Mapping[str, Any], key: str, fmt: str = ".4f") -> str:
    v = row.get(key)
    return "" if v is None else format(v, fmt)


def write_table(out_dir: Path) -> None:
    rows: list[Any] = load_rows(out_dir)
    lines = [
        "# TIGER (RQ-VAE semantic IDs, generative retrieval) vs SASRec",
        "",
        PUBLISHED,
        "",
        "Protocol: leave-one-out (last item test, second-last validation), every user evaluated (users "
        "column: evaluated / total), the item vocabulary covers every item of the log, the user's "
        "earlier items are excluded from the ranking. SASRec ranks every item; TIGER's ranked list is "
        "its constrained beam search (beam 50), an item beyond the list is a miss (same metric "
        "definitions, `recforge.metrics.ListRankingEvaluator`). Best epoch by validation NDCG@10 (TIGER: "
        "on a fixed sample of validation users). `cold`: share of items held out of training entirely; "
        "`cold R@10/R@50`: recall on the test users whose target is such an item (TIGER gives them IDs "
        "from their content after training through `TIGER.add_items`). Collisions: share of items whose "
        "RQ-VAE code tuple is shared (before) -> after the disambiguation code. 1 thread unless noted; "
        f"`load` is the machine's 1-minute load at start/end ({cpu_info().describe()}, shared with other jobs: above {os.cpu_count()}, "
        "wall times are upper bounds).",
        "",
        "| data set | model | content | cold | epochs (best) | size | collisions | R@5 | N@5 | R@10 | N@10 | R@50 | N@50 | cold R@10 | cold R@50 | users | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        size = (f"d{r['dim']} l{r['layers']} h{r['heads']}" + (f" ffn{r['ffn']}" if r.get("ffn") else "")
                + f" drop{r['dropout']}")  # fmt: skip
        coll = (f"{r['collision_rate_before']:.3f} -> {r['collision_rate_after']:.0f}"
                if "collision_rate_before" in r else "")  # fmt: skip
        lines.append(
            f"| {r['dataset']} | {r['model']} | {r['content']} | {r['cold']} | {r['epochs_run']} ({r['best_epoch']}) | "
            f"{size} | {coll} | {_f(r, 'recall@5')} | {_f(r, 'ndcg@5')} | {_f(r, 'recall@10')} | {_f(r, 'ndcg@10')} | "
            f"{_f(r, 'recall@50')} | {_f(r, 'ndcg@50')} | {_f(r, 'cold_recall@10')} | {_f(r, 'cold_recall@50')} | "
            f"{r['users']} / {r['total_users']} | {r['load_1min_start']:.1f}/{r['load_1min_end']:.1f} |"
        )
    cold_rows = [r for r in rows if r.get("cold")]
    if cold_rows:
        lines += [
            "",
            "## Cold start",
            "",
            "Test users whose target is one of the held-out items. `eps`: the TIGER paper's retrieval of "
            "new items: walking the generated list, new items whose first C - 1 codes equal a generated "
            "ID's are inserted before it, at most eps * K per list (K = 50; all users' lists change, so the "
            "overall recall is shown too).",
            "",
            "| data set | model | content | cold | cold users | policy | all R@10 | all N@10 | cold R@10 | cold R@50 |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in cold_rows:
            policies = [
                ("", "plain"),
                *sorted({(k.split("_")[0] + "_", k.split("_")[0]) for k in r if k.startswith("eps")}),
            ]
            for pre, name in policies:
                lines.append(
                    f"| {r['dataset']} | {r['model']} | {r['content']} | {r['cold']} | {r['cold_users']} | {name} | "
                    f"{_f(r, pre + 'recall@10')} | {_f(r, pre + 'ndcg@10')} | {_f(r, pre + 'cold_recall@10')} | "
                    f"{_f(r, pre + 'cold_recall@50')} |"
                )
    lines += [
        "",
        "## Cost",
        "",
        "Training seconds per epoch (TIGER: sliding-window samples, length-bucketed batches; SASRec: "
        "all-position training); decoding throughput in users/s over the first test users: TIGER's beam "
        "search with beam = K, SASRec's full-ranking pass (top-50 over every item), on 1 and 2 threads.",
        "",
        "| data set | model | content | cold | s/epoch | TIGER K=10 1t / 2t | TIGER K=50 1t / 2t | SASRec full rank 1t / 2t | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        dec10 = (
            f"{_f(r, 'decode_k10_t1', '.0f')} / {_f(r, 'decode_k10_t2', '.0f')}"
            if "decode_k10_t1" in r
            else ""
        )
        dec50 = (
            f"{_f(r, 'decode_k50_t1', '.0f')} / {_f(r, 'decode_k50_t2', '.0f')}"
            if "decode_k50_t1" in r
            else ""
        )
        rank = f"{_f(r, 'rank_t1', '.0f')} / {_f(r, 'rank_t2', '.0f')}" if "rank_t1" in r else ""
        lines.append(
            f"| {r['dataset']} | {r['model']} | {r['content']} | {r['cold']} | {r['s_per_epoch']:.0f} | {dec10} | "
            f"{dec50} | {rank} | {r['peak_rss_mb']:.0f} |"
        )
    lines += ["", "Commands:", "", *[f"`{r['command']}`  " for r in rows]]
    write_markdown(out_dir.parent / "tiger.md", lines)


if __name__ == "__main__":
    if sys.argv[1:] == ["--table-only"]:
        write_table(RESULTS / "tiger")
    else:
        main()
