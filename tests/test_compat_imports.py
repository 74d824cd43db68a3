"""Torch-RecHub 0.9.0's public import paths (as its examples, tests and docs write them) resolve
with ``torch_rechub`` replaced by ``recforge``, and any integer type is accepted where an int is."""

import importlib

import numpy as np
import pytest
import torch

from recforge.features import DenseFeature, SequenceFeature, SparseFeature
from recforge.ints import as_int, is_int
from recforge.layers import MLPConfig
from recforge.models.ranking import DCN

# module -> names imported from it by Torch-RecHub's examples, tests and docs
PATHS = {
    "recforge.basic.features": ["DenseFeature", "SparseFeature", "SequenceFeature"],
    "recforge.basic.metric": ["topk_metrics", "auc_score", "gauc_score", "log_loss", "ndcg_score", "hit_score",
                              "mrr_score", "recall_score", "precision_score"],
    "recforge.basic.callback": ["EarlyStopper"],
    "recforge.basic.loss_func": ["BPRLoss", "HingeLoss", "NCELoss", "RegularizationLoss"],
    "recforge.basic.layers": ["EmbeddingLayer", "FM", "LR", "MLP", "HSTULayer"],
    "recforge.basic.tracking": ["WandbLogger", "SwanLabLogger", "TensorBoardXLogger"],
    "recforge.models.ranking": ["AFM", "AutoInt", "BST", "DCN", "DCNv2", "DIEN", "DIN", "DeepFFM", "DeepFM", "EDCN",
                                "FatDeepFFM", "FiBiNet", "WideDeep"],
    "recforge.models.matching": ["ComirecDR", "ComirecSA", "DSSM", "FaceBookDSSM", "GRU4Rec", "MIND", "NARM", "SASRec",
                                 "SINE", "STAMP", "YoutubeDNN", "YoutubeSBC"],
    "recforge.models.multi_task": ["AITM", "ESMM", "MMOE", "PLE", "SharedBottom"],
    "recforge.models.generative": ["HSTUModel", "HLLMModel"],
    "recforge.models.generative.hstu": ["HSTUModel"],
    "recforge.models.generative.hllm": ["HLLMModel"],
    "recforge.models": ["ranking", "matching", "multi_task"],
    "recforge.trainers": ["CTRTrainer", "MatchTrainer", "MTLTrainer", "SeqTrainer"],
    "recforge.trainers.ctr_trainer": ["CTRTrainer"],
    "recforge.trainers.match_trainer": ["MatchTrainer"],
    "recforge.trainers.mtl_trainer": ["MTLTrainer"],
    "recforge.trainers.seq_trainer": ["SeqTrainer"],
    "recforge.utils": ["DataGenerator", "quantize_model"],
    "recforge.utils.data": ["DataGenerator", "MatchDataGenerator", "SequenceDataGenerator", "TorchDataset",
                            "PredictDataset", "df_to_dict", "pad_sequences", "generate_seq_feature",
                            "create_seq_features", "array_replace_with_dict", "get_auto_embedding_dim",
                            "get_loss_func", "get_metric_func"],
    "recforge.utils.match": ["gen_model_input", "generate_seq_feature_match", "negative_sample", "Annoy", "Faiss",
                             "Milvus", "inbatch_negative_sampling", "gather_inbatch_logits"],
    "recforge.utils.hstu_utils": ["VocabMask"],
    "recforge.utils.onnx_export": ["ONNXExporter"],
    "recforge.utils.quantization": ["quantize_model"],
    "recforge.utils.model_utils": ["generate_dummy_input_dict"],
    "recforge.utils.visualization": ["visualize_model", "display_graph"],
}  # fmt: skip


@pytest.mark.parametrize("module", sorted(PATHS))
def test_torch_rechub_import_paths_resolve(module):
    for name in PATHS[module]:
        # what `from module import name` does: import the module, then take the name from it
        assert hasattr(importlib.import_module(module), name), f"{module} has no {name}"


def test_same_objects_not_copies():
    from recforge import features, metrics, trainers
    from recforge.basic import features as basic_features
    from recforge.basic import metric
    from recforge.trainers import seq_trainer

    assert basic_features.SparseFeature is features.SparseFeature
    assert metric.topk_metrics is metrics.topk_metrics and metric.auc_score is metrics.auc_score
    assert seq_trainer.SeqTrainer is trainers.SeqTrainer


def test_utils_files_stays_light():
    """``recforge.utils`` resolves its Torch-RecHub names lazily: the package import loads nothing."""
    import recforge.utils

    assert "DataGenerator" not in vars(recforge.utils)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        recforge.utils.nope  # noqa: B018


def test_unavailable_helpers_say_what_to_use():
    from recforge.basic.tracking import WandbLogger
    from recforge.utils.visualization import visualize_model

    with pytest.raises(NotImplementedError, match=r"metrics\.jsonl"):
        WandbLogger(project="x")
    with pytest.raises(NotImplementedError, match="print\\(model\\)"):
        visualize_model(None)


# -- any integer type -----------------------------------------------------------------------------
INTS = [
    8,
    np.int64(8),
    np.int32(8),
    np.uint16(8),
    np.array(8),
    torch.tensor(8),
    torch.tensor(8, dtype=torch.int32),
]
NOT_INTS = [
    8.0,
    np.float64(8),
    torch.tensor(8.0),
    True,
    np.bool_(True),
    torch.tensor(True),
    "8",
    np.array([8]),
    torch.tensor([8]),
    None,
]


@pytest.mark.parametrize("value", INTS, ids=repr)
def test_any_integer_type_is_an_int(value):
    assert is_int(value) and as_int(value, "x") == 8 and type(as_int(value, "x")) is int
    f = SparseFeature("a", vocab_size=value, embed_dim=value)
    assert f.vocab_size == 8 and type(f.vocab_size) is int and type(f.embed_dim) is int
    s = SequenceFeature("h", vocab_size=value, max_len=value, padding_idx=np.int64(0))
    assert (s.vocab_size, s.max_len, s.padding_idx) == (8, 8, 0)
    assert DenseFeature("d", embed_dim=value).embed_dim == 8
    assert MLPConfig(dims=[value, 4]).dims == (8, 4)
    sparse = [
        SparseFeature("a", vocab_size=value, embed_dim=4),
        SparseFeature("b", vocab_size=value, embed_dim=4),
    ]
    assert DCN(features=sparse, n_cross_layers=value, mlp_params={"dims": [value]}).mlp is not None


@pytest.mark.parametrize("value", NOT_INTS, ids=repr)
def test_floats_and_bools_are_refused_naming_the_argument(value):
    assert not is_int(value)
    with pytest.raises(ValueError, match="feature 'a': vocab_size must be a positive int"):
        SparseFeature("a", vocab_size=value)


def test_the_error_suggests_the_int_for_an_integral_float():
    with pytest.raises(ValueError, match=r"got 8.0 \(write 8\)"):
        SparseFeature("a", vocab_size=8.0)
    with pytest.raises(ValueError, match=r"MLP dims\[0\] must be a positive int"):
        MLPConfig(dims=[2.5])
