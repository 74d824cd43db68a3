"""Planted target-history signal: gap of DNN / DIN / DIEN / BST to the Bayes-optimal AUC.

Labels come from ``recforge.datasets.synthetic_behavior.make_behavior_ctr``: the click logit rises
when the target's category is among the last 3 behaviours and when it is anywhere in the history,
so the oracle AUC (true probabilities) is known exactly on the test split.

    PYTHONPATH=src python benchmarks/seq_ctr_planted.py --seeds 0 1 2 --epochs 3 --n-train 40000 --n-test 10000 --lr 5e-3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _seq_ctr_common import MODEL_NAMES, mean_std, run_one

from recforge.data.behavior import BehaviorFeatures
from recforge.datasets.synthetic_behavior import make_behavior_ctr
from recforge.features import Feature, RandomNormal, SequenceFeature, SparseFeature
from recforge.metrics import auc_score

ROOT = Path(__file__).resolve().parent.parent


def specs_for(
    num_items: int, num_categories: int, dim: int, max_len: int, init_std: float
) -> BehaviorFeatures:
    init = RandomNormal(0.0, init_std)
    targets: list[Feature] = [
        SparseFeature("item_id", num_items, dim, initializer=init),
        SparseFeature("cate_id", num_categories, dim, initializer=init),
    ]

    def seq(prefix: str, pooling: str) -> list[Feature]:
        return [
            SequenceFeature(f"{prefix}{t.name}", t.vocab_size, dim, pooling=pooling, shared_with=t.name,  # type: ignore[arg-type,union-attr]
                            max_len=max_len)
            for t in targets
        ]  # fmt: skip

    return BehaviorFeatures(
        features=list(targets),
        history_features=seq("hist_", "concat"),
        target_features=targets,
        neg_history_features=seq("neg_hist_", "concat"),
        mean_history_features=seq("hist_", "mean"),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODEL_NAMES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--n-train", type=int, default=60_000)
    p.add_argument("--n-test", type=int, default=20_000)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--embed-dim", type=int, default=16)
    p.add_argument("--init-std", type=float, default=1e-4, help="embedding init N(0, std)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "seq_ctr_planted.md")
    args = p.parse_args()
    torch.set_num_threads(1)
    gen = {"num_items": 200, "num_categories": 20, "max_len": 10}
    results: dict[str, list[dict[str, float]]] = {}
    oracles = []
    for seed in args.seeds:
        # One draw, split: the generator's item->category map is shared by all splits.
        n_val = args.n_test // 2
        data = make_behavior_ctr(args.n_train + n_val + args.n_test, seed=seed, **gen)
        cols = data.columns
        cut = np.cumsum([args.n_train, n_val])
        train, valid, test = (
            {k: v[s] for k, v in cols.items()}
            for s in (slice(0, cut[0]), slice(cut[0], cut[1]), slice(cut[1], None))
        )
        oracle = auc_score(test["label"], data.prob[cut[1] :])
        oracles.append(oracle)
        specs = specs_for(data.num_items, data.num_categories, args.embed_dim, data.max_len, args.init_std)
        for name in args.models:
            m = run_one(name, specs, train, valid, test, seed=seed, epochs=args.epochs,
                        batch_size=args.batch_size, lr=args.lr, group=None)  # fmt: skip
            m["gap"] = oracle - m["auc"]
            results.setdefault(name, []).append(m)
            print(
                seed,
                name,
                f"oracle={oracle:.4f}",
                json.dumps({k: round(v, 4) for k, v in m.items()}),
                flush=True,
            )

    cmd = "PYTHONPATH=src python benchmarks/seq_ctr_planted.py " + " ".join(sys.argv[1:])
    lines = [
        "# Behaviour-sequence CTR: planted target-history signal",
        "",
        f"Command: `{cmd}`",
        "",
        f"`make_behavior_ctr` ({gen}), {args.n_train} train / {args.n_test // 2} validation / "
        f"{args.n_test} test rows per seed; embed dim {args.embed_dim}, init N(0, {args.init_std}), Adam lr {args.lr}, batch "
        f"{args.batch_size}, {args.epochs} epochs (best validation epoch kept), 1 thread. "
        f"Oracle test AUC (true probabilities): {mean_std(oracles)}.",
        "",
        f"Mean ± std over seeds {args.seeds}:",
        "",
        "| model | test AUC | gap to oracle | epoch wall time (s) |",
        "|---|---|---|---|",
    ]
    for name, runs in results.items():
        lines.append(
            f"| {name} | {mean_std([r['auc'] for r in runs])} | {mean_std([r['gap'] for r in runs])} | "
            f"{mean_std([r['epoch_s'] for r in runs])} |"
        )
    lines += [
        "",
        "DNN = WideDeep over target item/category + mean-pooled history (no target-history interaction).",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    os.replace(tmp, args.out)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
