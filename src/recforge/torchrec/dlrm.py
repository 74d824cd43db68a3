"""DLRM parts with TorchRec's signatures (Naumov et al. 2019, arXiv 1906.00091), and DLRM-DCN
(the DLRM with DCN-v2's low-rank cross, ``recforge.layers.cross.CrossNetV2``, as interaction,
arXiv 2008.13535).

``DLRM(embedding_bag_collection, dense_in_features, dense_arch_layer_sizes, over_arch_layer_sizes)``
and ``DLRM_DCN(..., dcn_num_layers, dcn_low_rank_dim)`` take the same arguments as
``torchrec.models.dlrm`` and return logits ``(B, over_arch_layer_sizes[-1])``.

Deviation: ``dense_device`` is accepted for signature compatibility; modules are built on the
default device and moved with ``.to``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from recforge.layers import MLP, MLPConfig
from recforge.layers.cross import CrossNetV2
from recforge.torchrec.jagged import KeyedJaggedTensor
from recforge.torchrec.modules import EmbeddingBagCollection


def _common_dim(ebc: EmbeddingBagCollection) -> int:
    dims = {c.embedding_dim for c in ebc.embedding_bag_configs()}
    if len(dims) != 1:
        raise ValueError(f"DLRM: all tables need one embedding_dim, got {sorted(dims)}")
    return dims.pop()


class SparseArch(nn.Module):
    """Pooled embeddings stacked per feature: ``KJT -> (B, F, D)``."""

    def __init__(self, embedding_bag_collection: EmbeddingBagCollection) -> None:
        super().__init__()
        self.embedding_bag_collection = embedding_bag_collection
        self.D = _common_dim(embedding_bag_collection)
        self.sparse_feature_names = embedding_bag_collection.feature_names()

    def forward(self, features: KeyedJaggedTensor) -> Tensor:
        pooled = self.embedding_bag_collection(features).values()  # (B, F*D)
        return pooled.reshape(pooled.shape[0], len(self.sparse_feature_names), self.D)  # (B, F, D)


class DenseArch(nn.Module):
    """MLP with ReLU after every layer: ``(B, in_features) -> (B, layer_sizes[-1])``."""

    def __init__(
        self, in_features: int, layer_sizes: Sequence[int], device: torch.device | None = None
    ) -> None:
        super().__init__()
        del device
        self.model = MLP(in_features, MLPConfig(dims=tuple(layer_sizes), output_layer=False))

    def forward(self, features: Tensor) -> Tensor:
        return self.model(features)  # (B, D)


class InteractionArch(nn.Module):
    """Dot products of every pair among ``[dense, sparse_1..F]``, after the dense vector.

    ``dense (B, D)``, ``sparse (B, F, D)`` -> ``(B, D + C(F + 1, 2))``.
    """

    _rows: Tensor
    _cols: Tensor

    def __init__(self, num_sparse_features: int) -> None:
        super().__init__()
        self.F = num_sparse_features
        rows, cols = torch.triu_indices(self.F + 1, self.F + 1, offset=1)
        self.register_buffer("_rows", rows, persistent=False)
        self.register_buffer("_cols", cols, persistent=False)

    def forward(self, dense_features: Tensor, sparse_features: Tensor) -> Tensor:
        if self.F <= 0:
            return dense_features
        fields = torch.cat([dense_features.unsqueeze(1), sparse_features], 1)  # (B, F + 1, D)
        dots = fields @ fields.transpose(1, 2)  # (B, F + 1, F + 1)
        return torch.cat([dense_features, dots[:, self._rows, self._cols]], 1)  # (B, D + C(F+1, 2))


class InteractionDCNArch(nn.Module):
    """A cross network over ``[dense, sparse_1..F]`` flattened: ``-> (B, (F + 1) * D)``."""

    def __init__(self, num_sparse_features: int, crossnet: nn.Module) -> None:
        super().__init__()
        self.F = num_sparse_features
        self.crossnet = crossnet

    def forward(self, dense_features: Tensor, sparse_features: Tensor) -> Tensor:
        if self.F <= 0:
            return dense_features
        flat = torch.cat([dense_features.unsqueeze(1), sparse_features], 1).flatten(1)  # (B, (F+1)*D)
        return self.crossnet(flat)  # (B, (F+1)*D)


class OverArch(nn.Module):
    """ReLU MLP over ``layer_sizes[:-1]`` then a plain ``Linear`` to ``layer_sizes[-1]`` (logits)."""

    def __init__(
        self, in_features: int, layer_sizes: Sequence[int], device: torch.device | None = None
    ) -> None:
        super().__init__()
        del device
        if len(layer_sizes) <= 1:
            raise ValueError(f"OverArch needs at least two layer sizes, got {list(layer_sizes)}")
        hidden = MLP(in_features, MLPConfig(dims=tuple(layer_sizes[:-1]), output_layer=False))
        self.model = nn.Sequential(hidden, nn.Linear(layer_sizes[-2], layer_sizes[-1]))

    def forward(self, features: Tensor) -> Tensor:
        return self.model(features)  # (B, layer_sizes[-1])


class DLRM(nn.Module):
    """``forward(dense (B, dense_in_features), kjt) -> logits (B, over_arch_layer_sizes[-1])``.

    Args:
        embedding_bag_collection: pooled tables, all of width ``D``.
        dense_in_features: width of the dense input.
        dense_arch_layer_sizes: dense MLP widths; the last must equal ``D``.
        over_arch_layer_sizes: top MLP widths, the last is the number of logits (usually 1).
        dense_device: accepted for TorchRec compatibility (use ``.to``).
    """

    def __init__(
        self,
        embedding_bag_collection: EmbeddingBagCollection,
        dense_in_features: int,
        dense_arch_layer_sizes: Sequence[int],
        over_arch_layer_sizes: Sequence[int],
        dense_device: torch.device | None = None,
    ) -> None:
        super().__init__()
        self.sparse_arch = SparseArch(embedding_bag_collection)
        d, f = self.sparse_arch.D, len(self.sparse_arch.sparse_feature_names)
        if dense_arch_layer_sizes[-1] != d:
            raise ValueError(
                f"DLRM: the last dense_arch_layer_sizes ({dense_arch_layer_sizes[-1]}) must equal the "
                f"tables' embedding_dim ({d})"
            )
        self.dense_arch = DenseArch(dense_in_features, dense_arch_layer_sizes, dense_device)
        self.inter_arch: nn.Module = InteractionArch(f)
        self.over_arch = OverArch(d + math.comb(f + 1, 2), over_arch_layer_sizes, dense_device)

    def forward(self, dense_features: Tensor, sparse_features: KeyedJaggedTensor) -> Tensor:
        embedded_dense = self.dense_arch(dense_features)  # (B, D)
        embedded_sparse = self.sparse_arch(sparse_features)  # (B, F, D)
        return self.over_arch(self.inter_arch(embedded_dense, embedded_sparse))  # (B, out)


class DLRM_DCN(DLRM):  # TorchRec's class name
    """DLRM whose interaction is a low-rank cross network over all fields flattened.

    Args: those of ``DLRM``, plus ``dcn_num_layers`` crossing layers of rank ``dcn_low_rank_dim``.
    """

    def __init__(
        self,
        embedding_bag_collection: EmbeddingBagCollection,
        dense_in_features: int,
        dense_arch_layer_sizes: Sequence[int],
        over_arch_layer_sizes: Sequence[int],
        dcn_num_layers: int,
        dcn_low_rank_dim: int,
        dense_device: torch.device | None = None,
    ) -> None:
        super().__init__(
            embedding_bag_collection,
            dense_in_features,
            dense_arch_layer_sizes,
            over_arch_layer_sizes,
            dense_device,
        )
        d, f = self.sparse_arch.D, len(self.sparse_arch.sparse_feature_names)
        width = (f + 1) * d
        self.inter_arch = InteractionDCNArch(f, CrossNetV2(width, dcn_num_layers, low_rank=dcn_low_rank_dim))
        self.over_arch = OverArch(width, over_arch_layer_sizes, dense_device)
