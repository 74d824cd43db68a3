"""Behaviour-sequence CTR on Amazon Beauty (S3-Rec release) following the DIN Amazon protocol.

Histories hold the <= 50 most recent earlier items (item id + first attribute as category), one
sampled negative per positive, each user's last interaction is the test sample and the one before
it validation; vocabularies are fitted on training interactions only
(``recforge.data.behavior.build_behavior_ctr``). Reports test AUC and GAUC (by user) for a plain
DNN (WideDeep over target + mean-pooled history), DIN, DIEN (AUGRU + auxiliary loss) and BST.

    PYTHONPATH=src python benchmarks/seq_ctr_amazon.py --seeds 0 1 2 --epochs 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _seq_ctr_common import MODEL_NAMES, mean_std, run_one

from recforge.data.behavior import build_behavior_ctr
from recforge.features import RandomNormal

ROOT = Path(__file__).resolve().parent.parent


def load_beauty(data_dir: Path) -> tuple[pd.DataFrame, dict[int, int]]:
    folder = data_dir / "sequential" / "s3rec_amazon_beauty"
    users, items, times = [], [], []
    with open(folder / "Beauty.txt", encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) < 2:
                continue
            seq = parts[1:]
            users += [int(parts[0])] * len(seq)
            items += [int(i) for i in seq]
            times += list(range(len(seq)))  # the file lists each user's items in time order
    with open(folder / "Beauty_item2attributes.json", encoding="utf-8") as fh:
        attrs = json.load(fh)
    category = {int(k): int(v[0]) for k, v in attrs.items() if v}
    return pd.DataFrame({"user_id": users, "item_id": items, "time": times}), category


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--models", nargs="+", default=list(MODEL_NAMES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--embed-dim", type=int, default=16)
    p.add_argument("--weight-decay", type=float, default=0.0, help="Adam L2 penalty on every parameter")
    p.add_argument("--init-std", type=float, default=1e-4, help="embedding init N(0, std)")
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-users", type=int, default=None, help="random subset of users (seed 0)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "seq_ctr.md")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    log, category = load_beauty(args.data_dir)
    if args.max_users is not None:
        users = log["user_id"].unique()
        keep = np.random.default_rng(0).choice(users, size=min(args.max_users, len(users)), replace=False)
        log = log[log["user_id"].isin(keep)]
    data = build_behavior_ctr(
        log, user_col="user_id", item_col="item_id", time_col="time", item_features={"cate_id": category},
        max_len=args.max_len, n_neg=1, seed=0,
    )  # fmt: skip
    build_s = time.perf_counter() - t0
    specs = data.feature_specs(args.embed_dim, user_embed=False, initializer=RandomNormal(0.0, args.init_std))
    sizes = {k: len(getattr(data, k)["label"]) for k in ("train", "valid", "test")}
    print(
        f"built in {build_s:.1f}s: {sizes}, vocab {[(k, data.vocab_size(k)) for k in data.vocabs]}",
        flush=True,
    )

    results: dict[str, list[dict[str, float]]] = {}
    for name in args.models:
        for seed in args.seeds:
            m = run_one(
                name, specs, data.train, data.valid, data.test, seed=seed, epochs=args.epochs,
                batch_size=args.batch_size, lr=args.lr, group="user_id", weight_decay=args.weight_decay,
            )  # fmt: skip
            results.setdefault(name, []).append(m)
            print(name, seed, json.dumps({k: round(v, 5) for k, v in m.items()}), flush=True)

    cmd = "PYTHONPATH=src python benchmarks/seq_ctr_amazon.py " + " ".join(sys.argv[1:])
    lines = [
        "# Behaviour-sequence CTR: Amazon Beauty (DIN protocol)",
        "",
        f"Command: `{cmd}`",
        "",
        f"Data: {sizes['train']} train / {sizes['valid']} validation / {sizes['test']} test samples "
        f"(half positives), history <= {args.max_len}, item + first attribute as category, "
        f"vocabularies fitted on training interactions; built in {build_s:.1f}s. "
        f"Embed dim {args.embed_dim} (init N(0, {args.init_std})), MLP 200-80, Adam lr {args.lr} "
        f"(weight decay {args.weight_decay}), batch {args.batch_size}, "
        f"{args.epochs} epoch(s), best validation-AUC epoch kept, batches length-bucketed "
        f"(rows sorted by history length within 32-batch chunks, batch order shuffled), "
        f"users: {args.max_users or 'all'}, {args.threads} thread(s), "
        f"{platform.processor() or platform.machine()} (shared machine, timings are indicative).",
        "",
        f"Test metrics, mean ± std over seeds {args.seeds}:",
        "",
        "| model | AUC | GAUC (user) | logloss | epoch wall time (s) |",
        "|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        lines.append(
            f"| {name} | {mean_std([r['auc'] for r in runs])} | {mean_std([r['gauc'] for r in runs])} | "
            f"{mean_std([r['logloss'] for r in runs])} | {mean_std([r['epoch_s'] for r in runs])} |"
        )
    lines += [
        "",
        "DNN = WideDeep over the target item/category and the mean-pooled history; DIN = target "
        "attention (Dice), weights softmax-normalised over the real behaviours; DIEN = GRU + auxiliary loss (alpha 1) + AUGRU; BST = 1 transformer "
        "block, 2 heads, recency positions.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    os.replace(tmp, args.out)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
