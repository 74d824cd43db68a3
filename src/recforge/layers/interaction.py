"""Feature-interaction layers: LR, FM, FFM, SENET, bilinear, AFM attention, PNN products and
FinalMLP's gating and fusion (the crosses live in ``cross.py``, CIN in ``cin.py``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from recforge import kernels
from recforge.choices import Choice
from recforge.features import Feature, SequenceFeature, SparseFeature
from recforge.layers.attention import MultiHeadAttention
from recforge.layers.dropout import Dropout
from recforge.layers.embedding import join_flat


class LR(nn.Module):
    """Logistic-regression term: ``(B, input_dim) -> (B, 1)``.

    Applied to flattened embeddings it equals per-id scalar weights on one-hot inputs (each id's
    embedding projected onto the weight vector), i.e. the wide/first-order term of the papers.
    """

    def __init__(self, input_dim: int, *, bias: bool = True) -> None:
        super().__init__()
        self.fc = nn.Linear(input_dim, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x)  # (B, 1)


class FM(nn.Module):
    """Second-order factorisation machine (Rendle 2010) over field embeddings.

    ``Σ_{i<j} <e_i, e_j> = ½ (‖Σ e_i‖² − Σ ‖e_i‖²)``, computed in O(F·D).

    Training the summed logit on CPU, ``_FMLogit`` computes it in one pass each way: ``Σ ‖e_i‖²`` as a
    norm (no ``(B, F, D)`` square is stored) and the gradient ``g · (Σ e − e_i)`` as
    one expression, where autograd's formula writes four ``(B, F, D)`` tensors (measured: 2.2 ms
    against 4.4 ms for fields ``(2048, 26, 16)`` forward + backward, one thread).

    Args:
        reduce_sum: sum over D to one logit ``(B, 1)``; otherwise keep the ``(B, D)`` bi-interaction
            vector (NFM).
    """

    def __init__(self, *, reduce_sum: bool = True) -> None:
        super().__init__()
        self.reduce_sum = reduce_sum

    def forward(self, x: Tensor) -> Tensor:
        """``x (B, F, D) -> (B, 1)`` or ``(B, D)``."""
        return fm_logit(x) if self.reduce_sum else _bi_interaction(x)


def fm_logit(x: Tensor) -> Tensor:
    """The FM's summed second-order logit of fields ``x (B, F, D)``: ``(B, 1)``."""
    if _one_pass(x):
        return _FMLogit.apply(x)
    return _bi_interaction(x).sum(1, keepdim=True)


def _bi_interaction(x: Tensor) -> Tensor:
    """``½ ((Σ_f x_f)² − Σ_f x_f²)`` per dimension: ``(B, D)``."""
    square_of_sum = x.sum(1).pow(2)  # (B, D)
    sum_of_square = x.pow(2).sum(1)  # (B, D)
    return 0.5 * (square_of_sum - sum_of_square)


def _one_pass(x: Tensor) -> bool:
    """Whether ``_FMLogit`` takes ``x``: eager CPU training (tracers, compilers and exporters see the
    plain formula, which they fuse or translate themselves)."""
    return (
        x.requires_grad
        and torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.dim() == 3
        and kernels.eager()
    )


class _FMLogit(torch.autograd.Function):
    """``½ (‖Σ_f x_f‖² − ‖x‖²)`` per row of ``x (B, F, D)`` -> ``(B, 1)``; backward
    ``g · (Σ_f x_f − x_f)``."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        total = x.sum(1)  # (B, D)
        squares = torch.linalg.vector_norm(x.reshape(x.shape[0], -1), dim=1, keepdim=True).square()  # (B, 1)
        ctx.save_for_backward(x, total)
        return 0.5 * (total.pow(2).sum(1, keepdim=True) - squares)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        x, total = ctx.saved_tensors
        return torch.sub(total.unsqueeze(1), x).mul_(grad.view(-1, 1, 1))  # (B, F, D)


def wide_fm_and_deep_input(fields: Tensor, linear: LR, extra: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """DeepFM's two reads of its field embeddings ``fields (B, F, D)``: the first-order + FM logit
    ``linear(flat) + FM(fields)`` ``(B, 1)``, and the deep tower's input ``[flat, *extra]``
    ``(B, F*D + Σ extra widths)``, where ``flat`` is ``fields`` flattened and ``linear`` reads
    ``F*D`` inputs.

    On CPU, eager, with the C kernels (``recforge.kernels``), both come from one pass over
    ``fields`` and the backward pass writes ``fields``' whole gradient (its three shares summed) in
    one more; the deep input is written straight in bfloat16 under bf16 autocast (it only feeds the
    MLP's first matmul). The first-order term runs in float32 there (autocast would run it in bf16).
    Elsewhere (other devices, tracing, compiling, export, no compiler) it is the plain composition,
    which computes the same things.
    """
    k = kernels.get() if _head_takes(fields, linear, extra) else None
    if k is None:
        flat = fields.flatten(1)
        return linear(flat) + fm_logit(fields), join_flat([flat, *extra], for_matmul=True)
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else torch.float32
    return _WideFMHead.apply(fields, linear.fc.weight, linear.fc.bias, dtype, k, *extra)


def _head_takes(fields: Tensor, linear: LR, extra: Sequence[Tensor]) -> bool:
    weight = linear.fc.weight
    return (
        fields.device.type == "cpu"
        and fields.dim() == 3
        and fields.dtype == weight.dtype == torch.float32
        and weight.shape == (1, fields.shape[1] * fields.shape[2])
        and (not torch.is_autocast_enabled("cpu") or torch.get_autocast_dtype("cpu") == torch.bfloat16)
        and all(e.device.type == "cpu" and e.dim() == 2 and e.is_floating_point() for e in extra)
        and kernels.eager()
    )


class _WideFMHead(torch.autograd.Function):
    """``wide_fm_and_deep_input`` through ``Kernels.fm_head``: outputs ``(logit (B, 1), deep)``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, fields: Tensor, weight: Tensor, bias: Tensor | None, dtype: torch.dtype, k: kernels.Kernels,
        *extra: Tensor,
    ) -> tuple[Tensor, Tensor]:  # fmt: skip
        x = fields.contiguous()
        batch, width = x.shape[0], x.shape[1] * x.shape[2]
        widths = [e.shape[1] for e in extra]
        deep = torch.empty(batch, width + sum(widths), dtype=dtype)
        w = weight.detach().reshape(-1).contiguous()
        direct = all(e.dtype == torch.float32 and e.is_contiguous() for e in extra)  # the kernel copies them
        logit = k.fm_head(x, w, 0.0 if bias is None else float(bias), deep, extra if direct else ())
        start = width
        for e, n in zip(extra, widths, strict=True):
            if not direct:
                deep[:, start : start + n].copy_(e)
            start += n
        ctx.save_for_backward(x, w)
        ctx.k, ctx.width, ctx.widths, ctx.dtypes = k, width, widths, [e.dtype for e in extra]
        ctx.has_bias = bias is not None
        return logit, deep

    @staticmethod
    def backward(ctx, grad: Tensor, deep_grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, w = ctx.saved_tensors
        if deep_grad.stride(1) != 1:
            deep_grad = deep_grad.contiguous()
        grad_x, grad_w = ctx.k.fm_head_backward(x, w, grad.float().contiguous(), deep_grad)
        grad_bias = grad.sum().reshape(1) if ctx.has_bias and ctx.needs_input_grad[2] else None
        extra: list[Tensor | None] = []
        start = ctx.width
        for n, dt, needed in zip(ctx.widths, ctx.dtypes, ctx.needs_input_grad[5:], strict=True):
            part = deep_grad[:, start : start + n]
            extra.append(part.to(dt, memory_format=torch.contiguous_format) if needed else None)
            start += n
        return (grad_x, grad_w.view(1, -1), grad_bias, None, None, *extra)


# -- helpers -------------------------------------------------------------------------------------
def pair_indices(num_fields: int, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Row/column indices of the ``P = F(F-1)/2`` field pairs ``i < j`` (row-major order)."""
    i, j = torch.triu_indices(num_fields, num_fields, offset=1, device=device).unbind(0)
    return i, j


def field_dim(model: str, features: Sequence[Feature]) -> int:
    """The one embedding width D shared by ``features``' embedded fields.

    Raises:
        ValueError: naming the model, every embedded feature and its width when they differ (the
            model stacks fields into ``(B, F, D)``) or when there is no embedded feature.
    """
    embedded = [f for f in features if isinstance(f, SparseFeature | SequenceFeature)]
    if not embedded:
        raise ValueError(f"{model}: needs at least one sparse or sequence feature")
    dims = {f.dim for f in embedded}
    if len(dims) > 1:
        detail = ", ".join(f"{f.name}={f.dim}" for f in embedded)
        raise ValueError(
            f"{model} stacks fields into (B, F, D), so every sparse/sequence feature needs the same "
            f"embed_dim; got {detail}"
        )
    return dims.pop()


# -- field-aware FM ------------------------------------------------------------------------------
class FFM(nn.Module):
    """Field-aware factorisation machine (Juan et al. 2016) pairwise terms.

    Input ``x (B, F, F, D)`` where ``x[:, i, j]`` is field i's vector for interacting with field j;
    pair ``(i, j)`` contributes ``x[:, i, j] ⊙ x[:, j, i]``.

    Args:
        reduce_sum: sum everything to one logit ``(B, 1)``; otherwise keep ``(B, P, D)``.
    """

    def __init__(self, *, reduce_sum: bool = True) -> None:
        super().__init__()
        self.reduce_sum = reduce_sum

    def forward(self, x: Tensor) -> Tensor:
        """``x (B, F, F, D) -> (B, 1)`` or ``(B, P, D)``."""
        i, j = pair_indices(x.shape[1], x.device)
        pairs = x[:, i, j] * x[:, j, i]  # (B, P, D)
        return pairs.sum((1, 2)).unsqueeze(1) if self.reduce_sum else pairs


# -- squeeze-excitation over fields --------------------------------------------------------------
class SENET(nn.Module):
    """Squeeze-and-excitation over fields (FiBiNET, arXiv 1905.09433): reweights each field vector.

    Squeeze each field to a scalar (mean over D), excite with ``F -> F/r -> F`` ReLU layers, scale
    the fields by the result.

    Args:
        num_fields: F.
        reduction_ratio: r.
        compose_dim: when set (the field width D), the squeeze is a learned per-field linear
            composition of the D values instead of the mean: the Compose-Excitation network of
            FAT-DeepFFM (arXiv 1905.06336).
    """

    def __init__(
        self, num_fields: int, reduction_ratio: float = 3, *, compose_dim: int | None = None
    ) -> None:
        super().__init__()
        if reduction_ratio <= 0:
            raise ValueError(f"reduction_ratio must be positive, got {reduction_ratio!r}")
        hidden = max(1, int(num_fields / reduction_ratio))
        self.compose = (
            nn.Parameter(torch.full((num_fields, compose_dim), 1.0 / compose_dim)) if compose_dim else None
        )
        self.excite = nn.Sequential(
            nn.Linear(num_fields, hidden, bias=False),
            nn.ReLU(),
            nn.Linear(hidden, num_fields, bias=False),
            nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        """``x (B, F, D) -> (B, F, D)``."""
        z = x.mean(-1) if self.compose is None else (x * self.compose).sum(-1)  # (B, F)
        return x * self.excite(z).unsqueeze(-1)  # (B, F, D)


# -- bilinear interaction ------------------------------------------------------------------------
class BilinearType(Choice):
    """Which weights FiBiNET's bilinear interaction shares: one W for all fields, one per field,
    or one per field pair."""

    FIELD_ALL = "field_all"
    FIELD_EACH = "field_each"
    FIELD_INTERACTION = "field_interaction"


class BilinearInteraction(nn.Module):
    """FiBiNET bilinear interaction: pair ``(i, j)`` gives ``(v_i W) ⊙ v_j``.

    Shapes: ``x (B, F, D) -> (B, P, D)``.
    """

    i: Tensor
    j: Tensor

    def __init__(
        self, num_fields: int, dim: int, bilinear_type: BilinearType | str = "field_interaction"
    ) -> None:
        super().__init__()
        self.bilinear_type = BilinearType.parse(bilinear_type)
        n = {
            BilinearType.FIELD_ALL: 1,
            BilinearType.FIELD_EACH: num_fields,
            BilinearType.FIELD_INTERACTION: num_fields * (num_fields - 1) // 2,
        }[self.bilinear_type]
        self.weight = nn.Parameter(torch.empty(n, dim, dim))
        for w in self.weight.data:
            nn.init.xavier_normal_(w)
        i, j = pair_indices(num_fields)
        self.register_buffer("i", i, persistent=False)
        self.register_buffer("j", j, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """``x (B, F, D) -> (B, P, D)``."""
        left, right = x[:, self.i], x[:, self.j]  # (B, P, D) each
        if self.bilinear_type is BilinearType.FIELD_ALL:
            proj = left @ self.weight[0]  # (B, P, D)
        elif self.bilinear_type is BilinearType.FIELD_EACH:
            proj = torch.einsum("bpd,pde->bpe", left, self.weight[self.i])  # (B, P, D)
        else:
            proj = torch.einsum("bpd,pde->bpe", left, self.weight)  # (B, P, D)
        return proj * right


# -- attentional pooling of pairwise interactions ------------------------------------------------
class AFMAttention(nn.Module):
    """AFM (arXiv 1708.04617) attention pooling of the pairwise products ``v_i ⊙ v_j``.

    ``a_ij = softmax_ij(h^T ReLU(W (v_i ⊙ v_j) + b))``, output ``Σ a_ij (v_i ⊙ v_j)``.

    Args:
        dim: D. attention_dim: the attention network's hidden width t.
        dropout: dropout on the attention weights (training only).

    Shapes: ``x (B, F, D) -> (B, D)``.
    """

    def __init__(self, dim: int, attention_dim: int = 16, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.att = nn.Sequential(
            nn.Linear(dim, attention_dim), nn.ReLU(), nn.Linear(attention_dim, 1, bias=False)
        )
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``x (B, F, D) -> (B, D)``."""
        i, j = pair_indices(x.shape[1], x.device)
        pairs = x[:, i] * x[:, j]  # (B, P, D)
        weights = self.dropout(self.att(pairs).softmax(1))  # (B, P, 1)
        return (weights * pairs).sum(1)  # (B, D)


# -- PNN products --------------------------------------------------------------------------------
class InnerProduct(nn.Module):
    """All pairwise inner products ``<v_i, v_j>``, ``i < j``: ``(B, F, D) -> (B, P)`` (PNN, DLRM)."""

    def forward(self, x: Tensor) -> Tensor:
        i, j = pair_indices(x.shape[1], x.device)
        return (x[:, i] * x[:, j]).sum(-1)  # (B, P)


class OuterProduct(nn.Module):
    """PNN's outer-product signal with the paper's superposition trick (arXiv 1611.00144, §3.3):
    ``p = f_Σ f_Σ^T`` with ``f_Σ = Σ_i v_i``, flattened: ``(B, F, D) -> (B, D*D)``."""

    def forward(self, x: Tensor) -> Tensor:
        s = x.sum(1)  # (B, D)
        return (s.unsqueeze(2) * s.unsqueeze(1)).flatten(1)  # (B, D*D)


# -- FinalMLP ------------------------------------------------------------------------------------
class FeatureGating(nn.Module):
    """FinalMLP (arXiv 2304.00902) stream-specific feature selection: ``x ⊙ 2σ(MLP(c))``.

    ``c`` is a context vector (embeddings of chosen features, ``(B, context_dim)``), or a learned
    vector when ``context_dim`` is None (the paper's choice when a stream has no context).

    Args:
        input_dim: width of the gated flat input N. hidden_dim: the gate MLP's hidden width.
        context_dim: width of the context, or None for a learned one.
    """

    def __init__(self, input_dim: int, hidden_dim: int = 64, *, context_dim: int | None = None) -> None:
        super().__init__()
        self.learned = nn.Parameter(0.1 * torch.randn(1, hidden_dim)) if context_dim is None else None
        self.gate = nn.Sequential(
            nn.Linear(context_dim or hidden_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, input_dim)
        )

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``x (B, N)``, ``context (B, context_dim)`` or None -> ``(B, N)``."""
        if self.learned is not None:
            context = self.learned.expand(x.shape[0], -1)  # (B, hidden)
        if context is None:
            raise ValueError("FeatureGating built with a context_dim needs a context tensor")
        return x * 2 * torch.sigmoid(self.gate(context))


class BilinearFusion(nn.Module):
    """FinalMLP's multi-head bilinear fusion of two stream outputs into one logit.

    ``y = b + w_1^T o_1 + w_2^T o_2 + Σ_h o_{1,h}^T W_h o_{2,h}`` with the streams split into H heads.

    Shapes: ``o1 (B, N1), o2 (B, N2) -> (B, 1)``.
    """

    def __init__(self, dim1: int, dim2: int, num_heads: int = 1) -> None:
        super().__init__()
        if dim1 % num_heads or dim2 % num_heads:
            raise ValueError(f"stream widths {dim1} and {dim2} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.w1 = nn.Linear(dim1, 1)
        self.w2 = nn.Linear(dim2, 1, bias=False)
        self.w12 = nn.Parameter(torch.empty(num_heads, dim1 // num_heads, dim2 // num_heads))
        nn.init.xavier_normal_(self.w12)

    def forward(self, o1: Tensor, o2: Tensor) -> Tensor:
        """``o1 (B, N1), o2 (B, N2) -> (B, 1)``."""
        b, h = o1.shape[0], self.num_heads
        h1 = o1.view(b, h, -1)  # (B, H, N1/H)
        h2 = o2.view(b, h, -1)  # (B, H, N2/H)
        bilinear = torch.einsum("bhi,hij,bhj->b", h1, self.w12, h2).unsqueeze(1)  # (B, 1)
        return self.w1(o1) + self.w2(o2) + bilinear


# -- AutoInt -------------------------------------------------------------------------------------
class InteractingLayer(nn.Module):
    """AutoInt's interacting layer (arXiv 1810.11921): ``ReLU(MHA(x) + W_res x)`` over the fields.

    Shapes: ``x (B, F, D) -> (B, F, D)``.
    """

    def __init__(self, dim: int, num_heads: int = 2, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(dim, num_heads, dropout=dropout)
        self.residual = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """``x (B, F, D) -> (B, F, D)``."""
        return torch.relu(self.attention(x) + self.residual(x))
