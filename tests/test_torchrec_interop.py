"""Against the real TorchRec (runs where it is installed, e.g. benchmarks/.venvs/torchrec; see
docs/torchrec.md): its KJT converts, and our modules reproduce its outputs on the same weights."""

from __future__ import annotations

import pytest
import torch

trec = pytest.importorskip("torchrec")

from recforge import torchrec as rf  # noqa: E402


def real_kjt(weighted: bool = False):
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(0, 4, (3 * 5,), generator=g)
    values = torch.randint(0, 20, (int(lengths.sum()),), generator=g)
    weights = torch.rand(values.numel(), generator=g) if weighted else None
    return trec.KeyedJaggedTensor.from_lengths_sync(["f1", "f2", "f3"], values, lengths, weights=weights)


def test_real_kjt_converts_and_ops_agree() -> None:
    real = real_kjt(weighted=True)
    ours = rf.as_kjt(real)
    assert ours.keys() == real.keys() and ours.stride() == real.stride()
    assert torch.equal(ours.offsets(), real.offsets())
    for k in list(real.keys()):
        assert torch.equal(ours[k].values(), real[k].values())
        assert torch.equal(ours[k].weights(), real[k].weights())
    p_real, p_ours = real.permute([2, 0, 1]), ours.permute([2, 0, 1])
    assert p_ours.keys() == p_real.keys()
    assert torch.equal(p_ours.values(), p_real.values()) and torch.equal(p_ours.lengths(), p_real.lengths())
    for s_real, s_ours in zip(real.split([1, 2]), ours.split([1, 2])):
        assert s_ours.keys() == s_real.keys() and torch.equal(s_ours.values(), s_real.values())


@pytest.mark.parametrize("pooling", ["SUM", "MEAN"])
def test_ebc_matches_torchrec_on_same_weights(pooling: str) -> None:
    from torchrec.modules.embedding_configs import PoolingType

    real = trec.EmbeddingBagCollection(
        tables=[
            trec.EmbeddingBagConfig(
                name="t1",
                embedding_dim=4,
                num_embeddings=20,
                feature_names=["f1", "f3"],
                pooling=PoolingType[pooling],
            ),
            trec.EmbeddingBagConfig(
                name="t2",
                embedding_dim=4,
                num_embeddings=20,
                feature_names=["f2"],
                pooling=PoolingType[pooling],
            ),
        ]
    )
    ours = rf.EmbeddingBagCollection(
        [
            rf.EmbeddingBagConfig(
                name="t1",
                embedding_dim=4,
                num_embeddings=20,
                feature_names=["f1", "f3"],
                pooling=PoolingType[pooling],
            ),
            rf.EmbeddingBagConfig(
                name="t2", embedding_dim=4, num_embeddings=20, feature_names=["f2"], pooling=pooling
            ),
        ]
    )
    ours.load_state_dict(real.state_dict())  # same parameter names
    kjt = real_kjt()
    a, b = real(kjt), ours(kjt)
    assert b.keys() == a.keys() and b.length_per_key() == a.length_per_key()
    torch.testing.assert_close(b.values(), a.values())


def test_interaction_arch_matches_and_fm_differs_as_documented() -> None:
    from torchrec.models import deepfm as real_deepfm
    from torchrec.models import dlrm as real_dlrm

    dense, sparse = torch.randn(6, 4), torch.randn(6, 3, 4)
    torch.testing.assert_close(
        rf.dlrm.InteractionArch(3)(dense, sparse), real_dlrm.InteractionArch(3)(dense, sparse)
    )
    kt = rf.KeyedTensor.from_tensor_list(["a", "b", "c"], list(sparse.unbind(1)))
    real_kt = trec.KeyedTensor.from_tensor_list(["a", "b", "c"], list(sparse.unbind(1)))
    ours = rf.deepfm.FMInteractionArch(16, ["a", "b", "c"], 5)(dense, kt)[:, -1]
    theirs = real_deepfm.FMInteractionArch(16, ["a", "b", "c"], 5)(dense, real_kt)[:, -1]
    flat = torch.cat([dense, sparse.flatten(1)], 1)  # TorchRec: all scalar pairs of the flattened fields
    torch.testing.assert_close(theirs, 0.5 * (flat.sum(1) ** 2 - (flat**2).sum(1)))
    fields = torch.cat([dense.unsqueeze(1), sparse], 1)  # ours: pairs of fields (the paper)
    torch.testing.assert_close(ours, 0.5 * (fields.sum(1).pow(2).sum(1) - fields.pow(2).sum((1, 2))))
    assert not torch.allclose(ours, theirs)
