"""Vector-index benchmark: build time, queries/s and recall@100 against exact search.

Clustered synthetic vectors (``--clusters`` Gaussian centres plus noise, inner product), queried by
held-out points from the same distribution. Backends: exact torch (``ExactIndex``), faiss Flat,
IVF-Flat and HNSW-Flat. Search time is the median of ``--repeats`` runs over all queries in one
batch. Writes ``benchmarks/results/vector_index.md``.

    PYTHONPATH=src python benchmarks/vector_index.py --n 1000000 --dim 64 --threads 1
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from recforge.retrieval import ExactIndex, FaissIndex, VectorIndex


def clustered(n: int, dim: int, clusters: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if clusters == 0:  # plain Gaussian: the hard case for approximate indexes
        return torch.randn(n, dim, generator=g)
    centres = torch.randn(clusters, dim, generator=g)
    which = torch.randint(0, clusters, (n,), generator=g)
    return centres[which] + 0.5 * torch.randn(n, dim, generator=g)


def recall_at(approx: torch.Tensor, exact: torch.Tensor) -> float:
    hits = 0
    for a, e in zip(approx.tolist(), exact.tolist()):
        hits += len(set(a) & set(e))
    return hits / exact.numel()


def run(
    name: str,
    index: VectorIndex,
    x: torch.Tensor,
    q: torch.Tensor,
    k: int,
    repeats: int,
    exact_ids: torch.Tensor | None,
) -> dict[str, object]:
    t0 = time.perf_counter()
    index.build(x)
    build = time.perf_counter() - t0
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = index.search(q, k)
        times.append(time.perf_counter() - t0)
    assert result is not None
    med = statistics.median(times)
    rec = 1.0 if exact_ids is None else recall_at(result.ids, exact_ids)
    print(f"{name}: build {build:.1f}s  {len(q) / med:.0f} q/s  recall@{k} {rec:.4f}", flush=True)
    return {"name": name, "build_s": build, "qps": len(q) / med, "recall": rec, "ids": result.ids}


def write_table(args: argparse.Namespace, rows: list[dict[str, object]], done: bool) -> None:
    cmd = "PYTHONPATH=src python benchmarks/vector_index.py " + " ".join(sys.argv[1:])
    lines = [
        "# Vector index benchmark",
        "",
        f"Command: `{cmd}`",
        "",
        (
            f"{args.n:,} x {args.dim}-d clustered vectors ({args.clusters} centres, noise 0.5)"
            if args.clusters
            else f"{args.n:,} x {args.dim}-d standard Gaussian vectors"
        )
        + f", {args.queries:,} held-out queries from the same distribution, inner "
        f"product, top-{args.k}; {args.threads} thread(s); search time = median of {args.repeats} runs over all "
        f"queries in one batch. Machine: {platform.machine()}, {os.cpu_count()} CPUs shared with other jobs "
        "(absolute speeds are noisy; compare rows).",
        "",
        f"| index | build (s) | queries/s | recall@{args.k} vs exact |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['name']} | {r['build_s']:.1f} | {r['qps']:,.0f} | {r['recall']:.4f} |")
    if not done:
        lines += ["", "(incomplete: the run stopped before every index was measured)"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, args.out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--clusters", type=int, default=1000, help="0 = plain Gaussian vectors")
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--nlist", type=int, default=1024)
    p.add_argument("--nprobe", type=int, nargs="+", default=[8, 32])
    p.add_argument("--hnsw-m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=40)
    p.add_argument("--ef-search", type=int, nargs="+", default=[128, 256])
    p.add_argument(
        "--indexes",
        nargs="+",
        default=["exact", "flat", "ivf", "hnsw"],
        choices=["exact", "flat", "ivf", "hnsw"],
        help="backends to measure (exact search always runs once as the recall reference)",
    )
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "vector_index.md")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = clustered(args.n + args.queries, args.dim, args.clusters, seed=0)
    x, q = data[: args.n].contiguous(), data[args.n :].contiguous()
    exact = run(
        "exact torch (ExactIndex)",
        ExactIndex(),
        x,
        q,
        args.k,
        args.repeats if "exact" in args.indexes else 1,
        None,
    )
    exact_ids = exact["ids"]
    rows = [exact] if "exact" in args.indexes else []
    write_table(args, rows, done=False)
    if "flat" in args.indexes:
        rows.append(
            run("faiss Flat", FaissIndex("flat", threads=args.threads), x, q, args.k, args.repeats, exact_ids)
        )
    for nprobe in args.nprobe if "ivf" in args.indexes else []:
        if nprobe == args.nprobe[0]:
            ivf = FaissIndex("ivf", nlist=args.nlist, threads=args.threads)
            t0 = time.perf_counter()
            ivf.build(x)
            ivf_build = time.perf_counter() - t0
        ivf.nprobe = nprobe
        times = []
        for _ in range(args.repeats):
            t1 = time.perf_counter()
            res = ivf.search(q, args.k)
            times.append(time.perf_counter() - t1)
        med = statistics.median(times)
        rows.append(
            {
                "name": f"faiss IVF-Flat nlist={ivf._index.nlist} nprobe={nprobe}",
                "build_s": ivf_build,
                "qps": len(q) / med,
                "recall": recall_at(res.ids, exact_ids),
            }
        )
        print(rows[-1]["name"], rows[-1]["qps"], rows[-1]["recall"], flush=True)
        write_table(args, rows, done=False)
    for ef in args.ef_search if "hnsw" in args.indexes else []:
        if ef == args.ef_search[0]:
            hnsw = FaissIndex(
                "hnsw", hnsw_m=args.hnsw_m, ef_construction=args.ef_construction, threads=args.threads
            )
            t0 = time.perf_counter()
            hnsw.build(x)
            hnsw_build = time.perf_counter() - t0
        hnsw.ef_search = ef
        times = []
        for _ in range(args.repeats):
            t1 = time.perf_counter()
            res = hnsw.search(q, args.k)
            times.append(time.perf_counter() - t1)
        med = statistics.median(times)
        rows.append(
            {
                "name": f"faiss HNSW-Flat M={args.hnsw_m} efC={args.ef_construction} efSearch={ef}",
                "build_s": hnsw_build,
                "qps": len(q) / med,
                "recall": recall_at(res.ids, exact_ids),
            }
        )
        print(rows[-1]["name"], rows[-1]["qps"], rows[-1]["recall"], flush=True)
        write_table(args, rows, done=False)
    write_table(args, rows, done=True)
    print(args.out.read_text())


if __name__ == "__main__":
    main()
