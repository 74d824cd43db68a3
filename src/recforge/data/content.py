"""Item content vectors, row ``i`` = item id ``i`` (row 0, padding, is zeros): the input of semantic-ID
tokenizers (``recforge.models.generative.RQVAE``) and of any content-based item tower.

Three sources:

* ``text_embeddings``: item texts through a local ``transformers`` encoder (a sentence-transformers
  directory such as all-MiniLM-L6-v2 loads as a plain ``AutoModel``), mean-pooled over the tokens
  and L2-normalised, as sentence-transformers does; needs the ``generative`` extra.
* ``attribute_embeddings``: multi-hot attribute ids (e.g. S3-Rec's ``*_item2attributes.json``,
  read by ``load_item_attributes``), optionally IDF-weighted and L2-normalised.
* ``model_item_embeddings``: the item vectors of another trained recforge model (its
  ``item_tower``), i.e. collaborative embeddings.

Everything runs in batches with a progress bar; ``cached`` stores a result as ``.npy`` (read back
with ``allow_pickle=False``) next to a JSON description of how it was made, and recomputes when the
description differs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from recforge.files import atomic_write, atomic_write_text


def cached(
    path: str | os.PathLike[str], compute: Callable[[], np.ndarray], *, meta: Mapping[str, object]
) -> np.ndarray:
    """``compute()`` once: saved to ``path`` (``.npy``) with ``meta`` in ``path + ".json"``; later
    calls with the same ``meta`` load the array (no pickle) instead."""
    target = Path(path)
    side = target.with_name(target.name + ".json")
    want = json.loads(json.dumps(dict(meta)))  # normalised (tuples -> lists)
    if target.exists() and side.exists() and json.loads(side.read_text(encoding="utf-8")) == want:
        return np.load(target, allow_pickle=False)
    arr = np.ascontiguousarray(compute())
    atomic_write(target, lambda tmp: np.save(tmp, arr, allow_pickle=False))
    atomic_write_text(side, json.dumps(want, indent=1))
    return arr


def load_item_attributes(path: str | os.PathLike[str]) -> dict[int, list[int]]:
    """S3-Rec's ``{"item id": [attribute ids]}`` JSON as ``{item id: [attribute ids]}``."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    return {int(k): [int(a) for a in v] for k, v in raw.items()}


def _attribute_pairs(
    attributes: Mapping[int, Sequence[int]], num_items: int
) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(i, a) for i, attrs in attributes.items() if 0 < i < num_items for a in attrs]
    rows = np.array([p[0] for p in pairs], dtype=np.int64)
    cols = np.array([p[1] for p in pairs], dtype=np.int64)
    if len(cols) and cols.min() < 0:
        raise ValueError(f"attribute ids must be >= 0, got {int(cols.min())}")
    return rows, cols


def attribute_weights(
    attributes: Mapping[int, Sequence[int]],
    num_items: int,
    *,
    num_attributes: int | None = None,
    idf: bool = True,
) -> np.ndarray:
    """Each attribute's weight ``(A,)`` float32 over a catalogue of ``num_items`` ids: with ``idf``,
    ``log(N / n_a) + 1`` for an attribute on ``n_a`` of the ``N`` items (0 for an attribute no item
    has), else 1. Kept with a tokenizer so items added later are weighted as the catalogue was."""
    rows, cols = _attribute_pairs(attributes, num_items)
    width = num_attributes if num_attributes is not None else (int(cols.max()) + 1 if len(cols) else 1)
    if not idf:
        return np.ones(width, np.float32)
    present = np.zeros((num_items, width), bool)
    present[rows, cols] = True
    df = present.sum(0)
    return np.where(df > 0, np.log((num_items - 1) / np.maximum(df, 1)) + 1.0, 0.0).astype(np.float32)


def attribute_embeddings(
    attributes: Mapping[int, Sequence[int]],
    num_items: int,
    *,
    num_attributes: int | None = None,
    idf: bool = True,
    normalize: bool = True,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Multi-hot ``(num_items, A)`` float32 rows (row ``i`` = item ``i``; items without attributes
    and row 0 are zeros). ``idf`` weights attribute ``a`` by ``log(N / n_a)`` so a rare brand
    counts more than a common category (``attribute_weights``); ``weights`` gives the weights (and
    the width ``A``) instead, e.g. a catalogue's for items added later, whose attributes past ``A``
    are left out. ``normalize`` makes rows unit-length."""
    if weights is None:
        weights = attribute_weights(attributes, num_items, num_attributes=num_attributes, idf=idf)
    rows, cols = _attribute_pairs(attributes, num_items)
    keep = cols < len(weights)
    out = np.zeros((num_items, len(weights)), np.float32)
    out[rows[keep], cols[keep]] = 1.0
    out *= weights[None, :]
    if normalize:
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


def text_embeddings(
    texts: Sequence[str],
    model_path: str | os.PathLike[str],
    *,
    batch_size: int = 64,
    max_length: int = 128,
    normalize: bool = True,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """Mean-pooled token states of a local ``transformers`` encoder: ``texts[j]`` is item ``j + 1``'s
    text -> ``(len(texts) + 1, H)`` float32 (row 0 zeros)."""
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("text_embeddings needs transformers: pip install 'recforge[generative]'") from e
    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    model = AutoModel.from_pretrained(str(model_path), use_safetensors=True).to(device).eval()  # no pickle
    parts = []
    with torch.no_grad():
        for a in tqdm(range(0, len(texts), batch_size), desc="text embeddings", disable=not progress):
            enc = tokenizer(
                list(texts[a : a + batch_size]), padding=True, truncation=True, max_length=max_length,
                return_tensors="pt",
            ).to(device)  # fmt: skip
            h = model(**enc).last_hidden_state  # (b, T, H)
            m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)  # (b, T, 1)
            v = (h * m).sum(1) / m.sum(1).clamp_min(1.0)  # (b, H)
            parts.append(torch.nn.functional.normalize(v, dim=-1) if normalize else v)
    width = int(parts[0].shape[1]) if parts else int(model.config.hidden_size)
    vecs = torch.cat([torch.zeros(1, width, device=device), *parts]) if parts else torch.zeros(1, width)
    return vecs.float().cpu().numpy()


class ItemTowerModel(Protocol):
    """What ``model_item_embeddings`` needs (any ``recforge`` two-tower model has it)."""

    item_id: str

    def item_tower(self, batch: Mapping[str, Tensor]) -> Tensor: ...


def model_item_embeddings(
    model: ItemTowerModel,
    num_items: int,
    *,
    batch_size: int = 4096,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """Item vectors ``(num_items, D)`` of a trained model's item tower (ids ``0 .. num_items - 1``;
    row 0 is set to zeros). For models whose item tower reads only the item id."""
    was = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()  # type: ignore[attr-defined]
    parts = []
    try:
        with torch.no_grad():
            for a in tqdm(range(0, num_items, batch_size), desc="item embeddings", disable=not progress):
                ids = torch.arange(a, min(a + batch_size, num_items), device=device)
                parts.append(model.item_tower({model.item_id: ids}).float().cpu())
    finally:
        if hasattr(model, "train"):
            model.train(was)  # type: ignore[attr-defined]
    out = torch.cat(parts).numpy()
    out[0] = 0.0
    return out
