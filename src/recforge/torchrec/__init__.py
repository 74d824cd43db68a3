"""TorchRec's core abstractions in plain PyTorch (no fbgemm): jagged tensors, embedding
collections and the DeepFM/DLRM model parts with TorchRec's signatures.

``recforge.torchrec.deepfm`` and ``recforge.torchrec.dlrm`` hold the model parts; TorchRec's own
``KeyedJaggedTensor`` is accepted wherever a KJT is (converted by ``as_kjt``).
"""

from recforge.torchrec import deepfm, dlrm
from recforge.torchrec.adapter import BatchModel, kjt_from_batch, tables_from_features
from recforge.torchrec.jagged import JaggedTensor, KeyedJaggedTensor, KeyedTensor, as_kjt
from recforge.torchrec.modules import (
    EmbeddingBagCollection,
    EmbeddingBagConfig,
    EmbeddingCollection,
    EmbeddingConfig,
    PoolingType,
)

__all__ = [
    "BatchModel",
    "EmbeddingBagCollection",
    "EmbeddingBagConfig",
    "EmbeddingCollection",
    "EmbeddingConfig",
    "JaggedTensor",
    "KeyedJaggedTensor",
    "KeyedTensor",
    "PoolingType",
    "as_kjt",
    "deepfm",
    "dlrm",
    "kjt_from_batch",
    "tables_from_features",
]
