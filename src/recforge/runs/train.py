"""The training recipe behind ``recforge train CONFIG``, for every family, callable from Python:

```python
from recforge.runs import train
result = train("configs/beauty_sasrec.yaml", ["trainer.n_epoch=1"])
result.metrics["test"]["hr@10"], result.run_dir
```

Steps: read and split the data (labelled rows or an interaction log), fit the pipeline on the
training split, build the model from the registry, train it with the preset's objective and early
stopping on validation (optionally refit on training + validation for the selected number of
epochs), evaluate the held-out splits (full ranking over every item for every user with a
held-out item in retrieval and next-item runs), and write the run directory (``recforge.layout``):
for retrieval runs also the known users' histories and the item index, so ``recforge serve`` and
``POST /recommend`` work on it as it is.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from recforge import distributed
from recforge.config import (
    Preset,
    RunConfig,
    SampleKind,
    Sampling,
    Scheduler,
    SemanticIDsConfig,
    load_config,
    parse_config,
    to_plain,
)
from recforge.data import BatchLoader, ColumnarDataset, NegativeSampler
from recforge.files import atomic_write_text
from recforge.layout import RunLayout
from recforge.metrics.ranking import ListModel, ListRankingEvaluator, RankingEvaluator
from recforge.models.defaults import ColumnRoles
from recforge.models.matching.base import TwoTowerModel
from recforge.models.registry import FAMILIES
from recforge.preprocess import FeaturePipeline
from recforge.runs.generative import Tokenizer, save_tokenizer, tokenize
from recforge.runs.logs import EvalPart, LogData, prepare_log
from recforge.runs.model import (
    build_model,
    is_generative,
    save_histories,
    save_model_spec,
    select,
    with_initializers,
)
from recforge.runs.rows import prepare_rows
from recforge.trainers import (
    CTRTrainer,
    GenerativeTrainer,
    MatchTrainer,
    MTLTrainer,
    SeqTrainer,
    Trainer,
    TrainOptions,
)

log = logging.getLogger("recforge")

SELECTION = "selection"  # with trainer.refit: the validation run that chose the epoch count
MODEL_KEYS = ("features", "model")  # config sections a resume must not change


@dataclass
class RunResult:
    """What ``train`` produced: the run directory, the trained model and the metrics written to
    ``test_metrics.json`` (per split; retrieval runs add ``users_evaluated`` / ``users_total``)."""

    run_dir: Path
    model: nn.Module
    metrics: dict[str, dict[str, float]]


def _resolve(
    config: RunConfig | str | Path | Mapping[str, Any], overrides: Sequence[str]
) -> tuple[RunConfig, dict[str, Any]]:
    if isinstance(config, RunConfig):
        if overrides:
            raise ValueError("overrides apply to a config file or mapping, not to a RunConfig")
        return config, to_plain(config)
    if isinstance(config, Mapping):
        from recforge.config import apply_overrides

        resolved = apply_overrides(config, overrides)
        return parse_config(resolved), resolved
    return load_config(config, overrides)


def _check_model_fits_preset(model: nn.Module, name: str, preset: Preset) -> None:
    family = next((f for f, models in FAMILIES.items() if name in models), "?")
    ok = {
        Preset.CTR: family == "ranking",
        Preset.MTL: family == "multi_task",
        Preset.MATCH: isinstance(model, TwoTowerModel),
        Preset.SEQ: callable(getattr(model, "sequence_tower", None)) or isinstance(model, ListModel),
    }[preset]
    if not ok:
        hint = {
            "ranking": "ctr",
            "multi_task": "mtl",
            "matching": "match" + (" or seq" if callable(getattr(model, "sequence_tower", None)) else ""),
            "generative": "seq",
        }.get(family, "another preset")
        raise ValueError(
            f"model {name!r} ({family}) does not fit trainer.preset {preset.value!r}: use trainer.preset {hint}"
        )


def _options(cfg: RunConfig, model_path: Path, *, resume: bool, n_epoch: int | None = None) -> TrainOptions:
    t = cfg.trainer
    n = n_epoch or t.n_epoch
    scheduler_params = dict(t.scheduler_params)
    if t.scheduler is Scheduler.COSINE:
        scheduler_params.setdefault("T_max", n)
    return TrainOptions(
        optimizer_fn=t.optimizer.cls,
        optimizer_params=t.optimizer_params,
        regularization_params=t.regularization_params or None,
        scheduler_fn=t.scheduler.cls if t.scheduler else None,
        scheduler_params=scheduler_params,
        n_epoch=n,
        earlystop_patience=t.earlystop_patience,
        device=t.device,
        precision=t.precision,
        model_path=model_path,
        earlystop_metric=t.earlystop_metric,
        max_grad_norm=t.max_grad_norm,
        resume=resume,
        progress=t.progress,
        tensorboard=t.tensorboard,
        plot=t.plot,
        sparse_optimizer_fn=t.sparse_optimizer,
        seed=cfg.seed,
    )


class _Recipe:
    """One run's data, model factory and trainer factory (shared by selection and refit)."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        t0 = time.perf_counter()
        self.rows: dict[str, ColumnarDataset] = {}
        self.log: LogData | None = None
        if cfg.trainer.preset.needs_log:
            self.log = prepare_log(cfg)
            self.pipeline: FeaturePipeline = self.log.pipeline
            sp = self.log.split
            sizes = f"train={len(sp.train):,} valid={len(sp.valid):,} test={len(sp.test):,} interactions"
            sizes += f"; {sp.num_users - 2:,} users, {sp.num_items - 2:,} items"
        else:
            self.pipeline, self.rows = prepare_rows(cfg)
            sizes = ", ".join(f"{k}={len(v):,} rows" for k, v in self.rows.items())
        print(f"data: {sizes}  (prepared in {time.perf_counter() - t0:.1f}s)", flush=True)
        self.features = with_initializers(self.pipeline.features, cfg.features)
        d = cfg.data
        roles = ColumnRoles(d.user, d.item, tuple(d.user_columns), tuple(d.item_columns))
        self.inputs = {
            arg: select(self.features, sel, f"model.inputs.{arg}", roles=roles)
            for arg, sel in cfg.model.inputs.items()
        }
        self.generative = is_generative(cfg.model.name)
        if cfg.model.semantic_ids is not None and not self.generative:
            raise ValueError(
                f"model.semantic_ids: model {cfg.model.name!r} does not read semantic IDs (TIGER does)"
            )
        self.tokenizer: Tokenizer | None = None
        if self.generative:
            if self.log is None:
                raise ValueError(
                    f"model {cfg.model.name!r} trains on an interaction log: use trainer.preset seq"
                )
            if self.log.kind is not SampleKind.NEXT_ITEM or self.log.history is None:
                raise ValueError(
                    f"model {cfg.model.name!r} trains on next-item rows: set data.samples.kind next_item and "
                    f"declare a sequence feature with shared_with: {cfg.data.item}"
                )
            self.tokenizer = tokenize(
                cfg.model.semantic_ids or SemanticIDsConfig(),
                self.log,
                seed=cfg.seed,
                device=cfg.trainer.device,
            )
        self.eval_parts: dict[str, EvalPart] = {}
        if self.log is not None:
            t = cfg.trainer
            ks = t.evaluation.ks or ([20, 50] if t.preset is Preset.MATCH else [10, 50])
            normalize = t.evaluation.normalize if t.evaluation.normalize is not None else t.seq.l2_normalize
            for part in ("valid", "test"):
                if len(getattr(self.log.split, part)):
                    self.eval_parts[part] = self.log.eval_part(
                        part, ks=ks, normalize=normalize and t.preset is Preset.SEQ,
                        exclude_seen=t.evaluation.exclude_seen, seed=cfg.seed, generate=self.generative,
                        beam_width=t.generative.beam_width,
                    )  # fmt: skip

    def data_arguments(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """Constructor arguments a model takes from the data: HLLM's item text tokens (tensors,
        saved as ``model_tensors.pt``) and their padding id; TIGER's batch columns."""
        if self.generative and self.log is not None:
            assert self.log.history is not None
            columns = {"history_column": self.log.history, "user_column": self.log.user}
            return {**columns, "target_column": self.log.item}, {}
        if self.cfg.model.name != "HLLM":
            return {}, {}
        from recforge.models.generative import item_text_tokens

        item_llm = self.cfg.model.params.get("item_llm")
        if not isinstance(item_llm, str):
            raise ValueError("model.params.item_llm: HLLM from a config needs a local path to the item LLM")
        if self.log is None or self.log.item_texts is None:
            raise ValueError("data.item_text: HLLM reads each item's text; name the item-table columns")
        tokens, pad = item_text_tokens(self.log.item_texts[1:], item_llm)
        return {"pad_token_id": pad}, {"item_tokens": tokens}

    def model(self) -> nn.Module:
        torch.manual_seed(self.cfg.seed)
        params, tensors = self.data_arguments()
        if self.tokenizer is not None:  # a copy: the selection and refit models each own theirs
            params = {
                **params,
                "semantic_ids": self.tokenizer.ids,
                "rqvae": copy.deepcopy(self.tokenizer.rqvae),
            }
        model = build_model(self.cfg.model.name, self.inputs, {**self.cfg.model.params, **params, **tensors})
        _check_model_fits_preset(model, self.cfg.model.name, self.cfg.trainer.preset)
        return model

    def trainer(self, model: nn.Module, options: TrainOptions, *, validate: bool) -> Trainer:
        cfg, t = self.cfg, self.cfg.trainer
        valid = self.eval_parts.get("valid") if validate else None
        if t.preset is Preset.CTR:
            return CTRTrainer(model, gauc_group=t.gauc_group, options=options)
        if t.preset is Preset.MTL:
            labels = cfg.data.label if isinstance(cfg.data.label, list) else None
            return MTLTrainer(
                model,
                adaptive_params=t.mtl.adaptive,
                earlystop_taskid=t.mtl.earlystop_taskid,
                task_names=labels,
                task_weights=t.mtl.task_weights,
                options=options,
            )
        data = self.log
        assert data is not None
        if self.generative:
            ev = self._valid_sample()[1] if validate else None
            return GenerativeTrainer(model, evaluator=ev, options=options)
        evaluator = valid.evaluator if valid is not None else None
        if evaluator is not None and not isinstance(evaluator, RankingEvaluator):
            raise TypeError(f"{type(evaluator).__name__} evaluates generative models only")
        counts = data.item_counts(*(("train",) if validate else ("train", "valid")))
        if t.preset is Preset.MATCH:
            m = t.match
            seen = (
                data.histories(*(("train",) if validate else ("train", "valid"))).seen()
                if m.exclude_seen
                else None
            )
            sampler = (
                NegativeSampler.popularity(counts, alpha=m.alpha, seen=seen)
                if m.sampling is Sampling.POPULARITY
                else NegativeSampler(data.num_items, seen=seen)
            )
            return MatchTrainer(
                model,
                mode=m.mode,
                negatives=m.negatives,
                sampler=sampler,
                catalog=data.catalog,
                num_negatives=m.num_negatives,
                pair_loss=m.pair_loss,
                margin=m.margin,
                item_counts=counts,
                logq=m.logq,
                evaluator=evaluator,
                user_column=data.user,
                options=options,
            )
        s = t.seq
        return SeqTrainer(
            model,
            num_items=data.num_items,
            loss=s.loss,
            num_negatives=s.num_negatives,
            temperature=s.temperature,
            l2_normalize=s.l2_normalize,
            catalog=data.catalog,
            logq=s.logq,
            evaluator=evaluator,
            target_column=data.target,
            options=options,
        )

    def _valid_sample(self) -> tuple[ColumnarDataset, ListRankingEvaluator] | tuple[None, None]:
        """The validation rows decoded each epoch (``trainer.generative.valid_users``, seeded)."""
        part = self.eval_parts.get("valid")
        if part is None or not isinstance(part.evaluator, ListRankingEvaluator):
            return None, None
        n, want = len(part.rows), self.cfg.trainer.generative.valid_users
        if not want or want >= n:
            return part.rows, part.evaluator
        g = torch.Generator().manual_seed(self.cfg.seed)
        return part.rows.subset(torch.randperm(n, generator=g)[:want].sort().values), part.evaluator

    def loaders(self, *, refit: bool) -> tuple[Any, Any]:
        """Training and validation loaders (``refit``: training + validation data, no validation)."""
        cfg = self.cfg
        if self.log is not None:
            parts = ("train", "valid") if refit else ("train",)
            train = self.log.train_loader(cfg, parts=parts)
            valid = self.eval_parts.get("valid")
            valid_rows = self._valid_sample()[0] if self.generative else (valid.rows if valid else None)
            if valid_rows is None or refit:
                return train, None
            return train, BatchLoader(valid_rows, cfg.data.eval_batch_size)
        rows = self.rows
        if refit and "valid" in rows:
            both = {
                k: torch.cat([rows["train"].columns[k], rows["valid"].columns[k]])
                for k in rows["train"].columns
            }
            train_ds = ColumnarDataset(both)
        else:
            train_ds = rows["train"]
        train_rows = BatchLoader(train_ds, cfg.data.batch_size, shuffle=True, seed=cfg.seed)
        has_valid = "valid" in rows and not refit
        return train_rows, BatchLoader(rows["valid"], cfg.data.eval_batch_size) if has_valid else None

    def evaluate(self, trainer: Trainer, model: nn.Module) -> dict[str, dict[str, float]]:
        cfg = self.cfg
        out: dict[str, dict[str, float]] = {}
        if self.log is None:
            for name in ("valid", "test"):
                if name in self.rows:
                    out[name] = trainer.evaluate(
                        model, BatchLoader(self.rows[name], cfg.data.eval_batch_size)
                    )
            return out
        for name, part in self.eval_parts.items():
            metrics = part.evaluator.evaluate(
                model,  # type: ignore[arg-type]
                BatchLoader(part.rows, cfg.data.eval_batch_size),
                trainer.device,
            )
            metrics["users_evaluated"] = part.evaluator.users_evaluated
            metrics["users_total"] = part.users_total
            metrics["users_without_history"] = part.cold_users
            out[name] = metrics
        return out


def _first_difference(a: object, b: object, where: str) -> str | None:
    """The dotted key of the first place two config values differ, or None."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for k in sorted(set(a) | set(b), key=str):
            found = _first_difference(a.get(k), b.get(k), f"{where}.{k}")
            if found is not None:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            found = _first_difference(x, y, f"{where}[{i}]")
            if found is not None:
                return found
        return None
    return None if a == b else where


def _check_resume(layout: RunLayout, resolved: Mapping[str, Any]) -> None:
    """A resume continues the run the directory holds: the model and its data must not change."""
    if not layout.config.exists():
        raise FileNotFoundError(f"--resume: {str(layout.root)!r} holds no run to resume (no config.yaml)")
    before = yaml.safe_load(layout.config.read_text(encoding="utf-8")) or {}
    for key in (*MODEL_KEYS, "data"):
        changed = _first_difference(before.get(key), resolved.get(key), key)
        if changed is not None:
            raise ValueError(
                f"--resume: {changed} differs from the run's config; a resume continues the same model "
                "on the same data (start a new run with --run-dir instead)"
            )
    old_t, new_t = before.get("trainer") or {}, resolved.get("trainer") or {}
    settings = sorted(k for k in set(old_t) | set(new_t) if old_t.get(k) != new_t.get(k))
    if settings:
        log.warning("--resume with changed trainer settings %s: the new values apply from now on", settings)


def train(
    config: RunConfig | str | Path | Mapping[str, Any],
    overrides: Sequence[str] = (),
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
) -> RunResult:
    """Train the run a config describes and write its run directory (see the module docstring).

    Args:
        config: a YAML path, a raw mapping or a parsed ``RunConfig``.
        overrides: ``key.sub=value`` strings (as ``--set``).
        run_dir: write here instead of the config's ``run_dir``.
        resume: continue the interrupted (or finished, for more epochs) run in the directory.
    """
    cfg, resolved = _resolve(config, overrides)
    if run_dir is not None:
        cfg = dataclasses.replace(cfg, run_dir=str(run_dir))
        resolved = {**resolved, "run_dir": str(run_dir)}
    t = cfg.trainer
    if t.sharding is not None and not distributed.launched_by_torchrun():
        raise ValueError(
            f"trainer.sharding={t.sharding!r} shards the embedding tables over processes: "
            "run `recforge train CONFIG --nproc N` with N >= 2 (or start it under torchrun)"
        )
    if t.sharding is not None and t.preset.needs_log:
        raise ValueError("trainer.sharding applies to the ctr and mtl presets")
    main_rank = True
    if distributed.launched_by_torchrun():
        distributed.init_from_env()
        main_rank = distributed.is_main()
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    layout = RunLayout.of(cfg.run_dir)
    if resume:
        _check_resume(layout, resolved)
    elif layout.is_trained() or layout.checkpoint.exists():
        raise FileExistsError(
            f"run directory {str(layout.root)!r} already holds a trained run; "
            "pass --resume to continue it or --run-dir to start a new one"
        )
    try:
        layout.root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(
            f"run_dir {str(layout.root)!r}: cannot create the run directory ({e.strerror})"
        ) from None
    t0 = time.perf_counter()
    recipe = _Recipe(cfg)
    model = recipe.model()
    if t.sharding is not None:
        from recforge.torchrec.sharding import ShardedModel

        # the run directory still holds the unsharded model (best.pt is gathered on rank 0)
        model = ShardedModel(
            model,
            sharding=t.sharding,
            embedding_optimizer=t.embedding_optimizer_params or None,
            device=distributed.device_for(t.device),
        )
    if main_rank:
        if not (resume and layout.pipeline.exists()):
            recipe.pipeline.save(layout.pipeline)
        params, tensors = recipe.data_arguments()
        tok = save_tokenizer(layout, recipe.tokenizer) if recipe.tokenizer is not None else None
        save_model_spec(
            layout.root,
            cfg.model.name,
            recipe.inputs,
            {**cfg.model.params, **params},
            tensors,
            semantic_ids=tok,
        )
        atomic_write_text(layout.config, yaml.safe_dump(resolved, sort_keys=False))
    refit = t.refit and (bool(recipe.eval_parts.get("valid")) or "valid" in recipe.rows)
    selection = layout.root / SELECTION if refit else layout.root
    train_dl, valid_dl = recipe.loaders(refit=False)
    trainer = recipe.trainer(model, _options(cfg, selection, resume=resume), validate=True)
    chosen = selection / "selected.json"
    if not (refit and resume and chosen.exists()):
        trainer.fit(train_dl, valid_dl)
    if refit:
        if main_rank and not chosen.exists():
            atomic_write_text(
                chosen,
                json.dumps({"best_epoch": trainer.stopper.best_epoch, "metric": trainer.stopper.metric,
                            "value": trainer.stopper.best}),
            )  # fmt: skip
        epochs = int(json.loads(chosen.read_text())["best_epoch"]) + 1
        print(f"refit: {epochs} epoch(s) on training + validation data (chosen on validation)", flush=True)
        model = recipe.model()
        trainer = recipe.trainer(
            model, _options(cfg, layout.root, resume=resume, n_epoch=epochs), validate=False
        )
        refit_dl, _ = recipe.loaders(refit=True)
        trainer.fit(refit_dl, None)
    model = trainer.model
    results = recipe.evaluate(trainer, model)
    if refit:  # the refit model trained on the validation data: its validation metrics mean nothing
        results.pop("valid", None)
        results["selection"] = json.loads(chosen.read_text())
    if main_rank:
        atomic_write_text(layout.test_metrics, json.dumps(results, indent=2))
        if recipe.log is not None:
            _write_retrieval_state(layout, recipe.log)
        for name, metrics in results.items():
            shown = "  ".join(
                f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()
            )
            print(f"{name}: {shown}", flush=True)
        print(f"run directory: {layout.root}  ({time.perf_counter() - t0:.1f}s)", flush=True)
    distributed.destroy()
    return RunResult(layout.root, model, results)


def _write_retrieval_state(layout: RunLayout, data: LogData) -> None:
    """Known users' histories (training + validation items) and the item index, so that the run
    serves ``/recommend`` as it is."""
    from recforge.runs.index import build_item_index
    from recforge.runs.model import load_run

    save_histories(layout.histories, data.histories("train", "valid"))
    run = load_run(layout.root)
    if isinstance(run.model, TwoTowerModel):
        if data.items_raw is not None:
            data.items_raw.to_parquet(layout.items)
        build_item_index(run, items=data.items_raw)


__all__ = ["RunResult", "train"]
