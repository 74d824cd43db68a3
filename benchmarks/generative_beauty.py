"""Next-item models on Amazon Beauty under one protocol: HSTU, SASRec, GRU4Rec, NARM, STAMP (same
embedding size, negatives, loss and epochs), trained by the library (``recforge.runs.train``) from a
config built out of the flags; leave-one-out, full ranking over all items for every user with the
user's seen items excluded, HR/NDCG@10/50, wall time, peak RSS.

Data: ``--data-file`` (``uid iid`` per line in time order, ``data.format: user_item_pairs``; default
``<data-dir>/sequential/bert4rec_amazon_beauty/beauty.txt``). ``--dataset`` names it (default: the
file's stem); the name is part of every row's key and a column of the table, so a run on another
file adds its own rows and never overwrites the Beauty rows.

Each invocation trains one model in this process (so peak RSS is that model's) and writes a JSON
row under ``benchmarks/results/generative_beauty/``; the markdown table
``benchmarks/results/generative_beauty.md`` is rebuilt from every row present
(``--table-only``: rebuild it without training).

    PYTHONPATH=src timeout 900 python benchmarks/generative_beauty.py --model HSTU --epochs 8
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from _generative_common import (
    ID_MODELS,
    RESULTS,
    ROOT,
    add_common_args,
    id_features,
    id_model_section,
    load_rows,
    save_row,
    seq_config,
    train_and_test,
    users_cell,
    write_markdown,
)
from _retrieval_common import command_line, peak_rss_mb

from recforge.precision import cpu_info

BEAUTY_FILE = Path("sequential") / "bert4rec_amazon_beauty" / "beauty.txt"
OLD_PROTOCOL_USERS = {"beauty": 40_226}  # users with a test item in the Beauty file (old rows lack it)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--data-file", type=Path, default=None, help=f"default: <data-dir>/{BEAUTY_FILE}")
    p.add_argument(
        "--dataset", default=None, help="the data set's name in rows and table (default: file stem)"
    )
    p.add_argument("--model", default="HSTU", choices=ID_MODELS)
    add_common_args(p, epochs=8, max_len=50)
    args = p.parse_args(argv)
    args.data_file = args.data_file or args.data_dir / BEAUTY_FILE
    args.dataset = args.dataset or args.data_file.stem
    return args


def row_key(args: argparse.Namespace) -> str:
    return (
        f"{args.dataset}_{args.model}_{args.epochs}ep_{args.negatives}neg"
        + (f"_drop{args.dropout}" if args.dropout != 0.2 else "")
        + (f"_{args.layers}layers" if args.layers != 2 else "")
        + (f"_{args.heads}heads" if args.heads != 1 else "")
        + ("_pos" if args.position_embedding else "")
        + (f"_{args.loss}" if args.loss != "sampled_softmax" else "")
        + ("_refit" if args.refit else "")
        + (f"_seed{args.seed}" if args.seed else "")
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    load_before = os.getloadavg()[0]
    config = seq_config(
        {"format": "user_item_pairs", "path": str(args.data_file)},
        id_features(args),
        id_model_section(args.model, args),
        args,
    )
    _, measured = train_and_test(config, args)
    row = {
        "dataset": args.dataset, "data_file": str(args.data_file), "model": args.model,
        "epochs": args.epochs, "dim": args.dim, "layers": args.layers, "heads": args.heads,
        "max_len": args.max_len, "negatives": args.negatives, "temperature": args.temperature,
        "dropout": args.dropout, "loss": args.loss, "seed": args.seed, "refit": args.refit,
        "position_embedding": args.position_embedding, "threads": args.threads,
        **measured,
        "peak_rss_mb": peak_rss_mb(), "load_1min_start": load_before, "load_1min_end": os.getloadavg()[0],
        "command": command_line(), "config": config,
    }  # fmt: skip
    save_row("generative_beauty", row_key(args), row, write_table, args.out_dir)


def _epochs(row: dict[str, Any]) -> str:
    best = f" ({row['best_epoch']})" if row.get("best_epoch") is not None else ""
    refit = f", refit {row['refit_epochs']}" if row.get("refit_epochs") else ""
    return f"{row['epochs']}{best}{refit}"


def _load(row: dict[str, Any]) -> str:
    return f"{row['load_1min_start']:.1f}/{row['load_1min_end']:.1f}" if "load_1min_start" in row else "n/a"


def _seconds(row: dict[str, Any]) -> tuple[str, str]:
    """``(wall s, s/epoch)``: rows of the library protocol record the whole run and the median
    training epoch; older rows the training + validation time (and its mean per epoch)."""
    if "wall_s" in row:
        return f"{row['wall_s']:.0f}", f"{row['epoch_s']:.0f}"
    return f"{row['train_s']:.0f}", f"{row['train_s'] / row['epochs']:.0f}"


def write_table(out_dir: Path) -> None:
    rows: list[Any] = sorted(
        load_rows(out_dir), key=lambda r: (r.get("dataset", "beauty"), "users_total" not in r)
    )
    lines = [
        "# Amazon Beauty (and other `uid iid` files): next-item retrieval (leave-one-out, full ranking, seen items excluded)",
        "",
        *[f"`{r['command']}`  " for r in rows],
        "",
        "Anchor (published, SASRec full CE on the Beauty file, every user evaluated): HR@10 0.0533, NDCG@10 0.0327.",
        "",
        "Protocol (rows with `N of M` users): `recforge.runs.train` on a leave-one-out split whose item "
        "vocabulary is the whole catalogue, so **every user with a test item is evaluated** (`users`: "
        "evaluated of total); the user's earlier items are excluded from the ranking; best epoch by "
        "validation NDCG@10 (`refit`: that many epochs retrained on training + validation sequences and "
        "tested). Rows marked `old protocol` were measured by this script's pre-library version, whose "
        "vocabularies were fit on the training part: users whose test item never occurs in training "
        "were dropped (on Beauty 36,208 of the 40,226 users were evaluated), so their numbers are not "
        "comparable with the others'. `data` is the data set (the file's stem or `--dataset`). Every "
        "model: sampled softmax over shared uniform negatives (logQ-corrected), L2-normalised vectors, "
        f"temperature 0.05, Adam, 1 thread on {cpu_info().describe()}; `load` is its 1-minute load average at "
        "the start/end of the run (n/a: not recorded for the first runs; loads above 2 mean other jobs "
        "shared the cores, so those wall times are upper bounds). `wall s`: the whole run (data, "
        "training, validation, refit, test) for library rows, training + validation for old rows; "
        "`s/epoch`: the median training epoch for library rows, training + validation per epoch for old "
        "rows. The 4- and 14-epoch rows are short runs, far from converged. Dropout 0.5 is the SASRec "
        "paper's setting for the sparse Amazon data (0.2 for MovieLens). GRU4Rec and NARM: one GRU layer "
        "of width `dim`, dropout on the embeddings (NARM also on the session representation); STAMP has "
        "no dropout; `layers` and `heads` apply to SASRec and HSTU only.",
        "",
        "| data | model | epochs (best) | dim | layers | heads | max_len | negatives | dropout | seed | users | HR@10 | NDCG@10 | HR@50 | NDCG@50 | wall s | s/epoch | peak RSS MB | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        data = r.get("dataset", "beauty")
        wall, per_epoch = _seconds(r)
        lines.append(
            f"| {data} | {r['model']}{' +pos' if r.get('position_embedding') else ''} | {_epochs(r)} | {r['dim']} | "
            f"{r['layers']} | {r.get('heads', 1)} | {r['max_len']} | {r['negatives']} | {r.get('dropout', 0.2)} | "
            f"{r.get('seed', 0)} | {users_cell(r, OLD_PROTOCOL_USERS.get(data))} | {r['hr@10']:.4f} | "
            f"{r['ndcg@10']:.4f} | {r['hr@50']:.4f} | {r['ndcg@50']:.4f} | {wall} | {per_epoch} | "
            f"{r['peak_rss_mb']:.0f} | {_load(r)} |"
        )
    write_markdown(out_dir.parent / "generative_beauty.md", lines)


if __name__ == "__main__":
    if sys.argv[1:] == ["--table-only"]:
        write_table(RESULTS / "generative_beauty")
    else:
        main()
