"""HSTU training speed: recforge against Torch-RecHub 0.9.0's ``HSTUModel``, same data, same loss.

Amazon Beauty training sequences (leave-one-out, the last ``MAX_LEN`` items of each user, every
position predicting the next item), embedding 64, 2 layers, 2 heads, dropout 0.2, batch 128,
Adam lr 1e-3; loss: cross-entropy over every item at every position (Torch-RecHub's
``HSTUModel`` returns ``(B, L, V)`` logits; recforge's ``SeqTrainer(loss="full")``). No time
features. Each measurement is a fresh process (Torch-RecHub in its own venv), runs alternate, and
``--steps`` training steps are timed in CPU seconds of the process (and wall seconds).

    python benchmarks/hstu_rechub.py --threads 1 2 --steps 30 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT.parent / "shared" / "data" / "sequential" / "bert4rec_amazon_beauty" / "beauty.txt"
DIM, LAYERS, HEADS, MAX_LEN, BATCH, DROPOUT, LR = 64, 2, 2, 50, 128, 0.2, 1e-3
RUNS = {
    "rechub": "Torch-RecHub 0.9.0 HSTUModel (d_model 64, dqk = dv = 32), F.cross_entropy on its logits",
    "recforge-fp32": "recforge HSTU + SeqTrainer(loss='full'), float32, as shipped (the full cross-entropy "
    "streams the items in blocks: linear_full_softmax_loss)",
    "recforge-bf16": "the same with SeqTrainer(precision='bf16')",
}


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def sequences(max_len: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``(history (U, L), next items (U, L), number of item ids)`` of the training part of every
    user (the last two items held out), left-padded with 0."""
    raw = np.loadtxt(DATA, dtype=np.int64)
    users, starts = np.unique(raw[:, 0], return_index=True)
    ends = np.append(starts[1:], len(raw))
    hist = np.zeros((len(users), max_len), dtype=np.int64)
    nxt = np.zeros_like(hist)
    for i, (a, b) in enumerate(zip(starts, ends)):
        items = raw[a : b - 2, 1]  # train part
        items = items[-(max_len + 1) :]
        n = len(items) - 1
        if n >= 1:
            hist[i, -n:], nxt[i, -n:] = items[:-1], items[1:]
    keep = (nxt > 0).any(1)
    return hist[keep], nxt[keep], int(raw[:, 1].max()) + 1


def worker(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    hist, nxt, num_items = sequences(MAX_LEN)
    order = np.random.default_rng(0).permutation(len(hist))
    batches = [
        (torch.from_numpy(hist[order[i : i + BATCH]]), torch.from_numpy(nxt[order[i : i + BATCH]]))
        for i in range(0, BATCH * (args.steps + 2), BATCH)
    ]
    if args.worker == "rechub":
        from torch_rechub.models.generative.hstu import HSTUModel

        model = HSTUModel(num_items, d_model=DIM, n_heads=HEADS, n_layers=LAYERS, dqk=DIM // HEADS,
                          dv=DIM // HEADS, max_seq_len=MAX_LEN, dropout=DROPOUT, use_time_embedding=False)  # fmt: skip
        opt = torch.optim.Adam(model.parameters(), lr=LR)

        def step(h: torch.Tensor, t: torch.Tensor) -> None:
            opt.zero_grad()
            logits = model(h)  # (B, L, V)
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), t.reshape(-1), ignore_index=0
            )
            loss.backward()
            opt.step()
    else:
        sys.path.insert(0, str(HERE))
        from recforge.features import SequenceFeature, SparseFeature
        from recforge.models.generative import HSTU
        from recforge.trainers import SeqTrainer

        item = SparseFeature("item_id", num_items, DIM)
        hist = SequenceFeature("hist_item_id", num_items, DIM, shared_with="item_id", max_len=MAX_LEN)
        model = HSTU([hist], [item], num_layers=LAYERS, num_heads=HEADS, dropout=DROPOUT)
        bf16 = args.worker == "recforge-bf16"
        trainer = SeqTrainer(model, num_items=num_items, loss="full", optimizer_params={"lr": LR}, n_epoch=1,
                             model_path=tempfile.mkdtemp(prefix="hstu_"), progress=False, plot=False,
                             precision="bf16" if bf16 else "fp32")  # fmt: skip

        def step(h: torch.Tensor, t: torch.Tensor) -> None:
            trainer.train_one_epoch([{"hist_item_id": h, "target_item_id": t}])

    model.train()
    for h, t in batches[:2]:  # warm-up
        step(h, t)
    c0, w0 = cpu_seconds(), time.perf_counter()
    for h, t in batches[2 : 2 + args.steps]:
        step(h, t)
    cpu, wall = cpu_seconds() - c0, time.perf_counter() - w0
    n = BATCH * args.steps
    return {
        "sequences_per_cpu_s": n / cpu,
        "sequences_per_s": n / wall,
        "cpu_s": cpu,
        "wall_s": wall,
        "items": num_items,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS))
    ap.add_argument("--out", type=Path, default=HERE / "results" / "hstu_rechub.md")
    ap.add_argument("--worker", choices=list(RUNS), help=argparse.SUPPRESS)
    ap.add_argument("--json-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        args.threads = args.threads[0]
        Path(args.json_out).write_text(json.dumps(worker(args)), encoding="utf-8")
        return
    sys.path.insert(0, str(HERE))
    from peers import ensure
    from sasrec_recbole import machine

    rechub = ensure("torch-rechub")
    command = "python " + shlex.join([os.path.relpath(__file__, ROOT), *sys.argv[1:]])
    records, loads = [], [os.getloadavg()[0]]
    for rep in range(args.repeats):
        for t in args.threads:
            for run in args.runs if rep % 2 == 0 else args.runs[::-1]:
                py = rechub if run == "rechub" else Path(sys.executable)
                env = dict(os.environ, OMP_NUM_THREADS=str(t), PYTHONPATH=str(ROOT / "src"))
                with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
                    out = Path(fh.name)
                cmd = [str(py), __file__, "--worker", run, "--threads", str(t), "--steps", str(args.steps)]
                load = os.getloadavg()[0]
                proc = subprocess.run([*cmd, "--json-out", str(out)], env=env, capture_output=True, text=True)
                if proc.returncode:
                    raise RuntimeError(f"{run} failed:\n{proc.stderr[-3000:]}")
                rec = json.loads(out.read_text()) | {"run": run, "threads": t}
                out.unlink()
                loads += [load, os.getloadavg()[0]]
                records.append(rec)
                print(f"  {run:14s} t={t} {rec['sequences_per_cpu_s']:8.1f} seq/cpu-s  {rec['sequences_per_s']:8.1f} seq/s  "
                      f"load {load:.1f}", flush=True)  # fmt: skip
    lines = [
        "# HSTU training: recforge vs Torch-RecHub 0.9.0 HSTUModel (same data, same full cross-entropy)",
        "",
        f"Command: `{command}`",
        "",
        f"- Machine: {machine()}; 1-minute load average {min(loads):.1f}-{max(loads):.1f}.",
        f"- Beauty training sequences (last {MAX_LEN} items, every position predicts the next), embedding "
        f"{DIM}, {LAYERS} layers, {HEADS} heads, dropout {DROPOUT}, batch {BATCH}, Adam lr {LR}; "
        f"{args.steps} timed steps per run after 2 warm-up steps; medians over {args.repeats} runs.",
        "",
        "| run | threads | sequences / CPU s | sequences / s | recforge / Torch-RecHub (CPU) | (wall) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for t in args.threads:
        base = [r for r in records if r["run"] == "rechub" and r["threads"] == t]
        b_cpu = median(r["sequences_per_cpu_s"] for r in base) if base else float("nan")
        b_wall = median(r["sequences_per_s"] for r in base) if base else float("nan")
        for run in args.runs:
            rs = [r for r in records if r["run"] == run and r["threads"] == t]
            c, w = median(r["sequences_per_cpu_s"] for r in rs), median(r["sequences_per_s"] for r in rs)
            lines.append(f"| {run} | {t} | {c:.1f} | {w:.1f} | {c / b_cpu:.2f}x | {w / b_wall:.2f}x |")
    lines += ["", *[f"- `{k}`: {v}" for k, v in RUNS.items()]]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(records, indent=1), encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
