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

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from recforge.config import ContentSource, SemanticIDsConfig
from recforge.data import attribute_embeddings, attribute_weights, model_item_embeddings, text_embeddings
from recforge.files import atomic_write, atomic_write_all
from recforge.layout import RunLayout
from recforge.models.generative import RQVAE, SemanticIDs
from recforge.preprocess.vocab import NUM_RESERVED
from recforge.runs.logs import LogData, row_text
from recforge.runs.model import Run
from recforge.trainers import train_rqvae

log = logging.getLogger("recforge")


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _attributes(cfg: SemanticIDsConfig, data: LogData) -> tuple[np.ndarray, np.ndarray]:
    """The catalogue's attribute rows and the attribute weights they used."""
    table, col = data.item_table, cfg.attribute_column
    if table is None or col not in table.columns:
        have = [] if table is None else sorted(map(str, table.columns))
        raise ValueError(
            f"model.semantic_ids.attribute_column: the log's item table has no {col!r} column (columns: {have}); "
            "item_lists data reads it from <name>_item2attributes.json next to the log"
        )
    ids = data.pipeline.vocabulary(data.item).encode(table[data.item], column=data.item)
    attrs = {int(i): [int(a) for a in v] for i, v in zip(ids.tolist(), table[col]) if i >= NUM_RESERVED}
    weights = attribute_weights(attrs, data.num_items)
    return attribute_embeddings(attrs, data.num_items, weights=weights), weights


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


def item_content(cfg: SemanticIDsConfig, data: LogData) -> tuple[np.ndarray, dict[str, Any]]:
    """Content rows ``(num_items, D)`` float32, row = encoded item id (reserved rows zeros), and
    what ``new_item_content`` needs to make rows for items added later the same way (the
    attribute weights, the width of the trained item vectors)."""
    parts, state = [], {}
    for source in cfg.content:
        if source is ContentSource.ATTRIBUTES:
            part, weights = _attributes(cfg, data)
            state["attribute_weights"] = weights.tolist()
        elif source is ContentSource.TEXT:
            if data.item_texts is None or cfg.text_encoder is None:
                raise ValueError("model.semantic_ids.content 'text' needs data.item_text and text_encoder")
            part = text_embeddings(data.item_texts[1:], cfg.text_encoder, progress=False)
        else:
            part = _item_model(cfg, data)
            state["model_dim"] = int(part.shape[1])
        part[:NUM_RESERVED] = 0.0
        parts.append(_unit_rows(part))
    return np.concatenate(parts, 1), state


def new_item_content(
    cfg: SemanticIDsConfig,
    state: Mapping[str, Any],
    rows: Sequence[Mapping[str, object]],
    text_columns: Sequence[str],
) -> np.ndarray:
    """Content rows ``(n, D)`` of items that were not in the catalogue, made as ``item_content``
    made the catalogue's: ``rows`` hold each item's attribute-id list (``cfg.attribute_column``)
    and/or its text columns. An item has no trained vector, so a ``model`` part is zeros; attribute
    ids the catalogue never had carry no weight (both are logged)."""
    parts = []
    for source in cfg.content:
        if source is ContentSource.ATTRIBUTES:
            col, weights = cfg.attribute_column, np.asarray(state["attribute_weights"], np.float32)
            attrs: dict[int, list[int]] = {}
            for j, r in enumerate(rows):
                v = r.get(col)
                if isinstance(v, str) and v.lstrip().startswith("["):  # a CSV cell holding a JSON list
                    v = json.loads(v)
                if not isinstance(v, list | tuple | np.ndarray) or not all(
                    isinstance(a, int | np.integer) and not isinstance(a, bool) for a in v
                ):
                    raise ValueError(
                        f"new item {j}: column {col!r} must be a list of attribute ids (ints), got {v!r}"
                    )
                attrs[j + 1] = [int(a) for a in v]
            unknown = sum(1 for v in attrs.values() for a in v if a >= len(weights) or weights[a] == 0)
            if unknown:
                log.warning("new items: %d attribute id(s) the catalogue never had carry no weight", unknown)
            part = attribute_embeddings(attrs, len(rows) + 1, weights=weights, normalize=False)[1:]
        elif source is ContentSource.TEXT:
            assert cfg.text_encoder is not None
            missing = [c for c in text_columns if all(r.get(c) is None for r in rows)]
            if missing:
                raise ValueError(f"new items: the text column(s) {missing} (data.item_text) are missing")
            texts = [row_text(r, text_columns) for r in rows]
            part = text_embeddings(texts, cfg.text_encoder, progress=False)[1:]
        else:
            log.warning(
                "new items have no trained item vector: their model.semantic_ids 'model' part is zeros"
            )
            part = np.zeros((len(rows), int(state["model_dim"])), np.float32)
        parts.append(_unit_rows(part))
    return np.concatenate(parts, 1)


@dataclass
class Tokenizer:
    """A run's semantic IDs, the RQ-VAE that made them and its constructor arguments."""

    ids: SemanticIDs
    rqvae: RQVAE
    rqvae_args: dict[str, Any]
    content: dict[str, Any]  # how new items' content is made (``new_item_content``)


def tokenize(cfg: SemanticIDsConfig, data: LogData, *, seed: int, device: str = "cpu") -> Tokenizer:
    """Train the RQ-VAE on every catalogue item's content and derive the semantic IDs."""
    rows, state = item_content(cfg, data)
    content = torch.from_numpy(rows)
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
    return Tokenizer(ids, rq, {"input_dim": int(content.shape[1]), **cfg.rqvae}, state)


def save_tokenizer(layout: RunLayout, tok: Tokenizer) -> dict[str, Any]:
    """Write ``semantic_ids.json`` and ``rqvae.pt``; returns the ``model.json`` entry naming them."""
    tok.ids.save(layout.semantic_ids)
    state = tok.rqvae.state_dict()
    atomic_write(layout.rqvae, lambda tmp: torch.save(state, tmp))
    return {"rqvae": tok.rqvae_args, "content": tok.content}


def load_tokenizer(root: Path, entry: dict[str, Any]) -> Tokenizer:
    """The tokenizer ``save_tokenizer`` wrote (JSON and weights-only reads)."""
    layout = RunLayout(root)
    for needed in (layout.semantic_ids, layout.rqvae):
        if not needed.exists():
            raise FileNotFoundError(f"{str(root)!r}: {needed.name!r} is missing (a TIGER run needs it)")
    args = dict(entry["rqvae"])
    rq = RQVAE(int(args.pop("input_dim")), **args)
    rq.load_state_dict(torch.load(layout.rqvae, map_location="cpu", weights_only=True))
    ids = SemanticIDs.load(layout.semantic_ids)
    return Tokenizer(ids, rq.eval(), dict(entry["rqvae"]), dict(entry.get("content") or {}))


@dataclass
class AddedItems:
    """Items ``add_items`` put in a run's catalogue: raw ids, their encoded ids and semantic IDs."""

    items: list[object]
    ids: np.ndarray  # (n,) encoded item ids
    codes: np.ndarray  # (n, C) semantic IDs


def read_new_items(path: str | Path, *, item: str, attribute_column: str) -> pd.DataFrame:
    """A table of new items: CSV / Parquet (``recforge.preprocess.read_table``), JSON lines of
    records, or a JSON object mapping each item id to its attribute ids (S3-Rec's
    ``*_item2attributes.json`` form; ids that are all digits become ints)."""
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"new items: {str(source)!r} does not exist")
    if source.suffix == ".jsonl":
        lines = source.read_text(encoding="utf-8").splitlines()
        return pd.DataFrame([json.loads(line) for line in lines if line.strip()])
    if source.suffix == ".json":
        raw = json.loads(source.read_text(encoding="utf-8"))
        if isinstance(raw, list):
            return pd.DataFrame(raw)
        if not isinstance(raw, dict):
            raise ValueError(
                f"new items: {str(source)!r} holds neither records nor an item -> attributes object"
            )
        keys = list(raw)
        ids = [int(k) for k in keys] if all(k.isdigit() for k in keys) else keys
        return pd.DataFrame({item: ids, attribute_column: [raw[k] for k in keys]})
    from recforge.preprocess import read_table

    return read_table(source)


def add_items(run_dir: str | Path, items: pd.DataFrame | str | Path) -> AddedItems:
    """Put new items in a TIGER run's catalogue without retraining it (``add_items_to_run``), and
    rewrite the run directory as one change (``save_items``). ``items``: a table, or a file that
    ``read_new_items`` reads. ``recforge.load(run_dir)`` and ``recforge serve`` then recommend the
    new items and read them in histories."""
    from recforge.runs.model import load_run

    run = load_run(run_dir)
    added = add_items_to_run(run, items)
    save_items(run)
    return added


def add_items_to_run(run: Run, items: pd.DataFrame | str | Path) -> AddedItems:
    """New items in a loaded TIGER run, in memory: each row of ``items`` holds a new raw item id
    (the run's ``data.item`` column) and its content as the run's ``model.semantic_ids.content``
    reads it (the attribute-id list column, the ``data.item_text`` columns). The run's RQ-VAE gives
    each item a semantic ID; the item vocabulary and the model's ID table grow together, and a
    refused table (a known or repeated item, content of the wrong type) changes neither."""
    from recforge.config import parse_config
    from recforge.models.generative import TIGER

    model = run.model
    if not isinstance(model, TIGER) or model.rqvae is None:
        raise ValueError(
            f"{str(run.path)!r}: its model {type(model).__name__} cannot take new items without retraining; "
            "a run whose items get IDs from their content (TIGER) can"
        )
    cfg = parse_config(run.config)
    column, sid = cfg.data.item, cfg.model.semantic_ids or SemanticIDsConfig()
    if not isinstance(items, pd.DataFrame):
        items = read_new_items(items, item=column, attribute_column=sid.attribute_column)
    if column not in items.columns:
        raise ValueError(
            f"new items: no {column!r} column (the run's data.item); columns: {list(items.columns)}"
        )
    if not len(items):
        raise ValueError("new items: the table is empty")
    spec = json.loads(run.layout.model.read_text(encoding="utf-8"))
    content = new_item_content(
        sid, spec["semantic_ids"].get("content") or {}, items.to_dict("records"), cfg.data.item_text
    )
    vocab = run.pipeline.vocabulary(column)
    if model.item_codes.shape[0] != len(vocab):
        raise ValueError(
            f"{str(run.path)!r}: the ID table has {model.item_codes.shape[0]} rows but the {column!r} vocabulary "
            f"{len(vocab)} ids; the run directory is inconsistent"
        )
    raw = items[column].tolist()
    ids = vocab.extend(raw, column=column)  # refuses known or repeated items before anything changes
    try:
        got = model.add_items(torch.from_numpy(content)).numpy()
    except Exception:
        vocab.truncate(len(vocab) - len(raw))
        raise
    assert (got == ids).all(), (got, ids)
    return AddedItems(raw, ids, model.item_codes[ids].cpu().numpy())


def save_items(run: Run) -> None:
    """Write a TIGER run's catalogue as it is in memory (after ``add_items_to_run``), as one change:
    the vocabulary, ``semantic_ids.json`` and the ID table in every saved weights file
    (``best.pt``, ``model.pth``, ``checkpoint.pt``)."""
    from recforge.layout import TORCH_RECHUB_WEIGHTS
    from recforge.models.generative import TIGER
    from recforge.preprocess.pipeline import FILENAME

    model, layout = run.model, run.layout
    assert isinstance(model, TIGER)
    ids, codes = model.semantic_ids, model.item_codes.cpu()
    writers: dict[Path, Any] = {
        layout.pipeline / FILENAME: lambda tmp: run.pipeline.save(tmp),
        layout.semantic_ids: lambda tmp: ids.save(tmp),
    }
    for path in (layout.best, layout.root / TORCH_RECHUB_WEIGHTS, layout.checkpoint):
        if not path.exists():
            continue
        state = torch.load(path, map_location="cpu", weights_only=True)
        weights = state["model"] if isinstance(state.get("model"), dict) else state
        if "item_codes" not in weights:
            continue
        weights["item_codes"] = codes.clone()
        writers[path] = lambda tmp, state=state: torch.save(state, tmp)
    atomic_write_all(writers)
