"""SASRec on Amazon Beauty: recforge against RecBole 1.2.1, side by side, with the same full
cross-entropy loss; then recforge's recommended recipe timed to RecBole's HR@10.

Settings shared by both (issue 21): hidden 64, 2 blocks, 2 heads, feed-forward 64, max length 50,
batch 256, dropout 0.5, Adam lr 1e-3, full cross-entropy over every item, leave-one-out split
(last item test, second-last validation), full-ranking HR/NDCG@10 with the user's earlier items
excluded. RecBole trains on every prefix of each training sequence (its data augmentation, one
target per sample); recforge trains every position of each sequence at once: the same
(prefix -> next item) terms per epoch, each in its own layout.

Each measurement runs in a fresh process (``--worker``), RecBole in its own venv
(``benchmarks/peers.py recbole``), with ``torch.set_num_threads(t)``; runs alternate between the
libraries. Times are CPU seconds of the process (``resource.getrusage``), and wall seconds beside
them; the 1-minute load average is recorded before and after each run.

    python benchmarks/sasrec_recbole.py speed --threads 1 2 --batches 60    # per-step cost -> per epoch
    python benchmarks/sasrec_recbole.py quality --recbole-epochs 3 --threads 1

``speed`` times ``--batches`` training steps and one full-ranking evaluation of the test users per
run and scales the steps to an epoch (every step of an epoch has the same shape of work);
``quality`` trains RecBole for ``--recbole-epochs`` full epochs (its HR@10 on the test users after
each) and recforge's recommended recipe until it reaches RecBole's best HR@10, timing both.
Results: ``benchmarks/results/sasrec_recbole.md`` (+ ``.json``).

The script's top level imports only the standard library and numpy: workers run under the peer's
interpreter, where recforge is not installed.
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
HIDDEN, BLOCKS, HEADS, MAX_LEN, BATCH, DROPOUT, LR = 64, 2, 2, 50, 256, 0.5, 1e-3
EVAL_USERS = 256  # users scored per evaluation batch, both libraries

RUNS = {
    "recbole": "RecBole 1.2.1 SASRec, loss_type CE (fp32, its defaults otherwise)",
    "recforge-fp32": "recforge SASRec + SeqTrainer(loss='full'), float32, as shipped (the full "
    "cross-entropy streams the items in blocks: objectives.linear_full_softmax_loss)",
    "recforge-bf16": "the same with SeqTrainer(precision='bf16')",
}


def _epoch(steps: int, batches: int, train_cpu: float, train_wall: float, eval_cpu: float, eval_wall: float,
           hr: float, ndcg: float) -> dict[str, float]:  # fmt: skip
    """One epoch's record: timed steps scaled to a whole epoch, and the evaluation's cost and HR/NDCG@10."""
    return {
        "steps": steps,
        "train_cpu_s": train_cpu,
        "train_wall_s": train_wall,
        "epoch_cpu_s": train_cpu * batches / steps,
        "epoch_wall_s": train_wall * batches / steps,
        "eval_cpu_s": eval_cpu,
        "eval_wall_s": eval_wall,
        "hr@10": float(hr),
        "ndcg@10": float(ndcg),
    }


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def machine() -> str:
    """The CPU as this machine reports it (``recforge.precision.cpu_info``; imported here because
    the RecBole worker runs this file where recforge is not installed)."""
    from recforge.precision import cpu_info

    return cpu_info().describe()


# -- RecBole worker -----------------------------------------------------------------------------
def _atomic_dataset(cache: Path) -> Path:
    """Beauty as RecBole atomic files (``beauty.inter``; the line order is the time order)."""
    out = cache / "recbole_data" / "beauty"
    inter = out / "beauty.inter"
    if not inter.exists():
        out.mkdir(parents=True, exist_ok=True)
        raw = np.loadtxt(DATA, dtype=np.int64)
        tmp = inter.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("user_id:token\titem_id:token\ttimestamp:float\n")
            for i, (u, it) in enumerate(raw):
                fh.write(f"{u}\t{it}\t{i}\n")
        os.replace(tmp, inter)
    return out.parent


def worker_recbole(args: argparse.Namespace) -> dict:
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    data_path = _atomic_dataset(Path(args.cache_dir).resolve())
    checkpoint_dir = tempfile.mkdtemp(prefix="recbole_")
    os.chdir(checkpoint_dir)  # RecBole writes log/ and log_tensorboard/ into the working directory
    config = Config(
        model="SASRec",
        dataset="beauty",
        config_dict={
            "data_path": str(data_path),
            "checkpoint_dir": checkpoint_dir,
            "use_gpu": False,
            "seed": args.seed,
            "show_progress": False,
            "state": "ERROR",
            "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            "MAX_ITEM_LIST_LENGTH": MAX_LEN,
            "train_neg_sample_args": None,
            "loss_type": "CE",
            "hidden_size": HIDDEN,
            "inner_size": HIDDEN,
            "n_layers": BLOCKS,
            "n_heads": HEADS,
            "hidden_dropout_prob": DROPOUT,
            "attn_dropout_prob": DROPOUT,
            "train_batch_size": BATCH,
            "eval_batch_size": EVAL_USERS,  # users per batch for sequential models' full sort
            "learning_rate": LR,
            "eval_args": {
                "split": {"LS": "valid_and_test"},
                "order": "TO",
                "mode": "full",
                "group_by": "user",
            },
            "metrics": ["Hit", "NDCG"],
            "topk": [10],
            "valid_metric": "NDCG@10",
        },
    )
    init_seed(config["seed"], config["reproducibility"])
    torch.set_num_threads(args.threads)
    dataset = create_dataset(config)
    train_data, _valid_data, test_data = data_preparation(config, dataset)
    model = SASRec(config, train_data._dataset).to(config["device"])
    trainer = Trainer(config, model)
    batches = len(train_data)
    out: dict = {"train_batches_per_epoch": batches, "items": int(dataset.item_num - 1)}
    epochs = []
    for epoch in range(args.epochs):
        if args.batches:  # a timed prefix of one epoch
            t_cpu, t_wall = cpu_seconds(), time.perf_counter()
            trainer.model.train()
            for i, inter in enumerate(train_data):
                if i == args.batches:
                    break
                trainer.optimizer.zero_grad()
                loss = trainer.model.calculate_loss(inter)
                loss.backward()
                trainer.optimizer.step()
            steps = min(args.batches, batches)
        else:
            t_cpu, t_wall = cpu_seconds(), time.perf_counter()
            trainer._train_epoch(train_data, epoch)
            steps = batches
        train_cpu, train_wall = cpu_seconds() - t_cpu, time.perf_counter() - t_wall
        t_cpu, t_wall = cpu_seconds(), time.perf_counter()
        result = trainer.evaluate(test_data, load_best_model=False)
        eval_cpu, eval_wall = cpu_seconds() - t_cpu, time.perf_counter() - t_wall
        costs = (train_cpu, train_wall, eval_cpu, eval_wall)
        epochs.append(_epoch(steps, batches, *costs, result["hit@10"], result["ndcg@10"]))
        print(json.dumps(epochs[-1]), flush=True)
    out["epochs"] = epochs
    out["eval_users"] = len(test_data._dataset.inter_feat) if hasattr(test_data, "_dataset") else -1
    return out


# -- recforge worker ----------------------------------------------------------------------------
def worker_recforge(args: argparse.Namespace) -> dict:
    import pandas as pd
    import torch

    from recforge.data import (
        BatchLoader,
        ColumnarDataset,
        catalog_of,
        eval_samples,
        leave_one_out_split,
        sequence_samples,
        shortest_first,
    )
    from recforge.features import RandomNormal, SequenceFeature, SparseFeature
    from recforge.metrics import RankingEvaluator
    from recforge.models.matching import SASRec
    from recforge.trainers import SeqTrainer

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    raw = np.loadtxt(DATA, dtype=np.int64)
    log = pd.DataFrame({"user_id": raw[:, 0], "item_id": raw[:, 1], "time": np.arange(len(raw))})
    sp = leave_one_out_split(log)
    train = ColumnarDataset(sequence_samples(sp.histories(), MAX_LEN))
    test_h = sp.histories("train", "valid")
    # shortest histories first, as recforge's own recipe evaluates (recforge.runs): same metrics
    test = ColumnarDataset(shortest_first(eval_samples(test_h, sp.test, MAX_LEN), "hist_item_id"))
    evaluator = RankingEvaluator(
        catalog_of(sp.num_items), ks=(10,), seen=test_h.seen(), normalize=args.recipe
    )
    item = SparseFeature("item_id", sp.num_items, HIDDEN, initializer=RandomNormal(std=0.02))
    hist = SequenceFeature("hist_item_id", sp.num_items, HIDDEN, shared_with="item_id", max_len=MAX_LEN)
    model = SASRec([hist], [item], max_len=MAX_LEN, dropout_rate=DROPOUT, num_blocks=BLOCKS, num_heads=HEADS)
    bf16 = args.worker == "recforge-bf16" or args.recipe
    if args.recipe:  # the recommended recipe (benchmarks/results/generative_beauty.md)
        kw = {"loss": "sampled_softmax", "num_negatives": 2048, "temperature": 0.05, "l2_normalize": True}
        lr = 3e-3
    else:
        kw, lr = {"loss": "full"}, LR
    run_dir = tempfile.mkdtemp(prefix="sasrec_")
    trainer = SeqTrainer(
        model, num_items=sp.num_items, n_epoch=1, optimizer_params={"lr": lr}, model_path=run_dir,
        progress=False, plot=False, precision="bf16" if bf16 else "fp32", **kw,
    )  # fmt: skip
    loader = BatchLoader(train, BATCH, shuffle=True, seed=args.seed)
    batches = len(loader)
    out: dict = {"train_batches_per_epoch": batches, "items": int(sp.num_items - 1), "eval_users": len(test)}
    epochs, t_total = [], 0.0
    for epoch in range(args.epochs):
        loader.set_epoch(epoch)
        t_cpu, t_wall = cpu_seconds(), time.perf_counter()
        if args.batches:
            steps = min(args.batches, batches)
            trainer.train_one_epoch(_first(loader, steps), epoch)
        else:
            steps = batches
            trainer.train_one_epoch(loader, epoch)
        train_cpu, train_wall = cpu_seconds() - t_cpu, time.perf_counter() - t_wall
        t_cpu, t_wall = cpu_seconds(), time.perf_counter()
        metrics = evaluator.evaluate(model, BatchLoader(test, EVAL_USERS))
        eval_cpu, eval_wall = cpu_seconds() - t_cpu, time.perf_counter() - t_wall
        t_total += train_wall
        costs = (train_cpu, train_wall, eval_cpu, eval_wall)
        epochs.append(_epoch(steps, batches, *costs, metrics["hr@10"], metrics["ndcg@10"]))
        print(json.dumps(epochs[-1]), flush=True)
        if args.stop_at_hr is not None and metrics["hr@10"] >= args.stop_at_hr:
            break
    out["epochs"] = epochs
    return out


def _first(loader, n: int):
    for i, b in enumerate(loader):
        if i == n:
            return
        yield b


def run_worker(args: argparse.Namespace) -> None:
    out = worker_recbole(args) if args.worker == "recbole" else worker_recforge(args)
    out.update(run=args.worker, threads=args.threads, recipe=args.recipe, peak_rss_mb=_peak_rss_mb())
    Path(args.json_out).write_text(json.dumps(out), encoding="utf-8")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# -- driver -------------------------------------------------------------------------------------
def launch(python: Path, run: str, threads: int, args: argparse.Namespace, extra: list[str]) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = Path(fh.name)
    cmd = [str(python), str(Path(__file__).resolve()), "worker", "--worker", run, "--threads", str(threads)]
    cmd += ["--json-out", str(out), "--cache-dir", str(args.cache_dir), "--seed", str(args.seed), *extra]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.run_timeout)
    try:
        if proc.returncode != 0:
            raise RuntimeError(f"{run} (threads={threads}) failed:\n{proc.stderr[-3000:]}")
        rec = json.loads(out.read_text(encoding="utf-8"))
    finally:
        out.unlink(missing_ok=True)
    rec.update(wall_s=time.perf_counter() - t0, load_before=load, load_after=os.getloadavg()[0])
    e = rec["epochs"][-1]
    print(
        f"  {run:14s} t={threads} epoch {e['epoch_cpu_s']:8.1f} cpu-s ({e['epoch_wall_s']:8.1f} wall) "
        f"eval {e['eval_cpu_s']:6.1f} cpu-s  hr@10 {e['hr@10']:.4f}  load {load:.1f}->{rec['load_after']:.1f}",
        flush=True,
    )
    return rec


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def render_speed(command: str, records: list[dict], threads: list[int], meta: dict) -> str:
    lines = [
        "# SASRec on Amazon Beauty: recforge vs RecBole 1.2.1, same full cross-entropy",
        "",
        f"Command: `{command}`",
        "",
        f"- Machine: {meta['machine']}; 1-minute load average {meta['load_min']:.1f}-{meta['load_max']:.1f} "
        "during the runs (a shared machine: compare ratios from this one run).",
        f"- Model (both): hidden {HIDDEN}, {BLOCKS} blocks, {HEADS} heads, feed-forward {HIDDEN}, max length "
        f"{MAX_LEN}, dropout {DROPOUT}, batch {BATCH}, Adam lr {LR}; loss: cross-entropy over every item.",
        f"- Per epoch = CPU seconds of {meta['batches']} timed training steps x steps per epoch / steps timed; "
        f"evaluation = one full-ranking pass over the test users ({EVAL_USERS} users per batch, history excluded). "
        "Medians over the repeats shown (`n`); runs interleaved, each in a fresh process.",
        "",
        "| run | threads | n | steps/epoch | CPU s / epoch | wall s / epoch | CPU s / evaluation | wall s / evaluation | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    summary: dict[str, dict] = {}
    for run in RUNS:
        for t in threads:
            rs = [r for r in records if r["run"] == run and r["threads"] == t]
            if not rs:
                continue
            s = {
                k: median(r["epochs"][-1][k] for r in rs)
                for k in ("epoch_cpu_s", "epoch_wall_s", "eval_cpu_s", "eval_wall_s")
            }
            s["peak_rss_mb"] = median(r["peak_rss_mb"] for r in rs)
            summary[f"{run}@{t}"] = s
            lines.append(
                f"| {run} | {t} | {len(rs)} | {rs[0]['train_batches_per_epoch']} | {s['epoch_cpu_s']:.0f} | "
                f"{s['epoch_wall_s']:.0f} | {s['eval_cpu_s']:.1f} | {s['eval_wall_s']:.1f} | {s['peak_rss_mb']:.0f} |"
            )
    lines += [
        "",
        "| ratio (RecBole / recforge) | threads | epoch CPU | epoch wall | evaluation CPU | evaluation wall | target |",
    ]
    lines += ["|---|---:|---:|---:|---:|---:|---|"]
    for run in ("recforge-fp32", "recforge-bf16"):
        for t in threads:
            a, b = summary.get(f"recbole@{t}"), summary.get(f"{run}@{t}")
            if not a or not b:
                continue
            r = {k: a[k] / b[k] for k in ("epoch_cpu_s", "epoch_wall_s", "eval_cpu_s", "eval_wall_s")}
            ok = "met" if min(r["epoch_cpu_s"], r["eval_cpu_s"]) >= 3 else "not met"
            lines.append(
                f"| {run} | {t} | {r['epoch_cpu_s']:.2f}x | {r['epoch_wall_s']:.2f}x | {r['eval_cpu_s']:.2f}x | "
                f"{r['eval_wall_s']:.2f}x | >= 3x per epoch and per evaluation: {ok} |"
            )
    lines += ["", "Configurations:", "", *[f"- `{k}`: {v}" for k, v in RUNS.items()]]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("speed", "quality", "worker"))
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--batches", type=int, default=60, help="speed: training steps timed per run")
    ap.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    ap.add_argument("--recbole-epochs", type=int, default=3)
    ap.add_argument("--recipe-epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", type=Path, default=HERE / ".cache")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "sasrec_recbole.md")
    ap.add_argument("--run-timeout", type=int, default=6 * 3600)
    # worker mode (internal)
    ap.add_argument("--worker", choices=list(RUNS), help=argparse.SUPPRESS)
    ap.add_argument("--json-out", help=argparse.SUPPRESS)
    ap.add_argument("--epochs", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--recipe", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--stop-at-hr", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode == "worker":
        args.threads = args.threads[0]
        run_worker(args)
        return
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT), *sys.argv[1:]])
    print(command, flush=True)
    sys.path.insert(0, str(HERE))
    from peers import ensure

    recbole_py = ensure("recbole")
    meta = {"machine": machine(), "command": command, "batches": args.batches}
    loads = [os.getloadavg()[0]]
    records: list[dict] = []
    json_out = args.out.with_suffix(".json")
    if args.mode == "speed":
        for rep in range(args.repeats):
            for t in args.threads:
                order = args.runs if rep % 2 == 0 else args.runs[::-1]
                for run in order:
                    py = recbole_py if run == "recbole" else Path(sys.executable)
                    rec = launch(py, run, t, args, ["--batches", str(args.batches), "--epochs", "1"])
                    records.append(rec)
                    loads += [rec["load_before"], rec["load_after"]]
                    meta.update(load_min=min(loads), load_max=max(loads))
                    _write(args.out, render_speed(command, records, args.threads, meta))
                    _write(json_out, json.dumps({"meta": meta, "records": records}, indent=1))
        print(args.out.read_text())
        return
    # quality: RecBole's HR@10 after its epochs, then recforge's recipe until it gets there
    t = args.threads[0]
    rb = launch(recbole_py, "recbole", t, args, ["--epochs", str(args.recbole_epochs), "--batches", "0"])
    target = max(e["hr@10"] for e in rb["epochs"])
    rf = launch(
        Path(sys.executable), "recforge-bf16", t, args,
        ["--epochs", str(args.recipe_epochs), "--batches", "0", "--recipe", "--stop-at-hr", str(target)],
    )  # fmt: skip
    loads += [rb["load_before"], rb["load_after"], rf["load_before"], rf["load_after"]]
    meta.update(load_min=min(loads), load_max=max(loads))
    _write(
        args.out.with_name("sasrec_recbole_quality.json"),
        json.dumps({"meta": meta, "recbole": rb, "recforge": rf}, indent=1),
    )
    lines = [
        "# SASRec on Amazon Beauty: time to RecBole's HR@10",
        "",
        f"Command: `{command}`",
        "",
        f"- Machine: {meta['machine']}; 1-minute load average {meta['load_min']:.1f}-{meta['load_max']:.1f}.",
        f"- RecBole 1.2.1 SASRec, full cross-entropy, {args.recbole_epochs} epochs: best test HR@10 "
        f"**{target:.4f}**. recforge: its recommended recipe (sampled softmax over 2048 shared negatives, "
        "L2-normalised vectors, temperature 0.05, lr 3e-3, bf16), trained until its test HR@10 reaches that.",
        "",
        "| library | epoch | cumulative train CPU s | cumulative train wall s | HR@10 | NDCG@10 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, rec in (("RecBole", rb), ("recforge recipe", rf)):
        c_cpu = c_wall = 0.0
        for i, e in enumerate(rec["epochs"], 1):
            c_cpu += e["train_cpu_s"]
            c_wall += e["train_wall_s"]
            lines.append(
                f"| {name} | {i} | {c_cpu:.0f} | {c_wall:.0f} | {e['hr@10']:.4f} | {e['ndcg@10']:.4f} |"
            )
    _write(args.out.with_name("sasrec_recbole_quality.md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
