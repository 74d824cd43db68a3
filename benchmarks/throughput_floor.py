"""How fast can one DeepFM training step of the throughput workload be on this CPU?

Issue 2 asks recforge to train the ``throughput_deepfm.py`` workload at least 5x faster than
torch-rechub fed numpy arrays. This script measures, in one process and interleaved (so machine
load hits every part alike), the training throughput of:

* ``recforge step``: recforge's full training epoch (``CTRTrainer.train_one_epoch``, the
  configuration of ``throughput_deepfm.py``'s ``recforge`` run) on the workload's table;
* ``MLP part``: only the deep tower's dense layers, ``Linear(429, 256) - BN - ReLU - Dropout -
  Linear(256, 128) - BN - ReLU - Dropout - Linear(128, 1)``, forward + backward + Adam, on a fixed
  input (no embeddings, no FM, no data loading, no loss bookkeeping);
* ``embedding part``: only the fused ``(26 x 10,000, 16)`` embedding table, lookup of 26 ids per
  row + backward (sparse gradient) + ``LazyAdam`` step, on fixed ids drawn like the table's;
* ``GEMMs``: only the six matrix products of the MLP's forward and backward.

Every one of the first three is work the workload cannot skip, so ``1 / (1/mlp + 1/embedding)``
is an upper bound (a "floor" on time) for any implementation built from these PyTorch kernels;
multiplied by the measured recforge / torch-rechub ratio (read from ``results/throughput.json``,
same thread count) it bounds the speed-up over torch-rechub that is reachable on this machine.

    python benchmarks/throughput_floor.py --threads 1 2 --rounds 5
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from throughput_deepfm import (  # noqa: E402  (benchmarks/ is not a package)
    BATCH,
    DENSE,
    DROPOUT,
    EMBED_DIM,
    LR,
    MLP_DIMS,
    N_DENSE,
    N_SPARSE,
    SPARSE,
    VOCAB,
    make_table,
)

STEPS = 20  # timed steps per part and round


def _deep_in() -> int:
    return N_DENSE + N_SPARSE * EMBED_DIM


def part_recforge(rows: int) -> tuple[object, int]:
    import pandas as pd

    from recforge.data import BatchLoader, ColumnarDataset
    from recforge.features import DenseFeature, SparseFeature
    from recforge.models.ranking import DeepFM
    from recforge.trainers import CTRTrainer

    cols, labels, _ = make_table(rows)
    frame = pd.DataFrame(cols)
    dense = [DenseFeature(c) for c in DENSE]
    sparse = [SparseFeature(c, vocab_size=VOCAB, embed_dim=EMBED_DIM) for c in SPARSE]
    mlp = {"dims": MLP_DIMS, "dropout": DROPOUT, "batch_norm": True}
    model = DeepFM(dense + sparse, sparse, mlp_params=mlp, sparse=True, fused=True)
    loader = BatchLoader(ColumnarDataset(frame, pd.Series(labels)), BATCH, shuffle=True, seed=0)
    trainer = CTRTrainer(
        model,
        optimizer_params={"lr": LR},
        n_epoch=1,
        device="cpu",
        model_path=tempfile.mkdtemp(prefix="floor_"),
        progress=False,
        plot=False,
    )

    def run() -> None:
        trainer.train_one_epoch(loader)

    return run, len(loader.dataset)


def part_mlp() -> tuple[object, int]:
    dims = [_deep_in(), *MLP_DIMS]
    layers: list[torch.nn.Module] = []
    for a, b in itertools.pairwise(dims):
        layers += [torch.nn.Linear(a, b), torch.nn.BatchNorm1d(b), torch.nn.ReLU(), torch.nn.Dropout(DROPOUT)]
    mlp = torch.nn.Sequential(*layers, torch.nn.Linear(dims[-1], 1))
    x = torch.randn(BATCH, dims[0])
    opt = torch.optim.Adam(mlp.parameters(), lr=LR)

    def run() -> None:
        for _ in range(STEPS):
            opt.zero_grad()
            mlp(x).sum().backward()
            opt.step()

    return run, STEPS * BATCH


def part_embedding() -> tuple[object, int]:
    from recforge.optim import LazyAdam

    table = torch.nn.Embedding(N_SPARSE * VOCAB, EMBED_DIM, sparse=True)
    opt = LazyAdam(table.parameters(), lr=LR)
    rng = np.random.default_rng(0)
    offsets = torch.arange(N_SPARSE) * VOCAB
    ids = [  # the throughput table's power-law ids, offset into the fused table
        torch.from_numpy(
            np.minimum((1 + (VOCAB - 1) * rng.random((BATCH, N_SPARSE)) ** 3), VOCAB - 1).astype(np.int64)
        )
        + offsets
        for _ in range(STEPS)
    ]

    def run() -> None:
        for i in ids:
            opt.zero_grad()
            table(i).sum().backward()
            opt.step()

    return run, STEPS * BATCH


def part_gemm() -> tuple[object, int]:
    dims = [_deep_in(), *MLP_DIMS, 1]
    xs = [torch.randn(BATCH, a) for a in dims[:-1]]
    ws = [torch.randn(b, a) for a, b in itertools.pairwise(dims)]
    gs = [torch.randn(BATCH, b) for b in dims[1:]]

    def run() -> None:
        for _ in range(STEPS):
            for x, w, g in zip(xs, ws, gs, strict=False):
                x @ w.T  # forward
                g @ w  # grad of the input
                g.T @ x  # grad of the weight

    return run, STEPS * BATCH


def measure(threads: int, rounds: int, rows: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    parts = {
        "recforge step": part_recforge(rows),
        "MLP part": part_mlp(),
        "embedding part": part_embedding(),
        "GEMMs": part_gemm(),
    }
    for run, _ in parts.values():  # warm-up
        run()
    speeds: dict[str, list[float]] = {k: [] for k in parts}
    for _ in range(rounds):
        for name, (run, n) in parts.items():
            t0 = time.perf_counter()
            run()
            speeds[name].append(n / (time.perf_counter() - t0))
    return {k: median(v) for k, v in speeds.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--rows", type=int, default=100_000, help="rows of the table the recforge step epoch runs on"
    )
    ap.add_argument("--peer-json", type=Path, default=HERE / "results" / "throughput.json")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "throughput_floor.md")
    args = ap.parse_args()

    peer = json.loads(args.peer_json.read_text())["summary"] if args.peer_json.exists() else {}
    lines = [
        "# DeepFM throughput: the floor of one training step on this CPU",
        "",
        f"Command: `python benchmarks/{Path(__file__).name} {shlex.join(sys.argv[1:])}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (AVX2, no AVX-512), torch {torch.__version__}. "
        "Parts timed in one process, interleaved, median of the rounds (samples/s). 'floor' = "
        "`1 / (1/MLP + 1/embedding)`: the MLP and embedding parts alone, which the workload cannot skip. "
        "'reachable vs rechub-numpy' = floor / recforge step x the recforge / torch-rechub-numpy train "
        "ratio measured by `throughput_deepfm.py` at the same thread count (`results/throughput.json`).",
        "",
        "| threads | load before -> after | recforge step | MLP part | embedding part | GEMMs | floor "
        "| floor / recforge | recforge / rechub-numpy (measured) | reachable vs rechub-numpy |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    raw = {}
    for t in args.threads:
        before = os.getloadavg()[0]
        s = measure(t, args.rounds, args.rows)
        after = os.getloadavg()[0]
        floor = 1.0 / (1.0 / s["MLP part"] + 1.0 / s["embedding part"])
        ours, theirs = peer.get(f"recforge@{t}"), peer.get(f"rechub-numpy@{t}")
        ratio = (
            ours["train_samples_per_s"] / theirs["train_samples_per_s"] if ours and theirs else float("nan")
        )
        reach = floor / s["recforge step"] * ratio
        raw[t] = {**s, "floor": floor, "measured_ratio": ratio, "reachable": reach}
        lines.append(
            f"| {t} | {before:.1f} -> {after:.1f} | {s['recforge step']:,.0f} | {s['MLP part']:,.0f} | "
            f"{s['embedding part']:,.0f} | {s['GEMMs']:,.0f} | {floor:,.0f} | {floor / s['recforge step']:.2f} | "
            f"{ratio:.2f}x | {reach:.2f}x |"
        )
        print(lines[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, args.out)
    print(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
