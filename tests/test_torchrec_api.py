"""recforge.torchrec: jagged containers against naive references, embedding collections against
manual pooling, arch shapes, and the DLRM/DeepFM training on recforge batches."""

from __future__ import annotations

import math

import pytest
import torch

from recforge.data import BatchLoader, ColumnarDataset
from recforge.features import DenseFeature, SequenceFeature, SparseFeature
from recforge.layers import FM
from recforge.torchrec import (
    BatchModel,
    EmbeddingBagCollection,
    EmbeddingBagConfig,
    EmbeddingCollection,
    EmbeddingConfig,
    JaggedTensor,
    KeyedJaggedTensor,
    KeyedTensor,
    PoolingType,
    as_kjt,
    deepfm,
    dlrm,
    kjt_from_batch,
    tables_from_features,
)
from recforge.trainers import CTRTrainer

torch.set_num_threads(1)


def random_rows(num_keys: int, batch: int, vocab: int, seed: int = 0) -> list[list[list[int]]]:
    """rows[k][b] = the ids of key k in row b (0..3 ids, some empty)."""
    g = torch.Generator().manual_seed(seed)
    return [
        [
            torch.randint(0, vocab, (int(torch.randint(0, 4, (1,), generator=g)),), generator=g).tolist()
            for _ in range(batch)
        ]
        for _ in range(num_keys)
    ]


def kjt_of(keys: list[str], rows: list[list[list[int]]], weighted: bool = False) -> KeyedJaggedTensor:
    values = torch.tensor([i for per_key in rows for r in per_key for i in r], dtype=torch.long)
    lengths = torch.tensor([len(r) for per_key in rows for r in per_key], dtype=torch.long)
    weights = torch.arange(values.numel(), dtype=torch.float32) / 10 + 0.5 if weighted else None
    return KeyedJaggedTensor.from_lengths_sync(keys, values, lengths, weights=weights)


# -- jagged containers ------------------------------------------------------------------------------
def test_kjt_accessors_and_to_dict_match_rows() -> None:
    keys = ["a", "b", "c"]
    rows = random_rows(3, 5, 50)
    kjt = kjt_of(keys, rows, weighted=True)
    assert kjt.keys() == keys and kjt.stride() == 5
    assert kjt.length_per_key() == [sum(len(r) for r in per_key) for per_key in rows]
    assert torch.equal(kjt.offsets(), torch.cat([torch.zeros(1, dtype=torch.long), kjt.lengths().cumsum(0)]))
    same = KeyedJaggedTensor.from_offsets_sync(keys, kjt.values(), kjt.offsets(), weights=kjt.weights())
    assert torch.equal(same.lengths(), kjt.lengths())
    d = kjt.to_dict()
    assert list(d) == keys
    w_start = 0
    for k, per_key in zip(keys, rows):
        jt = d[k]
        assert [t.tolist() for t in jt.to_dense()] == per_key
        n = sum(len(r) for r in per_key)
        assert torch.equal(jt.weights(), kjt.weights()[w_start : w_start + n])
        w_start += n
    assert kjt.weights_or_none() is not None
    assert kjt_of(keys, rows).weights_or_none() is None


def test_kjt_permute_and_split_match_naive() -> None:
    keys = ["a", "b", "c", "d"]
    rows = random_rows(4, 6, 30, seed=1)
    kjt = kjt_of(keys, rows, weighted=True)
    for order in ([3, 1, 0, 2], [2, 0], [1]):
        p = kjt.permute(order)
        assert p.keys() == [keys[i] for i in order]
        expected = kjt_of([keys[i] for i in order], [rows[i] for i in order])
        assert torch.equal(p.values(), expected.values())
        assert torch.equal(p.lengths(), expected.lengths())
        for k in set(p.keys()):
            assert torch.equal(p[k].weights(), kjt[k].weights())
    with pytest.raises(ValueError, match="duplicate keys"):
        kjt.permute([2, 2, 0])
    parts = kjt.split([1, 0, 3])
    assert [p.keys() for p in parts] == [["a"], [], ["b", "c", "d"]]
    assert torch.equal(torch.cat([p.values() for p in parts]), kjt.values())
    assert all(p.stride() == 6 for p in parts)
    for p in parts:
        for k in list(p.keys()):
            assert [t.tolist() for t in p[k].to_dense()] == rows[keys.index(k)]
    with pytest.raises(ValueError, match="sum to 4"):
        kjt.split([1, 1])
    with pytest.raises(KeyError, match="'zz'"):
        kjt["zz"]


def test_kjt_rejects_inconsistent_input() -> None:
    with pytest.raises(ValueError, match="lengths sum to 3"):
        KeyedJaggedTensor.from_lengths_sync(["a"], torch.arange(4), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="split evenly"):
        KeyedJaggedTensor.from_lengths_sync(["a", "b"], torch.arange(3), torch.tensor([1, 1, 1]))


def test_jagged_tensor_padded_and_keyed_tensor_regroup() -> None:
    jt = JaggedTensor.from_dense(
        [torch.tensor([1, 2, 3]), torch.tensor([], dtype=torch.long), torch.tensor([4])]
    )
    assert jt.to_padded_dense().tolist() == [[1, 2, 3], [0, 0, 0], [4, 0, 0]]
    assert jt.to_padded_dense(desired_length=2).tolist() == [[1, 2], [0, 0], [4, 0]]
    kt1 = KeyedTensor.from_tensor_list(["x", "y"], [torch.ones(2, 1), torch.full((2, 2), 2.0)])
    kt2 = KeyedTensor(["z"], [3], torch.full((2, 3), 3.0))
    assert kt1.length_per_key() == [1, 2] and kt1.keys() == ["x", "y"]
    assert torch.equal(kt1.to_dict()["y"], torch.full((2, 2), 2.0))
    g1, g2 = KeyedTensor.regroup([kt1, kt2], [["z", "x"], ["y"]])
    assert g1.tolist() == [[3.0, 3.0, 3.0, 1.0]] * 2 and g2.shape == (2, 2)


class _ForeignKJT:
    """Duck-typed stand-in for torchrec.KeyedJaggedTensor (only its public accessors)."""

    def __init__(self, kjt: KeyedJaggedTensor) -> None:
        self._k = kjt

    def keys(self) -> list[str]:
        return self._k.keys()

    def values(self) -> torch.Tensor:
        return self._k.values()

    def lengths(self) -> torch.Tensor:
        return self._k.lengths()

    def weights_or_none(self) -> torch.Tensor | None:
        return self._k.weights_or_none()

    def stride(self) -> int:
        return self._k.stride()


def test_foreign_kjt_is_converted() -> None:
    kjt = kjt_of(["a", "b"], random_rows(2, 4, 10, seed=2), weighted=True)
    conv = as_kjt(_ForeignKJT(kjt))
    assert conv.keys() == kjt.keys() and conv.values() is kjt.values() and conv.stride() == 4
    ebc = EmbeddingBagCollection(
        [EmbeddingBagConfig(num_embeddings=10, embedding_dim=3, name="t", feature_names=["a", "b"])]
    )
    assert torch.equal(ebc(_ForeignKJT(kjt)).values(), ebc(kjt).values())
    with pytest.raises(TypeError, match="KeyedJaggedTensor"):
        as_kjt({"a": torch.zeros(2)})


# -- embedding collections ---------------------------------------------------------------------------
@pytest.mark.parametrize("pooling", ["SUM", "MEAN"])
def test_ebc_pooling_matches_manual(pooling: str) -> None:
    tables = [
        EmbeddingBagConfig(
            num_embeddings=20, embedding_dim=4, name="t1", feature_names=["f1", "f3"], pooling=pooling
        ),
        EmbeddingBagConfig(
            num_embeddings=30, embedding_dim=2, name="t2", feature_names=["f2"], pooling=pooling
        ),
    ]
    ebc = EmbeddingBagCollection(tables)
    rows = random_rows(3, 5, 20, seed=3)
    kjt = kjt_of(["f3", "f2", "f1"], rows)  # key order differs from table order
    out = ebc(kjt)
    assert out.keys() == ["f1", "f3", "f2"] and out.length_per_key() == [4, 4, 2]
    table_of = {"f1": "t1", "f3": "t1", "f2": "t2"}
    for k, per_key in zip(["f3", "f2", "f1"], rows):
        w = ebc.embedding_bags[table_of[k]].weight
        for b, ids in enumerate(per_key):
            manual = w[ids].sum(0) if ids else torch.zeros(w.shape[1])
            if pooling == "MEAN" and ids:
                manual = manual / len(ids)
            torch.testing.assert_close(out[k][b], manual)
    assert set(ebc.state_dict()) == {"embedding_bags.t1.weight", "embedding_bags.t2.weight"}


def test_ebc_weighted_and_errors() -> None:
    ebc = EmbeddingBagCollection(
        [EmbeddingBagConfig(num_embeddings=10, embedding_dim=3, name="t", feature_names=["a"])],
        is_weighted=True,
    )
    kjt = kjt_of(["a"], random_rows(1, 4, 10, seed=4), weighted=True)
    w = ebc.embedding_bags["t"].weight
    manual = torch.stack(
        [
            (w[r.values()] * r.weights().unsqueeze(1)).sum(0)
            for r in [
                JaggedTensor(v, ww, lengths=torch.tensor([len(v)]))
                for v, ww in zip(kjt["a"].to_dense(), torch.split(kjt.weights(), kjt.lengths().tolist()))
            ]
        ]
    )
    torch.testing.assert_close(ebc(kjt).values(), manual)
    with pytest.raises(ValueError, match="weights"):
        ebc(kjt_of(["a"], random_rows(1, 4, 10)))
    with pytest.raises(KeyError, match="'a'"):
        ebc(kjt_of(["b"], random_rows(1, 4, 10), weighted=True))
    with pytest.raises(IndexError, match="feature 'a'"):
        ebc(
            KeyedJaggedTensor.from_lengths_sync(
                ["a"], torch.tensor([10]), torch.tensor([1]), weights=torch.ones(1)
            )
        )
    with pytest.raises(ValueError, match="pooling must be one of"):
        EmbeddingBagConfig(num_embeddings=3, embedding_dim=2, name="t", pooling="max")
    with pytest.raises(ValueError, match="served by both"):
        EmbeddingBagCollection(
            [
                EmbeddingBagConfig(num_embeddings=3, embedding_dim=2, name="t1", feature_names=["a"]),
                EmbeddingBagConfig(num_embeddings=3, embedding_dim=2, name="t2", feature_names=["a"]),
            ]
        )


def test_embedding_collection_unpooled() -> None:
    ec = EmbeddingCollection(
        [EmbeddingConfig(num_embeddings=10, embedding_dim=3, name="t", feature_names=["a", "b"])]
    )
    rows = random_rows(2, 4, 10, seed=5)
    out = ec(kjt_of(["a", "b"], rows))
    w = ec.embeddings["t"].weight
    for k, per_key in zip(["a", "b"], rows):
        assert out[k].values().shape == (sum(len(r) for r in per_key), 3)
        for got, ids in zip(out[k].to_dense(), per_key):
            torch.testing.assert_close(got, w[ids])


def test_sparse_ebc_gives_sparse_gradients() -> None:
    ebc = EmbeddingBagCollection(
        [EmbeddingBagConfig(num_embeddings=10, embedding_dim=3, name="t", feature_names=["a"])], sparse=True
    )
    ebc(kjt_of(["a"], random_rows(1, 4, 10))).values().sum().backward()
    assert ebc.embedding_bags["t"].weight.grad.is_sparse


# -- arches ------------------------------------------------------------------------------------------
def make_ebc(dim: int = 4, names: tuple[str, ...] = ("f1", "f2", "f3")) -> EmbeddingBagCollection:
    return EmbeddingBagCollection(
        [
            EmbeddingBagConfig(
                num_embeddings=20, embedding_dim=dim, name="t1", feature_names=list(names[:2])
            ),
            EmbeddingBagConfig(
                num_embeddings=20, embedding_dim=dim, name="t2", feature_names=list(names[2:])
            ),
        ]
    )


def test_deepfm_arch_shapes_and_fieldwise_fm() -> None:
    b, d, n_dense = 5, 4, 7
    kjt = kjt_of(["f1", "f2", "f3"], random_rows(3, b, 20, seed=6))
    ebc = make_ebc(d)
    kt = deepfm.SparseArch(ebc)(kjt)
    assert kt.values().shape == (b, 3 * d)
    dense = deepfm.DenseArch(n_dense, 8, d)(torch.rand(b, n_dense))
    assert dense.shape == (b, d)
    inter = deepfm.FMInteractionArch(4 * d, ["f1", "f2", "f3"], 6)
    out = inter(dense, kt)
    assert out.shape == (b, d + 6 + 1)
    # the FM column is the paper's Σ_{i<j} <e_i, e_j> over the four fields
    fields = [dense, kt["f1"], kt["f2"], kt["f3"]]
    pairwise = sum((fields[i] * fields[j]).sum(1) for i in range(4) for j in range(i + 1, 4))
    torch.testing.assert_close(out[:, -1], pairwise)
    assert deepfm.OverArch(d + 7)(out).shape == (b, 1)
    model = deepfm.SimpleDeepFMNN(n_dense, ebc, hidden_layer_size=8, deep_fm_dimension=6)
    assert model(torch.rand(b, n_dense), kjt).shape == (b, 1)
    with pytest.raises(ValueError, match="equal widths"):
        inter(torch.rand(b, d + 1), kt)


def test_dlrm_arch_shapes_and_interaction() -> None:
    b, d, n_dense, f = 5, 4, 7, 3
    kjt = kjt_of(["f1", "f2", "f3"], random_rows(3, b, 20, seed=7))
    ebc = make_ebc(d)
    sparse = dlrm.SparseArch(ebc)(kjt)
    assert sparse.shape == (b, f, d)
    dense = dlrm.DenseArch(n_dense, [8, d])(torch.rand(b, n_dense))
    assert dense.shape == (b, d)
    inter = dlrm.InteractionArch(f)(dense, sparse)
    assert inter.shape == (b, d + math.comb(f + 1, 2))
    fields = torch.cat([dense.unsqueeze(1), sparse], 1)
    naive = [(fields[:, i] * fields[:, j]).sum(1) for i in range(f + 1) for j in range(i + 1, f + 1)]
    torch.testing.assert_close(inter[:, d:], torch.stack(naive, 1))
    assert dlrm.OverArch(inter.shape[1], [5, 1])(inter).shape == (b, 1)
    assert dlrm.DLRM(ebc, n_dense, [8, d], [5, 1])(torch.rand(b, n_dense), kjt).shape == (b, 1)
    dcn = dlrm.DLRM_DCN(ebc, n_dense, [8, d], [5, 1], dcn_num_layers=2, dcn_low_rank_dim=3)
    assert dcn(torch.rand(b, n_dense), kjt).shape == (b, 1)
    assert dlrm.InteractionDCNArch(f, torch.nn.Identity())(dense, sparse).shape == (b, (f + 1) * d)
    with pytest.raises(ValueError, match="must equal"):
        dlrm.DLRM(ebc, n_dense, [8, d + 1], [5, 1])
    with pytest.raises(ValueError, match="one embedding_dim"):
        dlrm.DLRM(
            EmbeddingBagCollection(
                [
                    EmbeddingBagConfig(num_embeddings=3, embedding_dim=2, name="t1"),
                    EmbeddingBagConfig(num_embeddings=3, embedding_dim=3, name="t2"),
                ]
            ),
            n_dense,
            [2],
            [5, 1],
        )


def test_fm_layer_is_the_field_wise_reference() -> None:
    x = torch.randn(3, 5, 4)
    naive = sum((x[:, i] * x[:, j]).sum(1) for i in range(5) for j in range(i + 1, 5))
    torch.testing.assert_close(FM()(x).squeeze(1), naive)


# -- recforge batches -> KJT -> training -------------------------------------------------------------
def test_kjt_from_batch_ids_and_left_padded_sequences() -> None:
    batch = {
        "c1": torch.tensor([3, 0, 5]),
        "hist": torch.tensor([[0, 0, 4], [0, 0, 0], [1, 2, 3]]),
    }
    kjt = kjt_from_batch(batch, [SparseFeature("c1", vocab_size=10), "hist"])
    assert kjt.keys() == ["c1", "hist"] and kjt.stride() == 3
    assert [t.tolist() for t in kjt["c1"].to_dense()] == [[3], [0], [5]]
    assert [t.tolist() for t in kjt["hist"].to_dense()] == [[4], [], [1, 2, 3]]
    with pytest.raises(KeyError, match="'nope'"):
        kjt_from_batch(batch, ["nope"])
    with pytest.raises(TypeError, match="'x'"):
        kjt_from_batch({"x": torch.rand(3)}, ["x"])


def criteo_like(n: int, n_dense: int = 3, n_sparse: int = 4, vocab: int = 30, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    cols = {f"I{i}": torch.rand(n, generator=g) for i in range(n_dense)}
    cols.update({f"C{i}": torch.randint(0, vocab, (n,), generator=g) for i in range(n_sparse)})
    cols["hist"] = torch.randint(0, vocab, (n, 5), generator=g) * (torch.rand(n, 5, generator=g) > 0.4)
    # a learnable signal: the label depends on one categorical column and one dense column
    logit = (cols["C0"] % 2 * 2 - 1).float() * 2.0 + (cols["I0"] - 0.5) * 3
    labels = (torch.rand(n, generator=g) < torch.sigmoid(logit)).float()
    dense = [DenseFeature(f"I{i}") for i in range(n_dense)]
    sparse = [SparseFeature(f"C{i}", vocab_size=vocab, embed_dim=8) for i in range(n_sparse)]
    sparse.append(SequenceFeature("hist", vocab_size=vocab, embed_dim=8, pooling="sum", shared_with="C1"))
    return cols, labels, dense, sparse


@pytest.mark.parametrize("arch", ["dlrm", "dcn", "deepfm"])
def test_models_train_on_recforge_batches(arch: str, tmp_path) -> None:
    torch.manual_seed(0)
    cols, labels, dense, sparse = criteo_like(2048)
    tables = tables_from_features(sparse)
    assert [t.feature_names for t in tables] == [("C0",), ("C1", "hist"), ("C2",), ("C3",)]
    # a shared table pools as its sequence does (one sparse id per row pools to itself either way)
    by_name = {t.name: t.pooling for t in tables_from_features(sparse, pooling="mean")}
    assert by_name["t_C1"] is PoolingType.SUM and by_name["t_C0"] is PoolingType.MEAN
    twin = SequenceFeature("hist2", vocab_size=100, embed_dim=8, pooling="mean", shared_with="C1")
    with pytest.raises(ValueError, match="different poolings"):
        tables_from_features([*sparse, twin])
    ebc = EmbeddingBagCollection(tables)
    if arch == "dlrm":
        module = dlrm.DLRM(ebc, len(dense), [16, 8], [16, 1])
    elif arch == "dcn":
        module = dlrm.DLRM_DCN(ebc, len(dense), [16, 8], [16, 1], dcn_num_layers=2, dcn_low_rank_dim=4)
    else:
        module = deepfm.SimpleDeepFMNN(len(dense), ebc, hidden_layer_size=16, deep_fm_dimension=8)
    model = BatchModel(module, dense, sparse)
    loader = BatchLoader(ColumnarDataset(cols, labels), 256, shuffle=True)
    trainer = CTRTrainer(
        model, optimizer_params={"lr": 1e-2}, n_epoch=1, model_path=tmp_path, progress=False, plot=False
    )
    before = trainer.evaluate(model, loader)["logloss"]
    trainer.fit(loader)
    for epoch in range(1, 3):
        trainer.train_one_epoch(loader, epoch)
    after = trainer.evaluate(model, loader)["logloss"]
    assert after < before - 0.05, (before, after)
    assert trainer.evaluate(model, loader)["auc"] > 0.75


def test_dlrm_on_feature_pipeline_output(tmp_path) -> None:
    import numpy as np
    import pandas as pd

    from recforge.features import DenseFeature as DF
    from recforge.preprocess import Categorical, FeaturePipeline, Numeric, SequenceColumn

    rng = np.random.default_rng(0)
    n = 1024
    c0 = rng.integers(0, 6, n)
    df = pd.DataFrame(
        {
            "I0": rng.random(n),
            "C0": [f"a{v}" for v in c0],
            "C1": [f"b{v}" for v in rng.integers(0, 9, n)],
            "hist": [[f"b{v}" for v in rng.integers(0, 9, rng.integers(0, 4))] for _ in range(n)],
            "label": (c0 % 2).astype(float),
        }
    )
    pipe = FeaturePipeline(
        [Numeric("I0"), Categorical("C0", embed_dim=8), Categorical("C1", embed_dim=8),
         SequenceColumn("hist", max_len=3, shared_with="C1", pooling="sum")],
        label="label",
    ).fit(df)  # fmt: skip
    dense = [f for f in pipe.features if isinstance(f, DF)]
    sparse = [f for f in pipe.features if not isinstance(f, DF)]
    ebc = EmbeddingBagCollection(tables_from_features(sparse), sparse=True)
    model = BatchModel(dlrm.DLRM(ebc, len(dense), [8], [16, 1]), dense, sparse)
    loader = BatchLoader(ColumnarDataset.from_pipeline(pipe, df), 128, shuffle=True)
    trainer = CTRTrainer(
        model, optimizer_params={"lr": 1e-2}, sparse_optimizer_fn="rowwise_adagrad", n_epoch=3,
        model_path=tmp_path, progress=False, plot=False,
    )  # fmt: skip
    trainer.fit(loader)
    assert trainer.evaluate(model, loader)["auc"] > 0.9
