"""Multi-task preset: per-task losses and metrics, fixed or adaptive task weighting.

Output convention: a multi-task model returns ``(B, T)`` logits (classification) or values
(regression) in its task order, or a named output carrying them (``MultiTaskOutput`` with an
auxiliary loss, ``ESMMOutput`` with the implied CVR). Labels are ``batch["label"]`` of shape
``(B, T)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

from recforge.data.dataset import LABEL, Batch
from recforge.layout import WEIGHTING
from recforge.metrics import auc_score, log_loss, nan_if_undefined
from recforge.models.multi_task.esmm import ESMM
from recforge.objectives.multitask import (
    GradNorm,
    MetaBalance,
    MultiTaskObjective,
    TaskWeighting,
    build_weighting,
)
from recforge.outputs import ESMMOutput, TaskType, task_logits
from recforge.trainers.loop import EarlyStopper, Trainer, atomic_save, load_state
from recforge.trainers.options import COMMON_ORDER, TrainOptions


@runtime_checkable
class HasSharedLayer(Protocol):
    """A multi-task model that names its last shared layer (where GradNorm measures gradients)."""

    def last_shared_parameters(self) -> list[nn.Parameter]: ...


@runtime_checkable
class HasTaskTypes(Protocol):
    task_types: Sequence[TaskType]


class MTLTrainer(Trainer):
    """Multi-task training over the one loop.

    Validation metrics per task ``name``: ``{name}_auc`` and ``{name}_logloss`` (classification),
    ``{name}_mse`` and ``{name}_mae`` (regression); plus ``mean_auc`` (classification tasks),
    ``mean_loss`` (mean per-task logloss/mse) and ``{name}_weight`` (the current task weight).

    Args:
        model: a multi-task model.
        *args, **kwargs: Torch-RecHub's order ``task_types, optimizer_fn, optimizer_params,
            regularization_params, scheduler_fn, scheduler_params, adaptive_params, n_epoch,
            earlystop_taskid, earlystop_patience, device, gpus, model_path`` or by name, where
            ``task_types``: ``"classification"``/``"regression"`` per task (default
            ``model.task_types``); ``adaptive_params``: ``None`` (fixed weights) or ``{"method":
            "uwl" | "gradnorm" | "metabalance" | "fixed", ...}``: gradnorm takes ``alpha`` (1.5),
            ``lr`` (0.025); metabalance ``target_task`` (0), ``relax_factor`` (0.7), ``beta``
            (0.9), ``strategy`` ("both" | "reduce" | "enlarge"); fixed ``weights``;
            ``earlystop_taskid``: task index whose metric (AUC, or MSE for regression) is
            monitored, or ``"mean"`` (``mean_auc`` when every task is classification, else
            ``mean_loss``); the rest are ``TrainOptions`` fields (any other one by name too).
        task_names: names used in metric keys (default ``task0``, ``task1``...).
        task_weights: fixed loss weights when ``adaptive_params`` is None.
        options: the ``TrainOptions`` as one object (``earlystop_metric``, any validation metric
            key above, overrides ``earlystop_taskid``).
    """

    ORDER = (
        "task_types",
        *COMMON_ORDER[:5],
        "adaptive_params",
        "n_epoch",
        "earlystop_taskid",
        *COMMON_ORDER[6:],
    )

    def __init__(
        self,
        model: nn.Module,
        *args: Any,
        task_names: Sequence[str] | None = None,
        task_weights: Sequence[float] | None = None,
        options: TrainOptions | None = None,
        **kwargs: Any,
    ) -> None:
        opts, own = TrainOptions.bind(
            type(self).__name__,
            self.ORDER,
            args,
            kwargs,
            own=("task_types", "adaptive_params", "earlystop_taskid"),
            base=options,
        )
        task_types = own.get("task_types")
        if task_types is None:
            if not isinstance(model, HasTaskTypes):
                raise ValueError(f"{type(model).__name__} has no task_types; pass task_types=[...]")
            task_types = model.task_types
        self.task_types = TaskType.parse_all(task_types)  # type: ignore[arg-type]
        self.label_columns: tuple[int, ...] | None = None  # the trained tasks' label columns
        trained = self.task_types
        if isinstance(model, HasTaskTypes) and tuple(model.task_types) != self.task_types:
            if isinstance(model, ESMM) and len(self.task_types) == 3:
                # Torch-RecHub's ESMM scripts: three tasks, labels [cvr, ctr, ctcvr]; ESMM trains
                # ctr and ctcvr on every impression, and cvr is evaluated from their quotient
                self.label_columns, trained = (1, 2), tuple(model.task_types)
            else:
                raise ValueError(
                    f"task_types {[t.value for t in self.task_types]} differ from the model's "
                    f"{[t.value for t in model.task_types]}"
                )
        n = len(self.task_types)
        self.task_names = list(task_names) if task_names is not None else [f"task{t}" for t in range(n)]
        if len(self.task_names) != n or len(set(self.task_names)) != n:
            raise ValueError(f"task_names must be {n} distinct names, got {self.task_names}")
        self.weighting: TaskWeighting = build_weighting(
            trained,
            own.get("adaptive_params"),  # type: ignore[arg-type]
            task_weights,
        )
        if isinstance(self.weighting, GradNorm) and not isinstance(model, HasSharedLayer):
            raise ValueError(
                f"GradNorm needs a model with last_shared_parameters(); {type(model).__name__} has none"
            )
        metric = opts.earlystop_metric or self._earlystop_metric(own.get("earlystop_taskid", 0))  # type: ignore[arg-type]
        self.default_metric = metric
        objective = MultiTaskObjective(trained, self.weighting, label_columns=self.label_columns)
        super().__init__(model, objective=objective, options=opts)
        lower = metric.endswith(("mse", "mae", "loss"))
        self.stopper = EarlyStopper(metric, opts.earlystop_patience, "min" if lower else "max")
        self.weighting.to(self.device)
        extra = self.weighting.loss_parameters()
        if extra:
            self.optimizer.optimizers[0].add_param_group({"params": extra, "weight_decay": 0.0})
            self.schedulers = self._build_schedulers()  # so that the new group is scheduled too

    def _earlystop_metric(self, taskid: int | str) -> str:
        if taskid == "mean":
            every_cls = all(t is TaskType.CLASSIFICATION for t in self.task_types)
            return "mean_auc" if every_cls else "mean_loss"
        if isinstance(taskid, bool) or not isinstance(taskid, int) or not 0 <= taskid < len(self.task_types):
            raise ValueError(
                f"earlystop_taskid must be a task index in [0, {len(self.task_types)}) or 'mean', got {taskid!r}"
            )
        kind = "auc" if self.task_types[taskid] is TaskType.CLASSIFICATION else "mse"
        return f"{self.task_names[taskid]}_{kind}"

    # -- the loop's hooks ----------------------------------------------------------------------
    def backward(self, loss: Tensor, outputs: Any, batch: Batch) -> None:
        if not isinstance(self.weighting, GradNorm | MetaBalance):
            loss.backward()
            return
        assert isinstance(self.objective, MultiTaskObjective)
        task_losses = self.objective.task_losses(outputs, batch)
        if isinstance(self.weighting, GradNorm):
            assert isinstance(self.model, HasSharedLayer)
            shared: Sequence[Tensor] = self.model.last_shared_parameters()
        else:
            shared = self.optimizer.dense_params
        self.weighting.backward(loss, task_losses, shared)

    def _save_checkpoint(self, epoch: int, model_state: Mapping[str, Tensor]) -> None:
        # The task weighting's state (UWL log-variances, GradNorm weights and their optimizer,
        # MetaBalance's moving norms) sits next to the loop's checkpoint so a resume is exact.
        atomic_save(self.weighting.state_dict(), self.run_dir / WEIGHTING)
        super()._save_checkpoint(epoch, model_state)

    def _load_checkpoint(self, path: Path) -> None:
        super()._load_checkpoint(path)
        state = path.parent / WEIGHTING
        if state.exists():
            self.weighting.load_state_dict(load_state(state, self.device))

    def curve_panels(self) -> list[tuple[str, list[str]]]:
        """Losses, then one panel per task (its AUC, or MSE for regression), then the task weights."""
        panels = [("loss", ["train_loss", "val_mean_loss"])]
        for name, kind in zip(self.task_names, self.task_types):
            metric = "auc" if kind is TaskType.CLASSIFICATION else "mse"
            panels.append((f"task {name}", [f"val_{name}_{metric}"]))
        panels.append(("task weights", [f"val_{name}_weight" for name in self.task_names]))
        return panels

    def current_weights(self) -> list[float]:
        """The weight each task loss currently gets (UWL: ``scale * exp(-s_t)``)."""
        w = self.weighting
        with torch.no_grad():
            if isinstance(w, GradNorm):
                return [float(x) for x in w.weights]
            n = len(self.label_columns) if self.label_columns is not None else len(self.task_types)
            if isinstance(w, MetaBalance):
                return [1.0] * n
            ones = torch.ones(n, device=self.device)
            return [float(x) for x in torch.autograd.functional.jacobian(w.combine, ones)]

    def collect(self, model: nn.Module, data_loader: Iterable[object]) -> dict[str, np.ndarray]:
        """``prob (N, T)`` (sigmoid for classification, raw for regression), ``label (N, T)`` when
        present, and ``cvr (N,)`` for ESMM."""
        is_cls = torch.tensor([t is TaskType.CLASSIFICATION for t in self.task_types])
        probs, labels, cvr = [], [], []
        for batch, outputs in self._run(model, data_loader):
            logits = task_logits(outputs).float().cpu()  # (B, T)
            if self.label_columns is not None and isinstance(outputs, ESMMOutput):
                logits = torch.cat(
                    [outputs.cvr_logits.float().cpu().unsqueeze(1), logits], 1
                )  # cvr, ctr, ctcvr
            probs.append(torch.where(is_cls, torch.sigmoid(logits), logits))
            if LABEL in batch:
                y = batch[LABEL].float().cpu()
                labels.append(y.reshape(len(y), -1))
            if isinstance(outputs, ESMMOutput):
                cvr.append(torch.sigmoid(outputs.cvr_logits.float()).cpu())
        if not probs:
            raise ValueError("the loader yielded no batches")
        out = {"prob": torch.cat(probs).numpy()}
        if labels:
            out["label"] = torch.cat(labels).numpy()
        if cvr:
            out["cvr"] = torch.cat(cvr).numpy()
        return out

    def evaluate(self, model: nn.Module, data_loader: Iterable[object]) -> dict[str, float]:
        c = self.collect(model, data_loader)
        if "label" not in c:
            raise ValueError("evaluate() needs labels in the loader's batches")
        out: dict[str, float] = {}
        aucs, losses = [], []
        for t, (name, kind) in enumerate(zip(self.task_names, self.task_types)):
            y, p = c["label"][:, t], c["prob"][:, t]
            if kind is TaskType.CLASSIFICATION:
                auc = nan_if_undefined(auc_score, y, p, name=f"{name}_auc")  # one class: NaN
                out[f"{name}_auc"] = auc
                out[f"{name}_logloss"] = log_loss(y, p)
                aucs.append(auc)
                losses.append(out[f"{name}_logloss"])
            else:
                out[f"{name}_mse"] = float(np.mean((p - y) ** 2))
                out[f"{name}_mae"] = float(np.mean(np.abs(p - y)))
                losses.append(out[f"{name}_mse"])
        if aucs:
            out["mean_auc"] = float(np.mean(aucs))
        out["mean_loss"] = float(np.mean(losses))
        trained = (
            self.task_names
            if self.label_columns is None
            else [self.task_names[i] for i in self.label_columns]
        )
        for name, w in zip(trained, self.current_weights()):
            out[f"{name}_weight"] = w
        return out

    def predict(self, model: nn.Module, data_loader: Iterable[object]) -> np.ndarray:
        """Per-task probabilities (raw values for regression tasks), ``(N, T)``."""
        return self.collect(model, data_loader)["prob"]
