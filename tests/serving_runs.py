"""Tiny trained runs for the serving tests (written with the real ``recforge train``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from recforge.cli import main

ITEMS = [f"i{j}" for j in range(40)]
CATS = {f"i{j}": ("good" if j % 2 == 0 else "bad") for j in range(40)}


def interactions(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    item = rng.choice(ITEMS, n)
    df = pd.DataFrame(
        {
            "user_id": rng.choice([f"u{j}" for j in range(30)], n),
            "item_id": item,
            "cat": [CATS[i] for i in item],
            "age": rng.integers(18, 70, n).astype(float),
        }
    )
    noise = rng.random(n) < 0.05
    df["label"] = ((df["cat"] == "good") ^ noise).astype(int)
    return df


def train_ranking_run(root: Path) -> Path:
    """A DeepFM run on synthetic interactions where items of category 'good' are clicked."""
    root.mkdir(parents=True, exist_ok=True)
    interactions(3000, 0).to_csv(root / "train.csv", index=False)
    interactions(500, 1).to_parquet(root / "test.parquet")
    cfg = {
        "run_dir": str(root / "ranking"),
        "seed": 0,
        "data": {
            "train": str(root / "train.csv"),
            "test": str(root / "test.parquet"),
            "valid_fraction": 0.2,
            "label": "label",
            "batch_size": 128,
        },
        "features": [
            {"name": "user_id", "type": "categorical", "embed_dim": 8},
            {"name": "item_id", "type": "categorical", "embed_dim": 8},
            {"name": "cat", "type": "categorical", "embed_dim": 8},
            {"name": "age", "type": "numeric", "normalize": "standard"},
        ],
        "model": {
            "name": "DeepFM",
            "inputs": {"deep_features": "all", "fm_features": "sparse"},
            "params": {"mlp_params": {"dims": [16]}},
        },
        "trainer": {
            "n_epoch": 2,
            "optimizer_params": {"lr": 0.01},
            "progress": False,
            "num_threads": 1,
        },
    }
    (root / "ranking.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(root / "ranking.yaml")]) == 0
    items = pd.DataFrame({"item_id": ITEMS, "cat": [CATS[i] for i in ITEMS]})
    items.to_parquet(root / "items.parquet")
    return root / "ranking"
