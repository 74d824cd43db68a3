"""Reproduce the recipes in ``configs/``: train each config with ``recforge train`` for the given
seeds and record its test metrics, users evaluated, seconds per epoch, peak RSS and wall time in
``benchmarks/results/configs.md`` (rows also in ``results/configs.json``, keyed by config, data
file and seed, so a run on other data never replaces a committed row).

    python benchmarks/reproduce_configs.py run census_mmoe adult_deepfm --seeds 0 1 2
    python benchmarks/reproduce_configs.py run beauty_sasrec --seeds 0 --set data.path=/data/beauty.txt
    # a run made elsewhere under `/usr/bin/time -v` (its log gives wall time and peak RSS):
    python benchmarks/reproduce_configs.py record runs/gowalla_dssm --config gowalla_dssm --time-log dssm.log
    python benchmarks/reproduce_configs.py table      # rewrite configs.md from configs.json

Each run is its own process (``python -m recforge train``); its peak RSS is that process's
``ru_maxrss`` (``os.wait4``). Seconds per epoch: the median ``seconds`` of the selection run's
metrics log (``selection/metrics.jsonl`` for ``trainer.refit`` recipes, else ``metrics.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from recforge.precision import cpu_info

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
JSON_OUT = RESULTS / "configs.json"
MD_OUT = RESULTS / "configs.md"

# Published figures the recipes are compared with (config -> metric -> (value, source)).
ANCHORS: dict[str, dict[str, tuple[float, str]]] = {
    "gowalla_youtubednn": {"recall@20": (0.1754, "BARS YoutubeDNN")},
    "beauty_hstu": {  # its config's anchor: SASRec with full CE on the same file
        "hr@10": (0.0533, "Klenitskiy & Vasilev 2023, SASRec full CE"),
        "ndcg@10": (0.0327, "Klenitskiy & Vasilev 2023, SASRec full CE"),
    },
    "beauty_tiger": {  # Rajput et al. 2023, Table: Beauty Recall@10 / NDCG@10 (Sentence-T5 content)
        "hr@10": (0.0648, "TIGER paper, Sentence-T5 content"),
        "ndcg@10": (0.0384, "TIGER paper, Sentence-T5 content"),
    },
    "beauty_sasrec": {
        "hr@10": (0.0533, "Klenitskiy & Vasilev 2023, SASRec full CE"),
        "ndcg@10": (0.0327, "Klenitskiy & Vasilev 2023, SASRec full CE"),
    },
}
# Test metrics shown per family (any key ending in "auc" is shown too).
SHOWN = ("recall@20", "ndcg@20", "hr@10", "ndcg@10")


def _config(name: str) -> Path:
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = ROOT / "configs" / f"{name}.yaml"
    if not path.is_file():
        raise SystemExit(f"no config {path}")
    return path


def _data_key(config: Path, overrides: Sequence[str]) -> str:
    """The data set of a run: the file (or bundled name) the config reads, after ``--set``."""
    cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
    data = dict(cfg.get("data") or {})
    for item in overrides:
        key, _, value = item.partition("=")
        if key.startswith("data."):
            data[key[5:]] = value
    source = data.get("path") or data.get("train") or "?"
    return Path(str(source)).name if not str(source).startswith("bundled:") else str(source)


def _median_epoch_seconds(run_dir: Path) -> float | None:
    for log in (run_dir / "selection" / "metrics.jsonl", run_dir / "metrics.jsonl"):
        if log.is_file():
            secs = [json.loads(line)["seconds"] for line in log.read_text().splitlines() if line.strip()]
            secs = [s for s in secs if isinstance(s, (int, float))]
            if secs:
                return float(statistics.median(secs))
    return None


def _row(name: str, seed: int | None, data: str, run_dir: Path, *, wall_s: float, peak_rss_mb: float,
         command: str, variant: str = "") -> dict[str, Any]:  # fmt: skip
    metrics_path = run_dir / "test_metrics.json"
    if not metrics_path.is_file():
        raise SystemExit(f"{run_dir}: no test_metrics.json (the run did not finish)")
    result = json.loads(metrics_path.read_text(encoding="utf-8"))
    test = result.get("test", result)
    shown = {k: float(v) for k, v in test.items() if k in SHOWN or (k.endswith("auc") and k != "mean_auc")}
    selection = result.get("selection") or {}
    return {
        "config": name,
        "variant": variant,
        "seed": seed,
        "data": data,
        "metrics": shown,
        "users_evaluated": test.get("users_evaluated"),
        "users_total": test.get("users_total"),
        "best_epoch": selection.get("best_epoch"),
        "s_per_epoch": _median_epoch_seconds(run_dir),
        "peak_rss_mb": round(peak_rss_mb),
        "wall_s": round(wall_s, 1),
        "command": command,
        "measured": time.strftime("%Y-%m-%d"),
    }


def _load() -> list[dict[str, Any]]:
    return json.loads(JSON_OUT.read_text(encoding="utf-8")) if JSON_OUT.is_file() else []


def _save(rows: list[dict[str, Any]]) -> None:
    RESULTS.mkdir(exist_ok=True)
    tmp = JSON_OUT.with_name(JSON_OUT.name + ".tmp")
    tmp.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, JSON_OUT)


def _key(r: dict[str, Any]) -> tuple[str, str, str, int]:
    return (r["config"], r.get("variant", ""), r["data"], r["seed"] if r["seed"] is not None else -1)


def _name(r: dict[str, Any]) -> str:
    """The config, and the variant its ``--set`` overrides made (``--variant``), if any."""
    return f"{r['config']} ({r['variant']})" if r.get("variant") else r["config"]


def _upsert(row: dict[str, Any]) -> None:
    rows = [r for r in _load() if _key(r) != _key(row)] + [row]
    _save(sorted(rows, key=_key))
    write_table()


def _fmt(x: float | None, spec: str = ".4f") -> str:
    return "" if x is None else format(x, spec)


def write_table() -> None:
    rows = _load()
    lines = [
        "# configs/: reproduction of each recipe",
        "",
        "Written by `python benchmarks/reproduce_configs.py` (each row names its command). Protocol: each "
        "config's own (see its header comment and docs/configs.md): ranking metrics rank every item for "
        "every user with a held-out item (`users`: evaluated of total, nobody dropped silently); "
        "multi-task and CTR rows are test AUC per task. `s/epoch`: median training epoch of the "
        f"selection run; peak RSS: the training process's `ru_maxrss`; 1 thread on {cpu_info().describe()}, "
        "often shared with other jobs (wall times are upper bounds).",
        "",
        "| config | data | seed | test metrics | users | best epoch | s/epoch | peak RSS MB | wall s |",
        "|---|---|---:|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        users = "" if r["users_total"] is None else f"{r['users_evaluated']:,} of {r['users_total']:,}"
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in r["metrics"].items())
        lines.append(
            f"| {_name(r)} | {r['data']} | {r['seed']} | {metrics} | {users} | {r['best_epoch'] or ''} "
            f"| {_fmt(r['s_per_epoch'], '.1f')} | {r['peak_rss_mb']:,} | {r['wall_s']:,.0f} |"
        )
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((_name(r), r["data"]), []).append(r)
    lines += ["", "Spread over seeds (mean ± sample standard deviation; n = seeds run) and the anchors:", ""]
    lines += ["| config | data | n | metric | mean | std | anchor |", "|---|---|---:|---|---:|---:|---|"]
    for (name, data), group in groups.items():
        config = group[0]["config"]
        for metric in group[0]["metrics"]:
            values = [g["metrics"][metric] for g in group if metric in g["metrics"]]
            std = statistics.stdev(values) if len(values) > 1 else None
            anchor = ANCHORS.get(config, {}).get(metric)
            note = "" if anchor is None else f"{anchor[0]:.4f} ({anchor[1]})"
            lines.append(
                f"| {name} | {data} | {len(values)} | {metric} | {statistics.mean(values):.4f} "
                f"| {_fmt(std)} | {note} |"
            )
    lines += ["", "Commands:", ""]
    lines += [f"- `{_name(r)}` seed {r['seed']}: `{r['command']}`" for r in rows]
    tmp = MD_OUT.with_name(MD_OUT.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, MD_OUT)


def run(args: argparse.Namespace) -> None:
    for name in args.configs:
        config = _config(name)
        for seed in args.seeds:
            run_dir = args.runs / f"{config.stem}_s{seed}"
            sets = [f"seed={seed}", *args.set]
            cmd = [sys.executable, "-m", "recforge", "train", str(config), "--run-dir", str(run_dir)]
            cmd += [a for s in sets for a in ("--set", s)]
            shown = _short("recforge train " + " ".join(shlex.quote(c) for c in cmd[4:]))
            print(f"[{config.stem} seed {seed}] {shown}", flush=True)
            env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            if os.waitstatus_to_exitcode(status) != 0:
                raise SystemExit(f"{config.stem} seed {seed}: recforge train failed ({status})")
            row = _row(config.stem, seed, _data_key(config, sets), run_dir, wall_s=wall,
                       peak_rss_mb=usage.ru_maxrss / 1024, command=shown, variant=args.variant)  # fmt: skip
            _upsert(row)
            print(f"  {row['metrics']}  users {row['users_evaluated']}/{row['users_total']}  "
                  f"{row['s_per_epoch']} s/epoch  {row['peak_rss_mb']} MB  {wall:.0f} s", flush=True)  # fmt: skip


def _time_log(path: Path) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and the command of a ``/usr/bin/time -v`` log."""
    wall, rss_kb, command = None, None, ""
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if line.startswith("Elapsed (wall clock)"):
            parts = [float(p) for p in line.rsplit(" ", 1)[1].split(":")]
            wall = sum(p * 60**i for i, p in enumerate(reversed(parts)))
        elif line.startswith("Maximum resident set size (kbytes):"):
            rss_kb = float(line.rsplit(" ", 1)[1])
        elif line.startswith("Command being timed:"):
            command = line.split(":", 1)[1].strip().strip('"')
    if wall is None or rss_kb is None:
        raise SystemExit(f"{path}: not a /usr/bin/time -v log (no wall time or peak RSS)")
    return wall, rss_kb / 1024, command


def _short(command: str) -> str:
    """``.../python -m recforge train /abs/snapshot/configs/x.yaml ...`` -> ``recforge train configs/x.yaml ...``."""
    command = re.sub(r"^\S*python\S* -m recforge", "recforge", command)
    return re.sub(r"\S*/(configs/\S+\.ya?ml)", r"\1", command) or "?"


def record(args: argparse.Namespace) -> None:
    logs = [_time_log(path) for path in args.time_log]  # a run resumed after an interruption: several
    wall, rss, command = sum(w for w, _, _ in logs), max(r for _, r, _ in logs), logs[0][2]
    config = _config(args.config)
    cfg = yaml.safe_load((args.run_dir / "config.yaml").read_text(encoding="utf-8"))
    seed = args.seed if args.seed is not None else cfg.get("seed")
    source = (cfg.get("data") or {}).get("path") or (cfg.get("data") or {}).get("train")
    row = _row(config.stem, seed, Path(str(source)).name, args.run_dir, wall_s=wall, peak_rss_mb=rss,
               command=_short(command) + (f" (resumed {len(logs) - 1}x with --resume)" if len(logs) > 1 else ""))  # fmt: skip
    _upsert(row)
    print(row)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("run", help="train configs and record them")
    p.add_argument("configs", nargs="+", help="names in configs/ or YAML paths")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to recforge train")
    p.add_argument("--runs", type=Path, default=ROOT / "runs", help="run directories go here")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--variant", default="", help="a name for what --set changed beyond paths (rows are kept per variant)"
    )
    p = sub.add_parser("record", help="record a finished run made under /usr/bin/time -v")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--config", required=True)
    p.add_argument("--time-log", type=Path, nargs="+", required=True, help="one per process of the run")
    p.add_argument("--seed", type=int, default=None)
    sub.add_parser("table", help="rewrite configs.md from configs.json")
    args = ap.parse_args()
    {"run": run, "record": record, "table": lambda a: write_table()}[args.mode](args)


if __name__ == "__main__":
    main()
