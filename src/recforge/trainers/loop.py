"""The one training loop. It knows ``model(batch) -> outputs``, ``objective(outputs, batch) -> loss``
and an ``evaluate`` that returns named metrics; nothing about particular models.

Task families (CTR, matching, multi-task, sequence) are thin presets that supply the objective,
the evaluation and the prediction link.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from recforge.data.dataset import Batch, split_batch
from recforge.files import atomic_write, atomic_write_text, remove_stale_temporaries
from recforge.layout import BEST, CHECKPOINT, CURVE, METRICS_LOG, TENSORBOARD, TORCH_RECHUB_WEIGHTS
from recforge.objectives import Objective
from recforge.precision import Precision, autocast, resolve_precision, to_float32
from recforge.trainers.curves import plot_curves
from recforge.trainers.optim import SparseAwareOptimizer, build_optimizer
from recforge.trainers.options import COMMON_ORDER, TrainOptions
from recforge.trainers.placement import placement_for

log = logging.getLogger("recforge")

LOWER_IS_BETTER = frozenset({"loss", "logloss", "mse", "mae", "rmse"})


@dataclass
class EarlyStopper:
    """Tracks the monitored validation metric; ``step`` returns True when training should stop."""

    metric: str
    patience: int
    mode: str
    best: float = math.nan
    best_epoch: int = -1
    bad_epochs: int = 0

    def improved(self, value: float) -> bool:
        if math.isnan(value):  # undefined (e.g. the AUC of a one-class split): never the best epoch
            return False
        if self.best_epoch < 0 or math.isnan(self.best):
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def step(self, value: float, epoch: int) -> tuple[bool, bool]:
        """Returns ``(is_best, should_stop)``. An undefined (NaN) value counts as no improvement."""
        if math.isnan(value):
            log.warning(
                "validation %s is undefined (NaN) at epoch %d: this epoch cannot be selected",
                self.metric,
                epoch,
            )
        if self.improved(value):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True, False
        self.bad_epochs += 1
        return False, self.bad_epochs >= self.patience


def atomic_save(obj: object, path: Path) -> None:
    """``torch.save`` through a temporary file, so a crash never leaves a partial checkpoint."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def move_batch(batch: Mapping[str, Tensor], device: torch.device) -> Batch:
    if device.type == "cpu":
        return dict(batch)
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def load_state(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` of a file recforge wrote, weights-only: tensors, numbers, strings and
    lists/tuples/dicts of them. A file holding anything else (a pickled object, whose loading could
    run code) is refused with a ``ValueError`` naming it; nothing in it is executed."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"{path}: not a weights-only file (it holds Python objects other than tensors, numbers, "
            "strings, lists and dicts, whose loading could run code); refusing to load it. A checkpoint "
            "written by recforge before weights-only loading cannot be resumed: start the run again"
        ) from e


def _rng_state() -> dict[str, Any]:
    # Plain data only (tensors, numbers, tuples), so that ``load_state`` reads it back.
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """Fits a model with one objective; presets (``CTRTrainer``, ``MatchTrainer``, ``MTLTrainer``,
    ``SeqTrainer``) build their objective and metrics and hand both to this loop.

    Args:
        model: ``model(batch) -> outputs``.
        *args, **kwargs: ``TrainOptions`` fields, positionally in Torch-RecHub's order
            (``optimizer_fn, optimizer_params, regularization_params, scheduler_fn,
            scheduler_params, n_epoch, earlystop_patience, device, gpus, model_path``) or by name.
        objective: ``objective(outputs, batch) -> loss``.
        options: the options as one object (keywords override its fields).

    Precision (``options.precision`` / ``amp``): bf16 autocasts the forward pass and the
    objective's matrix products where the device multiplies bfloat16 natively; parameters,
    gradients, optimizer states, the loss and metrics stay float32 (``recforge.precision``).

    Distributed training (``options.distributed``): ``placement`` (``recforge.trainers.placement``,
    chosen once here) is one process, DDP over torchrun's ranks (``BatchLoader`` s sharded per rank,
    evaluation outputs gathered over ranks, only rank 0 logs and writes files), or a model that
    distributes itself (``recforge.distributed.ModelParallel``, e.g.
    ``recforge.torchrec.sharding.ShardedModel``).
    """

    ORDER: tuple[str, ...] = COMMON_ORDER
    default_metric = "loss"

    def __init__(
        self,
        model: nn.Module,
        *args: Any,
        objective: Objective,
        options: TrainOptions | None = None,
        **kwargs: Any,
    ) -> None:
        opts, _ = TrainOptions.bind(type(self).__name__, self.ORDER, args, kwargs, base=options)
        self.options = opts
        if opts.seed is not None:
            torch.manual_seed(opts.seed)
            np.random.seed(opts.seed)
            random.seed(opts.seed)
        self.placement = placement_for(model, opts)
        self.device = self.placement.device
        self.model = self.placement.place(model)
        self.train_model = self.placement.wrap(self.model)
        self.objective = objective
        self.optimizer: SparseAwareOptimizer = build_optimizer(
            model,
            opts.optimizer_fn,
            dict(opts.optimizer_params or {}),
            opts.sparse_optimizer_fn,
            dense_params=self.placement.dense_parameters(model),
        )
        self.schedulers = self._build_schedulers()
        self.regularization = _Regularizer(
            model, self.placement.regularization_params(opts.regularization_params)
        )
        self.n_epoch = opts.n_epoch
        metric = opts.earlystop_metric or self.default_metric
        self.stopper = EarlyStopper(
            metric, opts.earlystop_patience, "min" if metric in LOWER_IS_BETTER else "max"
        )
        self.run_dir = Path(opts.model_path)
        self.max_grad_norm = opts.max_grad_norm
        self.resume = opts.resume
        self.precision = resolve_precision(opts.precision, opts.amp, self.device)
        self.amp = self.precision is Precision.BF16
        self.progress = opts.progress and self.is_main
        self.tensorboard = opts.tensorboard
        self.plot = opts.plot
        self.history: list[dict[str, float]] = []
        self.start_epoch = 0

    @property
    def distributed(self) -> bool:
        """Training runs over a process group of more than one rank."""
        return self.placement.distributed

    @property
    def model_parallel(self) -> bool:
        """The model splits itself over the ranks (``recforge.distributed.ModelParallel``)."""
        return self.placement.model_parallel

    @property
    def is_main(self) -> bool:
        """This process logs, shows progress and writes files (rank 0)."""
        return self.placement.is_main

    def _build_schedulers(self) -> list[Any]:
        """One scheduler per optimizer part (rebuilt by presets that add parameter groups)."""
        fn = self.options.scheduler_fn
        params = dict(self.options.scheduler_params or {})
        return [fn(opt, **params) for opt in self.optimizer.optimizers] if fn is not None else []

    # -- preset hooks ------------------------------------------------------------------------------
    def to_batch(self, raw: object) -> Batch:
        """One loader item as a dict batch (``(x, y)`` pairs: ``{**x, "label": y}``); presets that
        accept other loader shapes (Torch-RecHub's sequence tuples) override it."""
        return split_batch(raw)

    def train_outputs(self, model: nn.Module, batch: Batch) -> Any:
        """What the objective receives during training: ``model(batch)`` (a preset may call another
        entry point, e.g. ``SeqTrainer`` uses ``model.sequence_tower`` for all-position training)."""
        return model(batch)

    def backward(self, loss: Tensor, outputs: Any, batch: Batch) -> None:
        """Fill the gradients of one training step (``loss`` includes regularisation). Presets that
        manipulate per-task gradients (GradNorm, MetaBalance) override this; clipping and the
        optimizer step follow."""
        del outputs, batch
        loss.backward()

    def evaluate(self, model: nn.Module, data_loader: Iterable[object]) -> dict[str, float]:
        """Mean objective over ``data_loader``; presets add their metrics."""
        losses, weights = [], []
        with torch.no_grad():  # the objective may run towers of its own (negatives' item vectors)
            for batch, outputs in self._run(model, data_loader, self.train_outputs):
                losses.append(float(self.objective(outputs, batch)))
                weights.append(_batch_size(batch))
        g = self.gather(
            {"loss": np.asarray(losses, dtype=np.float64), "n": np.asarray(weights, dtype=np.float64)}
        )
        return {"loss": float(np.average(g["loss"], weights=g["n"]))} if len(g["loss"]) else {}

    def predict(self, model: nn.Module, data_loader: Iterable[object]) -> np.ndarray:
        """Raw outputs of ``model`` over ``data_loader``, concatenated (presets apply their link)."""
        out = torch.cat([_to_tensor(o).float().cpu() for _, o in self._run(model, data_loader)]).numpy()
        return self.gather({"out": out})["out"]

    def gather(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per-rank evaluation arrays concatenated over ranks in rank order (identity when every
        rank evaluated the whole set); presets call it on what ``evaluate``/``predict`` collect."""
        return self.placement.gather(arrays)

    # -- the loop ----------------------------------------------------------------------------------
    def fit(
        self, train_dataloader: Iterable[object], val_dataloader: Iterable[object] | None = None
    ) -> nn.Module:
        """Train; with a validation loader, early-stop on the monitored metric and restore the best
        weights. Returns the model."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.resume and (self.run_dir / CHECKPOINT).exists():
            self._load_checkpoint(self.run_dir / CHECKPOINT)
        if self.is_main:
            remove_stale_temporaries(self.run_dir)
            # The log restarts from what the checkpoint holds: an epoch logged after the last
            # checkpoint (a kill in between) is run again and must not be logged twice.
            atomic_write_text(self.run_dir / METRICS_LOG, "".join(json.dumps(r) + "\n" for r in self.history))
        self.placement.check_ids(self.model, train_dataloader)
        writer = self._tensorboard_writer() if self.is_main else None
        train_dataloader = self.placement.train_loader(train_dataloader)
        try:
            for epoch in range(self.start_epoch, self.n_epoch):
                _set_epoch(train_dataloader, epoch)
                t0 = time.perf_counter()
                train_loss, n_seen = self.placement.reduce_train_loss(
                    *self._train_epoch(train_dataloader, epoch)
                )
                record: dict[str, float] = {
                    "epoch": epoch,
                    "train_loss": train_loss,
                    "lr": self.optimizer.lr,
                    "seconds": time.perf_counter() - t0,
                }
                record["samples_per_s"] = n_seen / max(record["seconds"], 1e-9)
                stop = False
                if val_dataloader is not None:
                    metrics = self.evaluate(self.model, val_dataloader)
                    record.update({f"val_{k}": v for k, v in metrics.items()})
                    if self.stopper.metric not in metrics:
                        raise KeyError(
                            f"early-stopping metric {self.stopper.metric!r} is not among the "
                            f"validation metrics {sorted(metrics)}"
                        )
                    is_best, stop = self.stopper.step(metrics[self.stopper.metric], epoch)
                    state = self.placement.model_state(self.model) if is_best else None
                    if state is not None:
                        atomic_save(
                            {
                                "model": state,
                                "epoch": epoch,
                                "metric": self.stopper.metric,
                                "value": self.stopper.best,
                            },
                            self.run_dir / BEST,
                        )
                self._step_schedulers(record)
                self._log(record, writer)
                state = self.placement.model_state(self.model)
                if state is not None:
                    self._save_checkpoint(epoch, state)
                if stop:
                    log.info(
                        "early stop at epoch %d: best %s=%.5f at epoch %d",
                        epoch,
                        self.stopper.metric,
                        self.stopper.best,
                        self.stopper.best_epoch,
                    )
                    break
        finally:
            if writer is not None:
                writer.close()
        if val_dataloader is None or not (self.run_dir / BEST).exists():
            if val_dataloader is not None:
                log.warning(
                    "no epoch had a defined validation %s; keeping the last epoch's weights",
                    self.stopper.metric,
                )
            state = self.placement.model_state(self.model)
            if state is not None:
                atomic_save({"model": state, "epoch": self.n_epoch - 1}, self.run_dir / BEST)
        else:
            self.placement.load_best(self.model, self.run_dir / BEST)
        self.placement.broadcast(self.model)  # every rank ends with rank 0's (best) weights
        weights = self.placement.plain_state(self.model)
        if weights is not None:
            # Torch-RecHub's trainers leave the best weights as model_path/model.pth (a state dict)
            atomic_save(weights, self.run_dir / TORCH_RECHUB_WEIGHTS)
        if self.plot and self.is_main:
            self._plot()
        return self.model

    def train_one_epoch(self, data_loader: Iterable[object], epoch: int = 0) -> float:
        """One pass over ``data_loader``; returns the mean training loss."""
        return self._train_epoch(data_loader, epoch)[0]

    def _train_epoch(self, data_loader: Iterable[object], epoch: int) -> tuple[float, int]:
        self.model.train()
        total, seen = 0.0, 0
        bar = _progress(data_loader, f"epoch {epoch}", self.progress)
        for raw in bar:
            batch = move_batch(self.to_batch(raw), self.device)
            with autocast(self.device, self.precision):
                outputs = to_float32(self.train_outputs(self.train_model, batch))
                loss = self.objective(outputs, batch).float()
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"non-finite loss {float(loss.detach())} at epoch {epoch}, after {seen} samples"
                )
            loss = loss + self.regularization()
            self.optimizer.zero_grad()
            self.backward(loss, outputs, batch)
            if self.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.optimizer.dense_params, self.max_grad_norm)
            self.optimizer.step()
            n = _batch_size(batch)
            total += float(loss.detach()) * n
            seen += n
            if hasattr(bar, "set_postfix") and seen // n % 20 == 0:
                bar.set_postfix(loss=f"{total / seen:.4f}")
        if seen == 0:
            raise ValueError("the training loader yielded no batches")
        return total / seen, seen

    @torch.no_grad()
    def _run(
        self,
        model: nn.Module,
        data_loader: Iterable[object],
        forward: Callable[[nn.Module, Batch], Any] | None = None,
    ) -> Iterable[tuple[Batch, Any]]:
        """Yields ``(batch, forward(model, batch))`` in eval mode (default ``model(batch)``)."""
        was_training = model.training
        model.eval()
        try:
            for raw in self.placement.eval_loader(data_loader):
                batch = move_batch(self.to_batch(raw), self.device)
                with autocast(self.device, self.precision):
                    outputs = to_float32(model(batch) if forward is None else forward(model, batch))
                yield batch, outputs  # outside autocast: the caller's metrics run in float32
        finally:
            model.train(was_training)

    # -- bookkeeping -------------------------------------------------------------------------------
    def _step_schedulers(self, record: Mapping[str, float]) -> None:
        for sch in self.schedulers:
            if isinstance(sch, torch.optim.lr_scheduler.ReduceLROnPlateau):
                key = f"val_{self.stopper.metric}"
                sch.step(record.get(key, record["train_loss"]))
            else:
                sch.step()

    def _save_checkpoint(self, epoch: int, model_state: Mapping[str, Tensor]) -> None:
        atomic_save(
            {
                "epoch": epoch,
                "model": dict(model_state),
                "optimizer": self.optimizer.state_dict(),
                "schedulers": [s.state_dict() for s in self.schedulers],
                "stopper": self.stopper.__dict__.copy(),
                "history": self.history,
                "rng": _rng_state(),
                "optimizer_params": _plain_params(self.options.optimizer_params),
            },
            self.run_dir / CHECKPOINT,
        )

    def _load_checkpoint(self, path: Path) -> None:
        ckpt = load_state(path, self.device)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        for sch, state in zip(self.schedulers, ckpt["schedulers"]):
            sch.load_state_dict(state)
        for k, v in ckpt["stopper"].items():
            setattr(self.stopper, k, v)
        self.history = list(ckpt["history"])
        _set_rng_state(ckpt["rng"])
        self.start_epoch = int(ckpt["epoch"]) + 1
        self._apply_changed_hyperparameters(ckpt.get("optimizer_params") or {})
        log.info("resumed from %s at epoch %d", path, self.start_epoch)

    def _apply_changed_hyperparameters(self, before: Mapping[str, object]) -> None:
        """After a resume, optimizer settings that differ from the checkpoint's (e.g. a new ``lr``)
        replace them, with a warning; a scheduled learning rate keeps its progress (scaled by the
        ratio of the new base rate to the old one)."""
        given = _plain_params(self.options.optimizer_params)
        changed = {k: v for k, v in given.items() if k in before and before[k] != v}
        for key, value in changed.items():
            log.warning("resume: optimizer %s %r -> %r (the new value applies)", key, before[key], value)
            for opt in self.optimizer.optimizers:
                for group in opt.param_groups:
                    if key not in group:
                        continue
                    if key == "lr" and isinstance(before[key], int | float) and before[key]:
                        ratio = float(value) / float(before[key])  # type: ignore[arg-type]
                        group["lr"] = group["lr"] * ratio
                        if "initial_lr" in group:
                            group["initial_lr"] = value
                    else:
                        group[key] = value
            if key == "lr":
                for sch in self.schedulers:
                    if hasattr(sch, "base_lrs"):
                        sch.base_lrs = [value] * len(sch.base_lrs)

    def _log(self, record: dict[str, float], writer: Any) -> None:
        self.history.append(record)
        if not self.is_main:
            return
        with open(self.run_dir / METRICS_LOG, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if writer is not None:
            for k, v in record.items():
                if k != "epoch":
                    writer.add_scalar(k, v, int(record["epoch"]))
        shown = "  ".join(f"{k}={v:.5g}" for k, v in record.items() if k not in ("epoch",))
        log.info("epoch %d  %s", int(record["epoch"]), shown)
        if self.progress:
            print(f"epoch {int(record['epoch'])}: {shown}", flush=True)

    def _tensorboard_writer(self) -> Any:
        if not self.tensorboard:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ImportError(
                "tensorboard=True needs the 'tensorboard' package: pip install 'recforge[tensorboard]'"
            ) from e
        return SummaryWriter(str(self.run_dir / TENSORBOARD))

    def curve_panels(self) -> list[tuple[str, list[str]]]:
        """The learning-curve panels: losses together, then the monitored metric (presets with
        several tasks override it)."""
        keys = {k for r in self.history for k in r}
        val_loss = next((k for k in ("val_loss", "val_logloss", "val_mean_loss") if k in keys), None)
        panels = [("loss", ["train_loss", *([val_loss] if val_loss else [])])]
        monitored = f"val_{self.stopper.metric}"
        if monitored in keys and monitored != val_loss:
            panels.append((f"validation {self.stopper.metric}", [monitored]))
        return panels

    def _plot(self) -> None:
        best = self.stopper.best_epoch if self.stopper.best_epoch >= 0 else None
        plot_curves(self.history, self.curve_panels(), best, self.run_dir / CURVE, atomic_write)


class _Regularizer:
    """Torch-RecHub's ``regularization_params``: L1/L2 penalties on embedding and dense weights."""

    KEYS = ("embedding_l1", "embedding_l2", "dense_l1", "dense_l2")

    def __init__(self, model: nn.Module, params: Mapping[str, float] | None) -> None:
        params = dict(params or {})
        unknown = set(params) - set(self.KEYS)
        if unknown:
            raise ValueError(f"unknown regularization_params {sorted(unknown)}; valid: {list(self.KEYS)}")
        self.coef = {k: float(params.get(k, 0.0)) for k in self.KEYS}
        emb_ids: set[int] = set()
        self.embedding: list[Tensor] = []
        for m in model.modules():
            if isinstance(m, nn.Embedding | nn.EmbeddingBag):
                if m.sparse and (self.coef["embedding_l1"] or self.coef["embedding_l2"]):
                    raise ValueError(
                        "embedding_l1/l2 regularisation makes sparse embedding gradients dense; "
                        "use weight decay in the sparse optimizer or sparse=False"
                    )
                self.embedding.append(m.weight)
                emb_ids.add(id(m.weight))
        self.dense = [p for n, p in model.named_parameters() if id(p) not in emb_ids and "weight" in n]
        self.active = any(self.coef.values())

    def __call__(self) -> Tensor | float:
        if not self.active:
            return 0.0
        total: Tensor | float = 0.0
        for group, params in (("embedding", self.embedding), ("dense", self.dense)):
            l1, l2 = self.coef[f"{group}_l1"], self.coef[f"{group}_l2"]
            for p in params:
                if l1:
                    total = total + l1 * p.abs().sum()
                if l2:
                    total = total + l2 * p.pow(2).sum()
        return total


def _plain_params(params: Mapping[str, object] | None) -> dict[str, object]:
    """Optimizer settings as plain data (tuples as lists) for the checkpoint and for comparison."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in (params or {}).items()}


def _set_epoch(loader: object, epoch: int) -> None:
    for obj in (loader, getattr(loader, "sampler", None), getattr(loader, "dataset", None)):
        if obj is not None and hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)
            return


def _batch_size(batch: Mapping[str, Tensor]) -> int:
    return int(next(iter(batch.values())).shape[0])


def _to_tensor(outputs: Any) -> Tensor:
    if isinstance(outputs, Tensor):
        return outputs
    raise TypeError(f"predict() of the base Trainer needs tensor outputs, got {type(outputs).__name__}")


def _progress(loader: Iterable[object], desc: str, enabled: bool) -> Iterable[object]:
    if not enabled:
        return loader
    from tqdm.auto import tqdm

    total = len(loader) if hasattr(loader, "__len__") else None  # type: ignore[arg-type]
    return tqdm(loader, desc=desc, total=total, leave=False, mininterval=1.0, dynamic_ncols=True)
