"""Smoke runs of the retrieval-quality benchmarks on tiny generated files in their real layouts
(``retrieval_gowalla.py`` for every two-tower / multi-interest model, ``generative_beauty.py`` for
every next-item model), so the scripts that produce ``results/retrieval.md`` cannot rot. Both train
through ``recforge.runs.train``; every user with a test item is evaluated."""

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


def _script(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(ROOT / "benchmarks" / script), *args]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)


def _run(tmp_path: Path, make_data: Callable[[Path], None], script: str, model: str, *args: str) -> Path:
    """Write the tiny data, run ``script`` on it for ``model``; returns the results root."""
    if not (tmp_path / "data").exists():
        make_data(tmp_path / "data")
    out = tmp_path / "out"
    proc = _script(
        script, "--data-dir", str(tmp_path / "data"), "--model", model, *args, "--out-dir", str(out)
    )
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
    record = json.loads((out / f"gowalla_m1_{model}.json").read_text())
    assert record["dataset"] == "gowalla_m1" and record["model"] == model
    assert record["users_evaluated"] == record["users_total"] == 60 and record["epochs_run"] == 2
    assert record["best_epoch"] in (0, 1) and all("val_recall@20" in r for r in record["history"])
    assert {"recall@20", "ndcg@20", "hr@20"} <= record["test"].keys()
    assert all(0.0 <= record["test"][k] <= 1.0 for k in ("recall@20", "ndcg@20", "hr@20"))
    assert "--out-dir" in record["command"] and record["peak_rss_mb"] > 0 and record["median_epoch_s"] > 0
    assert record["config"]["data"]["samples"] == {
        "kind": "bag",
        "max_len": 5,
        "dropout": 0.3,
        "max_per_user": 0,
    }


@pytest.mark.benchmark
@pytest.mark.parametrize(
    "flags",
    [
        ["--negatives", "mixed", "--temperature", "0.08"],
        ["--dot", "--temperature", "0.5"],
        ["--negatives", "all"],
        ["--neg-alpha", "0.75", "--exclude-seen"],
        ["--negatives", "mixed", "--exclude-seen"],
        ["--negatives", "in_batch", "--weight-decay", "1e-5"],
    ],
)
def test_gowalla_script_youtubednn_row_flags(tmp_path: Path, flags: list[str]) -> None:
    """The flags of the YoutubeDNN rows and sweeps: no user MLP (``--dims`` with no value), mixed
    negatives, raw dot scores, full softmax, popularity-drawn negatives, seen items masked."""
    out = _run(
        tmp_path, _gowalla_like, "retrieval_gowalla.py", "YoutubeDNN", "--epochs", "1", "--batch-size", "64",
        "--num-negatives", "16", "--history", "5", "--eval-history", "10", "--embed-dim", "8", "--dims", *flags,
    )  # fmt: skip
    record = json.loads((out / "gowalla_m1_YoutubeDNN.json").read_text())
    assert record["args"]["dims"] == [] and record["epochs_run"] == 1 and record["best_epoch"] is None
    assert record["config"]["model"]["params"]["user_params"] == {"dims": []}
    assert np.isfinite(record["history"][0]["train_loss"]) and 0.0 <= record["test"]["recall@20"] <= 1.0


@pytest.mark.benchmark
def test_gowalla_script_caps_targets_per_user(tmp_path: Path) -> None:
    """``--max-per-user 3``: every epoch trains on 3 of each user's 6 training items."""
    out = _run(
        tmp_path, _gowalla_like, "retrieval_gowalla.py", "YoutubeDNN", "--epochs", "2", "--batch-size", "64",
        "--num-negatives", "16", "--history", "5", "--eval-history", "10", "--embed-dim", "8", "--dims",
        "--max-per-user", "3",
    )  # fmt: skip
    record = json.loads((out / "gowalla_m1_YoutubeDNN.json").read_text())
    assert record["samples_per_epoch"] == 180  # 60 users x 3 of their 6 training items
    assert record["epochs_run"] == 2 and 0.0 <= record["test"]["recall@20"] <= 1.0


@pytest.mark.benchmark
def test_gowalla_script_user_id_embedding(tmp_path: Path) -> None:
    """``--user-id``: a user-id embedding joins the history bag in the user tower."""
    out = _run(
        tmp_path, _gowalla_like, "retrieval_gowalla.py", "DSSM", "--epochs", "1", "--batch-size", "64",
        "--num-negatives", "16", "--history", "5", "--eval-history", "10", "--embed-dim", "8", "--user-id",
    )  # fmt: skip
    record = json.loads((out / "gowalla_m1_DSSM.json").read_text())
    assert record["config"]["model"]["inputs"]["user_features"] == ["user_id", "hist_item_id"]
    assert record["users_evaluated"] == 60 and 0.0 <= record["test"]["recall@20"] <= 1.0


@pytest.mark.benchmark
def test_gowalla_script_refit_and_run_dir(tmp_path: Path) -> None:
    """``--refit``: the epoch count chosen on validation, then a model trained on every training
    item for that many epochs is tested; ``--run-dir`` keeps the library's run directory."""
    run_dir = tmp_path / "run"
    out = _run(
        tmp_path, _gowalla_like, "retrieval_gowalla.py", "YoutubeDNN", "--epochs", "3", "--batch-size", "64",
        "--num-negatives", "16", "--history", "5", "--eval-history", "10", "--embed-dim", "8", "--dims",
        "--valid-fraction", "0.2", "--patience", "3", "--refit", "--run-dir", str(run_dir), "--tag", "_refit",
    )  # fmt: skip
    record = json.loads((out / "gowalla_m1_YoutubeDNN_refit.json").read_text())
    assert len(record["selection_history"]) == 3 and record["best_epoch"] in (0, 1, 2)
    assert record["epochs_run"] == record["best_epoch"] + 1  # the refit ran the chosen count
    assert all("val_recall@20" not in r for r in record["history"])
    assert record["samples_per_epoch"] == 360  # refit on all 6 training items of each of 60 users
    assert (run_dir / "selection" / "selected.json").exists() and (run_dir / "test_metrics.json").exists()
    assert record["users_evaluated"] == record["users_total"] == 60


@pytest.mark.benchmark
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--own-history-table"], "--own-history-table is no longer supported"),
        (["--valid-users", "100"], "--valid-users is no longer supported"),
        (["--refit"], "--refit chooses the epoch count on validation"),
    ],
)
def test_gowalla_script_dropped_flags_fail_clearly(tmp_path: Path, flags: list[str], message: str) -> None:
    proc = _script("retrieval_gowalla.py", "--data-dir", str(tmp_path), "--out-dir", str(tmp_path), *flags)
    assert proc.returncode != 0 and message in proc.stderr


@pytest.mark.benchmark
@pytest.mark.parametrize("model", ["HSTU", "SASRec", "GRU4Rec", "NARM", "STAMP"])
def test_beauty_script_runs_every_model(tmp_path: Path, model: str) -> None:
    out = _run(
        tmp_path, _beauty_like, "generative_beauty.py", model, "--epochs", "2", "--dim", "8",
        "--negatives", "8", "--batch-size", "16", "--max-len", "10", "--heads", "2",
    )  # fmt: skip
    row = json.loads((out / "generative_beauty" / f"beauty_{model}_2ep_8neg_2heads.json").read_text())
    assert row["dataset"] == "beauty" and len(row["valid_ndcg@10"]) == 2 and 1 <= row["best_epoch"] <= 2
    assert row["users_evaluated"] == row["users_total"] == 40  # every user, test item seen or not
    assert all(0.0 <= row[k] <= 1.0 for k in ("hr@10", "ndcg@10", "hr@50", "ndcg@50"))
    table = (out / "generative_beauty.md").read_text()
    assert f"| beauty | {model} | 2 (" in table and "| 40 of 40 |" in table


@pytest.mark.benchmark
def test_beauty_rows_of_another_file_never_overwrite_beauty_rows(tmp_path: Path) -> None:
    """A row's key and table line hold the data set: a run on another file (``--data-file``, named
    by its stem or ``--dataset``) adds rows; an old-protocol row (no ``users_total``) is kept and
    labelled as such."""
    rows = tmp_path / "out" / "generative_beauty"
    rows.mkdir(parents=True)
    old = {"model": "SASRec", "epochs": 2, "dim": 8, "layers": 2, "heads": 1, "max_len": 10, "negatives": 8,
           "users": 36208, "hr@10": 0.5, "ndcg@10": 0.25, "hr@50": 0.75, "ndcg@50": 0.3, "train_s": 10.0,
           "best_epoch": 2, "peak_rss_mb": 100.0, "command": "old command"}  # fmt: skip
    (rows / "SASRec_2ep_8neg.json").write_text(json.dumps(old))
    common = ["--epochs", "1", "--dim", "8", "--negatives", "8", "--batch-size", "16", "--max-len", "10"]
    _run(tmp_path, _beauty_like, "generative_beauty.py", "SASRec", *common)
    other = tmp_path / "other.txt"
    lines = (
        (tmp_path / "data" / "sequential" / "bert4rec_amazon_beauty" / "beauty.txt").read_text().splitlines()
    )
    other.write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    _run(tmp_path, _beauty_like, "generative_beauty.py", "SASRec", *common, "--data-file", str(other))
    _run(tmp_path, _beauty_like, "generative_beauty.py", "SASRec", *common, "--data-file", str(other),
         "--dataset", "half")  # fmt: skip
    names = sorted(p.name for p in rows.glob("*.json"))
    assert names == [
        "SASRec_2ep_8neg.json", "beauty_SASRec_1ep_8neg.json", "half_SASRec_1ep_8neg.json",
        "other_SASRec_1ep_8neg.json",
    ]  # fmt: skip
    assert json.loads((rows / "SASRec_2ep_8neg.json").read_text()) == old
    assert json.loads((rows / "other_SASRec_1ep_8neg.json").read_text())["data_file"] == str(other)
    table = (tmp_path / "out" / "generative_beauty.md").read_text()
    assert "| beauty | SASRec | 2 (2) |" in table and "| old protocol: 36,208 of 40,226 |" in table
    assert "| other | SASRec | 1 (1) |" in table and "| half | SASRec | 1 (1) |" in table


@pytest.mark.benchmark
def test_movielens_script_sasrec_on_recbole_files(tmp_path: Path) -> None:
    """``generative_movielens.py`` reads the RecBole files ``load_ml100k`` extracts (a tiny stand-in
    here) through the library; a new row never replaces a row of the pre-library script."""
    from data_files import write_recbole

    write_recbole(tmp_path / "cache" / "ml-100k", name="ml-100k")
    rows = tmp_path / "out" / "generative_movielens"
    rows.mkdir(parents=True)
    old = {"model": "SASRec", "epochs": 2, "best_epoch": 2, "dim": 8, "layers": 2, "max_len": 6, "negatives": 8,
           "trainable_params": 1, "users": 940, "hr@10": 0.5, "ndcg@10": 0.25, "hr@50": 0.75, "ndcg@50": 0.3,
           "build_s": 1.0, "train_s": 10.0, "peak_rss_mb": 100.0, "load_1min_start": 1.0, "load_1min_end": 1.0,
           "command": "old command"}  # fmt: skip
    (rows / "SASRec_2ep.json").write_text(json.dumps(old))
    proc = _script(
        "generative_movielens.py", "--model", "SASRec", "--cache-dir", str(tmp_path / "cache"), "--epochs", "2",
        "--dim", "8", "--max-len", "6", "--negatives", "8", "--batch-size", "16", "--out-dir", str(tmp_path / "out"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = json.loads((rows / "ml-100k_SASRec_2ep.json").read_text())
    assert row["users_evaluated"] == row["users_total"] == 120 and len(row["valid_ndcg@10"]) == 2
    assert json.loads((rows / "SASRec_2ep.json").read_text()) == old
    table = (tmp_path / "out" / "generative_movielens.md").read_text()
    assert "| 120 of 120 |" in table and "| old protocol: 940 of 943 |" in table
