"""``throughput_deepfm.py`` of this tree against the same script of an earlier commit, interleaved
(old, new, old, new, ...), recforge runs only: is the throughput unchanged or faster? Writes
``benchmarks/results/throughput_vs_commit.md``.

    python benchmarks/throughput_vs_commit.py 50c3069 --rows 300000 --rounds 3

The earlier tree is exported with ``git archive`` into a temporary folder; each script runs its own
``src`` (it puts it on ``PYTHONPATH`` for its workers). Rows are matched by configuration: the
earlier ``recforge`` run (float32; bf16 autocast came later) against this tree's ``recforge-fp32``,
and this tree's ``recforge`` (bf16 where the CPU has it) beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

from recforge.precision import cpu_info

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KEYS = ("train_samples_per_s", "train_samples_per_cpu_s", "infer_samples_per_s", "peak_rss_mb", "auc")


def _run(tree: Path, args: argparse.Namespace, out: Path) -> dict[str, dict]:
    cmd = [sys.executable, str(tree / "benchmarks" / "throughput_deepfm.py"), "--skip-peers", "--skip-dense",
           "--threads", "1", "--repeats", "1", "--rows", str(args.rows), "--cache-dir", str(args.cache_dir),
           "--out", str(out)]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=tree, env=dict(os.environ, PYTHONPATH=str(tree / "src")))
    raw = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    records = raw["records"] if isinstance(raw, dict) and "records" in raw else raw
    return {r["run"]: r for r in records}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("commit", help="the earlier commit")
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repo", type=Path, default=ROOT, help="the git checkout holding the commit")
    ap.add_argument("--cache-dir", type=Path, default=HERE / ".cache")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "throughput_vs_commit.md")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="recforge_old_") as tmp:
        old = Path(tmp)
        archive = subprocess.run(
            ["git", "archive", args.commit], cwd=args.repo, check=True, capture_output=True
        )
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
        runs: dict[str, list[dict]] = {}
        for i in range(args.rounds):
            for label, tree in (("old", old), ("new", ROOT)):
                got = _run(tree, args, Path(tmp) / f"{label}{i}.md")
                for name, rec in got.items():
                    runs.setdefault(f"{label}:{name}", []).append(rec)
    lines = [
        "# DeepFM throughput: this tree against an earlier commit",
        "",
        f"Command: `python benchmarks/throughput_vs_commit.py {args.commit} --rows {args.rows} --rounds {args.rounds}`",
        "",
        f"`benchmarks/throughput_deepfm.py --skip-peers --skip-dense --threads 1 --repeats 1 --rows {args.rows}` "
        f"of commit `{args.commit}` (old) and of this tree (new), run alternately {args.rounds} times; medians. "
        f"Machine: {cpu_info().describe()}; 1-minute load average at the end: {os.getloadavg()[0]:.1f} (shared: per-CPU-second "
        "figures are the steadier ones).",
        "",
        "| run | n | train samples/s | train samples/CPU-s | inference samples/s | peak RSS MB | test AUC |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, recs in runs.items():
        vals = [median(float(r[k]) for r in recs) if all(k in r for r in recs) else None for k in KEYS]
        cells = [
            "n/a" if v is None else f"{v:.4f}" if k == "auc" else f"{v:,.0f}" for k, v in zip(KEYS, vals)
        ]
        lines.append(f"| {name} | {len(recs)} | " + " | ".join(cells) + " |")
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
