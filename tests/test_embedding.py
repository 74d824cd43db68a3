import pytest
import torch

from native import paths
from recforge.features import DenseFeature, SequenceFeature, SparseFeature
from recforge.layers import EmbeddingLayer, output_dim

SPARSE = [SparseFeature("a", 10, embed_dim=4), SparseFeature("b", 7, embed_dim=4)]
HIST = SequenceFeature("hist", 10, embed_dim=4, pooling="mean", shared_with="a")
DENSE = DenseFeature("price", embed_dim=2)


def batch(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    hist = torch.randint(1, 10, (n, 5), generator=g)
    hist[:, :2] = 0  # left padding
    return {
        "a": torch.randint(0, 10, (n,), generator=g),
        "b": torch.randint(0, 7, (n,), generator=g),
        "hist": hist,
        "price": torch.randn(n, 2, generator=g),
    }


def copy_weights(src: EmbeddingLayer, dst: EmbeddingLayer) -> None:
    with torch.no_grad():
        for name in src.tables:
            dst.table_weight(name).copy_(src.table_weight(name))


@pytest.mark.parametrize("sparse", [False, True])
def test_fused_and_separate_tables_agree(sparse):
    feats = [*SPARSE, HIST, DENSE]
    sep = EmbeddingLayer(feats, fused=False, sparse=sparse)
    fused = EmbeddingLayer(feats, fused=True, sparse=sparse)
    copy_weights(sep, fused)
    b = batch()
    torch.testing.assert_close(sep.stack(b, feats), fused.stack(b, feats))
    torch.testing.assert_close(sep.flatten(b, feats), fused.flatten(b, feats))
    assert fused.flatten(b, feats).shape == (6, output_dim(feats))


@pytest.mark.parametrize("path", paths())
def test_fused_field_ids_on_both_paths(path, monkeypatch):
    """The fused table's ids for several fields (one C pass on the kernel path: stack, range check,
    offsets) give the separate tables' rows, and an out-of-range id of any field, negative or past
    its vocabulary, is refused naming that field."""
    monkeypatch.setenv("RECFORGE_KERNELS", "torch" if path == "torch" else "")
    sep = EmbeddingLayer(SPARSE, fused=False, sparse=True)
    fused = EmbeddingLayer(SPARSE, fused=True, sparse=True)
    copy_weights(sep, fused)
    b = batch(n=300)
    torch.testing.assert_close(fused.stack(b, SPARSE), sep.stack(b, SPARSE))
    for bad in (7, -1):
        ids = b["b"].clone()
        ids[123] = bad
        with pytest.raises(IndexError, match="'b': ids must lie in \\[0, 7\\)"):
            fused.stack(dict(b, b=ids), SPARSE)


def test_shared_table_is_one_parameter():
    layer = EmbeddingLayer([*SPARSE, HIST], fused=False)
    assert set(layer.embeddings) == {"a", "b"}
    b = batch()
    ids = b["hist"]
    manual = layer.embeddings["a"](ids)
    torch.testing.assert_close(layer.sequence(b, "hist")[0], manual)


def test_mean_pooling_ignores_padding():
    layer = EmbeddingLayer([*SPARSE, HIST])
    b = batch()
    padded = dict(b, hist=torch.cat([torch.zeros(6, 3, dtype=torch.long), b["hist"]], 1))
    torch.testing.assert_close(layer.pooled(b, HIST), layer.pooled(padded, HIST))


def test_errors_name_the_feature():
    layer = EmbeddingLayer([*SPARSE, HIST])
    with pytest.raises(IndexError, match="'a': ids must lie in"):
        layer.stack(dict(batch(), a=torch.full((6,), 10)), SPARSE)
    with pytest.raises(KeyError, match="no column 'b'"):
        layer.stack({"a": torch.zeros(3, dtype=torch.long)}, SPARSE)
    with pytest.raises(ValueError, match="share one embed_dim"):
        EmbeddingLayer([SPARSE[0], SparseFeature("c", 3, embed_dim=5)]).stack(
            {"a": torch.zeros(2, dtype=torch.long), "c": torch.zeros(2, dtype=torch.long)},
            [SPARSE[0], SparseFeature("c", 3, embed_dim=5)],
        )
    with pytest.raises(ValueError, match="not among the model's features"):
        EmbeddingLayer([HIST])
    with pytest.raises(ValueError, match="widths must match"):
        EmbeddingLayer([SPARSE[0], SequenceFeature("h", 10, embed_dim=8, shared_with="a")])


def test_sparse_tables_give_sparse_gradients():
    layer = EmbeddingLayer(SPARSE, sparse=True)
    layer.stack(batch(), SPARSE).sum().backward()
    assert all(p.grad.is_sparse for p in layer.parameters())
