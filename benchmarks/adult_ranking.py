"""UCI Adult (income > 50K) with every non-sequence ranking model: test AUC and logloss over seeds.

The given train/test split is used; a seeded 10% validation split carved from ``adult.data`` drives
early stopping (best validation AUC restored); the test file is never used for any choice.
Encoding is ``recforge.preprocess.FeaturePipeline`` fit on the training rows only: categorical
columns become sparse features (unseen values share the out-of-vocabulary id), numeric columns are
standardised with training statistics.
Writes ``benchmarks/results/ranking_adult.md``.

    PYTHONPATH=src python benchmarks/adult_ranking.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _ranking_zoo import builders, fmt, seed_all, train_eval

from recforge.data import ColumnarDataset
from recforge.features import DenseFeature, SparseFeature
from recforge.preprocess import Bucketize, Categorical, ColumnSpec, FeaturePipeline, Numeric

COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
    "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country",
    "income",
]  # fmt: skip
CATEGORICAL = ["workclass", "education", "marital_status", "occupation", "relationship", "race", "sex",
               "native_country"]  # fmt: skip
NUMERIC = ["age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week"]


def read(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, header=None, names=COLUMNS, skipinitialspace=True, comment="|")
    df = df.dropna(subset=["income"]).reset_index(drop=True)
    df["label"] = df.pop("income").astype(str).str.rstrip(".").eq(">50K").astype("float32")
    return df


def encode(
    train: pd.DataFrame, frames: list[pd.DataFrame], embed_dim: int, buckets: int
) -> tuple[list[SparseFeature], list[DenseFeature], list[ColumnarDataset]]:
    """``FeaturePipeline`` fit on ``train`` only: vocabularies (unseen values -> OOV id), z-score
    statistics and, with ``buckets``, each numeric column also as a quantile-bucket id
    (``<column>_bucket``, edges from the training rows); returns the sparse and dense specs and one
    dataset per frame."""
    specs: list[ColumnSpec] = [Categorical(c, embed_dim=embed_dim) for c in CATEGORICAL]
    specs += [Numeric(c, normalize="standard") for c in NUMERIC]
    if buckets:
        specs += [Bucketize(f"{c}_bucket", bins=buckets, embed_dim=embed_dim) for c in NUMERIC]
        copies = lambda f: f.assign(**{f"{c}_bucket": f[c] for c in NUMERIC})  # noqa: E731
        train, frames = copies(train), [copies(f) for f in frames]
    pipeline = FeaturePipeline(specs, label="label").fit(train)
    sparse = [f for f in pipeline.features if isinstance(f, SparseFeature)]
    dense = [f for f in pipeline.features if isinstance(f, DenseFeature)]
    return sparse, dense, [ColumnarDataset.from_pipeline(pipeline, f) for f in frames]


def write_table(args: argparse.Namespace, names: list[str], rows: dict[str, list[dict[str, float]]],
                n_train: int, n_test: int, mlp: dict[str, object]) -> Path:  # fmt: skip
    cmd = "PYTHONPATH=src python benchmarks/adult_ranking.py " + " ".join(sys.argv[1:])
    lines = [
        "# Ranking models on UCI Adult (income > 50K)",
        "",
        f"Command: `{cmd.strip()}`",
        "",
        f"Train {n_train} rows (10% held out per seed for early stopping), test {n_test} rows "
        f"(the given adult.test). Numeric columns standardised"
        + (f" and also as {args.buckets} quantile buckets (a sparse field each)" if args.buckets else "")
        + f". embed_dim={args.embed_dim}, MLP {mlp['dims']} dropout {mlp['dropout']}, "
        f"Adam lr={args.lr}, batch {args.batch_size}, <= {args.epochs} epochs, early stopping on "
        f"validation AUC (patience 2), 1 CPU thread. Mean ± std over the seeds run (of {args.seeds}).",
        "",
        "| model | test AUC | test logloss | seeds run | epochs (median) | seconds (median) |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        rs = rows[name]
        if not rs:
            continue
        lines.append(
            f"| {name} | {fmt([r['auc'] for r in rs])} | {fmt([r['logloss'] for r in rs])} | {len(rs)} | "
            f"{np.median([r['epochs'] for r in rs]):.0f} | {np.median([r['seconds'] for r in rs]):.0f} |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=out.parent, delete=False, suffix=".tmp") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(fh.name, out)
    return out


def main() -> None:
    root = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(root.parent / "shared" / "data"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--embed-dim", type=int, default=8)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument(
        "--buckets", type=int, default=0, help="also feed each numeric column as K quantile buckets"
    )
    p.add_argument("--models", nargs="*", default=None)
    p.add_argument("--out", default=str(root / "benchmarks" / "results" / "ranking_adult.md"))
    args = p.parse_args()
    torch.set_num_threads(1)
    base = Path(args.data_dir) / "multitask" / "uci_adult"
    full, test = read(base / "adult.data"), read(base / "adult.test")
    mlp = {"dims": [64, 32], "dropout": 0.1}
    zoo = builders(mlp)
    names = args.models or list(zoo)
    rows: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for seed in args.seeds:
        order = np.random.default_rng(seed).permutation(len(full))
        n_val = len(full) // 10
        train, val = full.iloc[order[n_val:]], full.iloc[order[:n_val]]
        sparse, dense, sets = encode(train, [train, val, test], args.embed_dim, args.buckets)
        for name in names:
            seed_all(seed)
            model = zoo[name](sparse, dense)
            r = train_eval(
                model, *sets, seed=seed, lr=args.lr, epochs=args.epochs, batch_size=args.batch_size
            )
            rows[name].append(r)
            print(f"seed {seed} {name:10s} auc {r['auc']:.4f} logloss {r['logloss']:.4f} "
                  f"epochs {r['epochs']:.0f} {r['seconds']:.0f}s", flush=True)  # fmt: skip
            out = write_table(args, names, rows, len(full), len(test), mlp)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
