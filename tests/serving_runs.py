"""Tiny trained runs for the serving tests (written with the real ``recforge train``)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn

from recforge.cli import main
from recforge.layers.embedding import EmbeddingLayer, output_dim
from recforge.models.matching.base import TwoTowerModel
from recforge.preprocess import Categorical, FeaturePipeline, SequenceColumn
from recforge.runs import save_model_spec

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


class TinyTwoTower(TwoTowerModel):
    """A minimal two-tower model for serving tests: pooled embeddings -> linear, per tower."""

    def __init__(self, user_features: list, item_features: list, *, dim: int = 8) -> None:
        super().__init__()
        self.user_features, self.item_features = list(user_features), list(item_features)
        self.embedding = EmbeddingLayer(self.features)
        self.user_proj = nn.Linear(output_dim(self.user_features), dim)
        self.item_proj = nn.Linear(output_dim(self.item_features), dim)

    def user_tower(self, batch):
        return self.user_proj(self.embedding.flatten(batch, self.user_features))  # (B, D)

    def item_tower(self, batch):
        return self.item_proj(self.embedding.flatten(batch, self.item_features))  # (B, D)


def histories(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = interactions(n, seed)
    df["hist_item_id"] = ["|".join(rng.choice(ITEMS, rng.integers(0, 4))) for _ in range(n)]
    return df


def make_retrieval_run(root: Path, seed: int = 0) -> Path:
    """A retrieval run directory (pipeline, model.json, best.pt) of an untrained TinyTwoTower,
    plus its item index; the model must be registered (``matching.MODELS``) to be loaded."""
    torch.manual_seed(seed)
    run_dir = root / "retrieval"
    run_dir.mkdir(parents=True, exist_ok=True)
    pipe = FeaturePipeline(
        [
            Categorical("user_id"),
            Categorical("item_id", embed_dim=8),
            Categorical("cat", embed_dim=4),
            SequenceColumn("hist_item_id", max_len=5, shared_with="item_id", sep="|"),
        ]
    ).fit(histories(2000, seed))
    by = {f.name: f for f in pipe.features}
    inputs = {
        "user_features": [by["user_id"], by["hist_item_id"]],
        "item_features": [by["item_id"], by["cat"]],
    }
    model = TinyTwoTower(**inputs, dim=8)
    pipe.save(run_dir / "pipeline")
    save_model_spec(run_dir, "TinyTwoTower", inputs, {"dim": 8})
    torch.save({"model": model.state_dict()}, run_dir / "best.pt")
    return run_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def make_two_stage(root: Path) -> Path:
    """A serving directory (``root/serve/bundle.yaml``): the retrieval run reranked by the ranking
    run over ``root/items.parquet``; ``TinyTwoTower`` must be registered (``matching.MODELS``)."""
    from recforge.bundle import build_item_index
    from recforge.runs import load_run

    train_ranking_run(root)
    run = load_run(make_retrieval_run(root))
    build_item_index(run, items=pd.read_parquet(root / "items.parquet"))
    (root / "serve").mkdir()
    cfg = {"retrieval": "../retrieval", "ranking": "../ranking", "items": "../items.parquet", "rerank": 20}
    (root / "serve" / "bundle.yaml").write_text(yaml.safe_dump(cfg))
    return root / "serve"
