"""Where a Trainer's model and data live, chosen once by ``placement_for``; the loop calls the
placement's methods and never asks which one it has.

* ``SingleProcess``: one process, the model on ``device``.
* ``DataParallel``: ranks of a torchrun process group (``recforge.distributed``). Training runs
  through ``DistributedDataParallel``, ``BatchLoader`` s are sharded per rank (``for_rank`` for
  training, ``block_for_rank`` for evaluation), evaluation outputs are gathered over ranks, and
  only rank 0 writes files.
* ``ModelParallel``: a model that splits itself over the ranks (``recforge.distributed
  .ModelParallel``, e.g. ``recforge.torchrec.sharding.ShardedModel``). It is not wrapped in DDP, the
  optimizer gets its ``dense_parameters()``, every rank evaluates the whole validation set (its
  forward is a collective), and checkpoints hold its unsharded state dict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from recforge import distributed as dist_utils
from recforge.data.dataset import BatchLoader
from recforge.layers.embedding import check_ids
from recforge.trainers.options import TrainOptions


class Placement:
    """One process; the base of the distributed placements.

    Args:
        device: where batches (and, unless the model placed itself, the model) go.
    """

    distributed = False  # a process group of more than one rank is used
    model_parallel = False  # the model splits itself over the ranks

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.is_main = True  # the rank that logs, shows progress and writes files

    def place(self, model: nn.Module) -> nn.Module:
        """The model on this placement's device: what evaluation and checkpoints use."""
        return model.to(self.device)

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module training steps call (the placed model itself unless DDP wraps it)."""
        return model

    def dense_parameters(self, model: nn.Module) -> list[Tensor] | None:
        """Parameters for the loop's optimizer; ``None``: all of the model's."""
        del model
        return None

    def regularization_params(self, params: Mapping[str, float] | None) -> Mapping[str, float] | None:
        """The L1/L2 penalties the loop applies."""
        return params

    def check_ids(self, model: nn.Module, loader: Iterable[object]) -> None:
        """Check the training columns' ids against the model's tables once, not per lookup."""
        if isinstance(loader, BatchLoader):
            check_ids(model, loader.dataset.columns)

    def train_loader(self, loader: Iterable[object]) -> Iterable[object]:
        """This rank's share of the training data."""
        return loader

    def eval_loader(self, loader: Iterable[object]) -> Iterable[object]:
        """This rank's share of an evaluation set (``gather`` restores the whole, in order)."""
        return loader

    def gather(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per-rank evaluation arrays concatenated over ranks in rank order."""
        return dict(arrays)

    def reduce_train_loss(self, loss: float, n_seen: int) -> tuple[float, int]:
        """The mean training loss and sample count over every rank."""
        return loss, n_seen

    def model_state(self, model: nn.Module) -> dict[str, Tensor] | None:
        """The weights for checkpoints on the rank that writes files, ``None`` on the others (a
        collective where the model is split: every rank calls it)."""
        return model.state_dict() if self.is_main else None

    def plain_state(self, model: nn.Module) -> dict[str, Tensor] | None:
        """The model's own ``state_dict`` for Torch-RecHub's ``model.pth``, on the writing rank;
        ``None`` on the others or where it is not a plain state dict."""
        return self.model_state(model)

    def load_best(self, model: nn.Module, path: Path) -> None:
        """Load the best checkpoint's weights (written by the main rank) into ``model``."""
        if self.is_main:
            best = torch.load(path, map_location=self.device, weights_only=True)
            model.load_state_dict(best["model"])

    def broadcast(self, model: nn.Module) -> None:
        """Every rank ends with the main rank's weights."""
        del model


class SingleProcess(Placement):
    """One process, the model on ``device``."""


class _OverRanks(Placement):
    """What both distributed placements share: rank 0 writes files, each rank trains on its
    share of the training data, and the training loss is averaged over ranks."""

    def __init__(self, device: torch.device) -> None:
        super().__init__(device)
        self.is_main = dist_utils.is_main()

    def train_loader(self, loader: Iterable[object]) -> Iterable[object]:
        if isinstance(loader, BatchLoader):
            return loader.for_rank(dist_utils.rank(), dist_utils.world_size())
        return loader

    def reduce_train_loss(self, loss: float, n_seen: int) -> tuple[float, int]:
        if not dist_utils.is_distributed():  # a group of one rank: nothing to average
            return loss, n_seen
        loss_sum, n_total = dist_utils.all_reduce_sum([loss * n_seen, n_seen])
        return loss_sum / n_total, int(n_total)


class DataParallel(_OverRanks):
    """DDP over the ranks of the initialised process group."""

    distributed = True

    def wrap(self, model: nn.Module) -> nn.Module:
        # DDP averages gradients in backward; evaluation and checkpoints use the bare model.
        return dist_utils.wrap_model(model, self.device)

    def eval_loader(self, loader: Iterable[object]) -> Iterable[object]:
        if isinstance(loader, BatchLoader):
            return loader.block_for_rank(dist_utils.rank(), dist_utils.world_size())
        return loader

    def gather(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dist_utils.gather_arrays(arrays)

    def broadcast(self, model: nn.Module) -> None:
        dist_utils.broadcast_module(model)


class ModelParallel(_OverRanks):
    """A model split over the ranks by itself: not wrapped, trained on per-rank shards of the
    training data, evaluated on the whole set by every rank (its forward is a collective), saved
    through its unsharded state dict.

    Args:
        device: where batches go (the model placed its shards itself).
        distributed: the process group has more than one rank.
    """

    model_parallel = True

    def __init__(self, device: torch.device, *, distributed: bool) -> None:
        super().__init__(device)
        self.distributed = distributed

    def place(self, model: nn.Module) -> nn.Module:
        return model  # its shards already live on their ranks' devices

    def dense_parameters(self, model: nn.Module) -> list[Tensor] | None:
        assert isinstance(model, dist_utils.ModelParallel)
        return model.dense_parameters()  # the embedding optimizer is applied in backward

    def regularization_params(self, params: Mapping[str, float] | None) -> Mapping[str, float] | None:
        return None  # refused (when not all zero) by ``placement_for``

    def check_ids(self, model: nn.Module, loader: Iterable[object]) -> None:
        del model, loader  # the tables live on other ranks

    def model_state(self, model: nn.Module) -> dict[str, Tensor] | None:
        assert isinstance(model, dist_utils.ModelParallel)
        return model.unsharded_state_dict()

    def plain_state(self, model: nn.Module) -> dict[str, Tensor] | None:
        del model
        return None  # its own state dict holds shards

    def load_best(self, model: nn.Module, path: Path) -> None:
        assert isinstance(model, dist_utils.ModelParallel)
        dist_utils.barrier()  # rank 0 has written best.pt; every rank loads its shards from it
        best = torch.load(path, map_location="cpu", weights_only=True)
        model.load_unsharded_state_dict(best["model"])


def placement_for(model: nn.Module, opts: TrainOptions) -> Placement:
    """The placement ``opts.distributed`` and ``model`` ask for (joining torchrun's process group
    when ``distributed=True``); refuses what a model-parallel model does not support."""
    if opts.distributed and not dist_utils.is_initialized():
        dist_utils.init_from_env()
    distributed = opts.distributed is not False and dist_utils.is_distributed()
    # Torch-RecHub's ``gpus`` only chose DataParallel devices; the device is ``device``
    device = dist_utils.device_for(opts.device) if distributed else torch.device(opts.device)
    if not isinstance(model, dist_utils.ModelParallel):
        return DataParallel(device) if distributed else SingleProcess(device)
    if opts.distributed is False and dist_utils.is_distributed():
        raise ValueError("distributed=False, but the model is split over the process group's ranks")
    if opts.resume:
        raise ValueError(
            "resume=True is not supported for a model-parallel model: the state of its embedding "
            "optimizer (applied in backward) is not in the checkpoint"
        )
    if any((opts.regularization_params or {}).values()):
        raise ValueError(
            "regularization_params are not supported for a model-parallel model; "
            "use weight decay in optimizer_params"
        )
    return ModelParallel(device, distributed=distributed)


__all__ = ["DataParallel", "ModelParallel", "Placement", "SingleProcess", "placement_for"]
