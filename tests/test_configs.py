"""Every file in ``configs/`` parses, and builds its model and trainer on a tiny file in its data
format (the real data lives outside the repository; ``--set data.path=...`` points a config at
another copy, which is what this test does)."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_files import (
    write_census_income,
    write_interactions_csv,
    write_item_lists,
    write_lightgcn,
    write_recbole,
    write_user_item_pairs,
)
from recforge.config import load_config
from recforge.runs.train import _options, _Recipe

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
WRITERS = {
    "lightgcn": lambda d: write_lightgcn(d / "lightgcn"),
    "user_item_pairs": lambda d: write_user_item_pairs(d / "pairs.txt"),
    "item_lists": lambda d: write_item_lists(d / "lists.txt"),
    "census_income": lambda d: write_census_income(d / "census.data", n=300),
    "interactions": lambda d: write_interactions_csv(d / "log.csv"),
    "recbole": lambda d: write_recbole(d / "recbole"),
}


def test_configs_exist() -> None:
    names = {p.stem for p in CONFIGS}
    assert {"adult_deepfm", "gowalla_youtubednn", "beauty_sasrec", "census_mmoe"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_parses_and_builds_its_model(path: Path, tmp_path: Path) -> None:
    cfg, _ = load_config(path)
    overrides = [f"run_dir={tmp_path / 'run'}"]
    if cfg.data.path is not None:
        writer = WRITERS[cfg.data.format.value]
        overrides.append(f"data.path={writer(tmp_path)}")
    if cfg.model.name == "TIGER":  # no collaborative run here: the item attributes alone
        overrides += ["model.semantic_ids.content=[attributes]", "model.semantic_ids.n_epoch=2"]
    if cfg.model.name == "HLLM":
        pytest.importorskip("transformers")
        overrides += [f"model.params.item_llm={_tiny_llm(tmp_path)}"]
    cfg, _ = load_config(path, overrides)
    recipe = _Recipe(cfg)
    model = recipe.model()
    trainer = recipe.trainer(model, _options(cfg, tmp_path / "run", resume=False), validate=True)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert trainer.n_epoch == cfg.trainer.n_epoch


def _tiny_llm(tmp_path: Path) -> str:
    """A tiny BERT with its tokenizer saved locally (the HLLM config's item LLM stand-in)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path / "tiny_bert"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *[f"w{i}" for i in range(50)]]
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(vocab))
    BertTokenizerFast(str(folder / "vocab.txt")).save_pretrained(folder)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64)  # fmt: skip
    BertModel(cfg).save_pretrained(folder)
    return str(folder)


def test_every_config_key_is_documented() -> None:
    """docs/configs.md lists every key of every config section (it fails when a key is added
    without a line in the reference)."""
    import dataclasses
    import re

    from recforge import config as c

    doc = (ROOT / "docs" / "configs.md").read_text()
    documented = set(re.findall(r"`([a-z_0-9]+)`", doc))
    sections = (
        c.RunConfig, c.DataConfig, c.SamplesConfig, c.ModelConfig, c.TrainerConfig,
        c.MatchConfig, c.SeqConfig, c.MTLConfig, c.EvalConfig, c.SemanticIDsConfig, c.GenerativeConfig,
    )  # fmt: skip
    missing = sorted(
        f"{cls.__name__}.{f.name}"
        for cls in sections
        for f in dataclasses.fields(cls)
        if f.name not in documented
    )
    assert not missing, f"keys missing from docs/configs.md: {missing}"
