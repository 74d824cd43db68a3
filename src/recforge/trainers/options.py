"""The options every trainer shares: one frozen dataclass instead of a signature re-declared per preset.

Presets accept Torch-RecHub's positional order for their arguments (each preset lists its
``ORDER``) and every option as a keyword, or a ready ``TrainOptions`` as ``options=``;
``TrainOptions.bind`` turns such a call into the options plus the preset's own arguments, and an
argument that is neither is a ``TypeError`` naming it and the valid ones.

```python
CTRTrainer(model, torch.optim.Adam, {"lr": 1e-3}, n_epoch=5)          # Torch-RecHub's call
CTRTrainer(model, options=TrainOptions(n_epoch=5, model_path="runs/x"))  # the same, as one object
```
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from recforge.precision import Precision

OptimizerFn = Callable[..., torch.optim.Optimizer]
SchedulerFn = Callable[..., Any]


@dataclass(frozen=True)
class TrainOptions:
    """What the one training loop needs besides the model and its objective.

    Attributes (Torch-RecHub's names first):
        optimizer_fn, optimizer_params: optimizer class and its arguments for dense parameters;
            sparse-gradient embeddings get ``sparse_optimizer_fn`` (``recforge.optim.LazyAdam``,
            SparseAdam's update, by default; a name such as ``"rowwise_adagrad"`` or
            ``"lazy_adam"`` picks one of ``recforge.optim``).
        regularization_params: ``{"embedding_l1", "embedding_l2", "dense_l1", "dense_l2"}`` penalties.
        scheduler_fn, scheduler_params: any ``torch.optim.lr_scheduler`` class, stepped per epoch
            (``ReduceLROnPlateau`` receives the monitored metric).
        n_epoch: maximum epochs. earlystop_patience: epochs without improvement before stopping.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``... gpus: Torch-RecHub's device list (one
            device at most: several GPUs train through torchrun DDP).
        model_path: the run directory (checkpoints, metrics log, learning curve).
        earlystop_metric: validation metric to monitor; ``None`` takes the preset's default.
        max_grad_norm: clip the dense gradients' global norm.
        resume: continue from ``model_path/checkpoint.pt`` when it exists (exact: RNG, optimizer,
            scheduler and shuffling order are restored).
        amp: bfloat16 autocast where the device multiplies bfloat16 natively (a CUDA GPU with
            bf16, a CPU reporting ``avx512_bf16``/AMX); float32 with a warning elsewhere.
        precision: ``"fp32"`` or ``"bf16"`` (``recforge.precision.Precision``); overrides ``amp``.
            bf16 autocasts the forward pass and the objective's matrix products; parameters,
            gradients, optimizer states, the loss and metrics stay float32.
        progress: tqdm bars. tensorboard: also log to TensorBoard under ``model_path/tb``.
        plot: write ``learning_curve.png`` (needs matplotlib).
        sparse_optimizer_fn: see ``optimizer_fn``.
        seed: seeds torch/numpy/random when the trainer is built.
        distributed: data-parallel over a torchrun process group (``recforge.distributed``):
            ``None`` turns it on when an initialised group has more than one rank; ``True`` also
            joins the group from torchrun's environment; ``False`` never.
    """

    optimizer_fn: OptimizerFn = torch.optim.Adam
    optimizer_params: Mapping[str, Any] | None = None
    regularization_params: Mapping[str, float] | None = None
    scheduler_fn: SchedulerFn | None = None
    scheduler_params: Mapping[str, Any] | None = None
    n_epoch: int = 10
    earlystop_patience: int = 10
    device: str | torch.device = "cpu"
    gpus: Sequence[int] | None = None
    model_path: str | os.PathLike[str] = "./"
    earlystop_metric: str | None = None
    max_grad_norm: float | None = None
    resume: bool = False
    amp: bool = False
    progress: bool = True
    tensorboard: bool = False
    plot: bool = True
    sparse_optimizer_fn: OptimizerFn | str | None = None
    seed: int | None = None
    distributed: bool | None = None
    precision: Precision | str | None = None

    def __post_init__(self) -> None:
        for name in ("n_epoch", "earlystop_patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.gpus is not None and len(self.gpus) > 1:
            raise ValueError(
                "multi-GPU training runs through torchrun DDP (recforge train --nproc N), "
                "not DataParallel; pass one device"
            )

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def bind(
        cls,
        owner: str,
        order: Sequence[str],
        args: Sequence[object],
        kwargs: Mapping[str, object],
        *,
        own: Collection[str] = (),
        base: TrainOptions | None = None,
    ) -> tuple[TrainOptions, dict[str, Any]]:
        """Options and the preset's own arguments from a call ``owner(model, *args, **kwargs)``.

        Args:
            owner: the preset's name (for error messages).
            order: the names ``args`` bind to, in order (options and/or names in ``own``).
            own: the preset's own argument names (returned, not options).
            base: options given as an object; keywords override its fields.
        """
        if len(args) > len(order):
            raise TypeError(
                f"{owner}() takes at most {len(order)} positional arguments after the model "
                f"({', '.join(order)}), got {len(args)}"
            )
        given = dict(zip(order, args))
        for name, value in kwargs.items():
            if name in given:
                raise TypeError(f"{owner}() got multiple values for argument {name!r}")
            given[name] = value
        fields = set(cls.names())
        unknown = sorted(set(given) - fields - set(own))
        if unknown:
            raise TypeError(
                f"{owner}() got unexpected argument(s) {unknown}; its own: {sorted(own)}; "
                f"training options: {sorted(fields)}"
            )
        opts = {k: v for k, v in given.items() if k in fields}
        options = dataclasses.replace(base, **opts) if base is not None else cls(**opts)  # type: ignore[arg-type]
        return options, {k: v for k, v in given.items() if k not in fields}


# Torch-RecHub's positional order of the options (its ``CTRTrainer`` adds ``loss_mode``, see there).
COMMON_ORDER = (
    "optimizer_fn",
    "optimizer_params",
    "regularization_params",
    "scheduler_fn",
    "scheduler_params",
    "n_epoch",
    "earlystop_patience",
    "device",
    "gpus",
    "model_path",
)
