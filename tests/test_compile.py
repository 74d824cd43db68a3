"""``torch.compile`` on the models: compiled forward and backward equal eager ones.

Slow (Inductor generates and compiles C++ for each model, ~10-30 s apiece): ``pytest -m slow
tests/test_compile.py``. Sparse-gradient tables are looked up outside the compiled graph
(``EmbeddingLayer`` does that), and feature specs never enter it as values, so every model
compiles; the test holds that for the ranking, sequence-ranking and matching registries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest
import torch
from torch import nn

from contract import synthetic_batch
from recforge.features import DenseFeature, SparseFeature
from recforge.models.ranking import DeepFM
from recforge.outputs import logits_of
from test_contract_matching import BUILDERS, make_batch
from test_contract_ranking import ALL, FACTORIES
from test_contract_seq_ranking import FACTORIES as SEQ_FACTORIES
from test_contract_seq_ranking import seq_batch

pytestmark = pytest.mark.slow


def _scalar(out: object) -> torch.Tensor:
    if isinstance(out, Mapping):
        return sum(_scalar(v) for v in out.values())  # type: ignore[return-value]
    return logits_of(out).float().sum()  # type: ignore[arg-type]


def _check(factory: Callable[[], nn.Module], batch: dict[str, torch.Tensor], call: str = "forward") -> None:
    torch.manual_seed(0)
    eager = factory().eval()
    compiled = factory().eval()
    compiled.load_state_dict(eager.state_dict())
    fn = torch.compile(getattr(compiled, call) if call != "forward" else compiled, dynamic=False)
    ref = _scalar(getattr(eager, call)(batch))
    got = _scalar(fn(batch))
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    ref.backward()
    got.backward()
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters()):
        if p.grad is None:
            assert q.grad is None, name
            continue
        assert q.grad is not None, name
        a = p.grad.to_dense() if p.grad.is_sparse else p.grad
        b = q.grad.to_dense() if q.grad.is_sparse else q.grad
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-5, msg=name)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_ranking_models_compile(name: str) -> None:
    _check(FACTORIES[name], synthetic_batch(ALL, 32, seed=1))


@pytest.mark.parametrize("name", sorted(SEQ_FACTORIES))
def test_sequence_ranking_models_compile(name: str) -> None:
    _check(SEQ_FACTORIES[name], seq_batch(32, seed=1))


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_matching_user_towers_compile(name: str) -> None:
    _check(BUILDERS[name], make_batch(16, 1), call="user_tower")


def test_sparse_fused_deepfm_compiles_with_dropout_in_training() -> None:
    """The throughput configuration: one fused sparse-gradient table, dropout, training mode."""
    dense = [DenseFeature("d")]
    sparse = [SparseFeature(f"s{i}", 50, 8) for i in range(4)]

    def factory() -> nn.Module:
        return DeepFM(dense + sparse, sparse, {"dims": [16, 8], "dropout": 0.2}, sparse=True, fused=True)

    batch = synthetic_batch(dense + sparse, 64, seed=0)
    model = factory().train()
    model.compile()
    loss = model(batch).sum()
    loss.backward()
    grad = model.embedding.embeddings["dim8"].weight.grad
    assert grad is not None and grad.is_sparse
