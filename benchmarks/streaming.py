"""Streaming Parquet vs the in-memory path: streaming fit, transform, DeepFM training, peak memory.

1. ``write``: N synthetic Criteo-like rows (13 numeric columns with missing values, 26 categorical
   columns of raw 64-bit values, one ``list<int64>`` history column) as Parquet part files.
2. ``fit``: ``FeaturePipeline.fit_stream`` over the training part files (one pass: vocabularies,
   fill + standardise, history padding), saved for the other modes.
3. ``transform``: ``pipeline.transform`` alone on the row groups of one part file (read beforehand).
4. ``stream``: one DeepFM epoch from ``ParquetStream`` over ``--train-rows`` rows (pipeline applied
   per row group, shuffle buffer). ``stream_small``: the same over ``--memory-rows`` rows.
   ``memory``: read ``--memory-rows`` rows, ``pipeline.transform`` once, ``BatchLoader``, one epoch.
   ``scan``: the stream alone (read + transform + shuffle + batch, no model) over all rows.
Each mode runs in its own process, so its peak RSS (``ru_maxrss``) is its own; the results file is
rewritten after every mode.

Usage: PYTHONPATH=src python benchmarks/streaming.py --rows 20000000 --train-rows 20000000 --memory-rows 2000000
Writes benchmarks/results/streaming.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

N_DENSE, N_CAT, DIM = 13, 26, 16
ROW_GROUP = 65_536


def write(out: Path, rows: int, part_rows: int, seed: int = 0) -> None:
    """Part files of ``part_rows`` rows; category cardinalities 10 .. 100k (power-law draws)."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cards = np.geomspace(10, 100_000, N_CAT).astype(np.int64)
    salts = rng.integers(1, 2**62, N_CAT)
    for part, start in enumerate(range(0, rows, part_rows)):
        n = min(part_rows, rows - start)
        cols: dict[str, pa.Array] = {}
        z = np.zeros(n)
        for i in range(N_DENSE):
            x = rng.lognormal(0, 1, n)
            x[rng.random(n) < 0.1] = np.nan
            cols[f"I{i}"] = pa.array(x, from_pandas=True)
        for i in range(N_CAT):
            ids = (rng.random(n) ** 3 * cards[i]).astype(np.int64)
            cols[f"C{i}"] = pa.array(ids * 1_000_003 + salts[i])
            if i < 3:
                z += (ids % 2) - 0.5
        lengths = rng.integers(0, 11, n)
        items = (rng.random(int(lengths.sum())) ** 3 * cards[-1]).astype(np.int64) * 1_000_003 + salts[-1]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        cols["hist"] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(items))
        p = 1 / (1 + np.exp(-(z * 1.5 + np.log(cols["I0"].to_numpy(zero_copy_only=False).clip(0.1, 10)) - 1)))
        cols["label"] = pa.array((np.nan_to_num(rng.random(n)) < np.nan_to_num(p, nan=0.25)).astype(np.int8))
        tmp = out / f".part-{part:05d}.parquet.tmp"
        pq.write_table(pa.table(cols), tmp, row_group_size=ROW_GROUP)
        os.replace(tmp, out / f"part-{part:05d}.parquet")


def specs():
    from recforge.preprocess import Categorical, Numeric, SequenceColumn

    out = [Numeric(f"I{i}", fill="mean", normalize="standard") for i in range(N_DENSE)]
    out += [Categorical(f"C{i}", embed_dim=DIM) for i in range(N_CAT)]
    out.append(SequenceColumn("hist", max_len=10, shared_with=f"C{N_CAT - 1}", pooling="mean"))
    return out


def subset(work: Path, name: str, files: list[Path]) -> Path:
    """A directory of symlinks to ``files`` (the parts a mode reads)."""
    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    for old in d.iterdir():
        old.unlink()
    for f in files:
        os.symlink(f.resolve(), d / f.name)
    return d


def model_for(pipe):
    from recforge.features import SequenceFeature, SparseFeature
    from recforge.models.ranking import DeepFM

    fm = [f for f in pipe.features if isinstance(f, SparseFeature | SequenceFeature)]
    return DeepFM(pipe.features, fm, mlp_params={"dims": [256, 128]}, sparse=True, fused=True)


def logged(batches, path: Path, t0: float, every: int = 100):
    """``batches`` as they are, appending rows done, rows/s and peak RSS to ``path`` every
    ``every`` batches (what a run cut short by its time limit still tells)."""
    rows = 0
    with path.open("w") as log:
        for i, batch in enumerate(batches, 1):
            rows += int(batch["label"].shape[0])
            yield batch
            if i % every == 0:
                seconds = time.perf_counter() - t0
                print(
                    f"{rows} rows {seconds:.0f}s {rows / seconds:.0f} rows/s rss {_rss_gb():.2f} GB "
                    f"load {os.getloadavg()[0]:.1f}",
                    file=log, flush=True,
                )  # fmt: skip


def run_mode(mode: str, args: argparse.Namespace) -> dict[str, float]:
    import torch

    from recforge.data import BatchLoader, ColumnarDataset
    from recforge.data.streaming import ParquetStream
    from recforge.preprocess import FeaturePipeline
    from recforge.trainers import CTRTrainer

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    work = Path(args.work)
    data, run = work / "data", work / "run"
    files = sorted(data.glob("part-*.parquet"))
    train = subset(work, f"train_{mode}", files[: max(1, args.train_rows // args.part_rows)])
    small = files[: max(1, args.memory_rows // args.part_rows)]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    if mode == "fit":
        pipe = FeaturePipeline(specs(), label="label").fit_stream(train)
        seconds = time.perf_counter() - t0
        pipe.save(run)
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in train.iterdir())
        return {
            "rows": rows,
            "seconds": seconds,
            "rows_per_s": rows / seconds,
            "rss_gb": _rss_gb(),
            "load": load,
        }
    pipe = FeaturePipeline.load(run)
    if mode == "transform":
        pf = pq.ParquetFile(files[0])
        groups = [pf.read_row_group(g) for g in range(pf.metadata.num_row_groups)]
        pipe.transform(groups[0])  # builds the vocabulary hash tables once
        t0 = time.perf_counter()
        rows = sum(len(pipe.transform(g)["label"]) for g in groups)
        seconds = time.perf_counter() - t0
        return {
            "rows": rows,
            "seconds": seconds,
            "rows_per_s": rows / seconds,
            "rss_gb": _rss_gb(),
            "load": load,
        }
    if mode == "scan":
        stream = ParquetStream(data, args.batch_size, pipeline=pipe, shuffle=True, shuffle_buffer=args.buffer)
        rows = sum(int(b["label"].shape[0]) for b in stream)
        seconds = time.perf_counter() - t0
        return {
            "rows": rows,
            "seconds": seconds,
            "rows_per_s": rows / seconds,
            "rss_gb": _rss_gb(),
            "load": load,
        }
    model = model_for(pipe)
    trainer = CTRTrainer(
        model, optimizer_params={"lr": 1e-3}, sparse_optimizer_fn="rowwise_adagrad", n_epoch=1,
        model_path=work / f"model_{mode}", progress=False, plot=False,
    )  # fmt: skip
    load_s = 0.0
    if mode in ("stream", "stream_small"):
        source = train if mode == "stream" else subset(work, "train_small", small)
        loader = ParquetStream(
            source, args.batch_size, pipeline=pipe, shuffle=True, shuffle_buffer=args.buffer
        )
        rows = loader.num_rows
    else:
        table = pa.concat_tables([pq.read_table(f) for f in small])
        ds = ColumnarDataset.from_pipeline(pipe, table)
        del table
        loader = BatchLoader(ds, args.batch_size, shuffle=True)
        rows = len(ds)
        load_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    loss = trainer.train_one_epoch(logged(loader, work / f"progress_{mode}.log", t1))
    train_s = time.perf_counter() - t1
    return {
        "rows": rows, "load_seconds": load_s, "train_seconds": train_s, "samples_per_s": rows / train_s,
        "end_to_end_samples_per_s": rows / (time.perf_counter() - t0), "loss": loss, "rss_gb": _rss_gb(),
        "load": load, "load_after": os.getloadavg()[0],
    }  # fmt: skip


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def report(args: argparse.Namespace, results: dict[str, dict[str, float]], size_gb: float) -> str:
    gb = lambda r: f"{r['rss_gb']:.2f}"  # noqa: E731
    lines = [
        "# Streaming Parquet vs in-memory (DeepFM)",
        "",
        f"Command: `PYTHONPATH=src python benchmarks/streaming.py {' '.join(sys.argv[1:])}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs, {args.threads} torch "
        "thread(s); each mode in its own process (peak RSS = its `ru_maxrss`); load = 1-minute load "
        "average when the mode started.",
        f"Data: {args.rows:,} synthetic Criteo-like rows ({size_gb:.2f} GB of Parquet, {args.part_rows:,}-row "
        f"part files, row groups of {ROW_GROUP:,}): 13 numeric columns (10% missing), 26 categorical columns "
        "of raw 64-bit values (cardinality 10..100k), one list<int64> history (0..10 items). DeepFM (paper "
        f"form, embed 16, MLP [256, 128], sparse embeddings + row-wise Adagrad), batch {args.batch_size}, "
        f"shuffle buffer {args.buffer:,} rows.",
        "",
        "| mode | rows | what is timed | rows/s | peak RSS (GB) | load |",
        "|---|---|---|---|---|---|",
    ]
    rows_per_s = {  # mode -> (what is timed, the figure's key)
        "fit": (
            "FeaturePipeline.fit_stream: one pass over the training Parquet files (read + fit)",
            "rows_per_s",
        ),
        "transform": ("pipeline.transform of in-memory row groups (no read)", "rows_per_s"),
        "scan": ("ParquetStream, no model: read + transform + shuffle + batch", "rows_per_s"),
        "stream": ("DeepFM epoch from ParquetStream (loading inside)", "samples_per_s"),
        "stream_small": ("DeepFM epoch from ParquetStream (loading inside)", "samples_per_s"),
        "memory": ("DeepFM epoch from in-memory BatchLoader", "samples_per_s"),
    }
    for mode, (what, key) in rows_per_s.items():
        if mode in results:
            r = results[mode]
            lines.append(f"| {mode} | {r['rows']:,} | {what} | {r[key]:,.0f} | {gb(r)} | {r['load']:.1f} |")
            if mode == "memory":
                lines.append(
                    f"| memory, incl. load | {r['rows']:,} | read all + transform ({r['load_seconds']:.0f}s) + epoch "
                    f"| {r['end_to_end_samples_per_s']:,.0f} | {gb(r)} | {r['load']:.1f} |"
                )
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", default=str(ROOT / "benchmarks" / ".cache" / "streaming"))
    p.add_argument("--rows", type=int, default=20_000_000, help="rows written and scanned")
    p.add_argument(
        "--train-rows", type=int, default=20_000_000, help="rows fit on and streamed (whole parts)"
    )
    p.add_argument("--memory-rows", type=int, default=2_000_000, help="rows of the in-memory comparison")
    p.add_argument("--part-rows", type=int, default=1_000_000, help="rows per Parquet part file")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--buffer", type=int, default=200_000, help="shuffle buffer rows")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--modes", default="fit,transform,memory,stream,stream_small,scan")
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "streaming.md"))
    args = p.parse_args()
    if args.mode:  # a child process: one mode, JSON on the last line
        print(json.dumps(run_mode(args.mode, args)), flush=True)
        return
    data = Path(args.work) / "data"
    have = (
        sum(pq.ParquetFile(f).metadata.num_rows for f in data.glob("part-*.parquet")) if data.exists() else 0
    )
    if have != args.rows:
        if data.exists():
            for f in data.glob("*"):
                f.unlink()
        stale = Path(args.work) / "run" / "pipeline.json"
        if stale.exists():
            stale.unlink()
        t0 = time.perf_counter()
        write(data, args.rows, args.part_rows)
        print(f"wrote {args.rows:,} rows in {time.perf_counter() - t0:.0f}s", flush=True)
    size_gb = sum(f.stat().st_size for f in data.glob("*.parquet")) / 1024**3
    results: dict[str, dict[str, float]] = {}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for mode in args.modes.split(","):
        cmd = [sys.executable, __file__, *sys.argv[1:], "--mode", mode]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")}
        )
        if proc.returncode:
            raise RuntimeError(f"mode {mode} failed:\n{proc.stderr[-3000:]}")
        results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(mode, results[mode], flush=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(report(args, results, size_gb), encoding="utf-8")
        os.replace(tmp, out)
    print(out.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
