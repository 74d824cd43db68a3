"""Training-step speed of sparse-gradient embeddings vs dense gradients (and TorchRec's modules).

DLRM and DeepFM on Criteo-like synthetic batches (13 dense, 26 categorical features with
Criteo's vocabulary sizes capped at ``--max-vocab``, power-law ids), batch 4096, embedding dim 16.
One step = zero_grad + forward + backward + optimizer step; batches are prepared beforehand.

Variants per model:
  * dense / Adam: plain PyTorch, ``nn.EmbeddingBag``/``nn.Embedding`` with dense gradients, Adam
    on every parameter (every table row is zero-filled and updated each step);
  * sparse / RowWiseAdagrad, LazyAdam (recforge.optim) and torch's SparseAdam: sparse
    gradients, only touched rows updated; Adam for the dense layers;
  * TorchRec 1.8 modules (``torchrec.EmbeddingBagCollection`` + its DLRM / SimpleDeepFMNN),
    unsharded on CPU with Adam, and the same wrapped in ``DistributedModelParallel`` (one gloo
    process) with its fused row-wise Adagrad (fbgemm CPU kernels, update applied in backward),
    when ``torchrec`` imports (the script re-runs itself with
    ``benchmarks/.venvs/torchrec/bin/python`` when that venv exists; see docs/torchrec.md).

Usage: PYTHONPATH=src python benchmarks/embedding_speed.py [--steps 10 --repeats 3]
Writes benchmarks/results/embeddings.md (medians over repeats; each repeat re-builds every variant,
variants interleaved so that machine drift hits them alike).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from recforge.features import DenseFeature, SparseFeature  # noqa: E402
from recforge.models.ranking import DeepFM  # noqa: E402
from recforge.optim import LazyAdam, RowWiseAdagrad  # noqa: E402
from recforge.torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor  # noqa: E402
from recforge.torchrec import deepfm as rf_deepfm  # noqa: E402
from recforge.torchrec import dlrm as rf_dlrm  # noqa: E402

# Criteo Kaggle (day-split) vocabulary sizes of C1..C26.
CRITEO_VOCAB = [1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194,
                27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572]  # fmt: skip
N_DENSE, DIM = 13, 16
FUSED = "fused RowWiseAdagrad (DMP)"
TORCHREC_VENV = ROOT / "benchmarks" / ".venvs" / "torchrec" / "bin" / "python"

try:
    import torchrec  # type: ignore[import-not-found]

    HAVE_TORCHREC = True
except ImportError:
    HAVE_TORCHREC = False


@dataclass
class Batch:
    dense: torch.Tensor  # (B, 13)
    ids: torch.Tensor  # (B, 26)
    label: torch.Tensor  # (B,)
    kjt: KeyedJaggedTensor
    trec_kjt: object | None
    columns: dict[str, torch.Tensor]


def make_batches(n: int, batch_size: int, vocab: list[int], seed: int) -> list[Batch]:
    g = torch.Generator().manual_seed(seed)
    keys = [f"C{i}" for i in range(len(vocab))]
    out = []
    for _ in range(n):
        u = torch.rand(batch_size, len(vocab), generator=g)
        ids = (u.pow(3) * torch.tensor(vocab)).long().clamp_max(torch.tensor(vocab) - 1)  # power law
        dense = torch.rand(batch_size, N_DENSE, generator=g)
        label = (torch.rand(batch_size, generator=g) < 0.25).float()
        values = ids.t().reshape(-1)  # key-major (26 * B,)
        lengths = torch.ones(values.numel(), dtype=torch.long)
        kjt = KeyedJaggedTensor.from_lengths_sync(keys, values, lengths)
        trec_kjt = (
            torchrec.KeyedJaggedTensor.from_lengths_sync(keys, values, lengths) if HAVE_TORCHREC else None
        )
        cols = {k: ids[:, i] for i, k in enumerate(keys)}
        cols.update({f"I{i}": dense[:, i] for i in range(N_DENSE)})
        out.append(Batch(dense, ids, label, kjt, trec_kjt, cols))
    return out


def tables(vocab: list[int], cls: type) -> list:
    return [
        cls(name=f"t{i}", embedding_dim=DIM, num_embeddings=v, feature_names=[f"C{i}"])
        for i, v in enumerate(vocab)
    ]


class Variant:
    """A model, how it is called on a batch, and its optimizers."""

    def __init__(self, model: nn.Module, forward: Callable[[Batch], torch.Tensor], optimizers: list) -> None:
        self.model, self.forward, self.optimizers = model, forward, optimizers

    def step(self, b: Batch) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=True)
        logits = self.forward(b).reshape(-1)
        nn.functional.binary_cross_entropy_with_logits(logits, b.label).backward()
        for o in self.optimizers:
            o.step()


def split_params(model: nn.Module) -> tuple[list, list]:
    sparse = [m.weight for m in model.modules() if isinstance(m, nn.Embedding | nn.EmbeddingBag) and m.sparse]
    ids = {id(p) for p in sparse}
    return sparse, [p for p in model.parameters() if id(p) not in ids]


def optimizers_for(model: nn.Module, emb_opt: str) -> list:
    sparse, dense = split_params(model)
    if emb_opt == "Adam":
        assert not sparse
        return [torch.optim.Adam(dense, lr=1e-3)]
    factory = {
        "RowWiseAdagrad": lambda p: RowWiseAdagrad(p, lr=0.05),
        "LazyAdam": lambda p: LazyAdam(p, lr=1e-3),
        "SparseAdam": lambda p: torch.optim.SparseAdam(p, lr=1e-3),
    }[emb_opt]
    return [torch.optim.Adam(dense, lr=1e-3), factory(sparse)]


def torchrec_fused(m: nn.Module) -> Variant:
    """``m`` under DistributedModelParallel (world size 1) with fused row-wise Adagrad tables."""
    from torchrec.distributed.model_parallel import DistributedModelParallel
    from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward

    if not torch.distributed.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
        torch.distributed.init_process_group("gloo", rank=0, world_size=1)
    apply_optimizer_in_backward(torchrec.optim.RowWiseAdagrad, m.sparse_arch.parameters(), {"lr": 0.05})
    dmp = DistributedModelParallel(m, device=torch.device("cpu"))
    dense = [p for n, p in dmp.named_parameters() if "sparse_arch" not in n]
    return Variant(dmp, lambda b: dmp(b.dense, b.trec_kjt), [torch.optim.Adam(dense, lr=1e-3)])


def build(model_name: str, impl: str, emb_opt: str, vocab: list[int]) -> Variant:
    sparse = emb_opt != "Adam"
    meta = torch.device("meta") if emb_opt == FUSED else None
    if model_name == "DLRM":
        dense_sizes, over_sizes = [128, DIM], [256, 128, 1]
        if impl == "torchrec":
            from torchrec.models.dlrm import DLRM as TrecDLRM

            ebc = torchrec.EmbeddingBagCollection(
                tables=tables(vocab, torchrec.EmbeddingBagConfig), device=meta
            )
            m = TrecDLRM(ebc, N_DENSE, dense_sizes, over_sizes)
            if emb_opt == FUSED:
                return torchrec_fused(m)
            return Variant(m, lambda b: m(b.dense, b.trec_kjt), optimizers_for(m, emb_opt))
        ebc = EmbeddingBagCollection(tables(vocab, EmbeddingBagConfig), sparse=sparse)
        m = rf_dlrm.DLRM(ebc, N_DENSE, dense_sizes, over_sizes)
        return Variant(m, lambda b: m(b.dense, b.kjt), optimizers_for(m, emb_opt))
    if model_name == "SimpleDeepFMNN":
        if impl == "torchrec":
            from torchrec.models.deepfm import SimpleDeepFMNN as TrecDeepFM

            ebc = torchrec.EmbeddingBagCollection(
                tables=tables(vocab, torchrec.EmbeddingBagConfig), device=meta
            )
            m = TrecDeepFM(N_DENSE, ebc, hidden_layer_size=128, deep_fm_dimension=64)
            if emb_opt == FUSED:
                return torchrec_fused(m)
            return Variant(m, lambda b: m(b.dense, b.trec_kjt), optimizers_for(m, emb_opt))
        ebc = EmbeddingBagCollection(tables(vocab, EmbeddingBagConfig), sparse=sparse)
        m = rf_deepfm.SimpleDeepFMNN(N_DENSE, ebc, hidden_layer_size=128, deep_fm_dimension=64)
        return Variant(m, lambda b: m(b.dense, b.kjt), optimizers_for(m, emb_opt))
    # the paper's DeepFM (recforge.models.ranking.DeepFM): all embeddings to FM and the MLP
    sparse_feats = [SparseFeature(f"C{i}", vocab_size=v, embed_dim=DIM) for i, v in enumerate(vocab)]
    dense_feats = [DenseFeature(f"I{i}") for i in range(N_DENSE)]
    m = DeepFM(
        [*sparse_feats, *dense_feats],
        sparse_feats,
        mlp_params={"dims": [256, 128]},
        sparse=sparse,
        fused=True,
    )
    return Variant(m, lambda b: m(b.columns), optimizers_for(m, emb_opt))


def time_variant(v: Variant, batches: list[Batch], warmup: int, steps: int) -> float:
    """Milliseconds per step over ``steps`` steps after ``warmup`` steps."""
    for i in range(warmup):
        v.step(batches[i % len(batches)])
    t0 = time.perf_counter()
    for i in range(steps):
        v.step(batches[(warmup + i) % len(batches)])
    return (time.perf_counter() - t0) * 1000 / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--data-dir", default=str(ROOT.parent / "shared" / "data"), help="unused: data is synthetic"
    )
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--max-vocab", type=int, default=200_000)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--models", default="DLRM,SimpleDeepFMNN,DeepFM")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "embeddings.md"))
    p.add_argument("--no-reexec", action="store_true", help="do not switch to the TorchRec venv")
    args = p.parse_args()
    if not HAVE_TORCHREC and TORCHREC_VENV.exists() and not args.no_reexec:
        os.execv(str(TORCHREC_VENV), [str(TORCHREC_VENV), *sys.argv])
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vocab = [min(v, args.max_vocab) for v in CRITEO_VOCAB]
    batches = make_batches(args.warmup + args.steps, args.batch_size, vocab, seed=0)
    touched = statistics.mean(
        sum(int(b.ids[:, i].unique().numel()) for i in range(len(vocab))) for b in batches
    )
    plan: list[tuple[str, str, str]] = []
    for model in args.models.split(","):
        impls = ["recforge"] + (["torchrec"] if HAVE_TORCHREC and model != "DeepFM" else [])
        for impl in impls:
            opts = (
                ["Adam", FUSED]
                if impl == "torchrec"
                else ["Adam", "RowWiseAdagrad", "LazyAdam", "SparseAdam"]
            )
            plan.extend((model, impl, o) for o in opts)
    times: dict[tuple[str, str, str], list[float]] = {k: [] for k in plan}
    for r in range(args.repeats):
        for key in plan:
            torch.manual_seed(r)
            v = build(*key, vocab)
            times[key].append(time_variant(v, batches, args.warmup, args.steps))
            print(f"repeat {r} {key}: {times[key][-1]:.1f} ms/step", flush=True)
            del v
        # the table is rewritten after every full repeat, so a cut-off run still reports what it did
        write_table(args, plan, times, vocab, touched, repeats_done=r + 1)


def write_table(
    args: argparse.Namespace,
    plan: list[tuple[str, str, str]],
    times: dict[tuple[str, str, str], list[float]],
    vocab: list[int],
    touched: float,
    repeats_done: int,
) -> None:
    rows = []
    for model in args.models.split(","):
        base = statistics.median(times[(model, "recforge", "Adam")][:repeats_done])
        for key in [k for k in plan if k[0] == model]:
            ms = statistics.median(times[key][:repeats_done])
            label = {
                "recforge": "recforge" if model != "DeepFM" else "recforge (models.ranking)",
                "torchrec": "TorchRec 1.8",
            }[key[1]]
            grads = {"Adam": "dense", FUSED: "fused in backward"}.get(key[2], "sparse")
            rows.append(
                f"| {model} | {label} | {grads} | {key[2]} | {ms:.0f} | {args.batch_size / ms * 1000:,.0f} | {base / ms:.2f}x |"
            )
    cmd = "PYTHONPATH=src python benchmarks/embedding_speed.py " + " ".join(sys.argv[1:])
    lines = [
        "# Sparse-gradient embeddings vs dense gradients",
        "",
        f"Command: `{cmd.strip()}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs (absolute times drift; "
        f"compare ratios), torch {torch.__version__}, {args.threads} thread(s); "
        f"TorchRec {'1.8 (installed)' if HAVE_TORCHREC else 'not installed'}.",
        f"Data: synthetic Criteo-like, 13 dense + 26 categorical features, Criteo vocabularies capped at "
        f"{args.max_vocab:,} ({sum(vocab):,} rows of dim {DIM} in all), power-law ids; batch {args.batch_size}; "
        f"on average {touched:,.0f} distinct rows touched per batch ({touched / sum(vocab):.1%} of all rows).",
        f"Figures: median over {repeats_done} repeat(s) of {args.steps} timed steps (after {args.warmup} warm-up "
        "step(s)) of zero_grad + forward + backward + optimizer step; each repeat rebuilds every variant, variants "
        "interleaved. 'speed-up' is relative to the dense plain-PyTorch row of the same model.",
        "",
        "DLRM and SimpleDeepFMNN use TorchRec's architectures (recforge.torchrec, same layer sizes for both "
        "libraries; dense arch [128, 16], over arch [256, 128, 1]; DeepFM hidden 128, deep_fm_dimension 64). "
        "DeepFM is recforge's paper DeepFM (models.ranking, fused embedding table, MLP [256, 128]). "
        "TorchRec rows: its modules unsharded on CPU with dense gradients and Adam, and under "
        "DistributedModelParallel (1 gloo process, table-wise, fbgemm CPU kernels) with its fused row-wise Adagrad.",
        "",
        "| model | implementation | embedding grads | embedding optimizer | ms/step | samples/s | speed-up |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    os.replace(tmp, out)
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
