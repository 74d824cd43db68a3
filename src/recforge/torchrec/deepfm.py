"""DeepFM parts with TorchRec's signatures (Guo et al. 2017, arXiv 1703.04247).

``SimpleDeepFMNN(num_dense_features, embedding_bag_collection, hidden_layer_size, deep_fm_dimension)``
and its arches ``DenseArch``, ``SparseArch``, ``FMInteractionArch``, ``OverArch`` take the same
arguments as ``torchrec.models.deepfm``.

Deviations from TorchRec:

* The FM term is the paper's, computed field-wise: the fields are the dense arch's output and
  each pooled sparse feature, all of width ``D``, and the term is ``Σ_{i<j} <e_i, e_j>``
  (``recforge.layers.FM``). TorchRec's ``FactorizationMachine`` instead flattens all fields into
  one ``(B, ΣD)`` vector and applies the sum-of-squares identity over its scalar entries, which
  equals ``Σ_{p<q} x_p x_q`` over all scalar pairs: it adds products of different coordinates
  (``e_{i,k} e_{j,l}`` with ``k ≠ l``) and pairs within one field, which the paper's FM does not
  have. It is therefore not the DeepFM paper's second-order term, and it does not need equal widths.
  Here every sparse field must have width ``D`` (the dense arch's output width).
* ``OverArch`` and ``SimpleDeepFMNN`` return logits; TorchRec's end in a ``Sigmoid`` (apply
  ``torch.sigmoid`` to compare). recforge keeps the sigmoid in the loss and metrics.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from recforge.layers import FM, MLP, MLPConfig
from recforge.torchrec.jagged import KeyedJaggedTensor, KeyedTensor
from recforge.torchrec.modules import EmbeddingBagCollection


class SparseArch(nn.Module):
    """Pooled embeddings of every feature: ``KJT -> KeyedTensor (B, ΣD)``."""

    def __init__(self, embedding_bag_collection: EmbeddingBagCollection) -> None:
        super().__init__()
        self.embedding_bag_collection = embedding_bag_collection

    def forward(self, features: KeyedJaggedTensor) -> KeyedTensor:
        return self.embedding_bag_collection(features)


class DenseArch(nn.Module):
    """``Linear -> ReLU -> Linear -> ReLU``: ``(B, in_features) -> (B, embedding_dim)``."""

    def __init__(self, in_features: int, hidden_layer_size: int, embedding_dim: int) -> None:
        super().__init__()
        self.model = MLP(in_features, MLPConfig(dims=(hidden_layer_size, embedding_dim), output_layer=False))

    def forward(self, features: Tensor) -> Tensor:
        """``(B, in_features) -> (B, D)``."""
        return self.model(features)


class FMInteractionArch(nn.Module):
    """Deep and FM interactions of the dense arch output and the pooled sparse fields.

    Output ``(B, D + deep_fm_dimension + 1)``: the dense input, the deep interaction
    ``ReLU(Linear(fm_in_features -> deep_fm_dimension))`` over all fields flattened, and the
    paper's field-wise FM term (see the module docstring for how it differs from TorchRec's).

    Args:
        fm_in_features: width of all fields flattened, ``D + Σ D_f``.
        sparse_feature_names: the ``F`` sparse fields taken from the ``KeyedTensor``, in order.
        deep_fm_dimension: output width of the deep interaction.
    """

    def __init__(
        self, fm_in_features: int, sparse_feature_names: Sequence[str], deep_fm_dimension: int
    ) -> None:
        super().__init__()
        self.sparse_feature_names = list(sparse_feature_names)
        self.deep_fm = MLP(fm_in_features, MLPConfig(dims=(deep_fm_dimension,), output_layer=False))
        self.fm = FM(reduce_sum=True)

    def forward(self, dense_features: Tensor, sparse_features: KeyedTensor) -> Tensor:
        """``dense_features (B, D)``, ``sparse_features`` with ``F`` keys of width ``D`` ->
        ``(B, D + deep_fm_dimension + 1)``."""
        if not self.sparse_feature_names:
            return dense_features
        fields = [dense_features, *(sparse_features[f] for f in self.sparse_feature_names)]
        widths = {t.shape[1] for t in fields}
        if len(widths) > 1:
            detail = ", ".join(
                f"{n}={t.shape[1]}" for n, t in zip(["dense", *self.sparse_feature_names], fields)
            )
            raise ValueError(f"FMInteractionArch: the field-wise FM needs equal widths, got {detail}")
        stacked = torch.stack(fields, 1)  # (B, F + 1, D)
        deep = self.deep_fm(stacked.flatten(1))  # (B, deep_fm_dimension)
        return torch.cat([dense_features, deep, self.fm(stacked)], 1)  # (B, D + deep_fm_dimension + 1)


class OverArch(nn.Module):
    """``Linear(in_features, 1)``: ``(B, in_features) -> (B, 1)`` logits (TorchRec adds a sigmoid)."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.model = nn.Linear(in_features, 1)

    def forward(self, features: Tensor) -> Tensor:
        return self.model(features)  # (B, 1)


class SimpleDeepFMNN(nn.Module):
    """DeepFM on a dense tensor and a KJT: ``forward(dense (B, num_dense), kjt) -> logits (B, 1)``.

    Args:
        num_dense_features: width of the dense input.
        embedding_bag_collection: pooled tables; every table must have the same ``embedding_dim``.
        hidden_layer_size: hidden width of the dense arch.
        deep_fm_dimension: output width of the deep interaction.
    """

    def __init__(
        self,
        num_dense_features: int,
        embedding_bag_collection: EmbeddingBagCollection,
        hidden_layer_size: int,
        deep_fm_dimension: int,
    ) -> None:
        super().__init__()
        configs = embedding_bag_collection.embedding_bag_configs()
        dims = {c.embedding_dim for c in configs}
        if len(dims) != 1:
            raise ValueError(f"SimpleDeepFMNN: all tables need one embedding_dim, got {sorted(dims)}")
        d = dims.pop()
        names = embedding_bag_collection.feature_names()
        self.sparse_arch = SparseArch(embedding_bag_collection)
        self.dense_arch = DenseArch(num_dense_features, hidden_layer_size, d)
        self.inter_arch = FMInteractionArch(d * (len(names) + 1), names, deep_fm_dimension)
        self.over_arch = OverArch(d + deep_fm_dimension + 1)

    def forward(self, dense_features: Tensor, sparse_features: KeyedJaggedTensor) -> Tensor:
        """``(B, num_dense)`` and a KJT of stride ``B`` -> logits ``(B, 1)``."""
        embedded_dense = self.dense_arch(dense_features)  # (B, D)
        embedded_sparse = self.sparse_arch(sparse_features)
        return self.over_arch(self.inter_arch(embedded_dense, embedded_sparse))  # (B, 1)
