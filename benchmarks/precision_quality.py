"""bf16 autocast against float32: one-epoch test quality of DeepFM, DCNv2, DIN, YoutubeDNN, SASRec.

Each model trains one epoch per seed in float32 and under ``precision="bf16"`` (same seed: same
initial weights and batch order), then is scored on its test split:

* DeepFM, DCNv2 (ranking): the throughput workload's planted Criteo-like table
  (``throughput_deepfm.make_table``), 180k train / 20k test rows, batch 2048; test AUC.
* DIN (sequence ranking): ``make_behavior_ctr`` (200 items, 20 categories, history 10), 60k train /
  20k test rows, batch 512; test AUC.
* YoutubeDNN (retrieval) and SASRec (next item): Amazon Beauty, leave-one-out; YoutubeDNN on the
  sliding-window (history -> next item) rows with 1024 shared negatives, SASRec on all positions with
  sampled softmax over 2048 shared negatives; full-ranking HR@10 of the test items, history excluded.

Each seed draws its own data (ranking tables) and initial weights, shared by both precisions, so
the comparison is paired: "within noise" = the mean over the seeds of (bf16 - fp32) lies within
0.002 (AUC or HR@10; for HR@10 on ~36k test users 0.002 is about two binomial standard errors).

    PYTHONPATH=src python benchmarks/precision_quality.py --seeds 0 1 2
    PYTHONPATH=src python benchmarks/precision_quality.py --render-log run.log   # table from a run's lines
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from throughput_deepfm import DENSE, SPARSE, VOCAB, make_table  # noqa: E402

from recforge.data import (  # noqa: E402
    BatchLoader,
    ColumnarDataset,
    NegativeSampler,
    catalog_of,
    eval_samples,
    leave_one_out_split,
    next_item_samples,
    sequence_samples,
)
from recforge.features import DenseFeature, RandomNormal, SequenceFeature, SparseFeature  # noqa: E402
from recforge.metrics import RankingEvaluator, auc_score  # noqa: E402
from recforge.precision import cpu_info  # noqa: E402

BEAUTY = HERE.parent.parent / "shared" / "data" / "sequential" / "bert4rec_amazon_beauty" / "beauty.txt"
MODELS = ("DeepFM", "DCNv2", "DIN", "YoutubeDNN", "SASRec")


def _ctr(name: str, seed: int, precision: str) -> float:
    from recforge.models.ranking import DCNv2, DeepFM
    from recforge.trainers import CTRTrainer

    cols, labels, _ = make_table(200_000, seed=100 + seed)
    cut = 180_000
    train = ColumnarDataset({k: v[:cut] for k, v in cols.items()}, labels[:cut])
    test = ColumnarDataset({k: v[cut:] for k, v in cols.items()}, labels[cut:])
    torch.manual_seed(seed)
    dense = [DenseFeature(c) for c in DENSE]
    sparse = [SparseFeature(c, vocab_size=VOCAB, embed_dim=16) for c in SPARSE]
    mlp = {"dims": [256, 128], "dropout": 0.2, "batch_norm": True}
    if name == "DeepFM":
        model: torch.nn.Module = DeepFM(dense + sparse, sparse, mlp_params=mlp, sparse=True, fused=True)
    else:
        model = DCNv2(dense + sparse, n_cross_layers=2, mlp_params=mlp, model_structure="parallel")
    with tempfile.TemporaryDirectory() as d:
        tr = CTRTrainer(model, n_epoch=1, model_path=d, progress=False, plot=False, precision=precision)
        tr.train_one_epoch(BatchLoader(train, 2048, shuffle=True, seed=seed))
        prob = tr.predict(model, BatchLoader(test, 8192))
    return float(auc_score(labels[cut:], prob))


def _din(seed: int, precision: str) -> float:
    from _seq_ctr_common import build_model
    from seq_ctr_planted import specs_for

    from recforge.datasets.synthetic_behavior import make_behavior_ctr
    from recforge.trainers import CTRTrainer

    data = make_behavior_ctr(80_000, seed=100 + seed, num_items=200, num_categories=20, max_len=10)
    train = {k: v[:60_000] for k, v in data.columns.items()}
    test = {k: v[60_000:] for k, v in data.columns.items()}
    specs = specs_for(data.num_items, data.num_categories, 16, data.max_len, 1e-4)
    torch.manual_seed(seed)
    model = build_model("DIN", specs)
    with tempfile.TemporaryDirectory() as d:
        tr = CTRTrainer(model, optimizer_params={"lr": 3e-3}, n_epoch=1, model_path=d, progress=False,
                        plot=False, precision=precision)  # fmt: skip
        tr.train_one_epoch(BatchLoader(ColumnarDataset(train), 512, shuffle=True, seed=seed))
        prob = tr.predict(model, BatchLoader(ColumnarDataset(test), 4096))
    return float(auc_score(test["label"], prob))


_BEAUTY: dict[str, object] = {}


def _beauty():
    if not _BEAUTY:
        raw = np.loadtxt(BEAUTY, dtype=np.int64)
        log = pd.DataFrame({"user_id": raw[:, 0], "item_id": raw[:, 1], "time": np.arange(len(raw))})
        _BEAUTY["split"] = leave_one_out_split(log)
    return _BEAUTY["split"]


def _retrieval(name: str, seed: int, precision: str) -> float:
    from recforge.models.matching import SASRec, YoutubeDNN
    from recforge.trainers import MatchTrainer, SeqTrainer

    sp = _beauty()
    test_h = sp.histories("train", "valid")  # type: ignore[attr-defined]
    test = ColumnarDataset(eval_samples(test_h, sp.test, 50))  # type: ignore[attr-defined]
    n = sp.num_items  # type: ignore[attr-defined]
    evaluator = RankingEvaluator(catalog_of(n), ks=(10,), seen=test_h.seen(), normalize=True)
    item = SparseFeature("item_id", n, 64, initializer=RandomNormal(std=0.02))
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as d:
        common = {"n_epoch": 1, "model_path": d, "progress": False, "plot": False, "precision": precision}
        if name == "SASRec":
            hist = SequenceFeature("hist_item_id", n, 64, shared_with="item_id", max_len=50)
            model: torch.nn.Module = SASRec([hist], [item], max_len=50, dropout_rate=0.5)
            train = ColumnarDataset(sequence_samples(sp.histories(), 50))  # type: ignore[attr-defined]
            tr = SeqTrainer(model, num_items=n, loss="sampled_softmax", num_negatives=2048, temperature=0.05,
                            l2_normalize=True, optimizer_params={"lr": 3e-3}, **common)  # fmt: skip
            tr.train_one_epoch(BatchLoader(train, 128, shuffle=True, seed=seed))
        else:
            bag = SequenceFeature("hist_item_id", n, 64, pooling="mean", shared_with="item_id", max_len=50)
            model = YoutubeDNN([bag], [item], user_params={"dims": [64]}, temperature=0.05, normalize=True)
            train = ColumnarDataset(next_item_samples(sp.histories(), 50))  # type: ignore[attr-defined]
            tr = MatchTrainer(model, mode=2, negatives="shared", num_negatives=1024, sampler=NegativeSampler(n),
                              optimizer_params={"lr": 3e-3}, **common)  # fmt: skip
            tr.train_one_epoch(BatchLoader(train, 1024, shuffle=True, seed=seed))
        metrics = evaluator.evaluate(model, BatchLoader(test, 1024))
    return float(metrics["hr@10"])


def run(name: str, seed: int, precision: str) -> float:
    if name in ("DeepFM", "DCNv2"):
        return _ctr(name, seed, precision)
    if name == "DIN":
        return _din(seed, precision)
    return _retrieval(name, seed, precision)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "precision_quality.md")
    ap.add_argument("--render-log", type=Path, help="only rebuild the table from a run's printed JSON lines")
    ap.add_argument("--command", help="with --render-log: the command that produced the log")
    args = ap.parse_args()
    if args.render_log:
        recs = [json.loads(x) for x in args.render_log.read_text().splitlines() if x.startswith('{"model"')]
        res: dict[str, dict[str, list[float]]] = {}
        sec: dict[str, dict[str, list[float]]] = {}
        for r in recs:
            res.setdefault(r["model"], {}).setdefault(r["precision"], []).append(r["value"])
            sec.setdefault(r["model"], {}).setdefault(r["precision"], []).append(r["cpu_s"])
        seeds = sorted({r["seed"] for r in recs})
        write_table(args.out, args.command or "(see the log)", res, sec, [os.getloadavg()[0]], seeds)
        return
    torch.set_num_threads(args.threads)
    command = "PYTHONPATH=src python " + shlex.join([os.path.relpath(__file__, HERE.parent), *sys.argv[1:]])
    loads = [os.getloadavg()[0]]
    results: dict[str, dict[str, list[float]]] = {}
    seconds: dict[str, dict[str, list[float]]] = {}
    for name in args.models:
        for seed in args.seeds:
            for precision in ("fp32", "bf16"):
                t0 = time.process_time()
                value = run(name, seed, precision)
                cpu = time.process_time() - t0
                results.setdefault(name, {}).setdefault(precision, []).append(value)
                seconds.setdefault(name, {}).setdefault(precision, []).append(cpu)
                loads.append(os.getloadavg()[0])
                print(json.dumps({"model": name, "seed": seed, "precision": precision, "value": value,
                                  "cpu_s": round(cpu, 1)}), flush=True)  # fmt: skip
    write_table(args.out, command, results, seconds, loads, args.seeds)


def write_table(
    out: Path,
    command: str,
    results: dict[str, dict[str, list[float]]],
    seconds: dict[str, dict[str, list[float]]],
    loads: list[float],
    seeds: list[int],
) -> None:
    lines = [
        "# bf16 autocast vs float32: one-epoch test quality",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {cpu_info().describe()}; 1-minute load average {min(loads):.1f}-{max(loads):.1f}.",
        "",
        f"Seeds {seeds}: each seed draws its own data (ranking tables) and initial weights and batch "
        "order, the same in both precisions (paired). One epoch; metric = test AUC (DeepFM, DCNv2, DIN) "
        "or full-ranking HR@10 of the test users (YoutubeDNN, SASRec). Within noise = |mean over seeds "
        "of (bf16 - fp32)| <= 0.002. CPU s = training + evaluation CPU time of one run (median).",
        "",
        "| model | metric | fp32 per seed | bf16 per seed | bf16 - fp32 (mean ± std over seeds) | within 0.002 | "
        "CPU s fp32 | CPU s bf16 |",
        "|---|---|---|---|---|---|---:|---:|",
    ]
    for name, r in results.items():
        f, b = r["fp32"], r["bf16"]
        diffs = [y - x for x, y in zip(f, b)]
        mean = statistics.fmean(diffs)
        spread = f" ± {statistics.stdev(diffs):.4f}" if len(diffs) > 1 else ""
        metric = "AUC" if name in ("DeepFM", "DCNv2", "DIN") else "HR@10"
        ms = [statistics.median(seconds[name][p]) for p in ("fp32", "bf16")]
        lines.append(
            f"| {name} | {metric} | {' / '.join(f'{v:.4f}' for v in f)} | {' / '.join(f'{v:.4f}' for v in b)} | "
            f"{mean:+.4f}{spread} | {'yes' if abs(mean) <= 0.002 else '**no**'} | {ms[0]:.0f} | {ms[1]:.0f} |"
        )
    text = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    print(text)


def _ms(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"


if __name__ == "__main__":
    main()
