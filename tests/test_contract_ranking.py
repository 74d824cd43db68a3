"""Contract test over every ranking model in ``recforge.models.ranking.MODELS`` (no skip list)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from contract import check_model_contract, synthetic_batch
from recforge.features import DenseFeature, SequenceFeature, SparseFeature
from recforge.models import ranking
from recforge.objectives import BinaryCrossEntropy

D = 4
SPARSE = [
    SparseFeature("user", vocab_size=30, embed_dim=D),
    SparseFeature("item", vocab_size=40, embed_dim=D),
    SparseFeature("cat", vocab_size=8, embed_dim=D),
]
HIST = SequenceFeature("hist_item", vocab_size=40, embed_dim=D, max_len=6, shared_with="item", pooling="mean")
DENSE = [DenseFeature("price"), DenseFeature("age")]
EMBEDDED = [*SPARSE, HIST]
ALL = [*EMBEDDED, *DENSE]
MLP = {"dims": [16, 8], "dropout": 0.1}

FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "WideDeep": lambda: ranking.WideDeep(SPARSE, ALL, MLP),
    "DeepFM": lambda: ranking.DeepFM(ALL, EMBEDDED, MLP),
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models: extra threads only add contention on shared CI cores.
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def test_every_registered_model_has_a_factory() -> None:
    assert set(FACTORIES) == set(ranking.MODELS)


@pytest.mark.parametrize("name", sorted(ranking.MODELS))
def test_contract(name: str) -> None:
    batch = synthetic_batch(ALL, 64, seed=1)
    learnable = synthetic_batch(ALL, 256, seed=2)
    model = check_model_contract(
        FACTORIES[name], batch, BinaryCrossEntropy(), learnable=learnable, sequence_columns=["hist_item"]
    )
    assert isinstance(model, ranking.MODELS[name])
    assert {f.name for f in model.features} >= {"user", "item"}


def test_padding_invariance_detects_a_padding_leak() -> None:
    """The padding check is not vacuous: a model whose pooling counts padding rows fails it."""
    from contract import check_padding_invariance

    class Leaky(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(40, 2)

        def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return self.emb(batch["hist_item"]).mean(1).sum(1)  # padding rows count

    batch = synthetic_batch(ALL, 16, seed=3)
    with pytest.raises(AssertionError, match="left-padding"):
        check_padding_invariance(Leaky(), batch, ["hist_item"])
