"""Planted-signal benchmark: every ranking model's test AUC gap to the Bayes-optimal AUC.

Data come from ``recforge.datasets.planted_ctr`` (a logistic click model with first-order and
factorised pairwise field interactions), so the true click probability of every test row is known
and its AUC is the best any model can reach. Writes ``benchmarks/results/ranking_planted.md``.

    PYTHONPATH=src python benchmarks/planted_ranking.py --seeds 0
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from _ranking_zoo import builders, fmt, seed_all, train_eval

from recforge.data import ColumnarDataset
from recforge.datasets import planted_ctr
from recforge.features import RandomNormal, SparseFeature
from recforge.metrics import auc_score, log_loss


def write_table(args: argparse.Namespace, names: list[str], rows: dict[str, list[dict[str, float]]],
                oracle: list[tuple[float, float]], mlp: dict[str, object]) -> Path:  # fmt: skip
    cmd = "PYTHONPATH=src python benchmarks/planted_ranking.py " + " ".join(sys.argv[1:])
    lines = [
        "# Ranking models on a planted click model",
        "",
        f"Command: `{cmd.strip()}`",
        "",
        f"Data: `planted_ctr(n_rows={args.rows}, n_fields={args.fields}, vocab={args.vocab}, "
        f"interactions={args.interactions or 'all pairs'})`, split 80/10/10 in row order; "
        f"embed_dim={args.embed_dim}, MLP {mlp['dims']}, Adam lr={args.lr}"
        + "".join(f" ({k}: {v})" for k, v in (x.split("=", 1) for x in args.model_lr))
        + f", batch {args.batch_size}, "
        f"<= {args.epochs} epochs with early stopping on validation AUC (patience {args.patience}), "
        f"embeddings initialised N(0, {args.init_std}), 1 CPU thread. "
        f"Seeds: {args.seeds}.",
        "",
        f"Bayes-optimal test AUC (AUC of the true click probability): {fmt([o[0] for o in oracle])}; "
        f"its logloss: {fmt([o[1] for o in oracle])}.",
        "",
        "| model | test AUC | gap to oracle | test logloss | epochs | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        rs = rows[name]
        if not rs:
            continue
        lines.append(
            f"| {name} | {fmt([r['auc'] for r in rs])} | {fmt([r['gap'] for r in rs])} | "
            f"{fmt([r['logloss'] for r in rs])} | {np.median([r['epochs'] for r in rs]):.0f} | "
            f"{np.median([r['seconds'] for r in rs]):.0f} |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=out.parent, delete=False, suffix=".tmp") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(fh.name, out)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--fields", type=int, default=8)
    p.add_argument("--vocab", type=int, default=100)
    p.add_argument("--interactions", type=int, default=None, help="number of interacting pairs (default all)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--embed-dim", type=int, default=8)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--init-std", type=float, default=0.01, help="embedding init N(0, std)")
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--models", nargs="*", default=None)
    p.add_argument(
        "--model-lr", nargs="*", default=[], metavar="NAME=LR", help="per-model learning rates (else --lr)"
    )
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "ranking_planted.md"))
    args = p.parse_args()
    model_lr = {k: float(v) for k, v in (x.split("=", 1) for x in args.model_lr)}
    torch.set_num_threads(1)
    mlp = {"dims": [64, 32], "dropout": 0.0}
    zoo = builders(mlp)
    names = args.models or list(zoo)
    rows: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    oracle: list[tuple[float, float]] = []
    for seed in args.seeds:
        data = planted_ctr(args.rows, args.fields, args.vocab, interactions=args.interactions, seed=seed)
        n = args.rows
        cut1, cut2 = int(0.8 * n), int(0.9 * n)
        ds = ColumnarDataset(data.columns, data.labels)
        train, val, test = ds.subset(slice(0, cut1)), ds.subset(slice(cut1, cut2)), ds.subset(slice(cut2, n))
        y_test, p_test = data.labels[cut2:], data.prob[cut2:]
        oracle.append((auc_score(y_test, p_test), log_loss(y_test, p_test)))
        init = RandomNormal(0.0, args.init_std)
        sparse = [
            SparseFeature(c, vocab_size=data.vocab_size, embed_dim=args.embed_dim, initializer=init)
            for c in data.columns
        ]
        for name in names:
            seed_all(seed)
            model = zoo[name](sparse, [])
            r = train_eval(model, train, val, test, seed=seed, lr=model_lr.get(name, args.lr), epochs=args.epochs,
                           batch_size=args.batch_size, patience=args.patience)  # fmt: skip
            r["gap"] = oracle[-1][0] - r["auc"]
            rows[name].append(r)
            print(f"seed {seed} {name:10s} auc {r['auc']:.4f} gap {r['gap']:.4f} "
                  f"epochs {r['epochs']:.0f} {r['seconds']:.0f}s", flush=True)  # fmt: skip
            out = write_table(args, names, rows, oracle, mlp)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
