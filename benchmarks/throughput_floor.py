"""How fast can one DeepFM training step of the throughput workload be on this CPU?

Issue 2 asks recforge to train the ``throughput_deepfm.py`` workload at least 5x faster than
torch-rechub fed numpy arrays. This script measures, in one process and interleaved (so machine
load hits every part alike), the CPU time per sample (``time.process_time``) of:

* ``recforge step``: recforge's full training epoch (``CTRTrainer.train_one_epoch``, the
  configuration of ``throughput_deepfm.py``'s ``recforge`` run: fused table, sparse gradients,
  ``LazyAdam``, ``amp=True``) and the same in float32 (``recforge step fp32``);
* ``MLP part``: only the deep tower, recforge's ``MLP`` as the step runs it: ``Linear(429, 256) -
  BN - ReLU - Dropout - Linear(256, 128) - BN - ReLU - Dropout - Linear(128, 1)``, forward +
  backward + fused Adam, on a fixed input, in float32 and under bf16 autocast;
* ``embedding part``: only the fused ``(26 x 10,000, 16)`` table, lookup of 26 ids per row +
  backward (sparse gradient) + ``LazyAdam`` step, on fixed ids drawn like the table's, with the
  default row update (the C kernel of ``recforge.optim.native``), the fused torch update
  (``kernel="torch"``) and the plain reference one (``fused=False``);
* ``GEMMs``: only the six matrix products of the MLP's forward and backward, float32 and bf16.

``floor = 1 / (1/MLP + 1/embedding)`` (the two parts the workload cannot skip) is an upper bound
for any implementation built from these PyTorch kernels. The embedding update is also compared with
its memory floor: the bytes one step must move (each touched row's weight and two Adam moments read
and written once, the gradient rows read once) over this machine's measured copy bandwidth.

The machine is described from what it reports (``/proc/cpuinfo`` flags, torch's dispatch level).

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


def part_recforge(rows: int, amp: bool = True) -> tuple[object, int]:
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
        amp=amp,
    )

    def run() -> None:
        trainer.train_one_epoch(loader)

    return run, len(loader.dataset)


def part_mlp(bf16: bool = False) -> tuple[object, int]:
    from recforge.layers import MLP

    mlp = MLP(
        _deep_in(), {"dims": MLP_DIMS, "dropout": DROPOUT, "batch_norm": True}
    )  # recforge's, as the step
    x = torch.randn(BATCH, _deep_in())
    opt = torch.optim.Adam(mlp.parameters(), lr=LR, fused=True)

    def run() -> None:
        for _ in range(STEPS):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = mlp(x)
            out.float().sum().backward()
            opt.step()

    return run, STEPS * BATCH


def _embedding_ids() -> list[torch.Tensor]:
    rng = np.random.default_rng(0)
    offsets = torch.arange(N_SPARSE) * VOCAB
    return [  # the throughput table's power-law ids, offset into the fused table
        torch.from_numpy(
            np.minimum((1 + (VOCAB - 1) * rng.random((BATCH, N_SPARSE)) ** 3), VOCAB - 1).astype(np.int64)
        )
        + offsets
        for _ in range(STEPS)
    ]


def part_embedding(kernel: str = "auto", fused: bool = True) -> tuple[object, int]:
    from recforge.optim import LazyAdam

    table = torch.nn.Embedding(N_SPARSE * VOCAB, EMBED_DIM, sparse=True)
    opt = LazyAdam(table.parameters(), lr=LR, fused=fused, kernel=kernel)
    ids = _embedding_ids()

    def run() -> None:
        for i in ids:
            opt.zero_grad()
            table(i).sum().backward()
            opt.step()

    return run, STEPS * BATCH


def part_gemm(dtype: torch.dtype = torch.float32) -> tuple[object, int]:
    dims = [_deep_in(), *MLP_DIMS, 1]
    xs = [torch.randn(BATCH, a, dtype=dtype) for a in dims[:-1]]
    ws = [torch.randn(b, a, dtype=dtype) for a, b in itertools.pairwise(dims)]
    gs = [torch.randn(BATCH, b, dtype=dtype) for b in dims[1:]]

    def run() -> None:
        for _ in range(STEPS):
            for x, w, g in zip(xs, ws, gs, strict=False):
                x @ w.T  # forward
                g @ w  # grad of the input
                g.T @ x  # grad of the weight

    return run, STEPS * BATCH


def update_bytes() -> tuple[float, float]:
    """Bytes one LazyAdam step must move on the embedding part's ids (mean over its batches), and
    the distinct rows it touches: each touched row's weight (D floats) and moments (2D) read and
    written once, and every looked-up gradient row (D) read once."""
    sizes = [(int(i.unique().numel()), int(i.numel())) for i in _embedding_ids()]
    rows = float(np.mean([u for u, _ in sizes]))
    lookups = float(np.mean([n for _, n in sizes]))
    return rows * (2 + 4) * EMBED_DIM * 4 + lookups * EMBED_DIM * 4, rows


def copy_bandwidth() -> float:
    """Bytes per second of a large tensor copy (read + write), median of 5."""
    src, dst = torch.ones(32 * 2**20), torch.empty(32 * 2**20)  # 128 MB each: beyond the caches
    dst.copy_(src)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - t0)
    return 2 * src.numel() * 4 / median(times)


def measure(threads: int, rounds: int, rows: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    parts = {
        "recforge step": part_recforge(rows, amp=True),
        "recforge step fp32": part_recforge(rows, amp=False),
        "MLP part": part_mlp(),
        "MLP part bf16": part_mlp(bf16=True),
        "embedding part": part_embedding(),
        "embedding part (torch update)": part_embedding(kernel="torch"),
        "embedding part (reference update)": part_embedding(kernel="torch", fused=False),
        "GEMMs": part_gemm(),
        "GEMMs bf16": part_gemm(torch.bfloat16),
    }
    for run, _ in parts.values():  # warm-up
        run()
    speeds: dict[str, list[float]] = {k: [] for k in parts}
    for _ in range(rounds):
        for name, (run, n) in parts.items():
            t0 = time.process_time()
            run()
            speeds[name].append(n / (time.process_time() - t0))
    out = {k: median(v) for k, v in speeds.items()}
    out["copy GB/s"] = copy_bandwidth() / 1e9
    return out


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

    from recforge.precision import cpu_info

    peer = json.loads(args.peer_json.read_text())["summary"] if args.peer_json.exists() else {}
    nbytes, touched = update_bytes()
    lines = [
        "# DeepFM throughput: the floor of one training step on this CPU",
        "",
        f"Command: `python benchmarks/{Path(__file__).name} {shlex.join(sys.argv[1:])}`",
        "",
        f"Machine (as it reports itself): {cpu_info().describe()}; {platform.machine()}.",
        "",
        "Samples per CPU second of this process (`time.process_time`), parts timed in one process, "
        "interleaved, median of the rounds. 'floor' = `1 / (1/MLP + 1/embedding)`: the MLP and embedding "
        "parts alone, which the workload cannot skip (bf16 floor: the MLP part under bf16 autocast). "
        "'reachable vs rechub-numpy' = floor / recforge step x the recforge / torch-rechub-numpy train "
        "ratio measured by `throughput_deepfm.py` at the same thread count (`results/throughput.json`).",
        "",
        "| threads | load before -> after | recforge step (bf16) | recforge step fp32 | MLP part fp32 | "
        "MLP part bf16 | embedding part | embedding part, torch update | GEMMs fp32 | GEMMs bf16 | "
        "floor fp32 | floor bf16 | floor bf16 / recforge step | recforge / rechub-numpy (measured) | "
        "reachable vs rechub-numpy |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    memory = [
        "",
        f"Embedding update against its memory floor: a step touches {touched:,.0f} distinct rows on average "
        f"and must move {nbytes / 1e6:.1f} MB (each touched row's weight and two Adam moments read and written "
        f"once: 6 x {EMBED_DIM} floats; every one of the {BATCH * N_SPARSE:,} looked-up gradient rows read once).",
        "",
        "| threads | copy bandwidth GB/s | memory floor ms/step | embedding part ms/step (lookup + backward + "
        "C kernel update) | x floor | with the torch update ms/step | x floor | with the reference update ms/step | "
        "x floor |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    raw = {}
    for t in args.threads:
        before = os.getloadavg()[0]
        s = measure(t, args.rounds, args.rows)
        after = os.getloadavg()[0]
        floor = 1.0 / (1.0 / s["MLP part"] + 1.0 / s["embedding part"])
        floor_bf16 = 1.0 / (1.0 / s["MLP part bf16"] + 1.0 / s["embedding part"])
        ours, theirs = peer.get(f"recforge@{t}"), peer.get(f"rechub-numpy@{t}")
        ratio = (
            ours["train_samples_per_s"] / theirs["train_samples_per_s"] if ours and theirs else float("nan")
        )
        reach = floor_bf16 / s["recforge step"] * ratio
        raw[t] = {**s, "floor": floor, "floor_bf16": floor_bf16, "measured_ratio": ratio, "reachable": reach}
        lines.append(
            f"| {t} | {before:.1f} -> {after:.1f} | {s['recforge step']:,.0f} | {s['recforge step fp32']:,.0f} | "
            f"{s['MLP part']:,.0f} | {s['MLP part bf16']:,.0f} | {s['embedding part']:,.0f} | "
            f"{s['embedding part (torch update)']:,.0f} | {s['GEMMs']:,.0f} | {s['GEMMs bf16']:,.0f} | "
            f"{floor:,.0f} | {floor_bf16:,.0f} | {floor_bf16 / s['recforge step']:.2f} | {ratio:.2f}x | {reach:.2f}x |"
        )
        floor_ms = nbytes / (s["copy GB/s"] * 1e9) * 1e3
        fused_ms = BATCH / s["embedding part"] * 1e3
        torch_ms = BATCH / s["embedding part (torch update)"] * 1e3
        ref_ms = BATCH / s["embedding part (reference update)"] * 1e3
        memory.append(
            f"| {t} | {s['copy GB/s']:.1f} | {floor_ms:.2f} | {fused_ms:.2f} | {fused_ms / floor_ms:.1f} | "
            f"{torch_ms:.2f} | {torch_ms / floor_ms:.1f} | {ref_ms:.2f} | {ref_ms / floor_ms:.1f} |"
        )
        print(lines[-1], memory[-1], sep="\n", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text("\n".join(lines + memory) + "\n", encoding="utf-8")
    os.replace(tmp, args.out)
    print(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
