"""Run directories under attack and accident (issue 20): nothing read back runs code, a resume after
a kill logs each epoch once, killed writers' temporary files go, undefined metrics select nothing."""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import recforge
from recforge.data import BatchLoader, ColumnarDataset
from recforge.features import SparseFeature
from recforge.metrics import UndefinedMetricWarning
from recforge.models import matching
from recforge.models.multi_task import PLE
from recforge.models.ranking import DeepFM
from recforge.outputs import TaskType
from recforge.retrieval import load_index
from recforge.runs import load_run
from recforge.trainers import CTRTrainer, MTLTrainer
from recforge.trainers.loop import EarlyStopper
from serving_runs import TinyTwoTower, make_two_stage

SPARSE = [SparseFeature(f"c{i}", 20, embed_dim=4) for i in range(3)]


class Payload:
    """Unpickling this creates ``marker``: proof that loading ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def plant_pickle(path: Path, marker: Path) -> None:
    torch.save({"model": Payload(marker), "epoch": 0, "kind": Payload(marker)}, path)


YAML_PAYLOAD = "!!python/object/apply:pathlib.Path.touch [{marker}]\n"


def ctr_data(n=300, seed=0, labels=None):
    rng = np.random.default_rng(seed)
    cols = {f"c{i}": rng.integers(0, 20, n) for i in range(3)}
    y = (cols["c0"] % 2).astype("float32") if labels is None else labels
    return ColumnarDataset(cols, y)


def ctr_trainer(path, **kw):
    torch.manual_seed(0)
    model = DeepFM(SPARSE, SPARSE, mlp_params={"dims": [8]})
    kw = {"n_epoch": 2, "progress": False, "plot": False, "model_path": path, **kw}
    return CTRTrainer(model, optimizer_params={"lr": 0.01}, **kw)


def mtl_trainer(path, method="gradnorm", **kw):
    torch.manual_seed(0)
    model = PLE(
        SPARSE,
        task_types=[TaskType.CLASSIFICATION] * 2,
        n_level=1,
        n_expert_specific=1,
        n_expert_shared=1,
        expert_params={"dims": [8]},
    )
    kw = {"n_epoch": 1, "progress": False, "plot": False, "model_path": path, **kw}
    return MTLTrainer(model, None, adaptive_params={"method": method}, **kw)


def mtl_loader(n=120):
    rng = np.random.default_rng(0)
    cols = {f"c{i}": rng.integers(0, 20, n) for i in range(3)}
    y = np.stack([cols["c0"] % 2, cols["c1"] % 2], 1).astype("float32")
    return BatchLoader(ColumnarDataset(cols, y), 16, shuffle=True)


# -- nothing read back runs code ---------------------------------------------------------------------
@pytest.mark.parametrize("method", ["uwl", "gradnorm", "metabalance"])
def test_every_training_file_is_plain_weights_only_data(tmp_path, method):
    t = mtl_trainer(tmp_path, method)
    t.fit(mtl_loader(), mtl_loader(40))
    for name in ("checkpoint.pt", "best.pt", "weighting.pt"):
        torch.load(tmp_path / name, weights_only=True)  # raises on anything but plain data
    resumed = mtl_trainer(tmp_path, method, n_epoch=2, resume=True)
    resumed.fit(mtl_loader(), mtl_loader(40))
    assert resumed.start_epoch == 1


@pytest.mark.parametrize("name", ["checkpoint.pt", "weighting.pt"])
def test_a_planted_checkpoint_is_refused_without_running_it(tmp_path, name):
    mtl_trainer(tmp_path).fit(mtl_loader())
    marker = tmp_path / "pwned"
    plant_pickle(tmp_path / name, marker)
    with pytest.raises(ValueError, match=f"{name}: not a weights-only file"):
        mtl_trainer(tmp_path, n_epoch=2, resume=True).fit(mtl_loader())
    assert not marker.exists()


@pytest.fixture(scope="module")
def serving_dir(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setitem(matching.MODELS, "TinyTwoTower", TinyTwoTower)
    yield make_two_stage(tmp_path_factory.mktemp("payload"))
    mp.undo()


def _run_files(serving: Path) -> list[Path]:
    root = serving.parent
    files = [serving / "bundle.yaml", root / "items.parquet"]
    for run in ("ranking", "retrieval"):
        files += [p for p in (root / run).rglob("*") if p.is_file() and not p.name.endswith(".png")]
    return sorted(files)


def test_a_payload_in_any_file_of_a_run_directory_never_runs(serving_dir, tmp_path):
    """Each file of the two runs and the serving directory in turn holds a payload (a pickle, a
    YAML python tag, or pickle bytes where JSON/Parquet is expected); every reader recforge has
    (load, serve's bundle, load_run, load_index, resume) either refuses it or ignores it."""
    import shutil

    files = _run_files(serving_dir)
    names = {p.name for p in files}
    assert {"checkpoint.pt", "best.pt", "index.pt", "pipeline.json", "model.json", "config.yaml",
            "metrics.jsonl", "bundle.yaml", "items.parquet"} <= names  # fmt: skip
    root = serving_dir.parent
    mp = pytest.MonkeyPatch()
    mp.setitem(matching.MODELS, "TinyTwoTower", TinyTwoTower)
    try:
        for original in files:
            copy = tmp_path / original.relative_to(root.parent).parts[0] / "x"
            shutil.copytree(root, copy)
            target = copy / original.relative_to(root)
            marker = tmp_path / f"ran-{original.name}"
            if target.suffix in (".yaml", ".yml"):
                target.write_text(YAML_PAYLOAD.format(marker=marker))
            else:
                plant_pickle(target, marker)
            readers = [
                lambda c=copy: recforge.load(c / "serve"),
                lambda c=copy: load_run(c / "ranking"),
                lambda c=copy: load_run(c / "retrieval"),
                lambda c=copy: load_index(c / "retrieval" / "index.pt"),
            ]
            if target.name == "checkpoint.pt" and target.parent.name == "ranking":
                readers.append(lambda c=copy: _resume_ranking(c / "ranking"))
            for read in readers:
                with contextlib.suppress(Exception):  # refusing is fine; running the payload is not
                    read()
                assert not marker.exists(), f"a payload in {original.relative_to(root)} ran"
            shutil.rmtree(copy.parent)
    finally:
        mp.undo()


def _resume_ranking(run_dir: Path) -> None:
    run = load_run(run_dir)
    trainer = CTRTrainer(run.model, n_epoch=5, model_path=run_dir, resume=True, progress=False, plot=False)
    trainer.fit(ctr_loader_for(run), None)


def ctr_loader_for(run) -> BatchLoader:
    from serving_runs import interactions

    return run.loader(interactions(50, 0), 16)


def test_a_yaml_python_tag_in_a_bundle_file_is_an_error_not_code(serving_dir, tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / "bundle.yaml").write_text(YAML_PAYLOAD.format(marker=marker))
    with pytest.raises(yaml.YAMLError):
        recforge.load(tmp_path)
    assert not marker.exists()


# -- resume after a kill ------------------------------------------------------------------------------
def test_an_epoch_logged_before_a_kill_is_logged_once_after_resume(tmp_path):
    train = BatchLoader(ctr_data(), 64, shuffle=True)
    t = ctr_trainer(tmp_path, n_epoch=4)
    real = t._save_checkpoint

    def killed_at_epoch_2(epoch, state):
        if epoch == 2:
            raise KeyboardInterrupt  # the kill: metrics.jsonl already holds epoch 2, checkpoint.pt does not
        real(epoch, state)

    t._save_checkpoint = killed_at_epoch_2
    with pytest.raises(KeyboardInterrupt):
        t.fit(train, None)
    logged = [json.loads(s)["epoch"] for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert logged == [0, 1, 2]
    ctr_trainer(tmp_path, n_epoch=4, resume=True).fit(train, None)
    logged = [json.loads(s)["epoch"] for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert logged == [0, 1, 2, 3]


def test_a_fresh_run_does_not_append_to_an_old_log(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 0, "train_loss": 9}\n{"epoch": 1, "train_loss": 9}\n')
    ctr_trainer(tmp_path, n_epoch=1).fit(BatchLoader(ctr_data(), 64), None)
    logged = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in logged] == [0] and logged[0]["train_loss"] != 9


def _dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(proc.stdout)


def test_temporaries_of_killed_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = _dead_pid()
    (tmp_path / "pipeline").mkdir(parents=True)
    stale = [
        tmp_path / f".checkpoint.pt.tmp{dead}.pt",
        tmp_path / "pipeline" / f".pipeline.json.tmp{dead}.json",
    ]
    live = tmp_path / f".best.pt.tmp{os.getppid()}.pt"  # a writer still running
    unrelated = tmp_path / ".notes.tmpfile"
    for p in [*stale, live, unrelated]:
        p.write_bytes(b"partial")
    ctr_trainer(tmp_path, n_epoch=1).fit(BatchLoader(ctr_data(), 64), None)
    assert not any(p.exists() for p in stale)
    assert live.exists() and unrelated.exists()


# -- undefined metrics -----------------------------------------------------------------------------
def test_a_nan_metric_never_becomes_the_best_epoch():
    s = EarlyStopper("auc", patience=5, mode="max")
    assert s.step(math.nan, 0) == (False, False)
    assert s.step(0.6, 1) == (True, False)
    assert s.step(math.nan, 2) == (False, False)
    assert s.step(0.5, 3) == (False, False)
    assert s.best_epoch == 1 and s.best == 0.6 and s.bad_epochs == 2
    low = EarlyStopper("logloss", patience=5, mode="min")
    low.step(math.nan, 0)
    low.step(0.7, 1)
    low.step(math.nan, 2)
    assert low.best_epoch == 1


def test_a_one_class_validation_split_logs_nan_auc_and_keeps_the_last_epoch(tmp_path):
    train = BatchLoader(ctr_data(), 64, shuffle=True)
    val = BatchLoader(ctr_data(100, 1, labels=np.zeros(100, dtype="float32")), 50)
    t = ctr_trainer(tmp_path, n_epoch=3)
    with pytest.warns(UndefinedMetricWarning, match="auc is undefined"):
        t.fit(train, val)
    logged = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isnan(r["val_auc"]) for r in logged) and all(r["val_logloss"] > 0 for r in logged)
    assert t.stopper.best_epoch == -1
    best = torch.load(tmp_path / "best.pt", weights_only=True)["model"]
    for k, v in t.model.state_dict().items():
        torch.testing.assert_close(best[k], v)  # the last epoch's weights, not epoch 0's


def test_a_multi_task_split_with_a_one_class_task_reports_nan_not_zero(tmp_path):
    rng = np.random.default_rng(0)
    cols = {f"c{i}": rng.integers(0, 20, 80) for i in range(3)}
    y = np.stack([cols["c0"] % 2, np.ones(80)], 1).astype("float32")  # task 1: one class
    val = BatchLoader(ColumnarDataset(cols, y), 40)
    t = mtl_trainer(tmp_path, "uwl", n_epoch=2, earlystop_taskid=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t.fit(mtl_loader(), val)
    assert any(issubclass(w.category, UndefinedMetricWarning) for w in caught)
    logged = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isnan(r["val_task1_auc"]) for r in logged)
    assert all(0 < r["val_task0_auc"] <= 1 for r in logged)
    assert t.stopper.best_epoch == -1  # epoch 0 was not "restored"


def test_evaluate_refuses_labels_outside_0_1(tmp_path):
    t = ctr_trainer(tmp_path)
    bad = BatchLoader(ctr_data(60, labels=np.where(np.arange(60) % 2, 2.0, 0.0).astype("float32")), 30)
    with pytest.raises(ValueError, match=r"labels in \[0, 1\]"):
        t.evaluate(t.model, bad)


def test_evaluating_an_empty_split_is_a_clear_error(tmp_path):
    t = ctr_trainer(tmp_path)
    empty = BatchLoader(
        ColumnarDataset({f"c{i}": np.zeros(0, dtype=np.int64) for i in range(3)}, np.zeros(0)), 8
    )
    with pytest.raises(ValueError, match="no rows to evaluate"):
        t.evaluate(t.model, empty)


def test_items_table_payload_is_not_unpickled(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "items.parquet"
    plant_pickle(path, marker)
    with pytest.raises(Exception):  # noqa: B017 - any read error; what matters is the marker
        pd.read_parquet(path)
    assert not marker.exists()
