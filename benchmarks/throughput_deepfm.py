"""DeepFM training/inference throughput: recforge against torch-rechub 0.9.0, side by side.

Workload (issue 2, section 7): one epoch of paper-style DeepFM (the deep part sees the 13 dense
values and all 26 sparse embeddings, FM sees the 26 sparse fields; embed_dim 16, MLP [256, 128],
dropout 0.2, batch 2048, Adam lr 1e-3) on a synthetic Criteo-like table that starts as a pandas
DataFrame. Labels come from a planted logistic model (per-id weights, a few pairwise field
interactions, dense terms), so one-epoch test AUC means something; the planted model's own AUC on
the test rows is reported as the ceiling.

Every measurement runs in a fresh subprocess (peak RSS is that process's ``ru_maxrss``), with
``torch.set_num_threads(t)``; runs of the two libraries are interleaved so machine load hits both
alike. torch-rechub runs in its own venv (``benchmarks/peers.py``). Its README path, feeding a
DataFrame, is so slow that it is timed on a subset of the training rows (``--df-rows``).

    python benchmarks/throughput_deepfm.py                        # the full run (tens of minutes)
    python benchmarks/throughput_deepfm.py --rows 5000 --skip-peers --repeats 1   # smoke test

The script's top level imports only numpy/pandas/torch, because worker subprocesses for the peer
run under the peer's interpreter, where recforge is not installed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
N_DENSE, N_SPARSE, VOCAB = 13, 26, 10_000
EMBED_DIM, MLP_DIMS, DROPOUT, BATCH, LR = 16, [256, 128], 0.2, 2048, 1e-3
DENSE = [f"I{i}" for i in range(1, N_DENSE + 1)]
SPARSE = [f"C{i}" for i in range(1, N_SPARSE + 1)]

# Runs: name -> (library, description). "recforge" is the configuration we recommend for this
# workload; "recforge-fp32" is the same in float32; "recforge-dense" is the plain dense-gradient one
# (unfused tables, Adam on everything).
RUNS = {
    "recforge": (
        "recforge",
        "one fused table, sparse=True gradients (recforge.optim.LazyAdam on it, Adam on the rest), "
        "amp=True: bf16 autocast where the CPU multiplies bf16 natively (float32 elsewhere)",
    ),
    "recforge-fp32": ("recforge", "the same in float32 (amp=False)"),
    "recforge-dense": ("recforge", "per-field tables, dense gradients, Adam on everything, float32"),
    "rechub-numpy": ("torch-rechub", "DataGenerator(dict of numpy arrays) -> TorchDataset"),
    "rechub-df": ("torch-rechub", "DataGenerator(pandas DataFrame), README path; timed on a subset"),
}


# -- data ---------------------------------------------------------------------------------------
def make_table(rows: int, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Columns, 0/1 labels and the planted logits of a Criteo-like table.

    Ids follow a power law (a few ids are frequent, most are rare, as in Criteo) over
    ``1 .. VOCAB - 1``; dense values are log-normal counts, log-transformed and standardised the
    way Criteo is usually preprocessed.
    """
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {}
    raw = rng.lognormal(1.0, 1.2, size=(rows, N_DENSE))
    dense = np.log1p(raw)
    dense = ((dense - dense.mean(0)) / dense.std(0)).astype(np.float32)  # (N, 13)
    ids = (1 + (VOCAB - 1) * rng.random((rows, N_SPARSE)) ** 3).astype(np.int64)  # (N, 26)
    ids = np.minimum(ids, VOCAB - 1)
    for j, c in enumerate(DENSE):
        cols[c] = dense[:, j].copy()
    for j, c in enumerate(SPARSE):
        cols[c] = ids[:, j].copy()

    w_rng = np.random.default_rng(seed + 1)  # the planted model does not depend on ``rows``
    per_id = w_rng.normal(0.0, 0.35, size=(N_SPARSE, VOCAB))
    logit = np.full(rows, -1.2)
    for j in range(N_SPARSE):
        logit += per_id[j, ids[:, j]]
    rank = 4
    factors = w_rng.normal(0.0, 0.45, size=(N_SPARSE, VOCAB, rank))
    for a, b in [(0, 1), (2, 5), (3, 7), (10, 11), (4, 20), (8, 25)]:
        logit += (factors[a, ids[:, a]] * factors[b, ids[:, b]]).sum(1)
    beta = w_rng.normal(0.0, 0.3, size=N_DENSE)
    logit += dense @ beta + 0.3 * np.maximum(dense[:, 0] * dense[:, 1], 0.0)
    labels = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    return cols, labels, logit.astype(np.float32)


def cached_table(rows: int, cache_dir: Path) -> Path:
    """An ``.npz`` of the table, made once per size (workers load it, then build the DataFrame)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"criteo_like_{rows}.npz"
    if not path.exists():
        cols, labels, logit = make_table(rows)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, label=labels, planted_logit=logit, **cols)
        os.replace(tmp, path)
    return path


def load_frame(path: Path):  # -> pd.DataFrame (pandas imported lazily to keep the parent light)
    import pandas as pd

    with np.load(path) as z:
        return pd.DataFrame({c: z[c] for c in [*DENSE, *SPARSE, "label", "planted_logit"]})


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def cpu_seconds() -> float:
    """CPU time of this process (user + system): what a shared machine's other jobs do not inflate
    as much as they inflate wall time."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def describe_machine() -> str:
    """The CPU as the machine reports it (``recforge.precision.cpu_info``; imported here because
    the peer's workers run this file where recforge is not installed)."""
    from recforge.precision import cpu_info

    return cpu_info().describe()


# -- workers (each runs in its own process) -----------------------------------------------------
def worker_recforge(frame, n_test: int, *, best: bool, amp: bool, subset: int | None) -> dict[str, float]:

    from recforge.data import BatchLoader, ColumnarDataset
    from recforge.features import DenseFeature, SparseFeature
    from recforge.models.ranking import DeepFM
    from recforge.trainers import CTRTrainer

    del subset
    train_df, test_df = frame.iloc[:-n_test], frame.iloc[-n_test:]
    dense = [DenseFeature(c) for c in DENSE]
    sparse = [SparseFeature(c, vocab_size=VOCAB, embed_dim=EMBED_DIM) for c in SPARSE]
    t0 = time.perf_counter()
    train = ColumnarDataset(train_df[DENSE + SPARSE], train_df["label"])
    test = ColumnarDataset(test_df[DENSE + SPARSE], test_df["label"])
    train_dl = BatchLoader(train, BATCH, shuffle=True, seed=0)
    test_dl = BatchLoader(test, BATCH)
    prep = time.perf_counter() - t0
    # torch-rechub's MLP always has batch norm after each Linear: the same here, like for like.
    mlp = {"dims": MLP_DIMS, "dropout": DROPOUT, "batch_norm": True}
    model = DeepFM(dense + sparse, sparse, mlp_params=mlp, sparse=best, fused=best)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = CTRTrainer(
            model,
            optimizer_params={"lr": LR},
            n_epoch=1,
            device="cpu",
            model_path=run_dir,
            progress=False,
            plot=False,
            amp=amp,
        )
        t0, c0 = time.perf_counter(), cpu_seconds()
        trainer.train_one_epoch(train_dl)
        train_s, train_cpu = time.perf_counter() - t0, cpu_seconds() - c0
        t0, c0 = time.perf_counter(), cpu_seconds()
        prob = trainer.predict(model, test_dl)
        infer_s, infer_cpu = time.perf_counter() - t0, cpu_seconds() - c0
    return {
        "precision": trainer.precision.value,
        "prep_s": prep,
        "train_s": train_s,
        "train_cpu_s": train_cpu,
        "infer_cpu_s": infer_cpu,
        "train_rows": len(train),
        "infer_s": infer_s,
        "infer_rows": len(test),
        "auc": auc(test_df["label"].to_numpy(), prob),
    }


def _rechub_model():
    from torch_rechub.basic.features import DenseFeature, SparseFeature
    from torch_rechub.models.ranking import DeepFM

    dense = [DenseFeature(c) for c in DENSE]
    sparse = [SparseFeature(c, vocab_size=VOCAB, embed_dim=EMBED_DIM) for c in SPARSE]
    return DeepFM(
        deep_features=dense + sparse,
        fm_features=sparse,
        mlp_params={"dims": MLP_DIMS, "dropout": DROPOUT, "activation": "relu"},
    )


def worker_rechub(frame, n_test: int, *, as_frame: bool, subset: int | None) -> dict[str, float]:
    from torch_rechub.trainers import CTRTrainer
    from torch_rechub.utils.data import DataGenerator

    train_df, test_df = frame.iloc[:-n_test], frame.iloc[-n_test:]
    if subset is not None:
        # The DataFrame path runs ~1k samples/s: time it on a subset of train and test rows.
        train_df, test_df = train_df.iloc[:subset], test_df.iloc[: max(subset // 5, 1)]
    cols = DENSE + SPARSE
    t0 = time.perf_counter()
    if as_frame:  # its TorchDataset indexes each column by row label: give it a 0-based index
        x_train = train_df[cols].reset_index(drop=True)
        x_test = test_df[cols].reset_index(drop=True)
    else:
        x_train = {c: train_df[c].to_numpy() for c in cols}
        x_test = {c: test_df[c].to_numpy() for c in cols}
    y_train, y_test = train_df["label"].to_numpy(), test_df["label"].to_numpy()
    dg = DataGenerator(x_train, y_train)
    train_dl, _, test_dl = dg.generate_dataloader(
        x_val=x_test, y_val=y_test, x_test=x_test, y_test=y_test, batch_size=BATCH
    )
    prep = time.perf_counter() - t0
    model = _rechub_model()
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = CTRTrainer(
            model,
            optimizer_params={"lr": LR, "weight_decay": 0.0},
            n_epoch=1,
            device="cpu",
            model_path=run_dir,
        )
        t0, c0 = time.perf_counter(), cpu_seconds()
        trainer.train_one_epoch(train_dl)  # BCELoss on its sigmoid output, as its fit() does
        train_s, train_cpu = time.perf_counter() - t0, cpu_seconds() - c0
        t0, c0 = time.perf_counter(), cpu_seconds()
        prob = np.asarray(trainer.predict(model, test_dl), dtype=np.float64)
        infer_s, infer_cpu = time.perf_counter() - t0, cpu_seconds() - c0
    return {
        "precision": "fp32",
        "prep_s": prep,
        "train_s": train_s,
        "train_cpu_s": train_cpu,
        "infer_cpu_s": infer_cpu,
        "train_rows": len(train_df),
        "infer_s": infer_s,
        "infer_rows": len(test_df),
        "auc": auc(y_test, prob),
    }


def run_worker(args: argparse.Namespace) -> None:
    import torch

    threads = args.threads[0]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    np.random.seed(0)
    frame = load_frame(Path(args.table))
    n_test = args.test_rows
    if args.worker.startswith("recforge"):
        best = args.worker in ("recforge", "recforge-fp32")
        out = worker_recforge(frame, n_test, best=best, amp=args.worker == "recforge", subset=args.subset)
    else:
        out = worker_rechub(frame, n_test, as_frame=args.worker == "rechub-df", subset=args.subset)
    out.update(
        run=args.worker,
        threads=threads,
        peak_rss_mb=peak_rss_mb(),
        train_samples_per_s=out["train_rows"] / out["train_s"],
        infer_samples_per_s=out["infer_rows"] / out["infer_s"],
        train_samples_per_cpu_s=out["train_rows"] / out["train_cpu_s"],
        infer_samples_per_cpu_s=out["infer_rows"] / out["infer_cpu_s"],
        torch=torch.__version__,
    )
    Path(args.json_out).write_text(json.dumps(out), encoding="utf-8")


# -- driver -------------------------------------------------------------------------------------
def launch(python: Path, run: str, threads: int, table: Path, args: argparse.Namespace, subset: int | None):
    """One measurement in a fresh process; returns its record (or the error)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = Path(fh.name)
    cmd = [
        str(python),
        str(Path(__file__).resolve()),
        "--worker",
        run,
        "--threads",
        str(threads),
        "--table",
        str(table),
        "--test-rows",
        str(args.test_rows),
        "--json-out",
        str(out),
    ]
    if subset is not None:
        cmd += ["--subset", str(subset)]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.run_timeout)
    wall = time.perf_counter() - t0
    try:
        if proc.returncode != 0:
            raise RuntimeError(f"{run} (threads={threads}) failed:\n{proc.stderr[-3000:]}")
        rec = json.loads(out.read_text(encoding="utf-8"))
    finally:
        out.unlink(missing_ok=True)
    rec.update(wall_s=wall, load_before=load, load_after=os.getloadavg()[0])
    print(
        f"  {run:15s} t={threads}  train {rec['train_samples_per_s']:9.0f}/s "
        f"({rec['train_samples_per_cpu_s']:9.0f}/cpu-s)  "
        f"infer {rec['infer_samples_per_s']:9.0f}/s  epoch {rec['train_s']:7.1f}s  "
        f"rss {rec['peak_rss_mb']:6.0f}MB  auc {rec['auc']:.4f}  load {load:.1f}",
        flush=True,
    )
    return rec


def summarise(records: list[dict], runs: list[str], threads: list[int]) -> dict[str, dict]:
    keys = [
        "train_samples_per_s",
        "infer_samples_per_s",
        "train_samples_per_cpu_s",
        "infer_samples_per_cpu_s",
        "train_s",
        "peak_rss_mb",
        "auc",
        "prep_s",
    ]
    out: dict[str, dict] = {}
    for run in runs:
        for t in threads:
            rs = [r for r in records if r["run"] == run and r["threads"] == t]
            if rs:
                out[f"{run}@{t}"] = {k: median(r[k] for r in rs) for k in keys} | {
                    "precision": rs[0].get("precision", "fp32"),
                    "n": len(rs),
                    "train_rows": rs[0]["train_rows"],
                    "infer_rows": rs[0]["infer_rows"],
                }
    return out


def render(command: str, meta: dict, summary: dict, runs: list[str], threads: list[int]) -> str:
    lines = [
        "# DeepFM throughput: recforge vs torch-rechub 0.9.0",
        "",
        "Command (from the repository root):",
        "",
        "```",
        command,
        "```",
        "",
        f"- Table: {meta['rows']:,} synthetic Criteo-like rows (13 dense, 26 sparse with vocab "
        f"{VOCAB:,}), last {meta['test_rows']:,} held out as test; labels from a planted logistic "
        f"model whose own test AUC is **{meta['oracle_auc']:.4f}** (the ceiling).",
        f"- Model: paper-style DeepFM, embed_dim {EMBED_DIM}, MLP {MLP_DIMS}, dropout {DROPOUT}, "
        f"batch {BATCH}, Adam lr {LR}, one epoch; batch norm in the MLP on both sides (torch-rechub's "
        "MLP always has it). Each cell is the median over the `n` fresh processes shown (planned: "
        f"{meta['repeats']}, rechub-df {meta['df_repeats']}), runs of the libraries interleaved.",
        f"- Machine: {meta['machine']}; 1-minute load average {meta['load_min']:.1f}-"
        f"{meta['load_max']:.1f} during the run (shared with other users, so absolute numbers drift; "
        "compare ratios from this one run).",
        "- Train samples/s = training rows / time of one `train_one_epoch` (data already in a loader), "
        "per wall second and per CPU second of the measuring process (`getrusage`, which other jobs on "
        "the machine inflate less); inference samples/s = test rows / time of `predict`; prep = "
        "DataFrame -> loaders; peak RSS "
        "= the process's `ru_maxrss` (includes the DataFrame itself, ~"
        f"{meta['frame_mb']:.0f} MB).",
        "",
        f"- Completed: {meta['done']}."
        + (
            ""
            if meta["rows"] == 1_000_000
            else " This run is scaled down; the issue's full workload is the default command, "
            "`python benchmarks/throughput_deepfm.py` (1,000,000 rows, 3 repeats)."
        ),
        "",
        "| run | threads | n | precision | train samples/s | train samples/CPU-s | inference samples/s | "
        "epoch s | prep s | peak RSS MB | test AUC |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        for t in threads:
            s = summary.get(f"{run}@{t}")
            if s is None:
                continue
            note = ""
            if run == "rechub-df":
                note = f" ({s['train_rows']:,}-row subset)"
            lines.append(
                f"| {run}{note} | {t} | {s['n']} | {s.get('precision', 'fp32')} | {s['train_samples_per_s']:,.0f} | "
                f"{s.get('train_samples_per_cpu_s', float('nan')):,.0f} | {s['infer_samples_per_s']:,.0f} | "
                f"{s['train_s']:.1f} | {s['prep_s']:.1f} | {s['peak_rss_mb']:,.0f} | {s['auc']:.4f} |"
            )
    lines += ["", "Configurations:", ""]
    lines += [f"- `{r}`: {RUNS[r][1]}" for r in runs]
    ratios = []
    for t in threads:
        ours = summary.get(f"recforge@{t}")
        for peer, target in (("rechub-numpy", 5.0), ("rechub-df", 30.0)):
            theirs = summary.get(f"{peer}@{t}")
            if ours is None or theirs is None:
                continue
            r_train = ours["train_samples_per_s"] / theirs["train_samples_per_s"]
            r_cpu = ours.get("train_samples_per_cpu_s", float("nan")) / theirs.get(
                "train_samples_per_cpu_s", float("nan")
            )
            r_inf = ours["infer_samples_per_s"] / theirs["infer_samples_per_s"]
            r_mem = ours["peak_rss_mb"] / theirs["peak_rss_mb"]
            auc_diff = f"{ours['auc'] - theirs['auc']:+.4f}"
            if peer == "rechub-df":
                auc_diff += " (peer trained on the subset only)"
            ok = "met" if r_train >= target else f"**missed** ({r_train / target:.0%} of target)"
            ratios.append(
                f"| recforge / {peer} | {t} | {r_train:.1f}x | {r_cpu:.1f}x | {r_inf:.1f}x | {r_mem:.2f} | "
                f"{auc_diff} | >= {target:.0f}x: {ok} |"
            )
    if ratios:
        lines += [
            "",
            "| ratio | threads | train speed-up (wall) | train speed-up (CPU) | inference speed-up | "
            "peak RSS ratio | AUC diff | target (on wall time) |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
            *ratios,
        ]
    return "\n".join(lines) + "\n"


def write_results(out: Path, md: str, raw: dict) -> None:
    """The markdown table and, next to it, the raw numbers as JSON (each written atomically)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for path, text in ((out, md), (out.with_suffix(".json"), json.dumps(raw, indent=1))):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--test-rows", type=int, default=None, help="default: 10%% of --rows")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--df-rows", type=int, default=50_000, help="training rows for rechub-df")
    ap.add_argument("--df-repeats", type=int, default=1)
    ap.add_argument("--skip-peers", action="store_true", help="recforge runs only")
    ap.add_argument("--skip-dense", action="store_true", help="leave out the recforge-dense run")
    ap.add_argument(
        "--data-dir",
        type=Path,
        default=ROOT.parent / "shared" / "data",
        help="unused: the table is synthetic (kept for the common benchmark interface)",
    )
    ap.add_argument("--cache-dir", type=Path, default=HERE / ".cache")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "throughput.md")
    ap.add_argument("--run-timeout", type=int, default=900)
    ap.add_argument("--render-json", type=Path, help="only re-render --out from a saved results JSON")
    # worker mode (internal)
    ap.add_argument("--worker", choices=sorted(RUNS), help=argparse.SUPPRESS)
    ap.add_argument("--table", help=argparse.SUPPRESS)
    ap.add_argument("--json-out", help=argparse.SUPPRESS)
    ap.add_argument("--subset", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        run_worker(args)
        return
    if args.render_json:
        raw = json.loads(args.render_json.read_text(encoding="utf-8"))
        runs = list(dict.fromkeys(r["run"] for r in raw["records"]))
        runs = [r for r in RUNS if r in runs]
        threads = sorted({r["threads"] for r in raw["records"]})
        summary = summarise(raw["records"], runs, threads)
        write_results(
            args.out,
            render(raw["meta"]["command"], raw["meta"], summary, runs, threads),
            {**raw, "summary": summary},
        )
        return
    if args.test_rows is None:
        args.test_rows = args.rows // 10
    if not 0 < args.test_rows < args.rows:
        raise ValueError(f"--test-rows must lie in (0, --rows={args.rows}), got {args.test_rows}")

    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT), *sys.argv[1:]])
    print(command, flush=True)
    table = cached_table(args.rows, args.cache_dir)
    with np.load(table) as z:
        test_labels, test_logit = z["label"][-args.test_rows :], z["planted_logit"][-args.test_rows :]
        frame_mb = sum(z[c].nbytes for c in [*DENSE, *SPARSE, "label", "planted_logit"]) / 2**20
    oracle = auc(test_labels, test_logit)

    runs = ["recforge", "recforge-fp32"] + ([] if args.skip_dense else ["recforge-dense"])
    rechub_py = None
    if not args.skip_peers:
        sys.path.insert(0, str(HERE))
        from peers import ensure

        rechub_py = ensure("torch-rechub")
        runs += ["rechub-numpy", "rechub-df"]
    df_subset = min(args.df_rows, args.rows - args.test_rows)
    meta = {
        "rows": args.rows,
        "test_rows": args.test_rows,
        "repeats": args.repeats,
        "df_repeats": min(args.df_repeats, args.repeats),
        "df_rows": df_subset,
        "oracle_auc": oracle,
        "frame_mb": frame_mb,
        "machine": describe_machine() + f", Python {platform.python_version()}",
        "command": command,
    }
    plan = [
        (rep, t, run)
        for rep in range(args.repeats)
        for t in args.threads
        for run in (runs if rep % 2 == 0 else runs[::-1])  # alternate who goes first
        if not (run == "rechub-df" and rep >= args.df_repeats)
    ]
    records: list[dict] = []
    loads: list[float] = [os.getloadavg()[0]]
    md = ""
    for i, (rep, t, run) in enumerate(plan):
        py = Path(sys.executable) if RUNS[run][0] == "recforge" else rechub_py
        assert py is not None
        rec = launch(py, run, t, table, args, df_subset if run == "rechub-df" else None)
        rec["repeat"] = rep
        records.append(rec)
        loads += [rec["load_before"], rec["load_after"]]
        # Rewrite the results after every run, so an interrupted run still leaves its numbers.
        meta.update(load_min=min(loads), load_max=max(loads), done=f"{i + 1} of {len(plan)} runs")
        md = render(command, meta, summarise(records, runs, args.threads), runs, args.threads)
        write_results(
            args.out,
            md,
            {"meta": meta, "summary": summarise(records, runs, args.threads), "records": records},
        )
    print(md)


if __name__ == "__main__":
    main()
