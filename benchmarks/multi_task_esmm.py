"""ESMM on click -> conversion chains: (a) Ali-CCP fixture schema smoke run, (b) synthetic entire-space
funnel with a known CVR, comparing ESMM with a naive CVR model fitted on clicked impressions only.

(a) ``<data-dir>/fixtures/torch_rechub/ali_ccp_{train,val,test}_sample.csv`` (100/49/49 rows): labels
``click`` and ``purchase``; columns ``D*`` dense, the rest categorical ids; item fields are
205, 206, 207, 210, 216 and the others user/context fields. Too small to judge quality: the run
checks the schema end to end (finite losses, (N, 2) predictions, CTCVR <= CTR).

(b) ``recforge.datasets.synthetic_mtl.conversion_funnel`` (``--n-samples`` impressions, seeded
random 8:1:1 split). Both models see ``user_id``, ``item_id``, ``item_category`` (embed 8).
ESMM is trained on every impression with labels [click, click*conversion]; the naive CVR model
(a DNN of the same width as ESMM's CVR tower) on clicked training impressions with the conversion
label. CVR is scored on *every* test impression against the ground truth: AUC against the
counterfactual label ``converted_if_clicked``, mean absolute error to the true CVR, and
calibration = mean predicted / mean true CVR (1 is calibrated); the conventional clicked-only
AUC is shown too. Medians over ``--seeds``.

    PYTHONPATH=src python benchmarks/multi_task_esmm.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from recforge.data import BatchLoader, ColumnarDataset
from recforge.datasets.synthetic_mtl import conversion_funnel
from recforge.features import DenseFeature, Feature, SparseFeature
from recforge.metrics import auc_score
from recforge.models.multi_task import ESMM, SharedBottom
from recforge.trainers import MTLTrainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _sections import write_section

TITLE = "# Multi-task benchmarks"
ALI_ITEM = ["205", "206", "207", "210", "216"]


def trainer_for(model: nn.Module, n_task: int, tmp: str, seed: int, epochs: int) -> MTLTrainer:
    return MTLTrainer(
        model,
        ["classification"] * n_task,
        optimizer_params={"lr": 1e-3},
        n_epoch=epochs,
        earlystop_taskid=n_task - 1,
        earlystop_patience=2,
        model_path=tmp,
        progress=False,
        plot=False,
        seed=seed,
    )


def ali_ccp_smoke(data_dir: Path) -> list[str]:
    base = data_dir / "fixtures" / "torch_rechub"
    frames = [pd.read_csv(base / f"ali_ccp_{s}_sample.csv") for s in ("train", "val", "test")]
    every = pd.concat(frames)
    dense = [c for c in every.columns if c.startswith("D")]
    sparse = [c for c in every.columns if c not in dense and c not in ("click", "purchase")]
    feats = {c: SparseFeature(c, vocab_size=int(every[c].max()) + 1, embed_dim=4) for c in sparse}
    feats.update({c: DenseFeature(c) for c in dense})
    user = [feats[c] for c in every.columns if c in feats and c not in ALI_ITEM]
    item = [feats[c] for c in ALI_ITEM]
    sets = [
        ColumnarDataset(
            {c: f[c].to_numpy() for c in feats},
            np.stack([f["click"], f["click"] * f["purchase"]], 1).astype("float32"),
        )
        for f in frames
    ]
    torch.manual_seed(0)
    model = ESMM(user, item, cvr_params={"dims": [16]}, ctr_params={"dims": [16]})
    with tempfile.TemporaryDirectory() as tmp:
        tr = trainer_for(model, 2, tmp, 0, 2)
        tr.fit(BatchLoader(sets[0], 32, shuffle=True), BatchLoader(sets[1], 64))
        c = tr.collect(tr.model, BatchLoader(sets[2], 64))
        losses = [r["train_loss"] for r in tr.history]
    ok = bool(np.isfinite(losses).all()) and c["prob"].shape == (len(sets[2]), 2)
    ok = ok and bool((c["prob"][:, 1] <= c["prob"][:, 0] + 1e-6).all())
    return [
        "### (a) Ali-CCP fixture (schema smoke run)",
        "",
        f"{len(user)} user/context + {len(item)} item fields ({len(dense)} dense); rows "
        f"{'/'.join(str(len(f)) for f in frames)}; clicks in train {int(frames[0]['click'].sum())}, "
        f"purchases {int(frames[0]['purchase'].sum())}. 2 epochs: train losses "
        f"{', '.join(f'{x:.4f}' for x in losses)}; test predictions {c['prob'].shape}; "
        f"CTCVR <= CTR on every row: {ok}. Too small to judge quality.",
        "",
    ]


def dataset(df: pd.DataFrame, labels: np.ndarray) -> ColumnarDataset:
    return ColumnarDataset(
        {c: df[c].to_numpy("int64") for c in ("user_id", "item_id", "item_category")}, labels
    )


def cvr_scores(pred: np.ndarray, test: pd.DataFrame) -> dict[str, float]:
    clicked = test["click"].to_numpy() > 0
    y_cf = test["converted_if_clicked"].to_numpy()
    truth = test["true_cvr"].to_numpy()
    return {
        "auc_entire": auc_score(y_cf, pred),
        "auc_clicked": auc_score(test["conversion"].to_numpy()[clicked], pred[clicked]),
        "mae": float(np.mean(np.abs(pred - truth))),
        "calibration": float(pred.mean() / truth.mean()),
        "calibration_clicked": float(pred[clicked].mean() / truth[clicked].mean()),
    }


def synthetic(n_samples: int, seed: int, epochs: int) -> dict[str, dict[str, float]]:
    df = conversion_funnel(n_samples, seed=seed)
    perm = np.random.default_rng(seed).permutation(len(df))
    n_tr, n_va = int(0.8 * len(df)), int(0.1 * len(df))
    train, val, test = (
        df.iloc[p].reset_index(drop=True)
        for p in (perm[:n_tr], perm[n_tr : n_tr + n_va], perm[n_tr + n_va :])
    )
    feats: list[Feature] = [
        SparseFeature("user_id", vocab_size=int(df["user_id"].max()) + 1, embed_dim=8),
        SparseFeature("item_id", vocab_size=int(df["item_id"].max()) + 1, embed_dim=8),
        SparseFeature("item_category", vocab_size=int(df["item_category"].max()) + 1, embed_dim=8),
    ]
    two = lambda d: np.stack([d["click"], d["conversion"]], 1)  # noqa: E731
    out: dict[str, dict[str, float]] = {}
    test_ds = dataset(test, two(test))
    # ESMM: the entire space.
    torch.manual_seed(seed)
    esmm = ESMM(feats[:1], feats[1:], cvr_params={"dims": [64, 32]}, ctr_params={"dims": [64, 32]})
    with tempfile.TemporaryDirectory() as tmp:
        tr = trainer_for(esmm, 2, tmp, seed, epochs)
        tr.fit(
            BatchLoader(dataset(train, two(train)), 1024, shuffle=True, seed=seed),
            BatchLoader(dataset(val, two(val)), 8192),
        )
        c = tr.collect(tr.model, BatchLoader(test_ds, 8192))
    out["ESMM"] = cvr_scores(c["cvr"], test)
    out["ESMM"]["ctr_auc"] = auc_score(c["label"][:, 0], c["prob"][:, 0])
    out["ESMM"]["ctcvr_auc"] = auc_score(c["label"][:, 1], c["prob"][:, 1])
    # Naive: clicked impressions only.
    torch.manual_seed(seed)
    naive = SharedBottom(
        feats, task_types=["classification"], bottom_params={"dims": [64]}, tower_params_list=[{"dims": [32]}]
    )
    tr_c, va_c = train[train["click"] > 0], val[val["click"] > 0]
    with tempfile.TemporaryDirectory() as tmp:
        tr = trainer_for(naive, 1, tmp, seed, epochs)
        tr.fit(
            BatchLoader(dataset(tr_c, tr_c[["conversion"]].to_numpy()), 1024, shuffle=True, seed=seed),
            BatchLoader(dataset(va_c, va_c[["conversion"]].to_numpy()), 8192),
        )
        pred = tr.predict(tr.model, BatchLoader(test_ds, 8192))[:, 0]
    out["naive CVR (clicked only)"] = cvr_scores(pred, test)
    out["oracle (true CVR)"] = cvr_scores(test["true_cvr"].to_numpy(), test)
    return out


def main(argv: list[str] | None = None) -> None:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, default=root.parent / "shared" / "data")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-samples", type=int, default=200_000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--out", type=Path, default=root / "benchmarks" / "results" / "multi_task.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    smoke = ali_ccp_smoke(args.data_dir)
    print("\n".join(smoke), flush=True)
    runs: dict[str, list[dict[str, float]]] = {}
    for seed in args.seeds:
        for name, scores in synthetic(args.n_samples, seed, args.epochs).items():
            runs.setdefault(name, []).append(scores)
            print(f"seed {seed} {name} {scores}", flush=True)

    def med(name: str, key: str) -> str:
        v = [r[key] for r in runs[name]]
        return f"{statistics.median(v):.4f} [{min(v):.4f}-{max(v):.4f}]"

    cmd = "PYTHONPATH=src python benchmarks/multi_task_esmm.py " + " ".join(sys.argv[1:])
    lines = [
        "## ESMM on a click -> conversion chain",
        "",
        f"Command: `{cmd.strip()}` ({time.perf_counter() - t0:.0f} s, 1 CPU thread)",
        "",
        *smoke,
        f"### (b) Synthetic entire-space funnel ({args.n_samples:,} impressions, seeds {args.seeds})",
        "",
        "CVR on every test impression against the known truth; median [min-max] over seeds.",
        "",
        "| CVR model | AUC entire space | AUC clicked only | MAE to true CVR | calibration entire | calibration clicked |",
        "|---|---|---|---|---|---|",
    ]
    for name in runs:
        keys = ("auc_entire", "auc_clicked", "mae", "calibration", "calibration_clicked")
        lines.append(f"| {name} | " + " | ".join(med(name, k) for k in keys) + " |")
    lines += [
        "",
        f"ESMM's own tasks: CTR AUC {med('ESMM', 'ctr_auc')}, CTCVR AUC {med('ESMM', 'ctcvr_auc')}.",
        "AUC entire space uses the counterfactual label `converted_if_clicked` of every impression; "
        "calibration = mean predicted CVR / mean true CVR. The oracle row scores the true CVR itself "
        "(the best attainable AUC under label noise).",
    ]
    write_section(args.out, "esmm", lines, TITLE)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
