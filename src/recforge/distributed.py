"""Data-parallel training through PyTorch's own engine: ``torchrun`` + ``DistributedDataParallel``.

Nothing here is home-made distribution: processes are started by ``torch.distributed.run``
(``torchrun``), gradients are averaged by DDP, and results are collected with ``all_gather``.
This module adds the recforge-specific glue:

* ``init_from_env`` joins the process group torchrun describes (``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``): ``gloo`` on CPU, ``nccl`` on CUDA.
* ``BatchLoader.for_rank`` / ``block_for_rank`` give each rank its rows: equal, reshuffled every
  epoch (``set_epoch``) for training; contiguous and complete for evaluation, so gathering the
  ranks' outputs in rank order restores the single-process order exactly.
* ``gather_arrays`` concatenates per-rank numpy arrays of different lengths on every rank.
* ``launch`` re-runs a command line under ``torch.distributed.run`` (``recforge train --nproc N``).
* ``ModelParallel`` is what a model that distributes itself (TorchRec's sharded embeddings,
  ``recforge.torchrec.sharding.ShardedModel``) offers the Trainer instead of being wrapped in DDP.

``recforge.trainers.Trainer`` uses these when a process group is initialised (or with
``distributed=True``); see docs/distributed.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from recforge.choices import Choice


class Backend(Choice):
    """Collective-communication backend: ``gloo`` (CPU) or ``nccl`` (CUDA)."""

    GLOO = "gloo"
    NCCL = "nccl"


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int
    world_size: int
    local_rank: int
    backend: Backend


_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launched_by_torchrun() -> bool:
    """True when the torchrun environment variables are set."""
    return all(k in os.environ for k in _ENV)


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_distributed() -> bool:
    """A process group with more than one rank is active."""
    return is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    """Rank 0 (or a single process): the one that logs, shows progress and writes files."""
    return rank() == 0


def init_from_env(backend: Backend | str | None = None) -> DistInfo:
    """Join the process group described by torchrun's environment variables (idempotent).

    Args:
        backend: ``gloo``/``nccl``; by default ``nccl`` when CUDA is available, else ``gloo``.

    Raises:
        RuntimeError: the variables are missing (the script was not started by torchrun).
    """
    if not launched_by_torchrun():
        missing = [k for k in _ENV if k not in os.environ]
        raise RuntimeError(
            f"distributed training needs torchrun's environment variables; missing {missing}. "
            "Start with `torchrun --nproc_per_node N ...` or `recforge train CONFIG --nproc N`."
        )
    chosen = (
        Backend.parse(backend)
        if backend is not None
        else (Backend.NCCL if torch.cuda.is_available() else Backend.GLOO)
    )
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if chosen is Backend.NCCL:
        torch.cuda.set_device(local_rank)
    if not is_initialized():
        dist.init_process_group(backend=chosen.value)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, Backend.parse(dist.get_backend()))


def device_for(device: str | torch.device) -> torch.device:
    """The device this rank should use: a bare ``cuda`` becomes ``cuda:LOCAL_RANK``."""
    d = torch.device(device)
    if d.type == "cuda" and d.index is None and is_initialized():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return d


@runtime_checkable
class ModelParallel(Protocol):
    """A model split over the ranks by itself (e.g. sharded embedding tables). The Trainer does not
    wrap it in DDP, optimizes only ``dense_parameters()`` (the rest is updated in backward), feeds
    every rank the whole evaluation set (its forward is a collective), and saves and restores it
    through the unsharded state dict."""

    def dense_parameters(self) -> list[Tensor]:
        """Parameters for the caller's optimizer."""
        ...

    def unsharded_state_dict(self) -> dict[str, Tensor] | None:
        """A collective: the full, unsharded weights on rank 0, ``None`` on the other ranks."""
        ...

    def load_unsharded_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Load full weights (the same ``state`` on every rank)."""
        ...


def wrap_model(model: nn.Module, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(model)``: ranks start from rank 0's weights, gradients are averaged."""
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def gather_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Concatenate each named array over ranks (in rank order) on every rank; rows may differ
    per rank. Without a process group the arrays are returned unchanged."""
    if not is_distributed():
        return dict(arrays)
    local = {k: np.asarray(v) for k, v in arrays.items()}
    gathered: list[dict[str, np.ndarray] | None] = [None] * world_size()
    dist.all_gather_object(gathered, local)
    out: dict[str, np.ndarray] = {}
    for k in local:
        out[k] = np.concatenate([g[k] for g in gathered if g is not None])
    return out


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Sum floats over ranks (float64, on CPU through gloo or on the rank's GPU through nccl)."""
    if not is_distributed():
        return [float(v) for v in values]
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_module(model: nn.Module, src: int = 0) -> None:
    """Copy ``src``'s parameters and buffers to every rank (e.g. after rank 0 loads a checkpoint)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for t in model.state_dict().values():
            dist.broadcast(t, src)


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def destroy() -> None:
    """Leave the process group (call at the end of a torchrun worker)."""
    if is_initialized():
        dist.destroy_process_group()


def launch_command(argv: Sequence[str], nproc: int, *, module: str = "recforge") -> list[str]:
    """The ``torch.distributed.run`` command that runs ``python -m module *argv`` on ``nproc`` ranks."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc must be a positive int, got {nproc!r}")
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        module,
        *argv,
    ]


def launch(argv: Sequence[str], nproc: int, *, module: str = "recforge") -> int:
    """Re-run ``python -m module *argv`` as ``nproc`` torchrun workers on this machine; returns
    the exit code. ``argv`` must not contain the ``--nproc`` flag itself (the workers would launch
    again); a call from inside a torchrun worker is refused for the same reason."""
    if launched_by_torchrun():
        raise RuntimeError("launch() called inside a torchrun worker; drop --nproc from the worker's argv")
    if nproc == 1:
        return subprocess.call([sys.executable, "-m", module, *argv])
    return subprocess.call(launch_command(argv, nproc, module=module))
