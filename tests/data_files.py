"""Tiny generated files in the layouts recforge reads (``recforge.datasets.formats``), with a
learnable signal: users belong to clusters, and each cluster walks through its own items in order."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

CLUSTERS, ITEMS_PER_CLUSTER = 4, 10


def cluster_lists(num_users: int = 120, length: int = 8, seed: int = 0) -> list[list[int]]:
    """Per user, a run of consecutive items of its cluster (raw item ids start at 1)."""
    rng = np.random.default_rng(seed)
    out = []
    for u in range(num_users):
        c = u % CLUSTERS
        start = int(rng.integers(0, ITEMS_PER_CLUSTER))
        n = int(rng.integers(length // 2, length + 1))
        out.append([1 + c * ITEMS_PER_CLUSTER + (start + t) % ITEMS_PER_CLUSTER for t in range(n)])
    return out


def write_interactions_csv(path: Path, *, with_category: bool = False, cold_test_item: bool = False) -> Path:
    """``user_id,item_id,time[,category]`` rows; ``cold_test_item``: user u0's last item occurs
    nowhere else (a held-out item new to training)."""
    rows = []
    for u, items in enumerate(cluster_lists()):
        for t, i in enumerate(items):
            rows.append((f"u{u}", f"i{i}", t, f"c{(i - 1) // ITEMS_PER_CLUSTER}"))
    if cold_test_item:
        rows.append(("u0", "i_cold", 99, "c0"))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "time", "category"])
    if not with_category:
        frame = frame.drop(columns=["category"])
    frame.to_csv(path, index=False)
    return path


def write_lightgcn(folder: Path) -> Path:
    """``train.txt`` / ``test.txt``: each user's items, the last two held out."""
    folder.mkdir(parents=True, exist_ok=True)
    lists = cluster_lists(length=10)
    with open(folder / "train.txt", "w") as tr, open(folder / "test.txt", "w") as te:
        for u, items in enumerate(lists):
            tr.write(" ".join(map(str, [u, *items[:-2]])) + "\n")
            te.write(" ".join(map(str, [u, *items[-2:]])) + "\n")
    return folder


def write_user_item_pairs(path: Path) -> Path:
    with open(path, "w") as fh:
        for u, items in enumerate(cluster_lists(), start=1):
            for i in items:
                fh.write(f"{u} {i}\n")
    return path


def write_item_lists(path: Path) -> Path:
    """S3-Rec layout plus its ``*_item2attributes.json``."""
    with open(path, "w") as fh:
        for u, items in enumerate(cluster_lists(), start=1):
            fh.write(" ".join(map(str, [u, *items])) + "\n")
    attrs = {str(i): [100 + (i - 1) // ITEMS_PER_CLUSTER] for i in range(1, CLUSTERS * ITEMS_PER_CLUSTER + 1)}
    path.with_name(f"{path.stem}_item2attributes.json").write_text(json.dumps(attrs))
    return path


def write_recbole(folder: Path, name: str = "tiny") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for u, items in enumerate(cluster_lists(), start=1):
        lines += [f"{u}\t{i}\t4\t{1000 + t}" for t, i in enumerate(items)]
    (folder / f"{name}.inter").write_text("\n".join(lines) + "\n")
    item_lines = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    item_lines += [
        f"{i}\tMovie {i}\t{1990 + i}\tgenre{(i - 1) // ITEMS_PER_CLUSTER}"
        for i in range(1, CLUSTERS * ITEMS_PER_CLUSTER + 1)
    ]
    (folder / f"{name}.item").write_text("\n".join(item_lines) + "\n")
    return folder


def write_census_income(path: Path, n: int = 400, seed: int = 0) -> Path:
    """Census-Income rows in the UCI layout (42 columns, no header); the two tasks depend on age,
    education and marital status."""
    from recforge.datasets.formats import CENSUS_COLUMNS

    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        age = int(rng.integers(18, 80))
        edu = str(rng.choice(["Bachelors", "HS-grad", "Masters"]))
        married = str(rng.choice(["Never married", "Married-civilian spouse present"]))
        rich = (edu == "Masters") or (age > 50 and rng.random() < 0.5)
        row = {c: "x" for c in CENSUS_COLUMNS}
        row.update(
            {
                "age": age, "education": edu, "marital stat": married, "wage per hour": 0,
                "capital gains": int(rng.integers(0, 1000)), "capital losses": 0, "dividends from stocks": 0,
                "num persons worked for employer": 1, "weeks worked in year": 52, "instance weight": 1.0,
                "year": 95, "income": "50000+." if rich else "- 50000.",
            }
        )  # fmt: skip
        rows.append(", ".join(str(row[c]) for c in CENSUS_COLUMNS))
    path.write_text("\n".join(rows) + "\n")
    return path
