"""Export + quantisation of the Adult DeepFM demo run: file size, latency and AUC change.

PyTorch eager vs ONNX Runtime fp32 / int8 (dynamic) / fp16, on the bundled UCI Adult test split
(16,281 rows). Latency: median over repeats of one call at batch 1 and at batch 1024, one thread.
AUC over the whole test split. Writes ``benchmarks/results/export.md``.

    PYTHONPATH=src python benchmarks/export_quantization.py --run-dir runs/adult_deepfm

The run directory is trained first (``recforge train configs/adult_deepfm.yaml``) if it is missing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent


def auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", default=str(ROOT / "runs" / "adult_deepfm"))
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"), help="unused: bundled data")
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "export.md"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    import onnxruntime as ort

    import recforge
    from recforge.datasets import load as load_dataset
    from recforge.export import quantize_onnx
    from recforge.runs import export_run

    run_dir = Path(args.run_dir)
    if not (run_dir / "best.pt").exists():
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        cmd = [sys.executable, "-m", "recforge", "train", str(ROOT / "configs/adult_deepfm.yaml")]
        subprocess.run([*cmd, "--run-dir", str(run_dir)], check=True, env=env)
    bundle = recforge.load(run_dir)
    run = bundle.ranker
    assert run is not None
    test = load_dataset("adult")["test"]
    arrays = run.pipeline.transform(test)
    y = arrays.pop("label")
    fp32 = export_run(run_dir)[0]
    files = {
        "onnx fp32": fp32,
        "onnx int8": quantize_onnx(fp32, fp32.with_name("model.int8.onnx"), "int8"),
        "onnx fp16": quantize_onnx(fp32, fp32.with_name("model.fp16.onnx"), "fp16"),
    }
    tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}

    def eager(n: int) -> np.ndarray:
        with torch.inference_mode():
            return torch.sigmoid(run.model({k: v[:n] for k, v in tensors.items()})).numpy()

    rows = []
    p_ref = eager(len(y))
    size_ref = sum(p.stat().st_size for p in [run_dir / "best.pt"])
    rows.append(
        (
            "PyTorch eager fp32",
            size_ref,
            timed(lambda: eager(1), args.repeats),
            timed(lambda: eager(1024), max(args.repeats // 10, 5)),
            auc(y, p_ref),
            0.0,
        )
    )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    for name, path in files.items():
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]

        def infer(n: int, sess=sess, names=names) -> np.ndarray:
            return sess.run(None, {k: arrays[k][:n] for k in names})[0]

        p = infer(len(y))
        rows.append(
            (
                name,
                path.stat().st_size,
                timed(lambda infer=infer: infer(1), args.repeats),
                timed(lambda infer=infer: infer(1024), max(args.repeats // 10, 5)),
                auc(y, p),
                float(np.abs(p - p_ref).max()),
            )
        )
    load = os.getloadavg()
    lines = [
        "# Export and quantisation: DeepFM on UCI Adult (test split, 16,281 rows)",
        "",
        f"Command: `PYTHONPATH=src python benchmarks/export_quantization.py --run-dir {args.run_dir}`",
        "",
        f"One thread (torch and onnxruntime); median of {args.repeats} calls at batch 1 and "
        f"{max(args.repeats // 10, 5)} at batch 1024. Machine: {os.cpu_count()} cores shared with "
        f"other jobs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min) at the "
        "end of the run, so latencies are noisy upper bounds.",
        "",
        "| variant | file size (KiB) | latency batch 1 (ms) | latency batch 1024 (ms) | test AUC | AUC change | max abs prob diff vs eager |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    base_auc = rows[0][4]
    for name, size, l1, l1024, a, diff in rows:
        lines.append(
            f"| {name} | {size / 1024:.1f} | {l1:.3f} | {l1024:.2f} | {a:.4f} | {a - base_auc:+.4f} | {diff:.2e} |"
        )
    lines += [
        "",
        "The PyTorch row's size is the `best.pt` checkpoint (weights only). int8 is "
        "`onnxruntime.quantization.quantize_dynamic` (weights int8, activations quantised per call); "
        "fp16 is `onnxruntime.transformers.float16.convert_float_to_float16` with float32 inputs and "
        "outputs kept.",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
