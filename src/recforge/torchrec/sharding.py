"""Train a recforge model with its embedding tables sharded by TorchRec (``pip install 'recforge[torchrec]'``).

``ShardedModel(model, sharding="table_wise")`` moves the tables of every ``EmbeddingLayer`` in
``model`` into one real ``torchrec.EmbeddingBagCollection``, shards it over the process group with
``torchrec.distributed.DistributedModelParallel`` (table-wise, column-wise or row-wise) and trains
the tables with TorchRec's fused row-wise Adagrad, applied inside the backward pass. The rest of
the model (MLPs, interactions) is data-parallel (DMP wraps it in DDP) and is trained by the
``Trainer``'s own optimizer over ``dense_parameters()``.

The recforge model keeps its code: each ``EmbeddingLayer`` is replaced, in a copy, by
``PooledFeatures``, which serves ``stack``/``flatten``/``pooled`` from the vectors the sharded
collection pooled for the batch. Every feature of a layer is one KJT key (an id column ``(B,)``
gives one id per row, a sequence ``(B, L)`` its non-padding ids: ``recforge.torchrec.kjt_from_batch``),
so models that only pool (DeepFM, DLRM, DCN, WideDeep, xDeepFM, the multi-task models...) train
unchanged; a model that looks up unpooled embeddings (``lookup``/``sequence``, e.g. DIN) is refused.

Weights move both ways: the sharded tables start from rank 0's unsharded model, and
``unsharded_state_dict()`` gathers the trained tables back into it on rank 0, with the unsharded
model's keys (for checkpoints, ``export``, ``serve``).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, cast

import torch
from torch import Tensor, nn

from recforge import distributed as rdist
from recforge.choices import Choice
from recforge.features import EmbeddedFeature
from recforge.layers.embedding import EmbeddingLayer
from recforge.torchrec.adapter import kjt_from_batch, tables_from_features
from recforge.torchrec.modules import PoolingType

EXTRA_HINT = (
    "pip install 'recforge[torchrec]' (on CPU install torch, then fbgemm-gpu-cpu, then torchrec with "
    "--no-deps, as docs/torchrec.md shows)"
)


def require_torchrec() -> ModuleType:
    """The ``torchrec`` module, or an ``ImportError`` naming the ``recforge[torchrec]`` extra."""
    try:
        import torchrec
        import torchrec.distributed  # fbgemm loads here: a CUDA build on a CPU machine fails now
    except (ImportError, OSError) as e:
        raise ImportError(f"sharded embeddings need TorchRec and fbgemm: {EXTRA_HINT}. ({e})") from e
    return torchrec


class ShardingType(Choice):
    """How each embedding table is split over the ranks."""

    TABLE_WISE = "table_wise"  # whole tables, placed round-robin on the ranks
    COLUMN_WISE = "column_wise"  # every table's columns split evenly over all ranks
    ROW_WISE = "row_wise"  # every table's rows split evenly over all ranks


@dataclass(frozen=True)
class FusedRowWiseAdagrad:
    """TorchRec's fused row-wise Adagrad for the sharded tables (fbgemm ``EXACT_ROWWISE_ADAGRAD``):
    per row ``G += mean_d(g_d²)``, ``w -= lr · g / (sqrt(G) + eps)``, with ``g`` the row's summed
    gradient; the rule of ``recforge.optim.RowWiseAdagrad``."""

    lr: float = 0.01
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"FusedRowWiseAdagrad: lr must be > 0, got {self.lr}")
        if self.eps <= 0:
            raise ValueError(f"FusedRowWiseAdagrad: eps must be > 0, got {self.eps}")

    @classmethod
    def parse(cls, value: FusedRowWiseAdagrad | Mapping[str, float] | None) -> FusedRowWiseAdagrad:
        if value is None:
            return cls()
        if isinstance(value, FusedRowWiseAdagrad):
            return value
        unknown = set(value) - {"lr", "eps"}
        if unknown:
            raise ValueError(f"embedding optimizer: unknown keys {sorted(unknown)}; valid: ['eps', 'lr']")
        return cls(**{k: float(v) for k, v in value.items()})


class _PooledBatch(dict):  # type: ignore[type-arg]
    """A batch plus ``pooled``: KJT key -> ``(B, D)`` vectors computed by the sharded collection."""

    pooled: dict[str, Tensor]


class PooledFeatures(EmbeddingLayer):
    """An ``EmbeddingLayer`` without tables: ``pooled`` reads the vectors that ``ShardedModel``
    looked up in its sharded ``EmbeddingBagCollection`` for this batch (``stack``/``flatten``
    are inherited and go through ``pooled``).

    Args:
        features: the replaced layer's features (name -> spec).
        keys: feature name -> its KJT key.
    """

    def __init__(self, features: Mapping[str, EmbeddedFeature], keys: Mapping[str, str]) -> None:
        nn.Module.__init__(self)
        self.features = dict(features)
        self.tables = {}
        self.sparse = False
        self.fused = False  # stack() then pools field by field, through pooled()
        self.embeddings = nn.ModuleDict()
        self._offset, self._group = {}, {}
        self.keys = dict(keys)

    def pooled(self, batch: Mapping[str, Tensor], feature: EmbeddedFeature) -> Tensor:
        """The ``(B, D)`` vector of ``feature`` pooled by the sharded collection."""
        if not isinstance(batch, _PooledBatch):
            raise RuntimeError(
                "this model's embedding tables are sharded by TorchRec: call it through its ShardedModel"
            )
        self._feature(feature.name)
        return batch.pooled[self.keys[feature.name]]

    def lookup(self, feature: str, ids: Tensor) -> Tensor:
        raise NotImplementedError(
            f"feature {feature!r}: a TorchRec EmbeddingBagCollection returns pooled vectors only; "
            "models that look up unpooled embeddings (lookup/sequence) cannot be sharded"
        )

    def table_weight(self, feature: str) -> Tensor:
        raise NotImplementedError(
            f"feature {feature!r}: its table is sharded by TorchRec; use ShardedModel.unsharded_state_dict()"
        )


@dataclass(frozen=True)
class _Table:
    layer: str  # path of the EmbeddingLayer in the model
    table: str  # recforge table (owner feature) name
    name: str  # TorchRec table name


class _EmbeddingBagModel(nn.Module):
    """What DMP wraps: the sharded collection ``ebc`` and the model whose layers read its output."""

    def __init__(
        self, ebc: nn.Module, model: nn.Module, features: Sequence[EmbeddedFeature], keys: Sequence[str]
    ) -> None:
        super().__init__()
        self.ebc = ebc
        self.model = model
        self.kjt_features = list(features)
        self.kjt_keys = list(keys)
        # several layers may embed one column (each in its own tables): read it from the batch once
        self.columns = list({f.name: f for f in self.kjt_features}.values())

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        import torchrec

        if not torch.jit.is_tracing():
            for f in self.columns:  # as EmbeddingLayer does, before the ids go to other ranks
                ids = batch.get(f.name)
                if ids is not None and ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= f.vocab_size):
                    raise IndexError(
                        f"feature {f.name!r}: ids must lie in [0, {f.vocab_size}), "
                        f"got range [{int(ids.min())}, {int(ids.max())}]"
                    )
        local = kjt_from_batch(batch, self.columns)  # the recforge KJT: values and lengths
        if len(self.columns) == len(self.kjt_features):
            values, lengths = local.values(), local.lengths()
        else:
            per = local.to_dict()
            values = torch.cat([per[f.name].values() for f in self.kjt_features])
            lengths = torch.cat([per[f.name].lengths() for f in self.kjt_features])
        kjt = torchrec.KeyedJaggedTensor(keys=self.kjt_keys, values=values, lengths=lengths)
        out = _PooledBatch(batch)
        out.pooled = self.ebc(kjt).to_dict()  # key -> (B, D)
        return self.model(out)


class ShardedModel(nn.Module):
    """``model`` with its embedding tables in a TorchRec ``EmbeddingBagCollection`` sharded by
    ``DistributedModelParallel``; ``forward(batch)`` is ``model(batch)``.

    Build it on every rank after joining the process group (``recforge.distributed.init_from_env``),
    from the same unsharded model (the tables and dense weights start from rank 0's). Hand it to
    a ``Trainer`` like any model: the Trainer does not wrap it in DDP, optimizes only
    ``dense_parameters()`` and saves ``unsharded_state_dict()``.

    Args:
        model: a recforge model whose embeddings are ``EmbeddingLayer`` s looked up through
            ``stack``/``flatten``/``pooled`` (sparse features, and sequences pooled by mean or sum).
        sharding: ``table_wise``, ``column_wise`` (each table's width must divide by the world size)
            or ``row_wise``.
        embedding_optimizer: the fused row-wise Adagrad's ``lr`` and ``eps``.
        device: where the tables and the model live; default ``cuda:LOCAL_RANK`` under NCCL, else CPU.

    Raises:
        ImportError: TorchRec (or its fbgemm) is not installed.
        RuntimeError: no process group is initialised.
        ValueError: the model has no ``EmbeddingLayer``, or a table cannot be sharded as asked.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        sharding: ShardingType | str = ShardingType.TABLE_WISE,
        embedding_optimizer: FusedRowWiseAdagrad | Mapping[str, float] | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        torchrec = require_torchrec()
        from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
        from torchrec.distributed.model_parallel import DistributedModelParallel
        from torchrec.distributed.types import ShardingEnv, ShardingPlan
        from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward

        if not rdist.is_initialized():
            raise RuntimeError(
                "ShardedModel needs a process group: call recforge.distributed.init_from_env() under "
                "torchrun (or recforge train CONFIG --nproc N) first"
            )
        self.sharding = ShardingType.parse(sharding)
        self.embedding_optimizer = FusedRowWiseAdagrad.parse(embedding_optimizer)
        self.device = torch.device(device) if device is not None else _default_device()
        # The unsharded model: every rank starts from rank 0's weights; rank 0 gets the trained
        # weights back from unsharded_state_dict(). Not a submodule (its tables are not trained).
        rdist.broadcast_module(model)
        self._unsharded = (model,)  # a tuple: nn.Module does not register it as a submodule

        layers = [(p, m) for p, m in model.named_modules() if isinstance(m, EmbeddingLayer)]
        if not layers:
            raise ValueError(f"{type(model).__name__} has no recforge EmbeddingLayer to shard")
        configs: list[Any] = []
        kjt_features: list[EmbeddedFeature] = []
        kjt_keys: list[str] = []
        self._tables: list[_Table] = []
        memo: dict[int, object] = {}
        for path, layer in layers:
            if isinstance(layer, PooledFeatures):
                raise ValueError(f"{type(model).__name__} is already sharded (layer {path!r})")
            prefix = "" if len(layers) == 1 else path.replace(".", "_") + "__"
            feats = list(layer.features.values())
            keys = {f.name: prefix + f.name for f in feats}
            pooling = {PoolingType.SUM: torchrec.PoolingType.SUM, PoolingType.MEAN: torchrec.PoolingType.MEAN}
            for cfg in tables_from_features(feats):
                name = prefix + cfg.name
                self._tables.append(_Table(path, layer.features[cfg.feature_names[0]].table, name))
                configs.append(
                    torchrec.EmbeddingBagConfig(
                        name=name,
                        embedding_dim=cfg.embedding_dim,
                        num_embeddings=cfg.num_embeddings,
                        feature_names=[keys[f] for f in cfg.feature_names],
                        pooling=pooling[cfg.pooling],
                    )
                )
            kjt_features.extend(feats)
            kjt_keys.extend(keys[f.name] for f in feats)
            memo[id(layer)] = PooledFeatures(layer.features, keys)
        # The copy shares nothing with ``model`` and holds no tables: each layer is swapped in the
        # deepcopy memo for its PooledFeatures.
        dense_model = copy.deepcopy(model, memo).to(self.device)
        ebc = torchrec.EmbeddingBagCollection(tables=configs, device=torch.device("meta"))
        with warnings.catch_warnings():  # TorchRec's wrapper of torch's own in-backward optimizer
            warnings.simplefilter("ignore", DeprecationWarning)
            apply_optimizer_in_backward(
                torchrec.optim.RowWiseAdagrad,
                ebc.parameters(),
                {"lr": self.embedding_optimizer.lr, "eps": self.embedding_optimizer.eps},
            )
        wrapped = _EmbeddingBagModel(ebc, dense_model, kjt_features, kjt_keys)
        sharder = EmbeddingBagCollectionSharder()
        self.plan = ShardingPlan({"ebc": self._module_plan(ebc, sharder, configs)})
        self.dmp = DistributedModelParallel(
            wrapped,
            env=ShardingEnv.from_process_group(torch.distributed.group.WORLD),
            device=self.device,
            plan=self.plan,
            sharders=[sharder],
        )
        self._load_dmp(model)

    # -- training ------------------------------------------------------------------------------
    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """``batch`` columns -> the model's outputs (a collective: every rank calls it in step)."""
        return self.dmp(batch)

    def dense_parameters(self) -> list[Tensor]:
        """Parameters the caller's optimizer trains (the tables are updated in backward)."""
        from torchrec.optim.optimizers import in_backward_optimizer_filter

        return [p for _, p in in_backward_optimizer_filter(self.dmp.named_parameters()) if p.requires_grad]

    @property
    def unsharded(self) -> nn.Module:
        """The model that was sharded; on rank 0 it holds the trained weights after
        ``unsharded_state_dict()`` (ready for ``export``/``serve``)."""
        return self._unsharded[0]

    # -- weights -------------------------------------------------------------------------------
    def unsharded_state_dict(self) -> dict[str, Tensor] | None:
        """Gather the trained weights into the unsharded model on rank 0 and return its
        ``state_dict()`` (keys of the model that was sharded); ``None`` on other ranks.
        A collective: every rank must call it."""
        from torch.distributed._shard.sharded_tensor import ShardedTensor
        from torch.distributed.tensor import DTensor

        main = rdist.rank() == 0
        full: dict[str, Tensor] = {}
        for key, value in self.dmp.state_dict().items():
            if isinstance(value, ShardedTensor):  # what TorchRec 1.8 returns for a sharded table
                out = torch.empty(value.size(), dtype=value.dtype, device=self.device) if main else None
                value.gather(dst=0, out=out)
                if out is not None:
                    full[key] = out
            elif isinstance(value, DTensor):
                full[key] = value.full_tensor()
            else:
                full[key] = value
        if not main:
            return None
        model = self.unsharded
        dense = {k.removeprefix("model."): v for k, v in full.items() if k.startswith("model.")}
        result = model.load_state_dict(dense, strict=False)
        if result.unexpected_keys:
            raise RuntimeError(f"unexpected dense weights {result.unexpected_keys}")
        with torch.no_grad():
            for t in self._tables:
                layer = cast(EmbeddingLayer, model.get_submodule(t.layer))
                layer.table_weight(t.table).copy_(full[f"ebc.embedding_bags.{t.name}.weight"])
        return model.state_dict()

    def load_unsharded_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Load a state dict of the unsharded model (e.g. from ``unsharded_state_dict()``) into
        it and into every shard. Every rank must pass the same ``state``."""
        model = self.unsharded
        model.load_state_dict(state)
        self._load_dmp(model)

    # -- internals -----------------------------------------------------------------------------
    def _load_dmp(self, model: nn.Module) -> None:
        """Copy ``model``'s dense weights and tables into the DMP (each rank keeps its shards)."""
        state: dict[str, Tensor] = {}
        emb_params = {id(p) for m in model.modules() if isinstance(m, EmbeddingLayer) for p in m.parameters()}
        for k, v in model.state_dict(keep_vars=True).items():
            if id(v) not in emb_params:
                state[f"model.{k}"] = v.detach()
        for t in self._tables:
            layer = cast(EmbeddingLayer, model.get_submodule(t.layer))
            state[f"ebc.embedding_bags.{t.name}.weight"] = layer.table_weight(t.table).detach()
        missing = set(self.dmp.state_dict()) - set(state)
        if missing:
            raise RuntimeError(f"no unsharded weights for {sorted(missing)}")
        self.dmp.load_state_dict(dict(state))  # a copy: DMP rewrites the keys of what it is given

    def _module_plan(self, ebc: nn.Module, sharder: Any, configs: Sequence[Any]) -> Any:
        from torchrec.distributed.sharding_plan import (
            column_wise,
            construct_module_sharding_plan,
            row_wise,
            table_wise,
        )

        world = rdist.world_size()
        per_table = {}
        for i, cfg in enumerate(configs):
            if self.sharding is ShardingType.TABLE_WISE:
                per_table[cfg.name] = table_wise(rank=i % world)
            elif self.sharding is ShardingType.COLUMN_WISE:
                if cfg.embedding_dim % world:
                    raise ValueError(
                        f"column_wise sharding: table {cfg.name!r} has embedding_dim "
                        f"{cfg.embedding_dim}, not divisible by the world size {world}"
                    )
                per_table[cfg.name] = column_wise(ranks=list(range(world)))
            else:
                per_table[cfg.name] = row_wise()
        return construct_module_sharding_plan(
            ebc,
            per_table,
            sharder=sharder,
            local_size=world,
            world_size=world,
            device_type=self.device.type,
        )


def _default_device() -> torch.device:
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
