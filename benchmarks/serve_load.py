"""Load test of ``POST /recommend`` (loopback only): latency percentiles and throughput.

A two-stage bundle is served by uvicorn in a child process (one worker, one torch thread,
micro-batching as ``--batch-max-rows`` / ``--batch-wait-ms``): retrieval = a two-tower model
(user id + 20-item history -> 32-d) over a ``--num-items`` exact inner-product index, then DeepFM
reranks the top ``--rerank`` candidates (user id, item id, item category, user age) and the top
``--k`` are returned. Weights are seeded random initialisations: latency does not depend on what
the weights learnt. The client sends ``--requests`` requests (one user each, original string ids,
some users unseen) from ``--concurrency`` concurrent keep-alive connections and reports
p50/p95/p99 latency, requests/s, errors and the CPU time each side spent per request. Writes
``benchmarks/results/serve_load.md``.

``--malformed 0.1`` replaces that share of the requests by hostile ones, cycling through every kind
of ``MALFORMED`` (integer and float overflows, wrong types, missing fields, broken JSON, a body over
the server's limit, ``k`` out of range, ...): each must be answered 4xx on its keep-alive
connection, every valid request 200, with no transport error and no 5xx
(``benchmarks/results/serve_load_malformed.md``).

The client is this process: a minimal asyncio HTTP/1.1 client (request bytes encoded before the
clock starts, one ``write`` per request, the response read by ``Content-Length`` and its JSON
checked), so that on a machine with few cores it leaves the CPU to the server; httpx costs several times
more CPU per request.

    PYTHONPATH=src python benchmarks/serve_load.py --requests 5000 --concurrency 16 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
HIST = 20


def synthetic(num_items: int, num_users: int, rows: int, seed: int):
    import pandas as pd

    rng = np.random.default_rng(seed)
    items = pd.DataFrame(
        {"item_id": [f"item{j}" for j in range(num_items)], "cat": [f"c{j % 100}" for j in range(num_items)]}
    )
    item_idx = rng.integers(0, num_items, rows)
    df = pd.DataFrame(
        {
            "user_id": [f"user{j}" for j in rng.integers(0, num_users, rows)],
            "item_id": items["item_id"].to_numpy()[item_idx],
            "cat": items["cat"].to_numpy()[item_idx],
            "age": rng.integers(18, 70, rows).astype(float),
        }
    )
    return items, df


def history_strings(rng: np.random.Generator, num_items: int, n: int) -> list[str]:
    return [
        "|".join(f"item{j}" for j in rng.integers(0, num_items, rng.integers(0, HIST + 1))) for _ in range(n)
    ]


def build_bundle(num_items: int, rerank: int, seed: int):
    """The served bundle, built in memory (deterministic given the seed)."""
    import torch
    from torch import nn

    from recforge.bundle import Bundle, BundleConfig
    from recforge.layers.embedding import EmbeddingLayer, output_dim
    from recforge.models.matching.base import TwoTowerModel
    from recforge.models.ranking import DeepFM
    from recforge.preprocess import Categorical, FeaturePipeline, Numeric, SequenceColumn
    from recforge.retrieval import ExactIndex
    from recforge.runs import Run

    class TwoTower(TwoTowerModel):
        def __init__(self, user_features, item_features, dim: int = 32) -> None:
            super().__init__()
            self.user_features, self.item_features = list(user_features), list(item_features)
            self.embedding = EmbeddingLayer(self.features)
            self.user_mlp = nn.Sequential(
                nn.Linear(output_dim(self.user_features), 64), nn.ReLU(), nn.Linear(64, dim)
            )
            self.item_mlp = nn.Sequential(
                nn.Linear(output_dim(self.item_features), 64), nn.ReLU(), nn.Linear(64, dim)
            )

        def user_tower(self, batch):
            return self.user_mlp(self.embedding.flatten(batch, self.user_features))  # (B, D)

        def item_tower(self, batch):
            return self.item_mlp(self.embedding.flatten(batch, self.item_features))  # (B, D)

    torch.manual_seed(seed)
    items, df = synthetic(num_items, 20_000, 200_000, seed)
    df["hist_item_id"] = history_strings(np.random.default_rng(seed), num_items, len(df))
    r_pipe = FeaturePipeline(
        [
            Categorical("user_id", embed_dim=16),
            Categorical("item_id", embed_dim=16),
            Categorical("cat", embed_dim=8),
            SequenceColumn("hist_item_id", max_len=HIST, shared_with="item_id", sep="|"),
        ]
    ).fit(df)
    by = {f.name: f for f in r_pipe.features}
    two = TwoTower([by["user_id"], by["hist_item_id"]], [by["item_id"], by["cat"]]).eval()
    enc = r_pipe.transform(items.assign(user_id="x", hist_item_id=""))
    with torch.inference_mode():
        vectors = two.item_tower({k: torch.from_numpy(enc[k]) for k in ("item_id", "cat")})
    index = ExactIndex("ip").build(vectors, torch.from_numpy(enc["item_id"]))
    k_pipe = FeaturePipeline(
        [
            Categorical("user_id", embed_dim=16),
            Categorical("item_id", embed_dim=16),
            Categorical("cat", embed_dim=16),
            Numeric("age", normalize="standard"),
        ]
    ).fit(df)
    deepfm = DeepFM(
        k_pipe.features, [f for f in k_pipe.features if f.name != "age"], mlp_params={"dims": [256, 128]}
    ).eval()
    path = Path("synthetic")
    return Bundle(
        ranker=Run(k_pipe, deepfm, {}, path),
        retriever=Run(r_pipe, two, {}, path),
        index=index,
        items=items,
        config=BundleConfig(rerank=rerank, max_batch=64),
        path=path,
    )


def serve_child(args: argparse.Namespace) -> None:
    import torch
    import uvicorn

    from recforge.serve import Batching, create_app

    torch.set_num_threads(1)
    bundle = build_bundle(args.num_items, args.rerank, args.seed)
    batching = Batching(max_rows=args.batch_max_rows, max_wait_ms=args.batch_wait_ms)
    app = create_app(bundle, batching=batching, max_body_bytes=args.max_body_bytes)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        http=args.http[0],
        loop=STACKS[args.http[0]],
        log_level="warning",
        access_log=False,
    )


def malformed_kinds(max_body_bytes: int) -> dict[str, bytes]:
    """Hostile ``/recommend`` bodies, one per kind, each of which must be answered 4xx."""
    user = {"user_id": "user1", "hist_item_id": "item1|item2", "age": 30.0}

    def body(users: object, **extra: object) -> bytes:
        return json.dumps({"users": users, "k": 10, **extra}).encode()

    return {
        "int beyond int64 (age 2**70)": body([dict(user, age=2**70)]),
        "int beyond int64 in a history": body([dict(user, hist_item_id=["item1", 2**64])]),
        "float beyond float32 after scaling (age 1e300)": body([dict(user, age=1e300)]),
        "Infinity literal": json.dumps({"users": [dict(user, age=float("inf"))], "k": 10}).encode(),
        "wrong type (age 'old')": body([dict(user, age="old")]),
        "wrong type (user_id 7)": body([dict(user, user_id=7)]),
        "missing field (no user_id)": body([{k: v for k, v in user.items() if k != "user_id"}]),
        "k out of range": json.dumps({"users": [user], "k": 100_000}).encode(),
        "users not a list": body("user1"),
        "empty users": body([]),
        "exclude of the wrong length": body([user], exclude=[["item1"], ["item2"]]),
        "broken JSON": b'{"users": [{"user_id": "user1", ',
        "not JSON at all": b"\xff\xfe\x00garbage",
        "deeply nested": b"[" * 100_000,
        f"body over the {max_body_bytes}-byte limit": body([dict(user, pad="x" * max_body_bytes)]),
    }


class Connection:
    """One keep-alive HTTP/1.1 connection that POSTs JSON and reads ``Content-Length`` bodies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)  # asyncio sets TCP_NODELAY
        return cls(reader, writer)

    @staticmethod
    def request(path: str, body: bytes) -> bytes:
        head = (
            f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def send(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise ConnectionError(f"response without content-length: {head[:200]!r}")
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


class Outcome:
    """What one timed run saw: latencies (valid and malformed requests apart), wrong answers,
    transport errors (a request that got no response on its connection) and 5xx responses."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.malformed_latencies: list[float] = []
        self.errors: list[str] = []
        self.transport = 0
        self.server_errors = 0
        self.statuses: dict[int, int] = {}


async def client(port: int, requests: list[bytes], ks: list[int], concurrency: int) -> tuple[Outcome, float]:
    """``ks[i] == 0`` marks a malformed request: it must be answered 4xx."""
    out = Outcome()
    conns = [await Connection.open("127.0.0.1", port) for _ in range(concurrency)]
    todo = iter(range(len(requests)))

    async def worker(slot: int) -> None:
        for i in todo:  # a shared iterator: each request is sent once, by whichever worker is free
            t0 = time.perf_counter()
            try:
                status, body = await conns[slot].send(requests[i])
            except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                out.transport += 1
                out.errors.append(f"transport: {type(e).__name__}: {e}")
                conns[slot].close()
                conns[slot] = await Connection.open("127.0.0.1", port)  # go on with a new one
                continue
            (out.latencies if ks[i] else out.malformed_latencies).append(time.perf_counter() - t0)
            out.statuses[status] = out.statuses.get(status, 0) + 1
            if status >= 500:
                out.server_errors += 1
            if ks[i] == 0:
                if not 400 <= status < 500:
                    out.errors.append(f"malformed request answered HTTP {status}: {body[:200]!r}")
            elif status != 200:
                out.errors.append(f"HTTP {status}: {body[:200]!r}")
            elif len(json.loads(body)["results"][0]["items"]) != ks[i]:
                out.errors.append(f"wrong number of items: {body[:200]!r}")

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in range(len(conns))))
    wall = time.perf_counter() - t0
    for c in conns:
        c.close()
    return out, wall


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


STACKS = {"h11": "asyncio", "httptools": "uvloop"}  # uvicorn's HTTP parser -> its event loop


def start_server(args: argparse.Namespace, http: str) -> tuple[subprocess.Popen, int]:
    """A server child on a free loopback port, once it answers /healthz."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    paths = [str(ROOT / "src"), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    child_args = [
        *("--num-items", str(args.num_items), "--rerank", str(args.rerank), "--seed", str(args.seed)),
        *("--batch-max-rows", str(args.batch_max_rows), "--batch-wait-ms", str(args.batch_wait_ms)),
        *("--max-body-bytes", str(args.max_body_bytes)),
        *("--http", http),
    ]
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve-only", "--port", str(port), *child_args], env=env
    )
    deadline = time.monotonic() + 600
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return child, port
        except httpx.TransportError:
            pass
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            raise SystemExit(f"the server ({http}) did not start")
        time.sleep(0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[16, 1], help="one run per level")
    ap.add_argument("--num-items", type=int, default=50_000)
    ap.add_argument("--rerank", type=int, default=100)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per level (each after its warm-up)")
    ap.add_argument("--batch-max-rows", type=int, default=256, help="server micro-batching (1: off)")
    ap.add_argument("--batch-wait-ms", type=float, default=2.0, help="server micro-batching wait")
    ap.add_argument(
        "--http",
        nargs="+",
        default=["h11"],
        choices=sorted(STACKS),
        help="uvicorn HTTP parser(s), one server each: h11 (plain 'uvicorn', asyncio loop) or "
        "httptools ('uvicorn[standard]': httptools + uvloop, which must be importable)",
    )
    ap.add_argument(
        "--malformed", type=float, default=0.0, help="share of hostile requests (every kind in turn)"
    )
    ap.add_argument(
        "--max-body-bytes", type=int, default=None, help="server body limit (default: recforge's)"
    )
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"), help="unused: synthetic data")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve_load.md"))
    ap.add_argument("--serve-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.max_body_bytes is None:
        from recforge.serve import MAX_BODY_BYTES

        args.max_body_bytes = MAX_BODY_BYTES
    if args.serve_only:
        serve_child(args)
        return
    if not 0 <= args.malformed < 1:
        raise SystemExit("--malformed must lie in [0, 1)")
    if args.malformed and args.out == ap.get_default("out"):
        args.out = str(ROOT / "benchmarks" / "results" / "serve_load_malformed.md")
    import fastapi
    import httpx
    import torch
    import uvicorn

    from recforge.precision import cpu_info

    rng = np.random.default_rng(args.seed + 1)
    n = args.requests + args.warmup
    hist = history_strings(rng, args.num_items, n)
    users = [f"user{j}" for j in rng.integers(0, 25_000, n)]  # ids >= 20,000 were never seen
    ages = rng.integers(18, 70, n).astype(float)
    bodies = [
        json.dumps({"users": [{"user_id": u, "hist_item_id": h, "age": a}], "k": args.k}).encode()
        for u, h, a in zip(users, hist, ages)
    ]
    requests = [Connection.request("/recommend", b) for b in bodies]
    ks = [args.k] * n
    kinds = malformed_kinds(args.max_body_bytes)
    hostile = [Connection.request("/recommend", b) for b in kinds.values()]  # each encoded once
    pick = np.random.default_rng(args.seed + 2).random(n) < args.malformed
    for j, i in enumerate(np.flatnonzero(pick)):
        requests[i], ks[i] = hostile[j % len(hostile)], 0  # every kind in turn
    results = []
    for http in args.http:
        child, port = start_server(args, http)
        url = f"http://127.0.0.1:{port}"
        try:
            meta = httpx.get(f"{url}/metadata").json()
            for conc in [c for c in args.concurrency for _ in range(args.repeats)]:
                asyncio.run(client(port, requests[: args.warmup], ks, conc))
                load_before = os.getloadavg()
                before = httpx.get(f"{url}/metadata").json()["batching"]["recommend"]
                cpu0 = (time.process_time(), cpu_seconds(child.pid))
                outcome, wall = asyncio.run(client(port, requests[args.warmup :], ks[args.warmup :], conc))
                cpu1 = (time.process_time(), cpu_seconds(child.pid))
                answered = len(outcome.latencies) + len(outcome.malformed_latencies)
                cpu = ((cpu1[0] - cpu0[0]) / answered, (cpu1[1] - cpu0[1]) / answered)
                after = httpx.get(f"{url}/metadata").json()["batching"]["recommend"]
                batch = (after["requests"] - before["requests"]) / max(
                    1, after["batches"] - before["batches"]
                )
                results.append((http, conc, outcome, wall, load_before, os.getloadavg(), cpu, batch))
                for e in outcome.errors[:5]:
                    print("error:", e, flush=True)
        finally:
            child.terminate()
            child.wait(30)
    conc_arg = " ".join(str(c) for c in args.concurrency)
    cmd = (
        f"python benchmarks/serve_load.py --requests {args.requests} --concurrency {conc_arg} "
        f"--num-items {args.num_items} --rerank {args.rerank} --k {args.k}"
    )
    if args.repeats != 1:
        cmd += f" --repeats {args.repeats}"
    if (args.batch_max_rows, args.batch_wait_ms) != (256, 2.0):
        cmd += f" --batch-max-rows {args.batch_max_rows} --batch-wait-ms {args.batch_wait_ms:g}"
    if args.malformed:
        cmd += f" --malformed {args.malformed:g}"
    if args.http != ["h11"]:
        cmd = "PYTHONPATH=src:benchmarks/.venvs/uvicorn-standard " + cmd + " --http " + " ".join(args.http)
    else:
        cmd = "PYTHONPATH=src " + cmd
    lines = [
        "# HTTP serving load test: POST /recommend (retrieval + rerank)",
        "",
        f"Command: `{cmd}`"
        + (
            " (`benchmarks/.venvs/uvicorn-standard` holds httptools and uvloop, what "
            "`pip install 'uvicorn[standard]'` adds: `pip install --target benchmarks/.venvs/uvicorn-standard "
            "httptools uvloop`)"
            if args.http != ["h11"]
            else ""
        ),
        "",
        f"Server: uvicorn {uvicorn.__version__}, FastAPI {fastapi.__version__}, 1 worker process, "
        f"torch {torch.__version__} with 1 thread; micro-batching max_rows={args.batch_max_rows}, "
        f"max_wait_ms={args.batch_wait_ms:g} (concurrent requests run as one `Bundle.recommend_batch` "
        f"on one worker thread). {meta['num_items']:,}-item exact index (32-d), rerank of {args.rerank} "
        f"candidates by DeepFM, top-{args.k}, one user per request (random history of 0-20 items, 20% of "
        "users unseen). The `server` column is uvicorn's HTTP parser and event loop: h11 + asyncio "
        "(plain `uvicorn`) or httptools + uvloop (`uvicorn[standard]`).",
        "",
        "Client: this script's own process, a minimal asyncio HTTP/1.1 keep-alive client (one "
        "connection per concurrent request, request bytes encoded before timing, responses read "
        "by Content-Length and their JSON checked for k items), real HTTP over loopback to the "
        f"uvicorn server; {args.warmup} warm-up requests before each timed run, not counted"
        + (f"; {args.repeats} timed runs per level, one row each" if args.repeats > 1 else "")
        + ". Latency is "
        "send-to-last-byte per request; `mean batch` is requests per `recommend_batch` call; CPU is "
        "user + system time of each process divided by the requests. Machine: "
        f"{cpu_info().describe()}, shared with other jobs (load average 1/5/15 min, before -> "
        "after each level).",
        "",
        "| server | requests | concurrency | errors | p50 (ms) | p95 (ms) | p99 (ms) | requests/s | mean batch "
        "| server CPU/request (ms) | client CPU/request (ms) | load average | malformed | transport errors "
        "| 5xx | malformed p50/p99 (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for http, conc, o, wall, lb, la, (client_cpu, server_cpu), mean_batch in results:
        ms = np.asarray(o.latencies) * 1e3
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        bad_ms = np.asarray(o.malformed_latencies) * 1e3
        bad = f"{np.percentile(bad_ms, 50):.1f}/{np.percentile(bad_ms, 99):.1f}" if len(bad_ms) else "-"
        total = len(o.latencies) + len(o.malformed_latencies)
        lines.append(
            f"| {http} + {STACKS[http]} | {total} | {conc} | {len(o.errors)} | {p50:.1f} | {p95:.1f} | "
            f"{p99:.1f} | {total / wall:.1f} | {mean_batch:.1f} | {server_cpu * 1e3:.2f} | "
            f"{client_cpu * 1e3:.2f} | {lb[0]:.1f}/{lb[1]:.1f}/{lb[2]:.1f} -> {la[0]:.1f}/{la[1]:.1f}/{la[2]:.1f} "
            f"| {len(o.malformed_latencies)} | {o.transport} | {o.server_errors} | {bad} |"
        )
    errs = [e for r in results for e in r[2].errors]
    lines += ["", "Errors: " + ("none." if not errs else "; ".join(sorted(set(e[:160] for e in errs))[:5]))]
    if args.malformed:
        statuses: dict[int, int] = {}
        for r in results:
            for code, count in r[2].statuses.items():
                statuses[code] = statuses.get(code, 0) + count
        lines += [
            "",
            f"Malformed requests: {args.malformed:.0%} of the requests (seeded), each answered on its "
            "keep-alive connection and expected 4xx, cycling through these kinds: "
            + "; ".join(kinds)
            + ". `errors` counts wrong answers (a valid request not 200 with k items, a malformed one "
            "not 4xx); `transport errors` requests that got no response on their connection; latency "
            "percentiles are of the valid requests, `malformed p50/p99` of the others. Status codes "
            "seen: " + ", ".join(f"{c}: {n}" for c, n in sorted(statuses.items())) + ".",
        ]
    lines += ["", "Target (issue 8): p99 < 50 ms at concurrency 16 on 2 idle cores."]
    for http, conc, o, _wall, lb, la, _cpu, _batch in results:
        if conc == 16:
            p99 = float(np.percentile(np.asarray(o.latencies) * 1e3, 99))
            verdict = "met" if p99 < 50 and not o.errors else "NOT met"
            lines.append(
                f"{http} + {STACKS[http]}: p99 {p99:.1f} ms at concurrency 16, target {verdict} "
                f"on this run (1-minute load average {lb[0]:.1f} before, {la[0]:.1f} after)."
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
