"""Speed of the HSTU pieces, 1 CPU thread by default.

(a) One attention layer, forward + backward, on a batch of skewed lengths (log-normal, median
``max_len / 8``, clipped to ``[1, max_len]``): recforge's jagged HSTU layer, its padded reference,
and a padded softmax transformer block (``recforge.layers.TransformerBlock``: torch SDPA with a key
mask, plus its FFN). Memory is the bytes autograd saves for backward (distinct storages), i.e. the
activation memory the layer holds between forward and backward.

(b) M-FALCON: ``HSTU.candidate_states`` scoring N candidates per user in one pass vs N passes of
one appended candidate each.

    PYTHONPATH=src timeout 900 python benchmarks/generative_speed.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from recforge.features import RandomNormal, SequenceFeature, SparseFeature
from recforge.jagged import jagged_to_padded, offsets_from_lengths, padding_mask
from recforge.layers import TransformerBlock
from recforge.layers.hstu import HSTULayer
from recforge.models.generative import HSTU
from recforge.precision import cpu_info

ROOT = Path(__file__).resolve().parents[1]


def skewed_lengths(batch: int, max_len: int, gen: torch.Generator) -> torch.Tensor:
    z = torch.randn(batch, generator=gen)
    return (max_len / 8 * torch.exp(z)).round().clamp(1, max_len).long()  # (B,) log-normal


def saved_bytes(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, int]:
    seen: dict[tuple[int, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        seen[(s.data_ptr(), s.nbytes())] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


def timed(fn: Callable[[], None], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def attention_rows(args: argparse.Namespace) -> list[str]:
    rows = []
    for max_len in args.lengths:
        gen = torch.Generator().manual_seed(max_len)
        lengths = skewed_lengths(args.batch, max_len, gen)
        offsets = offsets_from_lengths(lengths)
        width = int(lengths.max())
        x = torch.randn(int(offsets[-1]), args.dim, generator=gen, requires_grad=True)
        xp = jagged_to_padded(x.detach(), offsets, width).requires_grad_(True)  # (B, L, D)
        mask = padding_mask(lengths, width)
        torch.manual_seed(0)
        jag = HSTULayer(args.dim, args.heads, max_len=max_len, kernel="jagged")
        pad = HSTULayer(args.dim, args.heads, max_len=max_len, kernel="padded")
        sdpa = TransformerBlock(args.dim, args.heads)
        cases: dict[str, Callable[[], torch.Tensor]] = {
            "HSTU jagged": lambda jag=jag, x=x, o=offsets: jag(x, o),
            "HSTU padded ref": lambda pad=pad, x=x, o=offsets: pad(x, o),
            "SDPA transformer (padded)": lambda s=sdpa, xp=xp, m=mask: s(xp, key_mask=m, causal=True),
        }
        for name, fwd in cases.items():
            _, mem = saved_bytes(fwd)
            sec = timed(lambda fwd=fwd: fwd().sum().backward(), args.repeats)
            rows.append(
                f"| {max_len} | {args.batch} | {int(lengths.sum())} | {width} | {name} | {sec * 1e3:.1f} | "
                f"{mem / 2**20:.1f} |"
            )
            print(rows[-1], flush=True)
    return rows


def falcon_rows(args: argparse.Namespace) -> list[str]:
    torch.manual_seed(0)
    hist_len, users = 50, args.falcon_users
    item = SparseFeature("item_id", 10_000, args.dim, initializer=RandomNormal(std=0.02))
    hist = SequenceFeature("hist_item_id", 10_000, args.dim, shared_with="item_id", max_len=hist_len + 1)
    model = HSTU([hist], [item], num_layers=2, num_heads=args.heads).eval()
    gen = torch.Generator().manual_seed(0)
    lengths = skewed_lengths(users, hist_len, gen)
    hist = torch.randint(1, 10_000, (users, hist_len), generator=gen) * padding_mask(lengths, hist_len)
    rows = []
    for n in args.candidates:
        cands = torch.randint(1, 10_000, (users, n), generator=gen)
        batch = {"hist_item_id": hist}

        def one_pass(cands=cands, batch=batch) -> torch.Tensor:
            return model.candidate_states(batch, cands)

        def one_at_a_time(cands=cands) -> torch.Tensor:
            return torch.stack(
                [
                    model.user_tower({"hist_item_id": torch.cat([hist, cands[:, i : i + 1]], 1)})
                    for i in range(cands.shape[1])
                ],
                1,
            )

        with torch.no_grad():
            diff = float((one_pass() - one_at_a_time()).abs().max())
            a = timed(one_pass, args.repeats)
            b = timed(one_at_a_time, args.repeats)
        rows.append(
            f"| {users} | {hist_len} | {n} | {a * 1e3:.1f} | {b * 1e3:.1f} | {b / a:.1f}x | {diff:.1e} |"
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--data-dir", default=str(ROOT.parent / "shared" / "data"), help="unused (synthetic inputs)"
    )
    p.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256, 512, 1024, 2048])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--falcon-users", type=int, default=64)
    p.add_argument("--candidates", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "generative.md"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    att = attention_rows(args)
    fal = falcon_rows(args)
    lines = [
        "# Generative (HSTU) speed",
        "",
        f"`PYTHONPATH=src python {' '.join(sys.argv)}`",
        "",
        f"{args.threads} CPU thread(s), dim {args.dim}, {args.heads} heads, median of {args.repeats} repeats "
        f"after one warm-up, on {cpu_info().describe()}, shared (timings are noisy).",
        "",
        "## (a) One layer, forward + backward, skewed lengths (log-normal, median max_len/8)",
        "",
        "Memory = bytes saved by autograd for backward (distinct storages). The SDPA transformer block "
        "also contains a 4x FFN, which HSTU layers do not have (HSTU's gating replaces it).",
        "",
        "| max_len | B | ΣL | longest | layer | fwd+bwd ms | saved MiB |",
        "|---|---|---|---|---|---|---|",
        *att,
        "",
        "## (b) M-FALCON: N candidates per user in one pass vs one pass per candidate (2 HSTU layers, eval)",
        "",
        "| users | history | N | one pass ms | one at a time ms | speed-up | max abs diff |",
        "|---|---|---|---|---|---|---|",
        *fal,
        "",
        "Amazon Beauty quality (HR/NDCG@10/50): `benchmarks/results/generative_beauty.md` "
        "(`benchmarks/generative_beauty.py`).",
    ]
    out = Path(args.out)
    tmp = out.with_name("." + out.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
