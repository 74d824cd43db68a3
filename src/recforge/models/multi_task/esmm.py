"""ESMM: Entire Space Multi-task Model (Ma et al. 2018, SIGIR, arXiv 1804.07931).

A CTR tower and a CVR tower share the embeddings. Both supervised tasks live on the entire
impression space: CTR (label: click) and CTCVR (label: click and conversion), with
``pCTCVR = pCTR * pCVR``. The CVR tower is therefore never fitted to clicked-only samples; it is
learnt implicitly through the product, which removes the sample-selection bias of a CVR model
trained on clicks.

Logit convention (a choice, not in the paper): the model returns ``ESMMOutput(logits, cvr_logits)``
with ``logits[:, 1]`` the exact logit of the product probability,
``log(pCTR pCVR) - log(1 - pCTR pCVR)``, computed in log space from ``logsigmoid`` terms (using
``1 - ab = (1 - a) + a (1 - b)``), so binary cross-entropy on logits is exactly the paper's CTCVR
log loss and ``sigmoid(logits[:, 1]) == sigmoid(ctr) * sigmoid(cvr)``. Labels are ``(B, 2)``:
``[click, click * conversion]``.

Deviation: user and item feature embeddings are concatenated (Torch-RecHub's two feature lists)
rather than field-wise sum-pooled per group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recforge.features import Feature, dedup
from recforge.layers import MLP, EmbeddingLayer, MLPConfig, output_dim
from recforge.models._rechub import rechub_order
from recforge.outputs import ESMMOutput, TaskType


def product_logit(a: Tensor, b: Tensor) -> Tensor:
    """The logit of ``sigmoid(a) * sigmoid(b)``, stable for any ``a``, ``b``."""
    log_p = F.logsigmoid(a) + F.logsigmoid(b)
    log_not_p = torch.logaddexp(F.logsigmoid(-a), F.logsigmoid(a) + F.logsigmoid(-b))
    return log_p - log_not_p


@rechub_order("cvr_params", "ctr_params")
class ESMM(nn.Module):
    """ESMM. ``forward(batch) -> ESMMOutput(logits (B, 2) = [CTR, CTCVR], cvr_logits (B,))``.

    Args:
        user_features, item_features: inputs (embeddings shared by both towers).
        cvr_params, ctr_params: MLP settings of the two towers (each ends in ``Linear(., 1)``).
    """

    task_types = (TaskType.CLASSIFICATION, TaskType.CLASSIFICATION)

    def __init__(
        self,
        user_features: Sequence[Feature],
        item_features: Sequence[Feature],
        *,
        cvr_params: MLPConfig | Mapping[str, object] | None = None,
        ctr_params: MLPConfig | Mapping[str, object] | None = None,
        sparse: bool = False,
        fused: bool = True,
    ) -> None:
        super().__init__()
        self.user_features = list(user_features)
        self.item_features = list(item_features)
        self.features = dedup([*self.user_features, *self.item_features])
        self.embedding = EmbeddingLayer(self.features, sparse=sparse, fused=fused)
        width = output_dim(self.features)
        self.ctr = MLP(width, MLPConfig.parse(ctr_params), output_layer=True)
        self.cvr = MLP(width, MLPConfig.parse(cvr_params), output_layer=True)

    def forward(self, batch: Mapping[str, Tensor]) -> ESMMOutput:
        """``batch`` columns -> ``ESMMOutput``: CTR and CTCVR logits ``(B, 2)``, CVR logits ``(B,)``."""
        x = self.embedding.flatten(batch, self.features)  # (B, Σd)
        ctr = self.ctr(x).squeeze(1)  # (B,)
        cvr = self.cvr(x).squeeze(1)  # (B,)
        return ESMMOutput(torch.stack([ctr, product_logit(ctr, cvr)], 1), cvr)  # (B, 2)

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The towers share only the embedding tables."""
        return list(self.embedding.parameters())
