"""Inputs shared by the behaviour-sequence models (DIN, DIEN, BST).

A behaviour is the concatenation of its history features (e.g. item id and category) at one step;
the target is the concatenation of the matching target features, so both are ``D = Σ dims`` wide.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from recforge.features import Feature, Pooling, SequenceFeature, SparseFeature, dedup
from recforge.layers import EmbeddingLayer
from recforge.layers.embedding import id_column
from recforge.layers.sequence import trim_padding


class Behaviors(NamedTuple):
    history: Tensor  # (B, L, D), left padding trimmed to the batch's longest history
    mask: Tensor  # (B, L) true at real steps
    target: Tensor  # (B, D)
    keep: slice  # the columns of the batch's (B, L) history that were kept


def pair_targets(
    model: str, history_features: Sequence[Feature], target_features: Sequence[Feature]
) -> list[Feature]:
    """The target feature of each history feature, in history order. Equal-length lists pair by
    position; a longer target list (Torch-RecHub's DIN example passes every candidate and user
    feature as ``target_features``) pairs each history with the target whose table it shares
    (``shared_with``), and the other targets are plain MLP inputs (``other_features``)."""
    if len(target_features) <= len(history_features):
        return list(target_features)
    by_table = {getattr(t, "table", None): t for t in target_features}
    paired = [by_table.get(getattr(h, "table", None)) for h in history_features]
    if any(t is None for t in paired):
        raise ValueError(
            f"{model}: target_features {[f.name for f in target_features]} are more than the history features "
            f"{[f.name for f in history_features]}; each history feature must share (shared_with) the table of "
            "its target so they can be paired"
        )
    return paired  # type: ignore[return-value]


def check_behavior_features(
    model: str,
    history_features: Sequence[Feature],
    target_features: Sequence[Feature],
    *,
    role: str = "history_features",
) -> int:
    """Validate paired history/target features; returns the behaviour width D."""
    if not history_features:
        raise ValueError(f"{model}: {role} needs at least one SequenceFeature")
    if len(history_features) != len(target_features):
        raise ValueError(
            f"{model}: {role} and target_features must pair up one to one, got "
            f"{[f.name for f in history_features]} vs {[f.name for f in target_features]}"
        )
    for h, t in zip(history_features, target_features):
        if not isinstance(h, SequenceFeature):
            raise TypeError(f"{model}: {role} entry {h.name!r} must be a SequenceFeature")
        if h.pooling is not Pooling.CONCAT:
            raise ValueError(
                f"{model}: {role} entry {h.name!r} must have pooling='concat' (the model attends over "
                f"the whole sequence), got {h.pooling.value!r}"
            )
        if not isinstance(t, SparseFeature):
            raise TypeError(f"{model}: target feature {t.name!r} must be a SparseFeature")
        if h.dim != t.dim:
            raise ValueError(
                f"{model}: {role} entry {h.name!r} (embed_dim={h.dim}) and target {t.name!r} "
                f"(embed_dim={t.dim}) must have the same width"
            )
    return sum(t.dim for t in target_features if isinstance(t, SparseFeature))


def other_features(
    features: Sequence[Feature], target_features: Sequence[Feature], *sequences: Sequence[Feature]
) -> list[Feature]:
    """``features`` and the targets, without the attended sequences, each name once."""
    skip = {f.name for seq in sequences for f in seq}
    return [f for f in dedup([*features, *target_features]) if f.name not in skip]


def history_of(
    embedding: EmbeddingLayer, batch: Mapping[str, Tensor], features: Sequence[Feature], keep: slice | None
) -> tuple[Tensor, Tensor, slice]:
    """Concatenated history embeddings ``(B, L, D)``, mask ``(B, L)`` (real where any feature is)
    and the kept columns (``keep``, or all but the all-padding leading ones)."""
    ids = [id_column(batch, f.name) for f in features]
    mask = ids[0] != 0
    for x in ids[1:]:
        if x.shape != ids[0].shape:
            raise ValueError(
                f"history columns {[f.name for f in features]} must share one (B, L) shape, got "
                f"{[tuple(i.shape) for i in ids]}"
            )
        mask = mask | (x != 0)
    if keep is None:
        keep = trim_padding(mask)
    parts = [embedding.lookup(f.name, x[:, keep]) for f, x in zip(features, ids)]  # (B, L, d) each
    history = torch.cat(parts, -1) if len(parts) > 1 else parts[0]  # (B, L, D)
    return history, mask[:, keep], keep


def behaviors(
    embedding: EmbeddingLayer,
    batch: Mapping[str, Tensor],
    history_features: Sequence[Feature],
    target_features: Sequence[Feature],
) -> Behaviors:
    """Embedded histories and targets of a batch (all-padding leading columns dropped)."""
    history, mask, keep = history_of(embedding, batch, history_features, None)
    targets = [embedding.lookup(f.name, id_column(batch, f.name)) for f in target_features]
    target = torch.cat(targets, -1) if len(targets) > 1 else targets[0]  # (B, D)
    return Behaviors(history, mask, target, keep)
