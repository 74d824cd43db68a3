"""Encoding a serving micro-batch: each request's rows encoded alone (one pipeline call per request)
against the whole micro-batch in one call (``FeaturePipeline.transform_record_groups``, what
``Bundle.score_batch`` does), on the pipeline of ``configs/adult_deepfm.yaml`` fit on the bundled
Adult training split. Writes ``benchmarks/results/serve_encoding.md``.

    python benchmarks/serve_encoding.py [--repeats 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from recforge.config import load_config
from recforge.precision import cpu_info
from recforge.runs.rows import prepare_rows, read_source

HERE = Path(__file__).resolve().parent
SHAPES = [(16, 1), (64, 1), (16, 8), (64, 8)]  # (requests, rows per request)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "serve_encoding.md")
    args = ap.parse_args()
    cfg, _ = load_config(HERE.parent / "configs" / "adult_deepfm.yaml")
    pipe, _ = prepare_rows(cfg)
    records = read_source("bundled:adult/test").drop(columns=["label"]).to_dict("records")
    rows = []
    for n, per in SHAPES:
        groups = [records[i * per : (i + 1) * per] for i in range(n)]
        alone, joint = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            for g in groups:
                pipe.transform_records(g)
            alone.append(time.perf_counter() - t)
            t = time.perf_counter()
            pipe.transform_record_groups(groups)
            joint.append(time.perf_counter() - t)
        a, j = statistics.median(alone) * 1e3, statistics.median(joint) * 1e3
        rows.append(f"| {n} | {per} | {a:.2f} | {j:.2f} | {a / j:.1f}x |")
    lines = [
        "# Serving: one encoding call per micro-batch",
        "",
        "Command: `python benchmarks/serve_encoding.py`",
        "",
        f"- Machine: {cpu_info().describe()}; 1-minute load average {os.getloadavg()[0]:.1f}.",
        f"- Pipeline: configs/adult_deepfm.yaml's {len(pipe.columns)} columns, fit on bundled Adult train; "
        f"rows: bundled Adult test as JSON-like dicts; median of {args.repeats} repeats.",
        "",
        "| requests | rows each | each request alone, ms | one call, ms | speed-up |",
        "|---:|---:|---:|---:|---:|",
        *rows,
    ]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
