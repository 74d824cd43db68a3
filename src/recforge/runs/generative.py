"""TIGER runs: item content vectors -> RQ-VAE -> semantic IDs, and the TIGER model a run directory
restores.

``item_content`` builds one content row per encoded item id from the sources of
``model.semantic_ids.content`` (``recforge.data.content``): the item table's attribute ids, the
items' text through a local encoder, a trained run's item tower; each part L2-normalised, then
concatenated. ``tokenize`` trains the RQ-VAE on the catalogue's rows (``train_rqvae``: the one
training loop) and derives the IDs with the disambiguation code, printing the collision rate before
and after. A run directory holds ``semantic_ids.json`` (``SemanticIDs`` JSON), ``rqvae.pt``
(weights-only) and the RQ-VAE's arguments in ``model.json``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recforge.config import ContentSource, SemanticIDsConfig
from recforge.data import attribute_embeddings, model_item_embeddings, text_embeddings
from recforge.files import atomic_write
from recforge.layout import RunLayout
from recforge.models.generative import RQVAE, SemanticIDs
from recforge.preprocess.vocab import NUM_RESERVED
from recforge.runs.logs import LogData
from recforge.trainers import train_rqvae

log = logging.getLogger("recforge")


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _attributes(cfg: SemanticIDsConfig, data: LogData) -> np.ndarray:
    table, col = data.item_table, cfg.attribute_column
    if table is None or col not in table.columns:
        have = [] if table is None else sorted(map(str, table.columns))
        raise ValueError(
            f"model.semantic_ids.attribute_column: the log's item table has no {col!r} column (columns: {have}); "
            "item_lists data reads it from <name>_item2attributes.json next to the log"
        )
    ids = data.pipeline.vocabulary(data.item).encode(table[data.item], column=data.item)
    attrs = {int(i): [int(a) for a in v] for i, v in zip(ids.tolist(), table[col]) if i >= NUM_RESERVED}
    return attribute_embeddings(attrs, data.num_items)


def _item_model(cfg: SemanticIDsConfig, data: LogData) -> np.ndarray:
    from recforge.runs.model import load_run

    assert cfg.item_model is not None
    run = load_run(cfg.item_model)
    item_id = getattr(run.model, "item_id", None)
    if not isinstance(item_id, str) or not callable(getattr(run.model, "item_tower", None)):
        raise ValueError(
            f"model.semantic_ids.item_model: {cfg.item_model!r} has no item tower (a retrieval run)"
        )
    theirs = run.pipeline.vocabulary(item_id)
    vecs = model_item_embeddings(run.model, len(theirs), progress=False)  # type: ignore[arg-type]
    ours = data.pipeline.vocabulary(data.item)
    raw = ours.decode(np.arange(NUM_RESERVED, data.num_items))
    rows = theirs.encode(raw, column=item_id)  # the same raw item -> its row in the other run
    out = np.zeros((data.num_items, vecs.shape[1]), np.float32)
    out[NUM_RESERVED:] = np.where((rows >= NUM_RESERVED)[:, None], vecs[rows], 0.0)
    missing = int((rows < NUM_RESERVED).sum())
    if missing:
        log.warning(
            "model.semantic_ids.item_model: %d item(s) are not in %s's catalogue", missing, cfg.item_model
        )
    return out


def item_content(cfg: SemanticIDsConfig, data: LogData) -> np.ndarray:
    """Content rows ``(num_items, D)`` float32, row = encoded item id (reserved rows zeros)."""
    parts = []
    for source in cfg.content:
        if source is ContentSource.ATTRIBUTES:
            part = _attributes(cfg, data)
        elif source is ContentSource.TEXT:
            if data.item_texts is None or cfg.text_encoder is None:
                raise ValueError("model.semantic_ids.content 'text' needs data.item_text and text_encoder")
            part = text_embeddings(data.item_texts[1:], cfg.text_encoder, progress=False)
        else:
            part = _item_model(cfg, data)
        part[:NUM_RESERVED] = 0.0
        parts.append(_unit_rows(part))
    return np.concatenate(parts, 1)


@dataclass
class Tokenizer:
    """A run's semantic IDs, the RQ-VAE that made them and its constructor arguments."""

    ids: SemanticIDs
    rqvae: RQVAE
    rqvae_args: dict[str, Any]


def tokenize(cfg: SemanticIDsConfig, data: LogData, *, seed: int, device: str = "cpu") -> Tokenizer:
    """Train the RQ-VAE on every catalogue item's content and derive the semantic IDs."""
    content = torch.from_numpy(item_content(cfg, data))
    empty = int((content[NUM_RESERVED:].abs().sum(1) == 0).sum())
    if empty:
        log.warning("semantic IDs: %d item(s) have no content and share one code tuple", empty)
    rq = train_rqvae(
        content, rqvae=cfg.rqvae, beta=cfg.beta, n_epoch=cfg.n_epoch, lr=cfg.lr, batch_size=cfg.batch_size,
        seed=seed, device=device, exclude_rows=range(NUM_RESERVED),
    )  # fmt: skip
    codes = rq.encode(content[NUM_RESERVED:])  # (N, L)
    need = SemanticIDs.from_codes(codes, num_codes=rq.num_codes, first_item=NUM_RESERVED).num_codes[-1]
    # room in the disambiguation position for items added later (add_items)
    ids = SemanticIDs.from_codes(codes, num_codes=rq.num_codes, capacity=2 * need, first_item=NUM_RESERVED)
    before, after = ids.stats_before(), ids.stats_after()
    print(
        f"semantic IDs: {before.items} items, collision rate {before.collision_rate:.4f} before "
        f"(largest bucket {before.max_bucket}) -> {after.collision_rate:.4f} after disambiguation; "
        f"codes per position {list(ids.num_codes)}",
        flush=True,
    )
    return Tokenizer(ids, rq, {"input_dim": int(content.shape[1]), **cfg.rqvae})


def save_tokenizer(layout: RunLayout, tok: Tokenizer) -> dict[str, Any]:
    """Write ``semantic_ids.json`` and ``rqvae.pt``; returns the ``model.json`` entry naming them."""
    tok.ids.save(layout.semantic_ids)
    state = tok.rqvae.state_dict()
    atomic_write(layout.rqvae, lambda tmp: torch.save(state, tmp))
    return {"rqvae": tok.rqvae_args}


def load_tokenizer(root: Path, entry: dict[str, Any]) -> Tokenizer:
    """The tokenizer ``save_tokenizer`` wrote (JSON and weights-only reads)."""
    layout = RunLayout(root)
    for needed in (layout.semantic_ids, layout.rqvae):
        if not needed.exists():
            raise FileNotFoundError(f"{str(root)!r}: {needed.name!r} is missing (a TIGER run needs it)")
    args = dict(entry["rqvae"])
    rq = RQVAE(int(args.pop("input_dim")), **args)
    rq.load_state_dict(torch.load(layout.rqvae, map_location="cpu", weights_only=True))
    return Tokenizer(SemanticIDs.load(layout.semantic_ids), rq.eval(), dict(entry["rqvae"]))
