"""``make gpu-check``: the CUDA paths, a few minutes on any one-GPU machine, one table.

Checks (each timed; the script exits non-zero when any fails, and at once when there is no GPU):

1. ``amp``: ``CTRTrainer(amp=True)`` on a small DeepFM resolves to bf16 where the GPU has it,
   keeps parameters and optimizer states float32, and reaches the float32 run's test AUC (within
   0.02 on this small planted table, same seed).
2. ``sparse optimizers``: ``LazyAdam`` and ``RowWiseAdagrad`` (fused row updates) on CUDA equal
   their plain references and the same steps on CPU.
3. ``fast paths``: dropout (CUDA keeps ``F.dropout``), ``full_softmax_loss`` and
   ``linear_full_softmax_loss`` against their references on CUDA, forward and backward.
4. ``throughput``: DeepFM training samples/s of the throughput workload's model
   (``throughput_deepfm.py``: fused sparse table, LazyAdam, batch 2048) on a 200k-row table,
   float32 and amp, and their ratio.
5. ``ddp nccl``: one DistributedDataParallel step over an NCCL process group of one rank on this
   GPU; the all-reduced gradients equal the local ones.

    make gpu-check                          # = python benchmarks/gpu_check.py
    python benchmarks/gpu_check.py --dry-run-on-cpu   # exercise the script's logic without a GPU

The table is printed and written to ``benchmarks/results/gpu_check.md`` with the command and the
device's name; it goes into ``RESULTS.md`` once it has run on a CUDA machine.
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

Check = Callable[[torch.device], str]


def _table(rows: int, seed: int = 0):
    from throughput_deepfm import make_table

    cols, labels, _ = make_table(rows, seed=seed)
    return cols, labels


def _deepfm(sparse: bool = True):
    from throughput_deepfm import DENSE, DROPOUT, EMBED_DIM, MLP_DIMS, SPARSE, VOCAB

    from recforge.features import DenseFeature, SparseFeature
    from recforge.models.ranking import DeepFM

    dense = [DenseFeature(c) for c in DENSE]
    sp = [SparseFeature(c, vocab_size=VOCAB, embed_dim=EMBED_DIM) for c in SPARSE]
    mlp = {"dims": MLP_DIMS, "dropout": DROPOUT, "batch_norm": True}
    return DeepFM(dense + sp, sp, mlp_params=mlp, sparse=sparse, fused=sparse)


def _loaders(rows: int, batch: int):
    from recforge.data import BatchLoader, ColumnarDataset

    cols, labels = _table(rows)
    n_test = rows // 10
    train = ColumnarDataset({k: v[:-n_test] for k, v in cols.items()}, labels[:-n_test])
    test = ColumnarDataset({k: v[-n_test:] for k, v in cols.items()}, labels[-n_test:])
    return BatchLoader(train, batch, shuffle=True, seed=0), BatchLoader(test, batch), labels[-n_test:]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_amp(device: torch.device) -> str:
    from sklearn.metrics import roc_auc_score

    from recforge.precision import Precision
    from recforge.trainers import CTRTrainer

    train, test, y = _loaders(60_000, 2048)
    aucs = {}
    for amp in (False, True):
        torch.manual_seed(0)
        model = _deepfm()
        with tempfile.TemporaryDirectory() as d:
            tr = CTRTrainer(
                model, n_epoch=2, device=device, model_path=d, progress=False, plot=False, amp=amp
            )
            tr.fit(train)
            prob = tr.predict(model, test)
        if amp:
            want = (
                Precision.BF16 if torch.cuda.is_bf16_supported() or device.type == "cpu" else Precision.FP32
            )
            assert tr.precision is want, f"amp=True resolved to {tr.precision}, expected {want}"
            assert all(p.dtype == torch.float32 for p in model.parameters()), "parameters left float32"
            for opt in tr.optimizer.optimizers:
                for st in opt.state.values():
                    for v in st.values():
                        if isinstance(v, torch.Tensor) and v.dim():
                            assert v.dtype == torch.float32, "optimizer states stay float32"
        aucs[amp] = float(roc_auc_score(y, prob))
    diff = aucs[True] - aucs[False]
    assert abs(diff) < 0.02, f"amp AUC {aucs[True]:.4f} vs fp32 {aucs[False]:.4f}"
    return f"precision={tr.precision.value}; AUC fp32 {aucs[False]:.4f}, amp {aucs[True]:.4f} ({diff:+.4f})"


def check_sparse_optimizers(device: torch.device) -> str:
    from recforge.optim import LazyAdam, RowWiseAdagrad

    worst = 0.0
    for cls in (LazyAdam, RowWiseAdagrad):
        weights = []
        for dev, fused in ((device, True), (device, False), (torch.device("cpu"), True)):
            torch.manual_seed(0)
            emb = torch.nn.Embedding(5000, 16, sparse=True).to(dev)
            opt = cls(emb.parameters(), lr=0.05, fused=fused)
            for step in range(5):
                ids = torch.randint(0, 5000, (512, 26), generator=torch.Generator().manual_seed(step)).to(dev)
                opt.zero_grad()
                emb(ids).pow(2).sum().backward()
                opt.step()
            weights.append(emb.weight.detach().cpu())
        for other in weights[1:]:
            torch.testing.assert_close(weights[0], other, rtol=1e-4, atol=1e-5)
            worst = max(worst, float((weights[0] - other).abs().max()))
    return f"fused = reference = CPU (max abs diff {worst:.1e})"


def check_fast_paths(device: torch.device) -> str:
    from recforge.layers import Dropout
    from recforge.objectives.matching import (
        full_softmax_loss,
        full_softmax_loss_reference,
        linear_full_softmax_loss,
        linear_full_softmax_loss_reference,
    )

    x = torch.ones(1000, 1000, device=device)
    kept = float((Dropout(0.3).train()(x) != 0).float().mean())
    assert abs(kept - 0.7) < 0.01, f"dropout kept {kept:.3f}"
    g = torch.Generator().manual_seed(0)
    z = (torch.randn(64, 500, generator=g) * 3).to(device)
    t = torch.randint(0, 500, (64,), generator=g).to(device)
    grads = []
    for fn in (full_softmax_loss, full_softmax_loss_reference):
        zz = z.clone().requires_grad_()
        loss = fn(zz, t)
        loss.backward()
        grads.append((loss.detach(), zz.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-6, rtol=1e-4)
    h, e = torch.randn(64, 32, generator=g).to(device), torch.randn(500, 32, generator=g).to(device)
    out = []
    for fn in (linear_full_softmax_loss, linear_full_softmax_loss_reference):
        hh, ee = h.clone().requires_grad_(), e.clone().requires_grad_()
        loss = fn(hh, ee, t, temperature=0.5, block_items=128)
        loss.backward()
        out.append((loss.detach(), hh.grad, ee.grad))
    for a, b in zip(out[0], out[1]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    return f"dropout keep rate {kept:.3f}; full softmax and blocked full softmax = references"


def check_throughput(device: torch.device) -> str:
    from recforge.trainers import CTRTrainer

    rows = 200_000
    train, _, _ = _loaders(rows, 2048)
    speed = {}
    for amp in (False, True):
        torch.manual_seed(0)
        model = _deepfm()
        with tempfile.TemporaryDirectory() as d:
            tr = CTRTrainer(
                model, n_epoch=1, device=device, model_path=d, progress=False, plot=False, amp=amp
            )
            tr.train_one_epoch(train)  # warm-up (kernels, allocator)
            _sync(device)
            t0 = time.perf_counter()
            tr.train_one_epoch(train)
            _sync(device)
            speed[amp] = len(train.dataset) / (time.perf_counter() - t0)
    return (
        f"train samples/s fp32 {speed[False]:,.0f}, amp {speed[True]:,.0f} "
        f"({speed[True] / speed[False]:.2f}x)"
    )


def check_ddp(device: torch.device) -> str:
    import torch.distributed as dist

    from recforge.distributed import wrap_model

    backend = "nccl" if device.type == "cuda" else "gloo"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        model = _deepfm(sparse=False).to(device)
        local = _deepfm(sparse=False).to(device)
        local.load_state_dict(model.state_dict())
        ddp = wrap_model(model, device)
        cols, labels = _table(4096)
        batch = {k: torch.from_numpy(v).to(device) for k, v in cols.items()}
        y = torch.from_numpy(labels).to(device)
        for m in (ddp, local):
            m.train()
            torch.manual_seed(1)  # the same dropout masks
            torch.nn.functional.binary_cross_entropy_with_logits(m(batch), y).backward()
        for (name, p), q in zip(model.named_parameters(), local.parameters()):
            assert p.grad is not None and q.grad is not None, name
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)
        return f"{backend}: one DDP step on {device}, all-reduced gradients = local gradients"
    finally:
        dist.destroy_process_group()


CHECKS: dict[str, Check] = {
    "amp": check_amp,
    "sparse optimizers": check_sparse_optimizers,
    "fast paths": check_fast_paths,
    "throughput": check_throughput,
    "ddp nccl": check_ddp,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="a CUDA device, e.g. cuda:1")
    ap.add_argument("--checks", nargs="+", choices=list(CHECKS), default=list(CHECKS))
    ap.add_argument("--dry-run-on-cpu", action="store_true", help="run the checks on CPU (gloo for DDP)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "gpu_check.md")
    args = ap.parse_args()
    if args.dry_run_on_cpu:
        device = torch.device("cpu")
        name = "CPU dry run (not a GPU check)"
    else:
        if not torch.cuda.is_available():
            print(
                f"gpu-check FAILED: no CUDA device (torch {torch.__version__}, built with CUDA "
                f"{torch.version.cuda or 'none'}; torch.cuda.is_available() is False). This check needs a GPU; "
                "it never passes without one.",
                file=sys.stderr,
            )
            return 2
        device = torch.device(args.device)
        name = torch.cuda.get_device_name(device)
    command = "python " + shlex.join([os.path.relpath(__file__, HERE.parent), *sys.argv[1:]])
    rows, failed = [], 0
    for key in args.checks:
        t0 = time.perf_counter()
        try:
            detail, ok = CHECKS[key](device), "pass"
        except Exception as e:  # every check reports; the exit code says whether all passed
            detail, ok = f"{type(e).__name__}: {e}".replace("\n", " ")[:300], "FAIL"
            traceback.print_exc()
            failed += 1
        rows.append(f"| {key} | {ok} | {detail} | {time.perf_counter() - t0:.1f} |")
        print(rows[-1], flush=True)
    lines = [
        "# gpu-check",
        "",
        f"Command: `{command}`",
        "",
        f"Device: {name}; torch {torch.__version__} (CUDA {torch.version.cuda or 'none'}).",
        "",
        "| check | result | detail | seconds |",
        "|---|---|---|---:|",
        *rows,
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.dry_run_on_cpu:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
