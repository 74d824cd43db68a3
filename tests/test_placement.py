"""The Trainer's placement in one process: a plain model, and a stand-in for a model that splits
itself over the ranks (``recforge.distributed.ModelParallel``; the two-rank runs are in
test_distributed.py and test_torchrec_sharding.py, marked ``distributed``)."""

from collections.abc import Mapping

import pytest
import torch
from torch import Tensor

from recforge import distributed as rdist
from recforge.models.ranking import DeepFM
from recforge.trainers import CTRTrainer
from recforge.trainers.placement import ModelParallel, SingleProcess
from test_trainer import loaders, model


class SplitDeepFM(DeepFM):
    """DeepFM offering the ``ModelParallel`` interface (its "sharded" state is its own)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.loaded = 0

    def dense_parameters(self) -> list[Tensor]:
        return [p for n, p in self.named_parameters() if "embedding" not in n]

    def unsharded_state_dict(self) -> dict[str, Tensor] | None:
        return {k: v.clone() for k, v in self.state_dict().items()}

    def load_unsharded_state_dict(self, state: Mapping[str, Tensor]) -> None:
        self.loaded += 1
        self.load_state_dict(state)


def split_model() -> SplitDeepFM:
    plain = model()
    split = SplitDeepFM(plain.deep_features, plain.fm_features, mlp_params={"dims": [16], "dropout": 0.1})
    split.load_state_dict(plain.state_dict())
    return split


def test_a_plain_model_trains_in_one_process(tmp_path):
    t = CTRTrainer(model(), n_epoch=1, model_path=tmp_path, progress=False, plot=False)
    assert isinstance(t.placement, SingleProcess)
    assert not t.distributed and not t.model_parallel and t.is_main and t.train_model is t.model
    t.fit(*loaders())
    assert (tmp_path / "model.pth").exists()


def test_a_model_parallel_model_trains_its_dense_parameters_and_restores_the_unsharded_best(tmp_path):
    m = split_model()
    assert isinstance(m, rdist.ModelParallel)
    embeddings = [p.detach().clone() for n, p in m.named_parameters() if "embedding" in n]
    t = CTRTrainer(
        m, optimizer_params={"lr": 0.01}, n_epoch=2, model_path=tmp_path, progress=False, plot=False
    )
    assert isinstance(t.placement, ModelParallel)
    assert t.model_parallel and not t.distributed and t.is_main and t.train_model is m and t.model is m
    t.fit(*loaders())
    after = [p for n, p in m.named_parameters() if "embedding" in n]
    assert all(torch.equal(a, b) for a, b in zip(embeddings, after))  # its own optimizer's job
    assert m.loaded == 1 and (tmp_path / "best.pt").exists()
    assert not (tmp_path / "model.pth").exists()  # its own state dict is not a plain one


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"resume": True}, "resume=True"), ({"regularization_params": {"dense_l2": 1e-3}}, "regularization")],
)
def test_a_model_parallel_model_refuses(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        CTRTrainer(split_model(), model_path=tmp_path, **kwargs)
