"""Two-tower retrieval on Gowalla (the LightGCN/BARS ``gowalla_m1`` split): DSSM, YoutubeDNN, MIND,
ComirecDR, ComirecSA. Recall@20, NDCG@20, HR@20 by full ranking over every item, each user's
training items excluded (``RankingEvaluator``); the given train/test split is used as is.

User inputs (the data has no timestamps, so a history is a *set*): every training interaction
``(u, i)`` is one sample whose target is ``i`` and whose history is a bag of the user's *other*
training items (all of them when there are at most ``--history`` others, else ``--history`` drawn
at random, redrawn every epoch), so the target never leaks into its own input; with
``--history-dropout p`` each bag item is also dropped with probability ``p`` (at least one kept), an
input dropout that keeps the bag model from memorising users. At test time the history is the user's
training items (at most ``--eval-history``, a fixed random subset beyond that). This is BARS'
YoutubeNet setting (user = pooled interacted items) with the target held out; ``--dims`` with no
value drops the user MLP, so the user vector is the mean history embedding itself (BARS'
``user_hidden_units: null``). Training is list-wise (``MatchTrainer`` mode 2) against
``--num-negatives`` uniform negatives shared by the batch (sampled softmax; uniform logQ is a
constant; ``--negatives mixed`` adds the other rows' positives, logQ-corrected by training
frequency; ``--negatives all`` is the full softmax over every item; ``--neg-alpha a`` draws the
shared negatives by training popularity**a instead, logQ-corrected) with cosine scores (raw dot
products with ``--dot``) divided by ``--temperature``; ``--cosine-lr`` anneals the learning rate to 0
over ``--epochs``. Each row's own target is masked out of its negatives, and with ``--exclude-seen``
every item its user has trained on. ``--max-per-user c`` trains each epoch on at most ``c`` targets
per user (a fresh random subset every epoch), so that heavy users do not dominate the loss: the
YoutubeDNN paper's "fixed number of training examples per user" (Covington et al. 2016, 4.1).

Model selection: with ``--valid-fraction f`` a random fraction ``f`` of every user's training items
(users with at least 3) is held out of training as a validation split; after each epoch Recall@20 is
measured on it (full ranking, the remaining training items as history and excluded), training stops
after ``--patience`` epochs without improvement, and the best epoch's weights are tested (history and
exclusions: all training items, as without validation); this is ``MatchTrainer.fit`` with a
validation loader. Without it all ``--epochs`` run and the last epoch is tested; the record says how
many ran.

Example (the YoutubeDNN row ``_seenx60s0`` of ``results/retrieval.md``; ~50 min on one CPU thread):
    PYTHONPATH=src python benchmarks/retrieval_gowalla.py --model YoutubeDNN --batch-size 1024 \
        --history 50 --eval-history 1000 --num-negatives 2048 --epochs 60 --lr 1e-2 --cosine-lr \
        --history-dropout 0.5 --dims --temperature 0.08 --exclude-seen --seed 0 --tag _seenx60s0
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from _retrieval_common import RESULTS, command_line, default_data_dir, peak_rss_mb, write_result

from recforge.data.catalog import catalog_of
from recforge.data.interactions import SeenItems
from recforge.data.sampling import NegativeSampler
from recforge.features import RandomNormal, SequenceFeature, SparseFeature
from recforge.metrics.ranking import RankingEvaluator
from recforge.models.matching import DSSM, MIND, ComirecDR, ComirecSA, YoutubeDNN
from recforge.trainers.match import MatchTrainer

MODELS = ("YoutubeDNN", "DSSM", "MIND", "ComirecDR", "ComirecSA")


def read_lists(path: Path) -> list[np.ndarray]:
    """``uid i1 i2 ...`` per line -> item lists indexed by user id + 1 (ids shifted by 1; 0 = padding)."""
    rows: dict[int, np.ndarray] = {}
    with open(path) as fh:
        for line in fh:
            parts = line.split()
            if parts:
                rows[int(parts[0]) + 1] = np.asarray(parts[1:], dtype=np.int64) + 1
    out = [np.zeros(0, np.int64)] * (max(rows) + 1)
    for u, items in rows.items():
        out[u] = items
    return out


class BagPairs:
    """Batches of ``(user, target, bag of the user's other items)``; bags are redrawn every epoch."""

    def __init__(
        self,
        lists: list[np.ndarray],
        history: int,
        batch_size: int,
        seed: int,
        dropout: float = 0.0,
        max_per_user: int = 0,
    ) -> None:
        self.lengths = np.array([len(x) for x in lists])
        self.indptr = np.concatenate([[0], np.cumsum(self.lengths)])
        self.items = np.concatenate(lists)
        self.users = np.repeat(np.arange(len(lists)), self.lengths)  # one row per interaction
        self.pos = np.arange(len(self.items)) - self.indptr[self.users]  # target's place in its list
        self.history, self.batch_size, self.seed, self.epoch = history, batch_size, seed, 0
        self.dropout, self.max_per_user = dropout, max_per_user

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def num_samples(self) -> int:
        if not self.max_per_user:
            return len(self.items)
        return int(np.minimum(self.lengths, self.max_per_user).sum())

    def __len__(self) -> int:
        return -(-self.num_samples() // self.batch_size)

    def _epoch_rows(self, rng: np.random.Generator) -> np.ndarray:
        """This epoch's interactions in random order: all of them, or with ``max_per_user`` at most
        that many targets per user (a fresh random subset each epoch), so every user weighs about the
        same in the loss instead of heavy users dominating it (YoutubeDNN's paper, section 4.1)."""
        if not self.max_per_user:
            return rng.permutation(len(self.items))
        by_user = np.lexsort((rng.random(len(self.items)), self.users))  # users' rows, shuffled within
        rank = np.arange(len(by_user)) - self.indptr[self.users[by_user]]
        return rng.permutation(by_user[rank < self.max_per_user])

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        order = self._epoch_rows(rng)
        h = self.history
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            u, p = self.users[idx], self.pos[idx]
            others = self.lengths[u] - 1  # (B,)
            r = np.broadcast_to(np.arange(h), (len(idx), h)).copy()  # (B, H)
            big = others > h
            r[big] = rng.integers(0, others[big, None], (int(big.sum()), h))
            j = r + (r >= p[:, None])  # skip the target's own position
            valid = r < others[:, None]
            if self.dropout:  # drop each bag item with this probability, keeping at least one
                keep = rng.random(valid.shape) >= self.dropout
                keep[np.arange(len(idx)), rng.integers(0, np.maximum(np.minimum(others, h), 1))] = True
                valid &= keep
            hist = np.where(valid, self.items[self.indptr[u][:, None] + np.where(valid, j, 0)], 0)
            yield {
                "user_id": torch.from_numpy(u),
                "hist_item_id": torch.from_numpy(hist[:, ::-1].copy()),  # (B, H) left-padded
                "item_id": torch.from_numpy(self.items[idx]),
            }


def holdout(lists: list[np.ndarray], fraction: float, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Split each list (of >= 3 items) into ``(fit, valid)`` with ``round(fraction * n)`` (>= 1) valid."""
    rng = np.random.default_rng((seed, 7))
    fit, valid = [], []
    for items in lists:
        n = len(items)
        k = max(1, round(fraction * n)) if n >= 3 else 0
        order = rng.permutation(n)
        fit.append(np.sort(items[order[k:]]))
        valid.append(np.sort(items[order[:k]]))
    return fit, valid


def eval_rows(
    lists: list[np.ndarray], users: np.ndarray, history: int, seed: int
) -> list[dict[str, torch.Tensor]]:
    rng = np.random.default_rng(seed)
    hist = np.zeros((len(users), history), np.int64)
    for row, u in enumerate(users):
        items = lists[u]
        if len(items) > history:
            items = rng.choice(items, history, replace=False)
        if len(items):
            hist[row, history - len(items) :] = items
    return [
        {
            "user_id": torch.from_numpy(users[s : s + 2048]),
            "hist_item_id": torch.from_numpy(hist[s : s + 2048]),
        }
        for s in range(0, len(users), 2048)
    ]


def build(args: argparse.Namespace, num_users: int, num_items: int) -> torch.nn.Module:
    d, length = args.embed_dim, max(args.history, args.eval_history)
    dims = [d] if args.dims is None else args.dims
    init = RandomNormal(std=args.init_std)
    item = SparseFeature("item_id", num_items, d, initializer=init)
    user = [SparseFeature("user_id", num_users, d, initializer=init)] if args.user_id else []
    shared = None if args.own_history_table else "item_id"
    bag = SequenceFeature("hist_item_id", num_items, d, pooling="mean", shared_with=shared, max_len=length,
                          initializer=init)  # fmt: skip
    seq = SequenceFeature(
        "hist_item_id", num_items, d, pooling="concat", shared_with="item_id", max_len=length
    )
    t, norm = args.temperature, not args.dot
    if args.model == "YoutubeDNN":
        return YoutubeDNN([*user, bag], [item], {"dims": dims}, temperature=t, normalize=norm)
    if args.model == "DSSM":
        return DSSM([*user, bag], [item], {"dims": dims}, {"dims": dims}, temperature=t, normalize=norm)
    multi = dict(max_length=length, temperature=t, interest_num=args.interests, normalize=norm)
    if args.model == "MIND":
        return MIND(user, [seq], [item], **multi)
    if args.model == "ComirecDR":
        return ComirecDR(user, [seq], [item], **multi)
    if args.model == "ComirecSA":
        return ComirecSA(user, [seq], [item], add_pos=False, **multi)
    raise ValueError(f"unknown model {args.model!r}; valid: {MODELS}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, default=default_data_dir())
    p.add_argument("--model", choices=MODELS, default="YoutubeDNN")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--history", type=int, default=50)
    p.add_argument("--eval-history", type=int, default=100)
    p.add_argument("--embed-dim", type=int, default=64)
    p.add_argument(
        "--dims", type=int, nargs="*", default=None,
        help="user (and DSSM item) tower widths (default: one linear layer of --embed-dim; "
        "no value: no MLP, the pooled history is the user vector)",
    )  # fmt: skip
    p.add_argument("--user-id", action="store_true", help="add a user-id embedding to the user tower")
    p.add_argument(
        "--own-history-table", action="store_true",
        help="DSSM/YoutubeDNN: the history bag gets its own embedding table (default: the item table)",
    )  # fmt: skip
    p.add_argument("--interests", type=int, default=4)
    p.add_argument("--temperature", type=float, default=0.1)
    p.add_argument("--dot", action="store_true", help="raw dot-product scores (no L2 normalisation)")
    p.add_argument("--num-negatives", type=int, default=2048)
    p.add_argument(
        "--negatives", choices=("shared", "mixed", "in_batch", "all"), default="shared",
        help="shared: --num-negatives uniform items per batch; mixed: plus the other rows' "
        "positives (logQ-corrected by training frequency); in_batch: those positives only; "
        "all: full softmax over every item (--num-negatives unused)",
    )  # fmt: skip
    p.add_argument(
        "--neg-alpha", type=float, default=0.0,
        help="draw sampled negatives by training popularity**alpha (logQ-corrected); 0: uniform",
    )  # fmt: skip
    p.add_argument(
        "--exclude-seen", action="store_true",
        help="mask negatives the row's user has trained on (not only its own target)",
    )  # fmt: skip
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument(
        "--cosine-lr", action="store_true", help="anneal the lr to 0 over --epochs (cosine, per epoch)"
    )
    p.add_argument("--history-dropout", type=float, default=0.0, help="drop bag items in training")
    p.add_argument(
        "--max-per-user", type=int, default=0,
        help="at most this many training targets per user and epoch, redrawn each epoch (0: all)",
    )  # fmt: skip
    p.add_argument("--init-std", type=float, default=0.1)
    p.add_argument("--valid-fraction", type=float, default=0.0, help="hold out for epoch selection")
    p.add_argument("--valid-users", type=int, default=0, help="validate on this many users (0 = all)")
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="")
    p.add_argument("--out-dir", type=Path, default=RESULTS, help="where the JSON record goes")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    t0 = time.perf_counter()
    root = args.data_dir / "retrieval/gowalla_m1"
    train, test = read_lists(root / "train.txt"), read_lists(root / "test.txt")
    num_users = max(len(train), len(test))
    train += [np.zeros(0, np.int64)] * (num_users - len(train))
    test += [np.zeros(0, np.int64)] * (num_users - len(test))
    num_items = (
        int(max(max((x.max() for x in train if len(x)), default=0), max(x.max() for x in test if len(x)))) + 1
    )
    seen = SeenItems.from_lists([x.tolist() for x in train], num_items=num_items)
    truth = SeenItems.from_lists([x.tolist() for x in test], num_items=num_items)
    eval_users = np.flatnonzero([len(x) > 0 for x in test])
    catalog = catalog_of(num_items)
    fit, fit_seen, valid_eval, valid_rows = train, seen, None, None
    if args.valid_fraction:
        fit, valid = holdout(train, args.valid_fraction, args.seed)
        fit_seen = SeenItems.from_lists([x.tolist() for x in fit], num_items=num_items)
        valid_users = np.flatnonzero([len(x) > 0 for x in valid])
        if args.valid_users:
            pick = np.random.default_rng((args.seed, 11)).choice(
                len(valid_users), args.valid_users, replace=False
            )
            valid_users = np.sort(valid_users[pick])
        valid_eval = RankingEvaluator(
            catalog,
            ks=(20,),
            seen=fit_seen,
            ground_truth=SeenItems.from_lists([x.tolist() for x in valid], num_items=num_items),
        )
        valid_rows = eval_rows(fit, valid_users, args.eval_history, args.seed)
    loader = BagPairs(fit, args.history, args.batch_size, args.seed, args.history_dropout, args.max_per_user)
    rows = eval_rows(train, eval_users, args.eval_history, args.seed)
    prep_s = time.perf_counter() - t0

    model = build(args, num_users, num_items)
    counts = np.bincount(loader.items, minlength=num_items)
    exclude = fit_seen if args.exclude_seen else None
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = MatchTrainer(
            model,
            optimizer_params={"lr": args.lr, "weight_decay": args.weight_decay},
            scheduler_fn=torch.optim.lr_scheduler.CosineAnnealingLR if args.cosine_lr else None,
            scheduler_params={"T_max": args.epochs},
            n_epoch=args.epochs,
            earlystop_patience=args.patience,
            model_path=run_dir,
            mode=2,
            negatives=args.negatives,
            item_counts=counts,
            sampler=NegativeSampler.popularity(counts, alpha=args.neg_alpha, seen=exclude)
            if args.neg_alpha
            else NegativeSampler(num_items, seen=exclude),
            num_negatives=args.num_negatives,
            evaluator=valid_eval,
            progress=False,
            plot=False,
            seed=args.seed,
        )
        trainer.fit(loader, valid_rows)  # with validation: early stop, best epoch's weights restored
    history = trainer.history
    t1 = time.perf_counter()
    metrics = RankingEvaluator(catalog, ks=(20,), seen=seen, ground_truth=truth).evaluate(model, rows)
    eval_s = time.perf_counter() - t1
    epoch_s = [r["seconds"] for r in history]
    record = {
        "dataset": "gowalla_m1",
        "model": args.model,
        "command": command_line(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "users_evaluated": len(eval_users),
        "items": num_items - 1,
        "train_interactions": len(loader.items),
        "samples_per_epoch": loader.num_samples(),
        "epochs_run": len(history),
        "best_epoch": trainer.stopper.best_epoch if valid_eval is not None else None,
        "median_epoch_s": float(np.median(epoch_s)),
        "prep_s": prep_s,
        "test_eval_s": eval_s,
        "peak_rss_mb": peak_rss_mb(),
        "test": metrics,
        "history": history,
    }
    path = write_result(f"gowalla_{args.model}{args.tag}", record, args.out_dir)
    print(
        f"{args.model}: recall@20={metrics['recall@20']:.4f} ndcg@20={metrics['ndcg@20']:.4f} "
        f"hr@20={metrics['hr@20']:.4f} -> {path}"
    )


if __name__ == "__main__":
    main()
