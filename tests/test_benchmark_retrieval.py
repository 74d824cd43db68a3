"""Smoke runs of the retrieval-quality benchmarks on tiny generated files in their real layouts
(``retrieval_gowalla.py`` for every two-tower / multi-interest model, ``generative_beauty.py`` for
every next-item model), so the scripts that produce ``results/retrieval.md`` cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT / "src"))


def _run(tmp_path: Path, make_data: Callable[[Path], None], script: str, model: str, *args: str) -> Path:
    """Write the tiny data, run ``script`` on it for ``model``; returns the results root."""
    make_data(tmp_path / "data")
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "benchmarks" / script), "--data-dir", str(tmp_path / "data"),
           "--model", model, *args, "--out-dir", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _gowalla_like(root: Path, users: int = 60, items: int = 40) -> None:
    """``uid i1 i2 ...`` lines (0-based ids), every user with training and test items."""
    rng = np.random.default_rng(0)
    d = root / "retrieval" / "gowalla_m1"
    d.mkdir(parents=True)
    with open(d / "train.txt", "w") as tr, open(d / "test.txt", "w") as te:
        for u in range(users):
            picked = rng.choice(items, 8, replace=False)
            tr.write(" ".join(map(str, [u, *picked[:6]])) + "\n")
            te.write(" ".join(map(str, [u, *picked[6:]])) + "\n")


def _beauty_like(root: Path, users: int = 40, items: int = 30) -> None:
    """``user item`` lines in time order per user, 5..12 interactions each."""
    rng = np.random.default_rng(1)
    d = root / "sequential" / "bert4rec_amazon_beauty"
    d.mkdir(parents=True)
    lines = [f"{u} {i}" for u in range(1, users + 1) for i in rng.integers(1, items + 1, rng.integers(5, 13))]
    (d / "beauty.txt").write_text("\n".join(lines) + "\n")


@pytest.mark.benchmark
@pytest.mark.parametrize("model", ["YoutubeDNN", "DSSM", "MIND", "ComirecDR", "ComirecSA"])
def test_gowalla_script_runs_every_model(tmp_path: Path, model: str) -> None:
    out = _run(
        tmp_path, _gowalla_like, "retrieval_gowalla.py", model, "--epochs", "2", "--batch-size", "64",
        "--num-negatives", "16", "--history", "5", "--eval-history", "10", "--embed-dim", "8",
        "--valid-fraction", "0.2", "--patience", "2", "--cosine-lr", "--history-dropout", "0.3",
    )  # fmt: skip
    record = json.loads((out / f"gowalla_{model}.json").read_text())
    assert record["users_evaluated"] == 60 and record["epochs_run"] == 2
    assert {"recall@20", "ndcg@20", "hr@20"} <= record["test"].keys()
    assert all(0.0 <= record["test"][k] <= 1.0 for k in ("recall@20", "ndcg@20", "hr@20"))
    assert "--out-dir" in record["command"] and record["peak_rss_mb"] > 0


@pytest.mark.benchmark
@pytest.mark.parametrize(
    "flags",
    [
        ["--negatives", "mixed", "--temperature", "0.08"],
        ["--dot", "--temperature", "0.5"],
        ["--negatives", "all"],
        ["--neg-alpha", "0.75", "--exclude-seen"],
        ["--negatives", "mixed", "--exclude-seen"],
    ],
)
def test_gowalla_script_youtubednn_row_flags(tmp_path: Path, flags: list[str]) -> None:
    """The flags of the YoutubeDNN rows and sweeps: no user MLP (``--dims`` with no value), mixed
    negatives, raw dot scores, full softmax, popularity-drawn negatives, seen items masked."""
    out = _run(
        tmp_path, _gowalla_like, "retrieval_gowalla.py", "YoutubeDNN", "--epochs", "1", "--batch-size", "64",
        "--num-negatives", "16", "--history", "5", "--eval-history", "10", "--embed-dim", "8", "--dims", *flags,
    )  # fmt: skip
    record = json.loads((out / "gowalla_YoutubeDNN.json").read_text())
    assert record["args"]["dims"] == [] and record["epochs_run"] == 1
    assert np.isfinite(record["history"][0]["train_loss"]) and 0.0 <= record["test"]["recall@20"] <= 1.0


@pytest.mark.benchmark
def test_gowalla_script_caps_targets_per_user(tmp_path: Path) -> None:
    """``--max-per-user 3``: every epoch trains on 3 of each user's 6 training items."""
    out = _run(
        tmp_path, _gowalla_like, "retrieval_gowalla.py", "YoutubeDNN", "--epochs", "2", "--batch-size", "64",
        "--num-negatives", "16", "--history", "5", "--eval-history", "10", "--embed-dim", "8", "--dims",
        "--max-per-user", "3",
    )  # fmt: skip
    record = json.loads((out / "gowalla_YoutubeDNN.json").read_text())
    assert record["train_interactions"] == 360 and record["samples_per_epoch"] == 180
    assert record["epochs_run"] == 2 and 0.0 <= record["test"]["recall@20"] <= 1.0


@pytest.mark.benchmark
def test_bag_pairs_cap_draws_a_fresh_subset_of_each_users_items(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from retrieval_gowalla import BagPairs

    lists = [np.zeros(0, np.int64), np.arange(1, 6), np.arange(10, 40), np.arange(50, 53)]
    pairs = BagPairs(lists, history=4, batch_size=7, seed=0, max_per_user=4)
    assert pairs.num_samples() == 4 + 4 + 3 and len(pairs) == 2
    drawn = []
    for epoch in range(2):
        pairs.set_epoch(epoch)
        batches = list(pairs)
        users = np.concatenate([b["user_id"].numpy() for b in batches])
        items = np.concatenate([b["item_id"].numpy() for b in batches])
        assert np.bincount(users, minlength=4).tolist() == [0, 4, 4, 3]
        for u in (1, 2, 3):
            mine = items[users == u]
            assert len(set(mine.tolist())) == len(mine) and np.isin(mine, lists[u]).all()
        drawn.append(set(items[users == 2].tolist()))
    assert drawn[0] != drawn[1]  # redrawn each epoch (4 of 30: equal by chance with p < 1e-4)


@pytest.mark.benchmark
@pytest.mark.parametrize("model", ["HSTU", "SASRec", "GRU4Rec", "NARM", "STAMP"])
def test_beauty_script_runs_every_model(tmp_path: Path, model: str) -> None:
    out = _run(
        tmp_path, _beauty_like, "generative_beauty.py", model, "--epochs", "2", "--dim", "8",
        "--negatives", "8", "--batch-size", "16", "--max-len", "10", "--heads", "2",
    )  # fmt: skip
    row = json.loads((out / "generative_beauty" / f"{model}_2ep_8neg_2heads.json").read_text())
    assert len(row["valid_ndcg@10"]) == 2 and 1 <= row["best_epoch"] <= 2
    assert all(0.0 <= row[k] <= 1.0 for k in ("hr@10", "ndcg@10", "hr@50", "ndcg@50"))
    table = (out / "generative_beauty.md").read_text()
    assert f"| {model} | 2 (" in table
