"""The one layer that turns feature specs and a batch into vectors.

Every embedding table of a model lives here, built from the specs: one table per feature, or per
``shared_with`` owner. With ``fused=True`` all tables of the same width are rows of one big table
(looked up once per batch for all sparse fields, the main cost saving on CPU); with
``sparse=True`` the tables produce sparse gradients, which the training loop hands to a sparse
optimizer.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn

from recforge import kernels
from recforge.features import (
    DenseFeature,
    EmbeddedFeature,
    Feature,
    Pooling,
    RandomNormal,
    RandomUniform,
    SequenceFeature,
    SparseFeature,
    XavierNormal,
    XavierUniform,
    dedup,
)


@dataclass(frozen=True)
class _Table:
    name: str
    vocab_size: int
    dim: int
    owner: EmbeddedFeature


def _init_rows(weight: Tensor, owner: EmbeddedFeature) -> None:
    init = owner.initializer
    with torch.no_grad():
        if isinstance(init, RandomNormal):
            weight.normal_(init.mean, init.std)
        elif isinstance(init, RandomUniform):
            weight.uniform_(init.minval, init.maxval)
        elif isinstance(init, XavierNormal):
            nn.init.xavier_normal_(weight, gain=init.gain)
        elif isinstance(init, XavierUniform):
            nn.init.xavier_uniform_(weight, gain=init.gain)
        if owner.padding_idx is not None:
            weight[owner.padding_idx].zero_()


def pool_sequence(emb: Tensor, mask: Tensor, pooling: Pooling) -> Tensor:
    """Reduce ``emb (B, L, D)`` over positions where ``mask (B, L)`` is true; empty rows give 0."""
    m = mask.unsqueeze(-1).to(emb.dtype)  # (B, L, 1)
    if pooling is Pooling.SUM:
        return (emb * m).sum(1)  # (B, D)
    if pooling is Pooling.MEAN:
        return (emb * m).sum(1) / m.sum(1).clamp_min(1.0)  # (B, D)
    if pooling is Pooling.MAX:
        filled = emb.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        return torch.nan_to_num(filled.amax(1), neginf=0.0)  # (B, D)
    raise ValueError(f"pooling {pooling.value!r} does not reduce a sequence; use EmbeddingLayer.sequence")


class EmbeddingLayer(nn.Module):
    """Embedding tables for ``features``, looked up by feature name.

    Args:
        features: every feature any part of the model will look up; dense features are ignored.
        sparse: tables produce sparse gradients (``torch.optim.SparseAdam``/row-wise optimizers).
        fused: tables of equal width share one ``nn.Embedding`` (rows offset per table).
    """

    def __init__(self, features: Sequence[Feature], *, sparse: bool = False, fused: bool = False) -> None:
        super().__init__()
        feats = [f for f in dedup(features) if isinstance(f, SparseFeature | SequenceFeature)]
        by_name = {f.name: f for f in feats}
        tables: dict[str, _Table] = {}
        for f in feats:
            if f.shared_with is None:
                tables[f.name] = _Table(f.name, f.vocab_size, f.dim, f)
        for f in feats:
            if f.shared_with is None:
                continue
            owner = by_name.get(f.shared_with)
            if owner is None:
                raise ValueError(
                    f"feature {f.name!r} shares the table of {f.shared_with!r}, which is not among the "
                    f"model's features {sorted(by_name)}"
                )
            if owner.shared_with is not None:
                raise ValueError(
                    f"feature {f.name!r}: shared_with must name a table owner, "
                    f"but {owner.name!r} itself shares {owner.shared_with!r}"
                )
            if f.dim != owner.dim:
                raise ValueError(
                    f"feature {f.name!r} (embed_dim={f.dim}) shares {owner.name!r} "
                    f"(embed_dim={owner.dim}); the widths must match"
                )
            if f.vocab_size > owner.vocab_size:
                raise ValueError(
                    f"feature {f.name!r} (vocab_size={f.vocab_size}) shares {owner.name!r} "
                    f"(vocab_size={owner.vocab_size}); it cannot hold more ids than the owner"
                )
        self.features: dict[str, EmbeddedFeature] = by_name
        self.tables = tables
        self.sparse = sparse
        self.fused = fused
        self.embeddings = nn.ModuleDict()
        self._offset: dict[str, int] = {}
        self._group: dict[str, str] = {}
        if fused:
            widths = sorted({t.dim for t in tables.values()})
            for dim in widths:
                group = f"dim{dim}"
                members = [t for t in tables.values() if t.dim == dim]
                total = 0
                for t in members:
                    self._offset[t.name], self._group[t.name] = total, group
                    total += t.vocab_size
                emb = nn.Embedding(total, dim, sparse=sparse)
                for t in members:
                    _init_rows(
                        emb.weight[self._offset[t.name] : self._offset[t.name] + t.vocab_size], t.owner
                    )
                self.embeddings[group] = emb
        else:
            for t in tables.values():
                emb = nn.Embedding(t.vocab_size, t.dim, sparse=sparse)
                _init_rows(emb.weight, t.owner)
                self.embeddings[t.name] = emb
                self._offset[t.name], self._group[t.name] = 0, t.name

    # -- lookups -------------------------------------------------------------------------------
    def table_weight(self, feature: str) -> Tensor:
        """The rows of the table ``feature`` looks up, ``(V, D)`` (a view into a fused table)."""
        t = self.tables[self.features[feature].table]
        w = cast(nn.Embedding, self.embeddings[self._group[t.name]]).weight
        off = self._offset[t.name]
        return w[off : off + t.vocab_size]

    def lookup(self, feature: str, ids: Tensor) -> Tensor:
        """Embeddings of ``ids`` (any shape ``S``) in ``feature``'s table: ``S + (D,)``."""
        f = self._feature(feature)
        self._check_range(f, ids)
        t = f.table
        return self._gather(self._group[t], ids + self._offset[t] if self.fused else ids)

    def sequence(self, batch: Mapping[str, Tensor], feature: str) -> tuple[Tensor, Tensor]:
        """Unpooled history: embeddings ``(B, L, D)`` and the non-padding mask ``(B, L)``."""
        ids = id_column(batch, feature, truncate_floats=True)
        if ids.dim() != 2:
            raise ValueError(
                f"sequence feature {feature!r}: expected a (B, L) id tensor, got {tuple(ids.shape)}"
            )
        return self.lookup(feature, ids), ids != 0

    def pooled(self, batch: Mapping[str, Tensor], feature: EmbeddedFeature) -> Tensor:
        """``(B, D)`` for a sparse feature, or a sequence feature under its own pooling."""
        if isinstance(feature, SparseFeature):
            return self.lookup(feature.name, id_column(batch, feature.name, truncate_floats=True))
        if feature.pooling is Pooling.CONCAT:
            raise ValueError(
                f"sequence feature {feature.name!r} has pooling='concat': it has no single "
                "vector; a model must attend over it (EmbeddingLayer.sequence)"
            )
        emb, mask = self.sequence(batch, feature.name)
        return pool_sequence(emb, mask, feature.pooling)

    def stack(self, batch: Mapping[str, Tensor], features: Sequence[Feature]) -> Tensor:
        """Field embeddings ``(B, F, D)`` of the sparse and pooled sequence features (dense skipped)."""
        embedded = [f for f in features if isinstance(f, SparseFeature | SequenceFeature)]
        if not embedded:
            raise ValueError("stack() needs at least one sparse or sequence feature")
        dims = {f.dim for f in embedded}
        if len(dims) > 1:
            detail = ", ".join(f"{f.name}={f.dim}" for f in embedded)
            raise ValueError(
                f"these features must share one embed_dim to be stacked into (B, F, D): {detail}"
            )
        sparse = [f for f in embedded if isinstance(f, SparseFeature)]
        parts: list[Tensor] = []
        if self.fused and len(sparse) > 1:
            # One gather for every sparse field: the fused fast path.
            parts.append(
                self._gather(self._group[sparse[0].table], self._fused_ids(batch, sparse))
            )  # (B, Fs, D)
            rest: list[EmbeddedFeature] = [f for f in embedded if not isinstance(f, SparseFeature)]
            order: list[EmbeddedFeature] = [*sparse, *rest]
        else:
            rest, order = embedded, embedded
        parts.extend(self.pooled(batch, f).unsqueeze(1) for f in rest)  # (B, 1, D) each
        out = torch.cat(parts, 1) if len(parts) > 1 else parts[0]  # (B, F, D)
        if order is not embedded:
            # by name, not ``list.index``: comparing frozen specs breaks torch.compile's tracing
            position = {f.name: i for i, f in enumerate(order)}
            index = [position[f.name] for f in embedded]
            if index != list(range(len(index))):
                out = out[:, index]
        return out

    def _fused_ids(self, batch: Mapping[str, Tensor], sparse: Sequence[SparseFeature]) -> Tensor:
        """``(B, Fs)`` rows of the fused table for ``sparse``'s id columns, each range-checked."""
        cols = [id_column(batch, f.name, truncate_floats=True) for f in sparse]
        offsets = [self._offset[f.table] for f in sparse]
        k = kernels.get() if _field_ids_kernel_takes(cols) else None
        if k is not None:  # stack, check and offset in one pass
            ids, bad = k.field_ids(cols, offsets, [f.vocab_size for f in sparse])
            if bad >= 0:
                self._check_range(sparse[bad], cols[bad])  # raises, naming the feature and the range
                raise IndexError(f"feature {sparse[bad].name!r}: ids outside [0, {sparse[bad].vocab_size})")
            return ids
        ids = torch.stack(cols, 1)  # (B, Fs)
        self._check_range_many(sparse, ids)
        return ids + torch.tensor(offsets, device=ids.device)

    def flatten(self, batch: Mapping[str, Tensor], features: Sequence[Feature]) -> Tensor:
        """Flat ``(B, Σd)``: embedded features (in order) first, then dense values (in order).

        Embedded features of one width go through ``stack`` (a single gather when fused).
        """
        embedded = [f for f in features if isinstance(f, SparseFeature | SequenceFeature)]
        dense = [f for f in features if isinstance(f, DenseFeature)]
        parts: list[Tensor] = []
        if embedded and len({f.dim for f in embedded}) == 1:
            parts.append(self.stack(batch, embedded).flatten(1))  # (B, F*D)
        else:
            parts.extend(self.pooled(batch, f) for f in embedded)
        parts.extend(dense_column(batch, f) for f in dense)
        return join_flat(parts)

    def forward(
        self, batch: Mapping[str, Tensor], features: Sequence[Feature], squeeze_dim: bool = False
    ) -> Tensor:
        """Torch-RecHub's call: ``(B, F, D)``, or with ``squeeze_dim`` the flat ``(B, Σd)``."""
        return self.flatten(batch, features) if squeeze_dim else self.stack(batch, features)

    def _gather(self, group: str, ids: Tensor) -> Tensor:
        """Rows ``ids`` of table ``group``; a sparse-gradient table is looked up outside
        ``torch.compile``'s graph (Inductor cannot produce sparse gradients), the rest compiles."""
        if self.sparse and torch.compiler.is_compiling():
            return _eager_lookup(cast(nn.Embedding, self.embeddings[group]), ids)
        table = cast(nn.Embedding, self.embeddings[group])
        if self.sparse and _kernel_lookup_takes(table, ids):
            k = kernels.get()
            if k is not None:
                return _KernelLookup.apply(table.weight, ids.contiguous(), k)
        return cast(Tensor, table(ids))

    # -- checks --------------------------------------------------------------------------------
    def _feature(self, name: str) -> EmbeddedFeature:
        try:
            return self.features[name]
        except KeyError:
            raise KeyError(
                f"feature {name!r} has no embedding table here; known: {sorted(self.features)}"
            ) from None

    # Out-of-range ids are refused with the feature's name. The check reads ids back to the host,
    # so it runs on CPU tensors (where it is one cheap reduction) and, on accelerators, only with
    # ``EmbeddingLayer.check_ids_on_device = True`` (a debug switch: a host sync per lookup);
    # ``check_ids`` below validates a whole dataset once where ids are produced instead.
    check_ids_on_device: bool = False

    def _skip_check(self, ids: Tensor) -> bool:
        return (
            torch.jit.is_tracing()
            or torch.compiler.is_compiling()
            or (ids.device.type != "cpu" and not self.check_ids_on_device)
        )

    def _check_range(self, f: EmbeddedFeature, ids: Tensor) -> None:
        if ids.numel() and not self._skip_check(ids):
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= f.vocab_size:
                raise IndexError(
                    f"feature {f.name!r}: ids must lie in [0, {f.vocab_size}), got range [{lo}, {hi}]"
                )

    def _check_range_many(self, feats: Sequence[EmbeddedFeature], ids: Tensor) -> None:
        if self._skip_check(ids):
            return
        vocab = torch.tensor([f.vocab_size for f in feats], device=ids.device)
        bad = ((ids < 0) | (ids >= vocab)).any(0)  # (Fs,)
        if bool(bad.any()):
            f = feats[int(bad.nonzero()[0])]
            self._check_range(f, ids[:, feats.index(f)])


def check_ids(model: nn.Module, columns: Mapping[str, Tensor]) -> None:
    """Every id column of ``columns`` that a model's embedding tables read lies in its feature's
    ``[0, vocab_size)`` (one pass over whole columns, where the ids are produced; the trainer runs
    it on an in-memory training set before the first step). An error names the feature."""
    seen: set[str] = set()
    for layer in model.modules():
        if not isinstance(layer, EmbeddingLayer):
            continue
        for name, f in layer.features.items():
            col = columns.get(name)
            if name in seen or col is None or col.numel() == 0 or col.is_floating_point():
                continue
            seen.add(name)
            lo, hi = int(col.min()), int(col.max())
            if lo < 0 or hi >= f.vocab_size:
                raise IndexError(
                    f"feature {name!r}: ids must lie in [0, {f.vocab_size}), got range [{lo}, {hi}]"
                )


@torch.compiler.disable
def _eager_lookup(table: nn.Embedding, ids: Tensor) -> Tensor:
    return cast(Tensor, table(ids))


def _field_ids_kernel_takes(cols: Sequence[Tensor]) -> bool:
    """Whether ``Kernels.field_ids`` takes these id columns: eager, CPU, int64, 1-D, contiguous,
    one length."""
    return (
        all(
            c.device.type == "cpu"
            and c.dtype == torch.int64
            and c.dim() == 1
            and c.is_contiguous()
            and c.shape == cols[0].shape
            for c in cols
        )
        and kernels.eager()
    )


def _kernel_lookup_takes(table: nn.Embedding, ids: Tensor) -> bool:
    """Whether the C lookup serves this sparse table: eager CPU float32, torch's plain lookup
    (no padding_idx, max_norm or frequency scaling), int64 ids."""
    w = table.weight
    return (
        w.device.type == "cpu"
        and w.dtype == torch.float32
        and w.is_contiguous()
        and ids.dtype == torch.int64
        and table.padding_idx is None
        and table.max_norm is None
        and not table.scale_grad_by_freq
        and kernels.eager()
    )


class _KernelLookup(torch.autograd.Function):
    """``F.embedding(ids, weight, sparse=True)`` with the C lookup of ``recforge.kernels``; the
    backward is the same uncoalesced row-sparse gradient torch's sparse embedding returns."""

    @staticmethod
    def forward(ctx, weight: Tensor, ids: Tensor, k: kernels.Kernels) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(ids)
        ctx.shape = weight.shape
        return k.gather(weight, ids)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (ids,) = ctx.saved_tensors
        rows, dim = ctx.shape
        values = grad.reshape(-1, dim).contiguous()
        sparse = torch.sparse_coo_tensor(
            ids.reshape(1, -1), values, (rows, dim), is_coalesced=False, check_invariants=False
        )
        return sparse, None, None  # ids were checked by the lookup


def join_flat(parts: Sequence[Tensor], *, for_matmul: bool = False) -> Tensor:
    """Concatenate ``(B, d_i)`` parts along the feature axis (no copy for a single part).

    ``for_matmul``: the result only feeds a matmul (an MLP's first ``Linear``). Under CPU autocast
    it is then written once, straight in the autocast dtype, where ``cat`` and autocast's cast would
    each pass over it; the backward pass likewise writes each part's gradient once.
    """
    if not parts:
        raise ValueError("no features to flatten")
    if for_matmul and len(parts) > 1 and _low_join_takes(parts):
        return _LowPrecisionJoin.apply(torch.get_autocast_dtype("cpu"), *parts)
    return parts[0] if len(parts) == 1 else torch.cat(list(parts), 1)


def _low_join_takes(parts: Sequence[Tensor]) -> bool:
    return (
        torch.is_autocast_enabled("cpu")
        and all(p.device.type == "cpu" and p.dim() == 2 and p.is_floating_point() for p in parts)
        and kernels.eager()
    )


class _LowPrecisionJoin(torch.autograd.Function):
    """``torch.cat(parts, 1).to(dtype)`` in one pass; gradients back in each part's dtype."""

    @staticmethod
    def forward(ctx, dtype: torch.dtype, *parts: Tensor) -> Tensor:  # type: ignore[override]
        widths = [p.shape[1] for p in parts]
        out = torch.empty(parts[0].shape[0], sum(widths), dtype=dtype)
        start = 0
        for p, w in zip(parts, widths, strict=True):
            out[:, start : start + w].copy_(p)
            start += w
        ctx.widths, ctx.dtypes = widths, [p.dtype for p in parts]
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        out: list[Tensor | None] = [None]
        start = 0
        for w, dt, needed in zip(ctx.widths, ctx.dtypes, ctx.needs_input_grad[1:], strict=True):
            out.append(
                grad[:, start : start + w].to(dt, memory_format=torch.contiguous_format) if needed else None
            )
            start += w
        return tuple(out)


def column(batch: Mapping[str, Tensor], name: str) -> Tensor:
    """``batch[name]``, or a ``KeyError`` naming the missing column and the batch's columns."""
    try:
        return batch[name]
    except KeyError:
        raise KeyError(f"batch has no column {name!r}; it has {sorted(batch)}") from None


def id_column(batch: Mapping[str, Tensor], name: str, *, truncate_floats: bool = False) -> Tensor:
    """An id column (int64/int32) of ``batch``; other dtypes are a ``TypeError`` naming the feature.
    With ``truncate_floats`` (the embedding lookups) a floating column is truncated to ids as
    Torch-RecHub does (``x.long()``; its Avazu example embeds scaled numeric columns), with a
    warning naming the feature."""
    col = column(batch, name)
    if col.dtype in (torch.int64, torch.int32):
        return col
    if truncate_floats and col.is_floating_point():
        warnings.warn(
            f"feature {name!r}: float values used as embedding ids are truncated to integers "
            "(Torch-RecHub's x.long()); encode the column to integer ids first (e.g. "
            "recforge.preprocess.Categorical or Bucketize) to use it as a sparse feature",
            stacklevel=2,
        )
        return col.long()
    raise TypeError(f"feature {name!r}: expected integer ids, got dtype {col.dtype}")


def dense_column(batch: Mapping[str, Tensor], f: DenseFeature) -> Tensor:
    """A dense feature as ``(B, d)`` float."""
    x = column(batch, f.name).float()
    if x.dim() == 1:
        x = x.unsqueeze(1)  # (B, 1)
    if x.shape[1] != f.embed_dim:
        raise ValueError(f"dense feature {f.name!r}: expected width {f.embed_dim}, got {x.shape[1]}")
    return x


def output_dim(features: Sequence[Feature]) -> int:
    """Width of ``EmbeddingLayer.flatten`` over ``features``."""
    total = 0
    for f in features:
        if isinstance(f, SequenceFeature) and f.pooling is Pooling.CONCAT:
            raise ValueError(f"sequence feature {f.name!r} has pooling='concat' and no flat width")
        total += f.embed_dim if isinstance(f, DenseFeature) else f.dim
    return total
