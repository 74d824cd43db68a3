"""`recforge train CONFIG` for every family on tiny generated files, then the run directory is used
as a user would: `recforge evaluate`, `recforge index`, `recforge.load(...).recommend` and `POST
/recommend` for a known user and for a new user whose history is in the request."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml

import recforge
from data_files import (
    write_census_income,
    write_interactions_csv,
    write_item_lists,
    write_lightgcn,
)
from recforge.cli import main
from recforge.runs import load_run
from recforge.serve import create_app
from serving_runs import LiveServer

EMB = {"type": "RandomNormal", "std": 0.1}


def config(tmp_path: Path, data: dict, features: list, model: dict, trainer: dict) -> Path:
    cfg = {
        "run_dir": str(tmp_path / "run"),
        "seed": 0,
        "data": data,
        "features": features,
        "model": model,
        "trainer": {"progress": False, "num_threads": 1, "plot": False, **trainer},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def seq_config(tmp_path: Path, name: str = "SASRec", params: dict | None = None, **trainer) -> Path:
    log = write_interactions_csv(tmp_path / "log.csv", cold_test_item=True)
    return config(
        tmp_path,
        {"format": "interactions", "path": str(log), "split": "leave_one_out", "batch_size": 32},
        [
            {"name": "item_id", "type": "categorical", "embed_dim": 16, "initializer": EMB},
            {"name": "hist_item_id", "type": "sequence", "shared_with": "item_id", "max_len": 6},
        ],
        {
            "name": name,
            "inputs": {"history_features": "history", "item_features": "item_id"},  # feature groups
            "params": params if params is not None else {"max_len": 6, "num_blocks": 1, "normalize": True},
        },
        {
            "preset": "seq",
            "n_epoch": 8,
            "optimizer_params": {"lr": 0.01},
            "earlystop_patience": 8,
            "seq": {"loss": "sampled_softmax", "num_negatives": 16, "temperature": 0.1},
            **trainer,
        },
    )


def test_seq_sasrec_end_to_end_every_user_ranked(tmp_path, capsys):
    cfg = seq_config(tmp_path)
    assert main(["train", str(cfg)]) == 0
    run = tmp_path / "run"
    for name in ("best.pt", "histories.pt", "index.pt", "test_metrics.json", "pipeline", "model.json"):
        assert (run / name).exists(), name
    metrics = json.loads((run / "test_metrics.json").read_text())["test"]
    # every user has a test item, including u0 whose test item never occurs in training
    assert metrics["users_evaluated"] == metrics["users_total"] == 120
    assert metrics["hr@10"] > 0.5  # each cluster walks its items in order: learnable
    capsys.readouterr()
    # evaluate on an interaction file with the run's own reader
    assert main(["evaluate", str(run), "--data", str(tmp_path / "log.csv")]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["users_evaluated"] == 120 and evaluated["users_unknown"] == 0
    # a known user (history from the run) and a new user (history in the request)
    bundle = recforge.load(run)
    known, new = bundle.recommend([{"user_id": "u5"}, {"hist_item_id": ["i1", "i2", "i3"]}], k=3)
    assert len(known.items) == 3 and len(new.items) == 3
    assert new.items[0] == "i4"  # the cluster's next item
    with LiveServer(create_app(bundle)) as url:
        body = {"users": [{"user_id": "u5"}, {"hist_item_id": ["i1", "i2", "i3"]}], "k": 3}
        r = httpx.post(f"{url}/recommend", json=body, timeout=30)
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert results[0]["items"] == known.items and results[1]["items"] == new.items


def test_cold_held_out_item_is_a_candidate(tmp_path):
    from recforge.config import load_config
    from recforge.runs.logs import prepare_log

    cfg, _ = load_config(seq_config(tmp_path))
    data = prepare_log(cfg)
    cold = int(data.pipeline.vocabulary("item_id").encode(["i_cold"])[0])
    assert cold >= 2 and cold not in set(data.split.train.item_id)
    assert cold in set(data.split.test.item_id)
    part = data.eval_part("test", ks=[10], normalize=False, exclude_seen=True)
    assert part.users_total == 120 and len(part.rows) == 120


@pytest.mark.parametrize("name", ["GRU4Rec", "HSTU"])
def test_seq_other_models(tmp_path, name):
    params = {"num_layers": 1, "dropout": 0.0, "normalize": True} if name == "HSTU" else {"normalize": True}
    assert main(["train", str(seq_config(tmp_path, name, params, n_epoch=3))]) == 0
    metrics = json.loads((tmp_path / "run" / "test_metrics.json").read_text())["test"]
    assert metrics["users_evaluated"] == 120


def test_match_bag_youtubednn_with_refit_and_index(tmp_path, capsys):
    folder = write_lightgcn(tmp_path / "gowalla_like")
    cfg = config(
        tmp_path,
        {
            "format": "lightgcn",
            "path": str(folder),
            "split": "given",
            "valid_fraction": 0.2,
            "samples": {"kind": "bag", "max_len": 4, "dropout": 0.3},
            "batch_size": 64,
        },
        [
            {"name": "item_id", "type": "categorical", "embed_dim": 16, "initializer": EMB},
            {"name": "hist_item_id", "type": "sequence", "shared_with": "item_id", "max_len": 20},
        ],
        {
            "name": "YoutubeDNN",
            "inputs": {"user_features": ["hist_item_id"], "item_features": ["item_id"]},
            "params": {"user_params": {"dims": []}, "temperature": 0.1},
        },
        {
            "preset": "match",
            "n_epoch": 4,
            "optimizer_params": {"lr": 0.02},
            "scheduler": "cosine",
            "refit": True,
            "earlystop_patience": 4,
            "match": {"negatives": "shared", "num_negatives": 20, "exclude_seen": True},
            "evaluation": {"ks": [3, 10]},
        },
    )
    assert main(["train", str(cfg)]) == 0
    run = tmp_path / "run"
    result = json.loads((run / "test_metrics.json").read_text())
    assert "valid" not in result and result["selection"]["metric"] == "recall@3"  # recall@20 not in ks
    assert result["test"]["users_evaluated"] == 120 and result["test"]["recall@10"] > 0.5
    assert (run / "selection" / "metrics.jsonl").exists()
    epochs = [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(epochs) == result["selection"]["best_epoch"] + 1  # the refit ran the chosen count
    capsys.readouterr()
    assert main(["index", str(run)]) == 0
    assert "indexed 40 items" in capsys.readouterr().out
    recs = recforge.load(run).recommend([{"user_id": 3}], k=5)[0]
    seen = {int(x) for x in (folder / "train.txt").read_text().splitlines()[3].split()[1:]}
    assert not seen & set(recs.items)  # the known user's training items are excluded


def test_match_dssm_with_item_side_columns_and_mind(tmp_path):
    log = write_interactions_csv(tmp_path / "log.csv", with_category=True)
    features = [
        {"name": "user_id", "type": "categorical", "embed_dim": 8},
        {"name": "item_id", "type": "categorical", "embed_dim": 16},
        {"name": "category", "type": "categorical", "embed_dim": 8},
        {"name": "hist_item_id", "type": "sequence", "shared_with": "item_id", "max_len": 5},
    ]
    data = {
        "format": "interactions",
        "path": str(log),
        "split": "leave_one_out",
        "item_columns": ["category"],
        "batch_size": 64,
    }
    cfg = config(
        tmp_path,
        data,
        features,
        {
            "name": "DSSM",
            "inputs": {"user_features": "user+history", "item_features": "item"},  # DSSM's default
            "params": {"user_params": {"dims": [16]}, "item_params": {"dims": [16]}, "temperature": 0.1},
        },
        {"preset": "match", "n_epoch": 3, "optimizer_params": {"lr": 0.01}, "match": {"num_negatives": 16}},
    )
    assert main(["train", str(cfg)]) == 0
    run = tmp_path / "run"
    inputs = json.loads((run / "model.json").read_text())["inputs"]
    assert inputs == {"user_features": ["user_id", "hist_item_id"], "item_features": ["item_id", "category"]}
    assert (run / "items.parquet").exists()  # the item tower reads category: the index needs it
    recs = recforge.load(run).recommend([{"user_id": "u1"}], k=4)[0]
    assert len(recs.items) == 4
    mind = config(
        tmp_path,
        data | {"item_columns": []},
        [features[1], {**features[3], "pooling": "concat"}],
        {
            "name": "MIND",
            "inputs": {
                "user_features": [],
                "history_features": ["hist_item_id"],
                "item_features": ["item_id"],
            },
            "params": {"max_length": 5, "interest_num": 2},
        },
        {"preset": "match", "n_epoch": 2, "match": {"num_negatives": 16}},
    )
    assert main(["train", str(mind), "--run-dir", str(tmp_path / "mind")]) == 0
    assert json.loads((tmp_path / "mind" / "test_metrics.json").read_text())["test"]["users_evaluated"] == 120


def test_mtl_from_one_census_file(tmp_path):
    path = write_census_income(tmp_path / "census.data")
    cfg = config(
        tmp_path,
        {
            "format": "census_income",
            "path": str(path),
            "split": "random",
            "valid_fraction": 0.2,
            "test_fraction": 0.2,
            "label": ["income_50k", "never_married"],
            "batch_size": 64,
        },
        [
            {"name": "education", "type": "categorical", "embed_dim": 4},
            {"name": "marital stat", "type": "categorical", "embed_dim": 4},
            {"name": "age", "type": "numeric", "normalize": "standard"},
        ],
        {
            "name": "MMOE",
            "inputs": {"features": "all"},
            "params": {
                "task_types": ["classification", "classification"],
                "n_expert": 2,
                "expert_params": {"dims": [16]},
                "tower_params_list": [{"dims": [8]}, {"dims": [8]}],
            },
        },
        {
            "preset": "mtl",
            "n_epoch": 4,
            "optimizer_params": {"lr": 0.01},
            "mtl": {"earlystop_taskid": "mean"},
        },
    )
    assert main(["train", str(cfg)]) == 0
    test = json.loads((tmp_path / "run" / "test_metrics.json").read_text())["test"]
    assert test["never_married_auc"] > 0.9 and test["income_50k_auc"] > 0.7


def test_model_that_does_not_fit_the_preset_is_one_line(tmp_path, capsys):
    cfg = seq_config(tmp_path)
    assert main(["train", str(cfg), "--set", "trainer.preset=ctr"]) == 2
    err = capsys.readouterr().err
    assert "interaction log" in err and err.count("\n") == 1
    write_item_lists(tmp_path / "lists.txt")
    assert (
        main(
            [
                "train",
                str(cfg),
                "--set",
                "model.name=DeepFM",
                "--set",
                "model.inputs={deep_features: [item_id], fm_features: [item_id]}",
                "--set",
                "model.params={}",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "model 'DeepFM' (ranking) does not fit trainer.preset 'seq'" in err


def tiger_config(tmp_path: Path, **trainer) -> Path:
    """TIGER on an S3-Rec-layout file whose item attributes (one per cluster) are the content."""
    lists = write_item_lists(tmp_path / "Tiny.txt")
    return config(
        tmp_path,
        {
            "format": "item_lists",
            "path": str(lists),
            "split": "leave_one_out",
            "batch_size": 32,
            "eval_batch_size": 64,
        },
        [
            {"name": "item_id", "type": "categorical"},
            {"name": "hist_item_id", "type": "sequence", "shared_with": "item_id", "max_len": 6},
        ],
        {
            "name": "TIGER",
            "inputs": {},
            "params": {
                "max_len": 6,
                "num_user_buckets": 16,
                "transformer": {
                    "embed_dim": 32,
                    "num_encoder_layers": 1,
                    "num_decoder_layers": 1,
                    "num_heads": 2,
                    "ffn_dim": 64,
                    "dropout": 0.0,
                },
            },
            "semantic_ids": {
                "content": ["attributes"],
                "n_epoch": 20,
                "lr": 0.01,
                "rqvae": {"dims": [16], "latent_dim": 8, "num_codes": 4, "num_levels": 2},
            },
        },
        {
            "preset": "seq",
            "n_epoch": 12,
            "optimizer": "adamw",
            "optimizer_params": {"lr": 0.01},
            "earlystop_patience": 12,
            "evaluation": {"ks": [5, 10]},
            "generative": {"valid_users": 60},
            **trainer,
        },
    )


def test_seq_tiger_end_to_end_every_user_ranked(tmp_path, capsys):
    assert main(["train", str(tiger_config(tmp_path))]) == 0
    printed = capsys.readouterr().out
    assert "collision rate" in printed and "after disambiguation" in printed
    run = tmp_path / "run"
    for name in ("best.pt", "histories.pt", "semantic_ids.json", "rqvae.pt", "pipeline", "model.json"):
        assert (run / name).exists(), name
    assert not (run / "index.pt").exists()  # TIGER generates its items: no vector index
    metrics = json.loads((run / "test_metrics.json").read_text())["test"]
    assert metrics["users_evaluated"] == metrics["users_total"] == 120
    assert metrics["hr@10"] > 0.5  # each cluster walks its items in order: learnable
    # evaluate on an interaction file with the run's own reader: the list metrics
    assert main(["evaluate", str(run), "--data", str(tmp_path / "Tiny.txt")]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["users_evaluated"] == 120 and "ndcg@10" in evaluated
    # a known user (history from the run) and a new user (history in the request): beam search
    bundle = recforge.load(run)
    known, new = bundle.recommend([{"user_id": 5}, {"hist_item_id": [1, 2, 3]}], k=3)
    assert len(known.items) == 3 and len(new.items) == 3
    assert new.items[0] == 4 and not {1, 2, 3} & set(new.items)  # the next item; seen items excluded
    with LiveServer(create_app(bundle)) as url:
        body = {"users": [{"user_id": 5}, {"hist_item_id": [1, 2, 3]}], "k": 3}
        r = httpx.post(f"{url}/recommend", json=body, timeout=30)
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert results[0]["items"] == known.items and results[1]["items"] == new.items


def test_tiger_add_items_from_content_then_serve(tmp_path, capsys):
    """New items get semantic IDs from their attributes through the run's RQ-VAE (nothing
    retrained): the run directory is rewritten as one change, then a loaded bundle and the server
    recommend them and read them in a request's history."""
    assert main(["train", str(tiger_config(tmp_path, n_epoch=2))]) == 0
    run = tmp_path / "run"
    before = {n: (run / n).read_bytes() for n in ("semantic_ids.json", "best.pt", "pipeline/pipeline.json")}
    # S3-Rec's item2attributes form: items 9001 / 9002 carry the attributes of clusters 0 and 3
    new = tmp_path / "new_item2attributes.json"
    new.write_text(json.dumps({"9001": [100], "9002": [103]}))
    capsys.readouterr()
    assert main(["add-items", str(run), str(new)]) == 0
    assert "added 2 items" in capsys.readouterr().out
    ids = json.loads((run / "semantic_ids.json").read_text())["codes"]
    assert len(ids) == 2 + 40 + 2  # reserved ids, the catalogue, the new items
    vocab = load_run(run).pipeline.vocabulary("item_id")
    first, last = vocab.encode([1, 31], column="item_id")  # raw items of clusters 0 and 3
    assert ids[-2][:-1] == ids[first][:-1] and ids[-1][:-1] == ids[last][:-1]  # same content, same codes
    assert len({tuple(c) for c in ids[2:]}) == 42  # every ID distinct after disambiguation
    bundle = recforge.load(run)
    every, with_new = bundle.recommend([{"hist_item_id": [1, 2, 3]}, {"hist_item_id": [9001, 1]}], k=42)
    assert {9001, 9002} <= set(every.items) and len(every.items) == 39  # every unseen item, the new ones too
    assert 9001 not in with_new.items and len(with_new.items) == 40  # a new item in a history is read
    with LiveServer(create_app(bundle)) as url:
        r = httpx.post(f"{url}/recommend", json={"users": [{"hist_item_id": [9001, 1]}], "k": 42}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["items"] == with_new.items
        assert httpx.post(f"{url}/items", json={"items": [{"item_id": 9004}]}, timeout=30).status_code == 404
    # a known item, or an item whose content is not an attribute list, changes nothing on disk
    after = {n: (run / n).read_bytes() for n in before}
    assert after != before
    assert main(["add-items", str(run), str(new)]) == 2
    assert "already known" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"item_id": 9003, "attributes": "brand x"}) + "\n")
    assert main(["add-items", str(run), str(bad)]) == 2
    assert "'attributes' must be a list of attribute ids" in capsys.readouterr().err
    assert {n: (run / n).read_bytes() for n in before} == after
    assert not list(run.rglob(".*tmp*"))  # no temporary file left behind


def test_tiger_server_adds_items_while_serving(tmp_path):
    """POST /items (opened with allow_add_items): the new item is recommended from the next
    request on; a refused body is a 422 and changes nothing; persist writes the run directory."""
    assert main(["train", str(tiger_config(tmp_path, n_epoch=1))]) == 0
    run = tmp_path / "run"
    bundle = recforge.load(run)
    ids_file = (run / "semantic_ids.json").read_bytes()
    with LiveServer(create_app(bundle, allow_add_items=True)) as url:
        body = {"users": [{"hist_item_id": [1, 2, 3]}], "k": 50}
        first = httpx.post(f"{url}/recommend", json=body, timeout=30).json()["results"][0]["items"]
        assert 9001 not in first and len(first) == 37
        r = httpx.post(f"{url}/items", json={"items": [{"item_id": 9001, "attributes": [101]}]}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["items"] == [9001] and len(r.json()["semantic_ids"][0]) == 3
        assert (run / "semantic_ids.json").read_bytes() == ids_file  # not persisted unless asked
        after = httpx.post(f"{url}/recommend", json=body, timeout=30).json()["results"][0]["items"]
        assert 9001 in after and len(after) == 38
        for bad, message in (
            ({"items": [{"item_id": 9001, "attributes": [101]}]}, "already known"),
            ({"items": [{"item_id": 9002, "attributes": "x"}]}, "must be a list of attribute ids"),
            ({"items": [{"attributes": [101]}]}, "no 'item_id' column"),
        ):
            r = httpx.post(f"{url}/items", json=bad, timeout=30)
            assert r.status_code == 422 and message in r.json()["detail"], r.text
        r = httpx.post(
            f"{url}/items", json={"items": [{"item_id": 9002, "attributes": [102]}], "persist": True}
        )
        assert r.status_code == 200, r.text
    assert len(bundle.retrieval.vocab) == 2 + 40 + 2  # the refused bodies left no trace
    reloaded = recforge.load(run)  # persisted: 9001 (added live) and 9002 both survive a restart
    assert {9001, 9002} <= set(reloaded.recommend([{"hist_item_id": [1]}], k=50)[0].items)
