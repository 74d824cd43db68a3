"""``torch_rechub.utils.model_utils``: example inputs for export (``recforge.export.example_batch``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from recforge.export import example_batch
from recforge.features import Feature
from recforge.ints import as_int


def generate_dummy_input_dict(
    features: Sequence[Feature], batch_size: int = 2, seq_length: int = 10, device: str | torch.device = "cpu"
) -> dict[str, Tensor]:
    """A valid batch ``{feature name: tensor}`` for ``features`` (ids in range, some padding)."""
    batch = example_batch(
        features, as_int(batch_size, "batch_size", minimum=1), as_int(seq_length, "seq_length", minimum=1)
    )
    return {k: v.to(device) for k, v in batch.items()}


__all__ = ["generate_dummy_input_dict"]
