"""Users per second of ``recommend`` on trained run directories, at K = 10 and 50, on 1 and 2 threads.

The production path, as ``recforge serve`` runs it: ``recforge.load(RUN).recommend(rows, k)`` on
known users given by id alone (the run's history of each user is used and excluded from the list).
For a TIGER run this is its beam search (beam = K) constrained to valid semantic IDs; for a
retrieval run (SASRec, ...) the user tower plus an exact search over every item. The users are the
first ``--users`` users of the run's interaction file (``data.path``, format ``item_lists``: one
line per user, the user id first), in batches of ``--batch`` users; one warm-up batch first.

    PYTHONPATH=src python benchmarks/run_decode_speed.py RUN [RUN ...] --users 1024
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import torch
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

import recforge  # noqa: E402
from recforge.precision import cpu_info  # noqa: E402


def first_users(run: Path, n: int) -> list[int]:
    """The first ``n`` user ids of an ``item_lists`` run's data file."""
    cfg = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    data = cfg["data"]
    if data.get("format") != "item_lists":
        raise SystemExit(f"{run}: data.format {data.get('format')!r}; this benchmark reads item_lists runs")
    users = []
    with open(data["path"], encoding="utf-8") as f:
        for line in f:
            if line.strip():
                users.append(int(line.split()[0]))
            if len(users) == n:
                break
    return users


def measure(run: Path, users: list[int], ks: list[int], threads: list[int], batch: int) -> list[dict]:
    bundle = recforge.load(run)
    rows = [{"user_id": u} for u in users]
    bundle.recommend(rows[:batch], k=max(ks))  # warm-up (and a check that these users are known)
    out = []
    for t in threads:
        torch.set_num_threads(t)
        for k in ks:
            load = os.getloadavg()[0]
            start = time.perf_counter()
            for a in range(0, len(rows), batch):
                bundle.recommend(rows[a : a + batch], k=k)
            seconds = time.perf_counter() - start
            out.append({"run": run.name, "model": bundle.retrieval.model.__class__.__name__, "k": k,
                        "threads": t, "users_per_s": len(rows) / seconds, "load": load})  # fmt: skip
            print(out[-1], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--users", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--ks", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", type=Path, default=HERE / "results" / "decode_speed.md")
    args = ap.parse_args()
    rows = []
    for run in args.runs:
        rows += measure(run, first_users(run, args.users), args.ks, args.threads, args.batch)
    lines = [
        "# recommend() throughput of trained runs: users per second",
        "",
        f"Command: `python benchmarks/{Path(__file__).name} {shlex.join(sys.argv[1:])}`",
        "",
        f"Machine: {cpu_info().describe()}. {args.users} known users by id, {args.batch} per call, "
        "their history excluded; wall time of the calls after one warm-up call.",
        "",
        "| run | model | K | threads | users/s | load |",
        "|---|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['run']} | {r['model']} | {r['k']} | {r['threads']} | {r['users_per_s']:,.0f} | {r['load']:.1f} |"
        for r in rows
    ]
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
