"""Fit + transform speed of ``FeaturePipeline`` on a Criteo-like table.

A synthetic 1,000,000-row table with 26 categorical columns (hex-string ids, Zipf-like, up to
10,000 distinct values each, 1% missing filled by ``fill_value``) and 13 numeric columns (5%
missing, log1p + standard scaling), generated up front (not timed). Timed: ``fit`` on the table,
``transform`` of the same table, repeated; the median of the repeats is reported. Single thread.

    python benchmarks/preprocess_speed.py --rows 1000000 --repeats 3
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recforge.preprocess import Categorical, FeaturePipeline, Numeric

N_SPARSE, N_DENSE = 26, 13


def make_table(rows: int, vocab: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols: dict[str, object] = {}
    for i in range(N_DENSE):
        x = rng.lognormal(1.0, 1.0, rows)
        x[rng.random(rows) < 0.05] = np.nan
        cols[f"I{i + 1}"] = x
    hexes = np.array([f"{h:08x}" for h in rng.integers(0, 2**32, vocab)], dtype=object)
    for i in range(N_SPARSE):
        ids = np.minimum(rng.zipf(1.2, rows) - 1, vocab - 1)
        v = hexes[(ids + 97 * i) % vocab].copy()
        v[rng.random(rows) < 0.01] = None
        cols[f"C{i + 1}"] = v
    cols["label"] = (rng.random(rows) < 0.25).astype(np.int64)
    return pd.DataFrame(cols)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--vocab", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--data-dir",
        default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data"),
        help="unused (the table is synthetic); kept for a uniform benchmark interface",
    )
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "preprocess.md"))
    args = p.parse_args()
    torch.set_num_threads(1)

    t0 = time.perf_counter()
    df = make_table(args.rows, args.vocab, args.seed)
    gen_s = time.perf_counter() - t0
    specs = [Numeric(f"I{i + 1}", fill="mean", normalize="standard", log1p=True) for i in range(N_DENSE)]
    specs += [Categorical(f"C{i + 1}", embed_dim=16, fill_value="<missing>") for i in range(N_SPARSE)]

    fit_s, tr_s = [], []
    for _ in range(args.repeats):
        pipe = FeaturePipeline(specs, label="label")
        t0 = time.perf_counter()
        pipe.fit(df)
        t1 = time.perf_counter()
        out = pipe.transform(df)
        t2 = time.perf_counter()
        fit_s.append(t1 - t0)
        tr_s.append(t2 - t1)
    assert len(out) == N_SPARSE + N_DENSE + 1 and all(len(v) == args.rows for v in out.values())
    vocab_sizes = [f.vocab_size for f in pipe.features if hasattr(f, "vocab_size")]
    fit_m, tr_m = float(np.median(fit_s)), float(np.median(tr_s))
    both = [a + b for a, b in zip(fit_s, tr_s)]
    cmd = "PYTHONPATH=src python " + " ".join(["benchmarks/preprocess_speed.py", *sys.argv[1:]])
    lines = [
        "# FeaturePipeline speed",
        "",
        f"Command: `{cmd}`",
        "",
        f"Table: {args.rows:,} rows, {N_SPARSE} categorical (hex strings, <= {args.vocab:,} values, 1% missing "
        f"filled) + {N_DENSE} numeric (5% missing, mean fill, log1p, standard) + label; generated in {gen_s:.1f} s "
        f"(not timed). Vocabulary sizes {min(vocab_sizes)}..{max(vocab_sizes)}. Median of {args.repeats} repeats, "
        f"1 thread, {platform.processor() or platform.machine()}, pandas {pd.__version__}, numpy {np.__version__}.",
        "",
        "| step | median s | rows/s | all repeats (s) |",
        "|---|---|---|---|",
        f"| fit | {fit_m:.2f} | {args.rows / fit_m:,.0f} | {', '.join(f'{x:.2f}' for x in fit_s)} |",
        f"| transform | {tr_m:.2f} | {args.rows / tr_m:,.0f} | {', '.join(f'{x:.2f}' for x in tr_s)} |",
        f"| fit + transform | {float(np.median(both)):.2f} | {args.rows / float(np.median(both)):,.0f} | "
        f"{', '.join(f'{x:.2f}' for x in both)} |",
        "",
    ]
    text = "\n".join(lines)
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(out_path)
    print(text)


if __name__ == "__main__":
    main()
