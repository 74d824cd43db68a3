import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from recforge.cli import main
from recforge.config import apply_overrides, parse_config

ROOT = Path(__file__).resolve().parent.parent


def small_config(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 3000
    df = pd.DataFrame(
        {
            "user": rng.choice(["u1", "u2", "u3", "u4", "u5"], n),
            "city": rng.choice(["paris", "rome", "oslo"], n),
            "age": rng.integers(18, 70, n).astype(float),
        }
    )
    df["label"] = ((df["city"] == "rome") ^ (df["age"] > 40)).astype(int)
    df.iloc[:2500].to_csv(tmp_path / "train.csv", index=False)
    df.iloc[2500:].to_parquet(tmp_path / "test.parquet")
    cfg = yaml.safe_load((ROOT / "configs" / "adult_deepfm.yaml").read_text())
    cfg["data"] = {
        "train": str(tmp_path / "train.csv"),
        "test": str(tmp_path / "test.parquet"),
        "valid_fraction": 0.2,
        "label": "label",
        "batch_size": 128,
    }
    cfg["features"] = [
        {"name": "user", "type": "categorical", "embed_dim": 8},
        {"name": "city", "type": "categorical", "embed_dim": 8},
        {"name": "age", "type": "numeric", "normalize": "standard"},
    ]
    cfg["model"]["params"] = {"mlp_params": {"dims": [16]}}
    cfg["trainer"].update(n_epoch=2, progress=False, num_threads=1)
    cfg["run_dir"] = str(tmp_path / "run")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_then_evaluate_end_to_end(tmp_path, capsys):
    config = small_config(tmp_path)
    # one --set takes several KEY=VALUE items, as the config headers write it
    assert main(["train", str(config), "--set", "trainer.optimizer_params.lr=0.01", "seed=7"]) == 0
    out = capsys.readouterr().out
    assert "test: auc=" in out
    run = tmp_path / "run"
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["trainer"]["optimizer_params"]["lr"] == 0.01 and resolved["seed"] == 7
    for name in (
        "config.yaml",
        "model.json",
        "best.pt",
        "checkpoint.pt",
        "metrics.jsonl",
        "test_metrics.json",
        "learning_curve.png",
    ):
        assert (run / name).exists(), name
    assert yaml.safe_load((run / "config.yaml").read_text())["trainer"]["optimizer_params"]["lr"] == 0.01
    test_auc = json.loads((run / "test_metrics.json").read_text())["test"]["auc"]
    assert test_auc > 0.9
    assert main(["evaluate", str(run), "--data", str(tmp_path / "test.parquet")]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["auc"] == pytest.approx(test_auc, abs=1e-6)
    # A second train into the same run directory is refused rather than overwriting it.
    assert main(["train", str(config)]) == 2
    assert "already holds a trained run" in capsys.readouterr().err


def test_multi_task_preset(tmp_path, capsys):
    config = small_config(tmp_path)
    for name in ("train.csv",):
        df = pd.read_csv(tmp_path / name)
        df["label2"] = (df["user"] == "u1").astype(int)
        df.to_csv(tmp_path / name, index=False)
    df = pd.read_parquet(tmp_path / "test.parquet")
    df["label2"] = (df["user"] == "u1").astype(int)
    df.to_parquet(tmp_path / "test.parquet")
    overrides = [
        "data.label=[label, label2]",
        "trainer.preset=mtl",
        "model.name=MMOE",
        "model.inputs={features: all}",
        "model.params={task_types: [classification, classification], n_expert: 2, "
        "expert_params: {dims: [16]}, tower_params_list: [{dims: [8]}, {dims: [8]}]}",
        "trainer.earlystop_metric=mean_auc",
        "trainer.optimizer_params.lr=0.01",
        "trainer.n_epoch=3",
    ]
    args = [a for o in overrides for a in ("--set", o)]
    assert main(["train", str(config), *args]) == 0
    metrics = json.loads((tmp_path / "run" / "test_metrics.json").read_text())["test"]
    assert metrics["label_auc"] > 0.85 and metrics["label2_auc"] > 0.95


def test_config_errors_name_the_key(tmp_path, capsys):
    config = small_config(tmp_path)
    assert main(["train", str(config), "--set", "trainer.optimizer=adamx"]) == 2
    assert "trainer.optimizer: must be one of" in capsys.readouterr().err
    assert main(["train", str(config), "--set", "model.name=Nope"]) == 2
    assert "unknown model 'Nope'" in capsys.readouterr().err
    raw = yaml.safe_load(config.read_text())
    with pytest.raises(ValueError, match=r"data: unknown key\(s\) \['trian'\]"):
        parse_config(apply_overrides(raw, ["data.trian=x.csv"]))
    with pytest.raises(ValueError, match="features\\[0\\] \\('user'\\): type must be one of"):
        from recforge.runs import column_specs

        column_specs([{"name": "user", "type": "categorial"}])


def test_help_lists_every_command():
    out = subprocess.run(
        [sys.executable, "-m", "recforge", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("train", "evaluate", "models"):
        assert command in out.stdout


@pytest.mark.distributed
def test_train_nproc_2_matches_the_run_directory_layout(tmp_path):
    config = small_config(tmp_path)
    cmd = [
        sys.executable,
        "-m",
        "recforge",
        "train",
        str(config),
        "--nproc",
        "2",
        "--set",
        "trainer.optimizer_params.lr=0.01",
        "--set",
        "trainer.n_epoch=4",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("test: auc=") == 1  # only rank 0 reports
    metrics = json.loads((tmp_path / "run" / "test_metrics.json").read_text())
    assert metrics["test"]["auc"] > 0.9
