"""Every preset takes the same options one way: Torch-RecHub's positional order, keywords, or one
``TrainOptions`` object."""

import pytest
import torch

from recforge.features import SequenceFeature, SparseFeature
from recforge.models.matching import SASRec, YoutubeDNN
from recforge.models.multi_task import MMOE
from recforge.models.ranking import WideDeep
from recforge.objectives import BinaryCrossEntropy
from recforge.trainers import CTRTrainer, MatchTrainer, MTLTrainer, SeqTrainer, Trainer, TrainOptions

SPARSE = [SparseFeature(f"c{i}", 10, embed_dim=4) for i in range(2)]
ITEM = SparseFeature("item_id", 20, embed_dim=8)
HIST = SequenceFeature("hist_item_id", 20, embed_dim=8, shared_with="item_id", max_len=5)


def ranking():
    return WideDeep(SPARSE, SPARSE, mlp_params={"dims": [8]})


def test_ctr_trainer_binds_torch_rechub_positional_order(tmp_path):
    t = CTRTrainer(
        ranking(), torch.optim.SGD, {"lr": 0.5}, None, None, None, 4, 2, "cpu", None, True, tmp_path
    )
    assert t.options.n_epoch == 4 and t.options.earlystop_patience == 2
    assert t.options.model_path == tmp_path and t.run_dir == tmp_path
    assert isinstance(t.optimizer.optimizers[0], torch.optim.SGD)
    assert t.optimizer.lr == 0.5


def test_options_object_and_keywords_agree(tmp_path):
    opts = TrainOptions(n_epoch=3, model_path=tmp_path, optimizer_params={"lr": 0.01})
    a = CTRTrainer(ranking(), options=opts)
    b = CTRTrainer(ranking(), n_epoch=3, model_path=tmp_path, optimizer_params={"lr": 0.01})
    assert a.options == b.options
    c = CTRTrainer(ranking(), options=opts, n_epoch=7)  # a keyword overrides the object's field
    assert c.options.n_epoch == 7 and c.options.model_path == tmp_path


def test_unknown_and_duplicate_arguments_name_themselves():
    with pytest.raises(TypeError, match=r"unexpected argument\(s\) \['n_epochs'\]"):
        CTRTrainer(ranking(), n_epochs=3)
    with pytest.raises(TypeError, match="multiple values for argument 'optimizer_fn'"):
        CTRTrainer(ranking(), torch.optim.SGD, optimizer_fn=torch.optim.Adam)
    with pytest.raises(TypeError, match="at most 11 positional"):
        CTRTrainer(ranking(), *([None] * 12))


def test_match_trainer_mode_and_options_positionally(tmp_path):
    model = YoutubeDNN([HIST], [ITEM])
    t = MatchTrainer(model, 1, False, None, False, None, torch.optim.Adam, {"lr": 0.1}, negatives="in_batch")
    assert int(t.mode) == 1 and t.optimizer.lr == 0.1
    t = MatchTrainer(model, mode=0, in_batch_neg=True, model_path=tmp_path)
    assert t.negatives.value == "in_batch"
    with pytest.raises(ValueError, match="hard_negative"):
        MatchTrainer(model, hard_negative=True)


def test_mtl_trainer_keeps_its_interleaved_order_and_gains_distributed(tmp_path):
    model = MMOE(
        SPARSE,
        task_types=["classification", "classification"],
        n_expert=2,
        expert_params={"dims": [8]},
        tower_params_list=[{"dims": [4]}] * 2,
    )
    t = MTLTrainer(
        model,
        ["classification", "classification"],
        torch.optim.Adam,
        {"lr": 0.01},
        None,
        None,
        None,
        {"method": "uwl"},
        5,
        1,
        3,
        "cpu",
        None,
        tmp_path,
        distributed=False,
    )
    assert t.options.n_epoch == 5 and t.options.earlystop_patience == 3
    assert t.stopper.metric == "task1_auc" and not t.distributed
    assert t.weighting.loss_parameters()  # uwl's log-variances are trained


def test_seq_and_base_trainers_take_the_same_options(tmp_path):
    seq = SeqTrainer(SASRec([HIST], [ITEM], max_len=5), num_items=20, n_epoch=2, model_path=tmp_path)
    base = Trainer(ranking(), objective=BinaryCrossEntropy(), n_epoch=2, model_path=tmp_path)
    assert seq.options == base.options


def test_options_validate_their_values():
    with pytest.raises(ValueError, match="n_epoch must be an int >= 1"):
        TrainOptions(n_epoch=0)
    with pytest.raises(ValueError, match="torchrun DDP"):
        TrainOptions(gpus=[0, 1])
