"""Full-ranking evaluator footprint: peak memory and time of ``full_ranking_metrics`` on random
vectors, to show that memory is bounded by the chunk sizes and not by users x items.

    PYTHONPATH=src python benchmarks/ranking_eval_memory.py --items 50000 --users 4000 8000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from recforge.precision import cpu_info


def one(items: int, users: int, dim: int, targets: int, user_chunk: int, item_chunk: int) -> dict[str, float]:
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    u = torch.randn(users, dim, generator=g)
    it = torch.randn(items, dim, generator=g)
    rows = torch.arange(users).repeat_interleave(targets)
    gt = torch.randint(1, items, (users * targets,), generator=g)
    seen_rows = torch.arange(users).repeat_interleave(20)
    seen = torch.randint(1, items, (users * 20,), generator=g)
    from recforge.metrics import full_ranking_metrics

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    m = full_ranking_metrics(
        u,
        it,
        (rows, gt),
        ks=(10, 20, 50),
        exclude=(seen_rows, seen),
        user_chunk=user_chunk,
        item_chunk=item_chunk,
    )
    sec = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "items": items,
        "users": users,
        "seconds": sec,
        "peak_rss_mb": peak,
        "rss_before_mb": base,
        "recall@20": m["recall@20"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=50_000)
    p.add_argument("--users", type=int, nargs="+", default=[4000, 8000])
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--targets", type=int, default=5)
    p.add_argument("--user-chunk", type=int, default=1024)
    p.add_argument("--item-chunk", type=int, default=16_384)
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ranking_eval_memory.md")
    args = p.parse_args()
    if args.one:
        print(
            json.dumps(
                one(args.items, args.users[0], args.dim, args.targets, args.user_chunk, args.item_chunk)
            )
        )
        return
    rows = []
    for n in args.users:  # a fresh process per size, so peak RSS is per run
        cmd = [
            sys.executable,
            __file__,
            "--one",
            "--items",
            str(args.items),
            "--users",
            str(n),
            "--dim",
            str(args.dim),
            "--targets",
            str(args.targets),
            "--user-chunk",
            str(args.user_chunk),
            "--item-chunk",
            str(args.item_chunk),
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    lines = [
        "# Full-ranking evaluator memory",
        "",
        "Command: `PYTHONPATH=src python benchmarks/ranking_eval_memory.py " + " ".join(sys.argv[1:]) + "`",
        "",
        f"Random {args.dim}-d vectors, {args.targets} targets and 20 excluded items per user, ks=(10, 20, 50), "
        f"user_chunk={args.user_chunk}, item_chunk={args.item_chunk}, 1 thread, one fresh process per row "
        "(peak RSS includes the Python/torch runtime and the input vectors). "
        f"Machine: {cpu_info().describe()}, shared: times are noisy.",
        "",
        "| items | users | seconds | peak RSS (MB) | RSS before evaluation (MB) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['items']:,} | {r['users']:,} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} | {r['rss_before_mb']:.0f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, args.out)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
