"""Helpers shared by the matching models: item inputs of any shape, history checks, positions.

Item columns may be ``(B,)`` (one target per row), ``(B, N)`` (N candidates per row) or ``(N,)`` (a
catalog batch); every helper keeps the leading shape and appends the feature axis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recforge.features import DenseFeature, Feature, SequenceFeature, SparseFeature
from recforge.jagged import jagged_to_padded, padded_to_jagged
from recforge.layers import MLP, EmbeddingLayer, MLPConfig
from recforge.layers.embedding import column


def item_inputs(
    embedding: EmbeddingLayer, batch: Mapping[str, Tensor], features: Sequence[Feature]
) -> Tensor:
    """Flat item inputs ``S + (Σd,)`` for item columns of shape ``S`` (that of the first feature)."""
    shape = column(batch, features[0].name).shape
    flat: dict[str, Tensor] = {}
    for f in features:
        col = column(batch, f.name)
        if col.shape != shape:
            raise ValueError(
                f"item feature {f.name!r}: expected shape {tuple(shape)} like {features[0].name!r}, "
                f"got {tuple(col.shape)}"
            )
        flat[f.name] = col.reshape(-1)  # (ΣS,)
    out = embedding.flatten(flat, features)  # (ΣS, Σd)
    return out.view(*shape, out.shape[-1])  # S + (Σd,)


def item_ids(batch: Mapping[str, Tensor], feature: Feature) -> Tensor:
    return column(batch, feature.name)


def history_feature(
    history_features: Sequence[Feature], item_features: Sequence[Feature], model: str
) -> SequenceFeature:
    """The single history feature of a sequence model; it must look up the item-id table."""
    if len(history_features) != 1 or not isinstance(history_features[0], SequenceFeature):
        raise ValueError(
            f"{model}: history_features must be exactly one SequenceFeature, got {history_features}"
        )
    if not item_features or not isinstance(item_features[0], SparseFeature):
        raise ValueError(
            f"{model}: item_features must start with the item-id SparseFeature, got {item_features}"
        )
    hist, item = history_features[0], item_features[0]
    if hist.table != item.table:
        raise ValueError(
            f"{model}: history feature {hist.name!r} must share the item table "
            f"(shared_with={item.name!r}), got table {hist.table!r}"
        )
    return hist


def id_only(item_features: Sequence[Feature], model: str) -> SparseFeature:
    """Models whose item tower is the id embedding take exactly one item feature."""
    if len(item_features) != 1 or not isinstance(item_features[0], SparseFeature):
        raise ValueError(
            f"{model}: item_features must be exactly the item-id SparseFeature, got {item_features}"
        )
    return item_features[0]


def tower_dim(features: Sequence[Feature]) -> int:
    return sum(f.embed_dim if isinstance(f, DenseFeature) else f.dim for f in features)


def positions_from_end(weight: Tensor, length: int, model: str) -> Tensor:
    """Learned position vectors ``(L, D)`` counted from the most recent item, so left padding never
    shifts them (with L = max_len this is the usual absolute position of a left-padded window)."""
    if length > weight.shape[0]:
        raise ValueError(f"{model}: history length {length} exceeds max_len {weight.shape[0]}")
    return weight[weight.shape[0] - length :]  # (L, D)


def left_aligned(batch: Mapping[str, Tensor], name: str) -> Mapping[str, Tensor]:
    """``batch`` with the history ``name`` padded at the front (recforge's convention: most recent
    item last). Rows padded at the end (Torch-RecHub's ``gen_model_input(padding="post")``,
    ``pad_sequence``) are re-aligned; a left-padded batch is returned as is."""
    ids = column(batch, name)
    if ids.dim() != 2 or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return batch  # exported graphs keep the contract: histories arrive left-padded
    real = ids != 0
    if not bool((real[:, :-1] & ~real[:, 1:]).any()):
        return batch
    values, offsets = padded_to_jagged(ids, real)  # (ΣL,), (B + 1,)
    return {**batch, name: jagged_to_padded(values, offsets, ids.shape[1])}  # (B, L)


def without_leading_padding(batch: Mapping[str, Tensor], name: str) -> Mapping[str, Tensor]:
    """``batch`` with the left-padded history ``name`` cut to its longest row: the columns where
    every row is padding go (a user's state is the same: positions count from the most recent item
    and padding is masked). A short history then costs its length, not ``max_len``."""
    ids = column(batch, name)
    if ids.dim() != 2 or ids.shape[1] < 2 or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return batch  # exported graphs keep a fixed length
    width = max(int((ids != 0).sum(1).max()), 1)
    return batch if width == ids.shape[1] else {**batch, name: ids[:, ids.shape[1] - width :]}


def l2(x: Tensor, normalize: bool) -> Tensor:
    return F.normalize(x, dim=-1) if normalize else x


class TowerMLP(nn.Module):
    """A tower MLP whose last width is a plain linear output (no activation, no dropout).

    ``params`` is a Torch-RecHub ``user_params``/``item_params`` dict; ``dims[-1]`` is the tower
    width. Torch-RecHub applies the activation after the last layer too, which with ReLU confines
    every vector to the positive orthant (all cosines >= 0); a linear last layer avoids that.
    ``dims: []`` means no MLP: the tower's input is its output (BARS' YouTubeNet with
    ``user_hidden_units: null``, where the user vector is the pooled history itself).
    """

    def __init__(
        self, input_dim: int, params: MLPConfig | Mapping[str, object] | None, *, default_dims: Sequence[int]
    ) -> None:
        super().__init__()
        cfg = MLPConfig.parse(params, dims=tuple(default_dims), output_layer=False)
        self.hidden: nn.Module
        self.out: nn.Module
        if not cfg.dims:
            self.hidden, self.out, self.output_dim = nn.Identity(), nn.Identity(), input_dim
            return
        hidden = MLPConfig(cfg.dims[:-1], cfg.dropout, cfg.activation, cfg.batch_norm, output_layer=False)
        self.hidden = MLP(input_dim, hidden, output_layer=False)
        self.out = nn.Linear(self.hidden.output_dim, cfg.dims[-1])
        self.output_dim = cfg.dims[-1]

    def forward(self, x: Tensor) -> Tensor:
        """``(..., input_dim) -> (..., dims[-1])`` (or unchanged without dims)."""
        return self.out(self.hidden(x))
