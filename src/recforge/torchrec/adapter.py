"""Bridges between recforge batches and the TorchRec-style modules.

``kjt_from_batch`` turns a recforge batch (ids ``(B,)``, left-padded sequences ``(B, L)``) into a
``KeyedJaggedTensor``; ``tables_from_features`` builds ``EmbeddingBagConfig`` s from feature specs;
``BatchModel`` wraps a ``forward(dense, kjt)`` module (``DLRM``, ``SimpleDeepFMNN``...) so that
``model(batch) -> logits (B,)`` and it trains with ``recforge.trainers.CTRTrainer``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from recforge.features import DenseFeature, Feature, Pooling, SequenceFeature, SparseFeature
from recforge.layers import dense_column
from recforge.layers.embedding import id_column
from recforge.torchrec.jagged import KeyedJaggedTensor
from recforge.torchrec.modules import EmbeddingBagConfig, PoolingType


def _name(feature: Feature | str) -> str:
    return feature if isinstance(feature, str) else feature.name


def kjt_from_batch(
    batch: Mapping[str, Tensor], features: Sequence[SparseFeature | SequenceFeature | str]
) -> KeyedJaggedTensor:
    """A KJT with one key per feature: an id column ``(B,)`` gives one id per row; a sequence
    ``(B, L)`` gives its non-padding ids (id 0 is padding), oldest first.

    Raises:
        KeyError: a feature has no column in ``batch``.
        TypeError/ValueError: a column is not an integer ``(B,)`` or ``(B, L)`` tensor.
    """
    names = [_name(f) for f in features]
    if not names:
        raise ValueError("kjt_from_batch needs at least one feature")
    values: list[Tensor] = []
    lengths: list[Tensor] = []
    stride: int | None = None
    for name in names:
        col = id_column(batch, name)
        if col.dim() == 1:
            values.append(col.long())
            lengths.append(torch.ones_like(col, dtype=torch.long))
        elif col.dim() == 2:
            mask = col != 0  # (B, L)
            values.append(col[mask].long())  # (ΣL,) row-major keeps each row's order
            lengths.append(mask.sum(1))
        else:
            raise ValueError(
                f"feature {name!r}: expected ids (B,) or a sequence (B, L), got {tuple(col.shape)}"
            )
        if stride is None:
            stride = col.shape[0]
        elif col.shape[0] != stride:
            raise ValueError(f"feature {name!r} has {col.shape[0]} rows, the others {stride}")
    return KeyedJaggedTensor(names, torch.cat(values), lengths=torch.cat(lengths), stride=stride)


def tables_from_features(
    features: Sequence[SparseFeature | SequenceFeature], *, pooling: PoolingType | str = PoolingType.SUM
) -> list[EmbeddingBagConfig]:
    """One ``EmbeddingBagConfig`` per table (``shared_with`` features join their owner's table).

    Sparse features take ``pooling``; a sequence feature's own ``mean``/``sum`` pooling is kept. A
    table shared by sparse and sequence features pools as its sequences do (a sparse feature has
    one id per row, which every pooling returns unchanged).
    """
    by_table: dict[str, list[SparseFeature | SequenceFeature]] = {}
    for f in features:
        if not isinstance(f, SparseFeature | SequenceFeature):
            raise TypeError(f"feature {_name(f)!r}: only sparse and sequence features have tables")
        by_table.setdefault(f.table, []).append(f)
    out = []
    for table, members in by_table.items():
        owner = next((f for f in members if f.name == table), members[0])
        sequences = [f for f in members if isinstance(f, SequenceFeature)]
        pools = {_pooling_of(f, pooling) for f in (sequences or members)}
        if len(pools) > 1:
            raise ValueError(
                f"table {table!r}: its features ask for different poolings {sorted(p.value for p in pools)}"
            )
        out.append(
            EmbeddingBagConfig(
                num_embeddings=max(f.vocab_size for f in members),
                embedding_dim=owner.dim,
                name=f"t_{table}",
                feature_names=tuple(f.name for f in members),
                pooling=pools.pop(),
            )
        )
    return out


def _pooling_of(f: SparseFeature | SequenceFeature, default: PoolingType | str) -> PoolingType:
    if isinstance(f, SparseFeature):
        return PoolingType.parse(default)
    if f.pooling not in (Pooling.MEAN, Pooling.SUM):
        raise ValueError(
            f"sequence feature {f.name!r}: an embedding bag pools by mean or sum, not {f.pooling.value}"
        )
    return PoolingType.parse(f.pooling.value)


class BatchModel(nn.Module):
    """``model(batch) -> logits (B,)`` around a TorchRec-style ``forward(dense, kjt)`` module.

    Args:
        module: e.g. ``DLRM``/``DLRM_DCN``/``SimpleDeepFMNN`` with one logit per row.
        dense_features: columns concatenated into the dense input ``(B, Σd)``.
        sparse_features: columns turned into the KJT, in this key order.
    """

    def __init__(
        self,
        module: nn.Module,
        dense_features: Sequence[DenseFeature],
        sparse_features: Sequence[SparseFeature | SequenceFeature],
    ) -> None:
        super().__init__()
        self.module = module
        self.dense_features = list(dense_features)
        self.sparse_features = list(sparse_features)
        self.features: list[Feature] = [*self.dense_features, *self.sparse_features]

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """``batch`` columns -> logits ``(B,)``."""
        dense = torch.cat([dense_column(batch, f) for f in self.dense_features], 1)  # (B, Σd)
        logits = self.module(dense, kjt_from_batch(batch, self.sparse_features))  # (B, 1)
        if logits.dim() != 2 or logits.shape[1] != 1:
            raise ValueError(
                f"BatchModel: the wrapped module must return (B, 1) logits, got {tuple(logits.shape)}"
            )
        return logits.squeeze(1)  # (B,)
