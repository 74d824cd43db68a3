"""Fast paths of the DeepFM hot loop checked against their plain references."""

from __future__ import annotations

import copy

import pytest
import torch

from recforge.data import BatchLoader, ColumnarDataset
from recforge.features import DenseFeature, SparseFeature
from recforge.models.ranking import DeepFM
from recforge.optim import LazyAdam, coalesce_rows
from recforge.trainers.optim import build_optimizer

VOCABS = (50, 30, 70, 20)


def _features() -> tuple[list[DenseFeature], list[SparseFeature]]:
    dense = [DenseFeature("d0"), DenseFeature("d1")]
    sparse = [SparseFeature(f"s{i}", vocab_size=v, embed_dim=8) for i, v in enumerate(VOCABS)]
    return dense, sparse


def _batch(n: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    batch = {f"d{i}": torch.randn(n, generator=g) for i in range(2)}
    for i, v in enumerate(VOCABS):
        batch[f"s{i}"] = torch.randint(0, v, (n,), generator=g)
    batch["label"] = torch.randint(0, 2, (n,), generator=g).float()
    return batch


def _copy_tables(src: DeepFM, dst: DeepFM) -> None:
    """Give ``dst`` the weights of ``src`` (tables copied row-for-row between layouts)."""
    dst.linear.load_state_dict(src.linear.state_dict())
    dst.mlp.load_state_dict(src.mlp.state_dict())
    with torch.no_grad():
        for f in src.embedding.features:
            dst.embedding.table_weight(f).copy_(src.embedding.table_weight(f))


def _model(*, fused: bool, sparse: bool) -> DeepFM:
    dense, sparse_feats = _features()
    torch.manual_seed(0)
    return DeepFM(
        dense + sparse_feats,
        sparse_feats,
        mlp_params={"dims": [16, 8], "dropout": 0.0},
        fused=fused,
        sparse=sparse,
    )


def test_fused_and_per_field_tables_agree_forward_and_backward() -> None:
    ref, fused = _model(fused=False, sparse=False), _model(fused=True, sparse=False)
    _copy_tables(ref, fused)
    batch = _batch()
    out_ref, out_fused = ref(batch), fused(batch)
    torch.testing.assert_close(out_fused, out_ref)
    out_ref.sum().backward()
    out_fused.sum().backward()
    for f in ref.embedding.features:
        t = ref.embedding.tables[f]
        g_ref = ref.embedding.embeddings[f].weight.grad
        group = fused.embedding.embeddings[fused.embedding._group[f]]
        off = fused.embedding._offset[f]
        torch.testing.assert_close(group.weight.grad[off : off + t.vocab_size], g_ref)
    torch.testing.assert_close(fused.mlp.net[0].weight.grad, ref.mlp.net[0].weight.grad)


def test_sparse_gradients_equal_dense_gradients() -> None:
    dense, sparse = _model(fused=True, sparse=False), _model(fused=True, sparse=True)
    sparse.load_state_dict(dense.state_dict())
    batch = _batch()
    dense(batch).sum().backward()
    sparse(batch).sum().backward()
    w_dense = dense.embedding.embeddings["dim8"].weight.grad
    w_sparse = sparse.embedding.embeddings["dim8"].weight.grad
    assert w_sparse.is_sparse
    torch.testing.assert_close(w_sparse.to_dense(), w_dense)


def test_sparse_and_dense_training_agree_with_sgd() -> None:
    """Same optimizer algorithm on both sides: the parameters must follow the same path."""
    dense, sparse = _model(fused=True, sparse=False), _model(fused=True, sparse=True)
    sparse.load_state_dict(dense.state_dict())
    opt_d = build_optimizer(dense, torch.optim.SGD, {"lr": 0.5})
    opt_s = build_optimizer(sparse, torch.optim.SGD, {"lr": 0.5}, sparse_optimizer_fn=torch.optim.SGD)
    assert len(opt_s.optimizers) == 2
    for step in range(5):
        batch = _batch(seed=step)
        for model, opt in ((dense, opt_d), (sparse, opt_s)):
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch), batch["label"])
            loss.backward()
            opt.step()
    for (name, p_d), p_s in zip(dense.state_dict().items(), sparse.state_dict().values()):
        torch.testing.assert_close(p_s, p_d, msg=name)


def test_coalesce_rows_matches_coalesce() -> None:
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, 40, (200,), generator=g)
    vals = torch.randn(200, 3, generator=g)
    grad = torch.sparse_coo_tensor(idx[None], vals, (40, 3), check_invariants=True)
    rows, summed = coalesce_rows(grad)
    ref = grad.coalesce()
    torch.testing.assert_close(rows, ref.indices()[0])
    torch.testing.assert_close(summed, ref.values())


@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.5, 0.9)])
def test_lazy_adam_matches_sparse_adam(betas: tuple[float, float]) -> None:
    torch.manual_seed(0)
    ref = torch.nn.Embedding(60, 4, sparse=True)
    fast = copy.deepcopy(ref)
    before = ref.weight.detach().clone()
    touched = torch.zeros(60, dtype=torch.bool)
    opt_ref = torch.optim.SparseAdam(ref.parameters(), lr=0.01, betas=betas)
    opt_fast = LazyAdam(list(fast.parameters()), lr=0.01, betas=betas)
    for step in range(6):
        ids = torch.randint(0, 40, (32, 3), generator=torch.Generator().manual_seed(step))  # repeats rows
        touched[ids.flatten()] = True
        target = torch.randn(32, 3, 4, generator=torch.Generator().manual_seed(100 + step))
        for emb, opt in ((ref, opt_ref), (fast, opt_fast)):
            opt.zero_grad()
            ((emb(ids) - target) ** 2).sum().backward()
            opt.step()
    torch.testing.assert_close(fast.weight, ref.weight, rtol=1e-5, atol=1e-6)
    assert opt_fast.state[fast.weight]["step"] == 6
    assert torch.equal(fast.weight[~touched], before[~touched])  # lazy: rows never seen never move


def test_lazy_adam_refuses_non_row_sparse_gradients() -> None:
    p = torch.nn.Parameter(torch.zeros(3, 2))
    p.grad = torch.ones(3, 2).to_sparse(2)
    with pytest.raises(TypeError, match="row-sparse"):
        LazyAdam([p]).step()


def test_default_sparse_optimizer_is_lazy_adam() -> None:
    opt = build_optimizer(_model(fused=True, sparse=True), torch.optim.Adam, {"lr": 1e-3})
    assert isinstance(opt.optimizers[1], LazyAdam)
    assert opt.optimizers[1].defaults["lr"] == 1e-3


def test_shuffled_batches_match_advanced_indexing() -> None:
    batch = _batch(n=100)
    ds = ColumnarDataset({k: v for k, v in batch.items() if k != "label"}, batch["label"])
    loader = BatchLoader(ds, 32, shuffle=True, seed=3)
    order = torch.randperm(100, generator=torch.Generator().manual_seed(3))
    seen = 0
    for i, b in enumerate(loader):
        rows = order[i * 32 : (i + 1) * 32]
        for k, v in ds.columns.items():
            assert torch.equal(b[k], v[rows])
        seen += len(rows)
    assert seen == 100
    mask = torch.zeros(100, dtype=torch.bool)
    mask[::7] = True
    assert torch.equal(ds.take(mask)["s0"], ds.columns["s0"][mask])  # non-index tensors still work
