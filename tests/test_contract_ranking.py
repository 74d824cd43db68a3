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
    "DCN": lambda: ranking.DCN(ALL, 2, MLP),
    "DCNv2": lambda: ranking.DCNv2(ALL, 2, MLP, "parallel", low_rank=3, num_experts=2),
    "EDCN": lambda: ranking.EDCN(ALL, 2, MLP),
    "AFM": lambda: ranking.AFM(ALL, D, 8),
    "FiBiNet": lambda: ranking.FiBiNet(ALL, MLP, 2, "field_interaction"),
    "DeepFFM": lambda: ranking.DeepFFM(ALL, EMBEDDED, D, MLP),
    "FatDeepFFM": lambda: ranking.FatDeepFFM(ALL, EMBEDDED, D, 2, MLP),
    "AutoInt": lambda: ranking.AutoInt(EMBEDDED, DENSE, 2, 2, 0.0, MLP),
    "xDeepFM": lambda: ranking.xDeepFM(ALL, (4, 4), MLP),
    "NFM": lambda: ranking.NFM(ALL, MLP),
    "PNN": lambda: ranking.PNN(ALL, MLP, "both"),
    "FinalMLP": lambda: ranking.FinalMLP(ALL, MLP, {"dims": [8, 8]}, fs1_context=["user"], num_heads=2),
    "DLRM": lambda: ranking.DLRM(DENSE, EMBEDDED, {"dims": [8, D]}, MLP),
}

# Variants whose code paths the registry defaults do not reach.
VARIANTS: dict[str, Callable[[], nn.Module]] = {
    "DCNv2-stacked-full": lambda: ranking.DCNv2(ALL, 2, MLP, "stacked", use_low_rank_mixture=False),
    "DCNv2-parallel-lowrank": lambda: ranking.DCNv2(ALL, 2, MLP, cross_type="low_rank", low_rank=3),
    "DCNv2-crossnet-only": lambda: ranking.DCNv2(ALL, 2, None, "crossnet_only", low_rank=3, num_experts=2),
    "EDCN-concat-noreg": lambda: ranking.EDCN(ALL, 2, MLP, "concatenation", use_regulation_module=False),
    "EDCN-attention": lambda: ranking.EDCN(ALL, 2, MLP, "attention_pooling", temperature=0.5),
    "EDCN-add": lambda: ranking.EDCN(ALL, 1, MLP, "pointwise_addition"),
    "FiBiNet-all": lambda: ranking.FiBiNet(ALL, MLP, 2, "field_all"),
    "FiBiNet-each": lambda: ranking.FiBiNet(ALL, MLP, 2, "field_each"),
    "AutoInt-plain": lambda: ranking.AutoInt(EMBEDDED, DENSE, 1, 2, attention_dim=8),
    "PNN-inner": lambda: ranking.PNN(ALL, MLP, "inner"),
    "PNN-outer": lambda: ranking.PNN(ALL, MLP, "outer"),
    "FinalMLP-nofs": lambda: ranking.FinalMLP(ALL, MLP, MLP, use_fs=False),
    "DLRM-cat": lambda: ranking.DLRM(DENSE, EMBEDDED, {"dims": [D]}, MLP, interaction="cat"),
    "DLRM-nodense": lambda: ranking.DLRM([], EMBEDDED, None, MLP),
    "xDeepFM-nosplit": lambda: ranking.xDeepFM(ALL, (3, 2), MLP, split_half=False),
}

# Mixed embedding widths: a model must either work or refuse at construction naming the features.
MIXED = [
    SparseFeature("user", vocab_size=30, embed_dim=4),
    SparseFeature("item", vocab_size=40, embed_dim=6),
    SparseFeature("cat", vocab_size=8, embed_dim=4),
    *DENSE,
]
MIXED_FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "WideDeep": lambda: ranking.WideDeep(MIXED[:3], MIXED, MLP),
    "DeepFM": lambda: ranking.DeepFM(MIXED, MIXED, MLP),
    "DCN": lambda: ranking.DCN(MIXED, 2, MLP),
    "DCNv2": lambda: ranking.DCNv2(MIXED, 2, MLP, low_rank=3),
    "EDCN": lambda: ranking.EDCN(MIXED, 2, MLP),
    "AFM": lambda: ranking.AFM(MIXED),
    "FiBiNet": lambda: ranking.FiBiNet(MIXED, MLP),
    "DeepFFM": lambda: ranking.DeepFFM(MIXED, MIXED[:3], None, MLP),
    "FatDeepFFM": lambda: ranking.FatDeepFFM(MIXED, MIXED[:3], None, 2, MLP),
    "AutoInt": lambda: ranking.AutoInt(MIXED[:3], DENSE),
    "xDeepFM": lambda: ranking.xDeepFM(MIXED, (4, 4), MLP),
    "NFM": lambda: ranking.NFM(MIXED, MLP),
    "PNN": lambda: ranking.PNN(MIXED, MLP),
    "FinalMLP": lambda: ranking.FinalMLP(MIXED, MLP, MLP),
    "DLRM": lambda: ranking.DLRM(DENSE, MIXED[:3], {"dims": [4]}, MLP),
}


# Behaviour-sequence models need history/target feature pairs: tests/test_contract_seq_ranking.py
# covers exactly ranking.SEQUENCE_MODELS, this file every other registered model.
FEATURE_MODELS = sorted(set(ranking.MODELS) - set(ranking.SEQUENCE_MODELS))


def test_every_registered_model_has_a_factory() -> None:
    assert set(FACTORIES) == set(FEATURE_MODELS)
    assert set(MIXED_FACTORIES) == set(FEATURE_MODELS)
    assert set(FEATURE_MODELS) | set(ranking.SEQUENCE_MODELS) == set(ranking.MODELS)


@pytest.mark.parametrize("name", FEATURE_MODELS)
def test_contract(name: str) -> None:
    batch = synthetic_batch(ALL, 64, seed=1)
    learnable = synthetic_batch(ALL, 256, seed=2)
    model = check_model_contract(
        FACTORIES[name], batch, BinaryCrossEntropy(), learnable=learnable, sequence_columns=["hist_item"]
    )
    assert isinstance(model, ranking.MODELS[name])
    assert {f.name for f in model.features} >= {"user", "item"}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_contract(name: str) -> None:
    batch = synthetic_batch(ALL, 64, seed=1)
    learnable = synthetic_batch(ALL, 256, seed=2)
    check_model_contract(
        VARIANTS[name], batch, BinaryCrossEntropy(), learnable=learnable, sequence_columns=["hist_item"]
    )


@pytest.mark.parametrize("name", FEATURE_MODELS)
def test_mixed_embedding_widths_work_or_refuse_clearly(name: str) -> None:
    try:
        model = MIXED_FACTORIES[name]()
    except ValueError as err:
        # The refusal names each feature with its width.
        assert all(s in str(err) for s in ("user=4", "item=6", "cat=4")), str(err)
        return
    batch = synthetic_batch(MIXED, 8, seed=0)
    model.eval()
    assert model(batch).shape == (8,)


def test_bad_choices_are_refused() -> None:
    with pytest.raises(ValueError, match="model_structure"):
        ranking.DCNv2(ALL, 2, MLP, "sideways")
    with pytest.raises(ValueError, match="bilinear_type"):
        ranking.FiBiNet(ALL, MLP, 2, "field_everything")
    with pytest.raises(ValueError, match="bridge_type"):
        ranking.EDCN(ALL, 2, MLP, "glue")
    with pytest.raises(ValueError, match="product_type"):
        ranking.PNN(ALL, MLP, "cross")
    with pytest.raises(ValueError, match="bottom MLP must end"):
        ranking.DLRM(DENSE, EMBEDDED, {"dims": [8]}, MLP)
    with pytest.raises(KeyError, match="fs1_context"):
        ranking.FinalMLP(ALL, MLP, MLP, fs1_context=["nope"])


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
