"""Contract test over every ranking model in ``recforge.models.ranking.MODELS`` (no skip list)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from contract import check_model_contract, synthetic_batch
from recforge.features import DenseFeature, SequenceFeature, SparseFeature
from recforge.models import ranking
from recforge.models.defaults import default_model
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

# Small sizes over the registry defaults (``recforge.models.defaults``); a model without an entry
# here is built from its default as it is.
SMALL: dict[str, dict[str, object]] = {
    "WideDeep": {"mlp_params": MLP},
    "DeepFM": {"mlp_params": MLP},
    "DCN": {"n_cross_layers": 2, "mlp_params": MLP},
    "DCNv2": {"n_cross_layers": 2, "mlp_params": MLP, "low_rank": 3, "num_experts": 2},
    "EDCN": {"n_cross_layers": 2, "mlp_params": MLP},
    "AFM": {"t": 8},
    "FiBiNet": {"mlp_params": MLP, "reduction_ratio": 2},
    "DeepFFM": {"mlp_params": MLP},
    "FatDeepFFM": {"mlp_params": MLP},
    "xDeepFM": {"cin_layer_sizes": (4, 4), "mlp_params": MLP},
    "NFM": {"mlp_params": MLP},
    "PNN": {"mlp_params": MLP},
    "FinalMLP": {
        "mlp1_params": MLP,
        "mlp2_params": {"dims": [8, 8]},
        "fs1_context": ["user"],
        "num_heads": 2,
    },
    "DLRM": {"bottom_params": {"dims": [8, D]}, "top_params": MLP},
}


def factory(name: str, features: list) -> Callable[[], nn.Module]:
    return lambda: default_model(name, features, **SMALL.get(name, {}))


# Variants whose code paths the registry defaults do not reach.
VARIANTS: dict[str, Callable[[], nn.Module]] = {
    "DCNv2-stacked-full": lambda: ranking.DCNv2(
        ALL, n_cross_layers=2, mlp_params=MLP, model_structure="stacked", use_low_rank_mixture=False
    ),
    "DCNv2-parallel-lowrank": lambda: ranking.DCNv2(
        ALL, n_cross_layers=2, mlp_params=MLP, cross_type="low_rank", low_rank=3
    ),
    "DCNv2-crossnet-only": lambda: ranking.DCNv2(
        ALL, n_cross_layers=2, model_structure="crossnet_only", low_rank=3, num_experts=2
    ),
    "EDCN-concat-noreg": lambda: ranking.EDCN(
        ALL, n_cross_layers=2, mlp_params=MLP, bridge_type="concatenation", use_regulation_module=False
    ),
    "EDCN-attention": lambda: ranking.EDCN(
        ALL, n_cross_layers=2, mlp_params=MLP, bridge_type="attention_pooling", temperature=0.5
    ),
    "EDCN-add": lambda: ranking.EDCN(ALL, n_cross_layers=1, mlp_params=MLP, bridge_type="pointwise_addition"),
    "FiBiNet-all": lambda: ranking.FiBiNet(ALL, mlp_params=MLP, reduction_ratio=2, bilinear_type="field_all"),
    "FiBiNet-each": lambda: ranking.FiBiNet(
        ALL, mlp_params=MLP, reduction_ratio=2, bilinear_type="field_each"
    ),
    "AutoInt+": lambda: ranking.AutoInt(
        EMBEDDED, DENSE, num_layers=1, num_heads=2, attention_dim=8, mlp_params=MLP
    ),
    "PNN-outer": lambda: ranking.PNN(ALL, mlp_params=MLP, product_type="outer"),
    "PNN-both": lambda: ranking.PNN(ALL, mlp_params=MLP, product_type="both"),
    "FinalMLP-nofs": lambda: ranking.FinalMLP(ALL, mlp1_params=MLP, mlp2_params=MLP, use_fs=False),
    "DLRM-cat": lambda: ranking.DLRM(
        DENSE, EMBEDDED, bottom_params={"dims": [D]}, top_params=MLP, interaction="cat"
    ),
    "DLRM-nodense": lambda: ranking.DLRM([], EMBEDDED, top_params=MLP),
    "xDeepFM-nosplit": lambda: ranking.xDeepFM(ALL, cin_layer_sizes=(3, 2), mlp_params=MLP, split_half=False),
}

# Mixed embedding widths: a model must either work or refuse at construction naming the features.
MIXED = [
    SparseFeature("user", vocab_size=30, embed_dim=4),
    SparseFeature("item", vocab_size=40, embed_dim=6),
    SparseFeature("cat", vocab_size=8, embed_dim=4),
    *DENSE,
]


# Behaviour-sequence models need history/target feature pairs: tests/test_contract_seq_ranking.py
# covers exactly ranking.SEQUENCE_MODELS, this file every other registered model.
FEATURE_MODELS = sorted(set(ranking.MODELS) - set(ranking.SEQUENCE_MODELS))
FACTORIES = {name: factory(name, ALL) for name in FEATURE_MODELS}  # tests/test_export.py, test_compile.py


def test_the_small_sizes_name_registered_models() -> None:
    assert set(SMALL) <= set(FEATURE_MODELS)
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
        model = factory(name, MIXED)()
    except ValueError as err:
        # The refusal names each feature with its width.
        assert all(s in str(err) for s in ("user=4", "item=6", "cat=4")), str(err)
        return
    batch = synthetic_batch(MIXED, 8, seed=0)
    model.eval()
    assert model(batch).shape == (8,)


def test_bad_choices_are_refused() -> None:
    with pytest.raises(ValueError, match="model_structure"):
        ranking.DCNv2(ALL, model_structure="sideways")
    with pytest.raises(ValueError, match="bilinear_type"):
        ranking.FiBiNet(ALL, bilinear_type="field_everything")
    with pytest.raises(ValueError, match="bridge_type"):
        ranking.EDCN(ALL, bridge_type="glue")
    with pytest.raises(ValueError, match="product_type"):
        ranking.PNN(ALL, product_type="cross")
    with pytest.raises(ValueError, match="bottom MLP must end"):
        ranking.DLRM(DENSE, EMBEDDED, bottom_params={"dims": [8]})
    with pytest.raises(KeyError, match="fs1_context"):
        ranking.FinalMLP(ALL, fs1_context=["nope"])


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
