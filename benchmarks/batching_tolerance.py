"""How far micro-batched answers are from the same request answered alone (docs/serving.md).

The served model runs once per micro-batch on the rows of every request in it; float32 matrix
products of a different number of rows may round differently (the CPU kernels block and vectorise
by shape), so a request's answer can move in its last bits with the company it is batched with.
This script measures that on the load test's bundle (``serve_load.build_bundle``: a two-tower
retrieval over an exact index, reranked by DeepFM): ``--queries`` random single-user requests are
answered alone and in random micro-batches of 2..``--max-batch`` requests (``Bundle.score_batch``
and ``Bundle.recommend_batch``, what the server's batcher calls), and the largest absolute
difference of each kind of score is reported, with how many top-k lists changed order.

    PYTHONPATH=src python benchmarks/batching_tolerance.py --queries 2000
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--num-items", type=int, default=50_000)
    ap.add_argument("--rerank", type=int, default=100)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "batching_tolerance.md"))
    args = ap.parse_args()

    import torch
    from serve_load import build_bundle, history_strings

    from recforge.bundle import RecommendQuery

    torch.set_num_threads(1)  # as `recforge serve` runs
    bundle = build_bundle(args.num_items, args.rerank, args.seed)
    rng = np.random.default_rng(args.seed + 7)
    n = args.queries
    users = [
        {"user_id": f"user{u}", "hist_item_id": h, "age": float(a)}
        for u, h, a in zip(
            rng.integers(0, 25_000, n), history_strings(rng, args.num_items, n), rng.integers(18, 70, n)
        )
    ]
    items = bundle.items["item_id"].to_numpy()
    rows = [
        dict(u, item_id=str(items[j]), cat=str(bundle.items["cat"].iloc[j]))
        for u, j in zip(users, rng.integers(0, len(items), n))
    ]

    def groups() -> list[list[int]]:
        order = rng.permutation(n)
        out, start = [], 0
        while start < n:
            size = int(rng.integers(2, args.max_batch + 1))
            out.append(order[start : start + size].tolist())
            start += size
        return out

    # /score: one row per request
    alone = np.concatenate([bundle.score([r]) for r in rows])
    score_diff = 0.0
    for g in groups():
        got = bundle.score_batch([[rows[i]] for i in g])
        for i, p in zip(g, got):
            score_diff = max(score_diff, float(np.abs(p - alone[i]).max()))

    def recommend_diffs(rerank: bool) -> tuple[float, int, int]:
        single = [bundle.recommend([u], args.k, rerank=rerank)[0] for u in users]
        worst, reordered, changed_sets = 0.0, 0, 0
        for g in groups():
            got = bundle.recommend_batch([RecommendQuery([users[i]], args.k, rerank=rerank) for i in g])
            for i, recs in zip(g, got):
                a, b = single[i], recs[0]
                if a.items != b.items:
                    reordered += 1
                    changed_sets += set(a.items) != set(b.items)
                common = {it: s for it, s in zip(a.items, a.scores)}
                for it, s in zip(b.items, b.scores):
                    if it in common:
                        worst = max(worst, abs(s - common[it]))
        return worst, reordered, changed_sets

    rerank_diff, rerank_reordered, rerank_sets = recommend_diffs(True)
    retrieval_diff, retrieval_reordered, retrieval_sets = recommend_diffs(False)
    equal = score_diff == 0 and rerank_diff == 0 and retrieval_diff == 0
    lines = [
        "# Micro-batched answers vs the same request alone",
        "",
        f"Command: `PYTHONPATH=src python benchmarks/batching_tolerance.py --queries {n} --max-batch "
        f"{args.max_batch} --num-items {args.num_items} --rerank {args.rerank} --k {args.k}`",
        "",
        f"Bundle: the load test's (`benchmarks/serve_load.py`), {args.num_items:,}-item exact index, "
        f"rerank of {args.rerank} by DeepFM, top-{args.k}; torch {torch.__version__}, 1 thread, "
        f"{os.cpu_count()}-core CPU. {n} single-user requests, each answered alone and inside random "
        f"micro-batches of 2-{args.max_batch} requests (`score_batch` / `recommend_batch`).",
        "",
        "| answer | largest absolute difference | top-k lists reordered | top-k sets changed |",
        "|---|---:|---:|---:|",
        f"| `/score` probability | {score_diff:.3g} | - | - |",
        f"| `/recommend` reranked probability | {rerank_diff:.3g} | {rerank_reordered} of {n} | "
        f"{rerank_sets} of {n} |",
        f"| `/recommend` retrieval score (`rerank: false`) | {retrieval_diff:.3g} | "
        f"{retrieval_reordered} of {n} | {retrieval_sets} of {n} |",
        "",
        "Bit-equal on this run."
        if equal
        else "Not bit-equal: the differences are float32 rounding "
        "(a few units in the last place); items swap places only where two scores lie that close.",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
