"""Dropout whose mask costs one random draw per two elements on CPU.

``torch.nn.Dropout`` on CPU draws its mask with ``bernoulli_`` on a float tensor: one generator
call and one float per element, which made dropout a tenth of a DeepFM step and a quarter of a
SASRec step. ``dropout`` draws 64-bit random integers instead, one per *two* elements, and keeps an
element when its 31-bit share is at least ``p * 2**31``: each element is still kept independently
with probability ``1 - p`` (to within ``2**-31``, finer than a float32 uniform's ``2**-24``) and
scaled by ``1 / (1 - p)``; backward multiplies by the same mask. The mask is a bool tensor, a
quarter of a float mask's memory between forward and backward.

Where recforge's C kernels load (``recforge.kernels``), the same rule runs as one pass in C: the
random words, the mask, the scaled output and (``relu_dropout``) a ReLU in front, on float32 or
bfloat16 tensors; its backward is one pass too. The random words then come from a counter-based mix
seeded by one draw of torch's generator, so masks still follow ``torch.manual_seed``.

``dropout_reference`` is ``torch.nn.functional.dropout``; off CPU (CUDA's fused dropout is
already fast) and inside ``torch.compile`` (Inductor fuses its own) ``Dropout`` uses it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recforge import kernels

_BITS = 31
_LOW = (1 << _BITS) - 1


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | None = None) -> Tensor:
    """A bool mask of ``shape``, each element True with probability ``1 - p`` independently.

    Every ``int64`` draw of the default generator supplies two elements: bits 0-30 and 32-62.
    """
    n = 1
    for s in shape:
        n *= int(s)
    half = (n + 1) // 2
    r = torch.empty(half, dtype=torch.int64, device=device).random_()  # uniform over [0, 2**63)
    threshold = round(p * (1 << _BITS))
    mask = torch.empty(2, half, dtype=torch.bool, device=device)
    torch.ge(r & _LOW, threshold, out=mask[0])
    torch.ge(r >> 32, threshold, out=mask[1])
    return mask.view(-1)[:n].view(shape)


class _MaskedScale(torch.autograd.Function):
    """``x * mask * scale`` that saves only the bool mask for backward."""

    @staticmethod
    def forward(ctx, x: Tensor, mask: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(mask)
        ctx.scale = scale
        # A float copy of the mask first: multiplying by a bool tensor takes a slow mixed-dtype loop.
        return x * mask.to(x.dtype).mul_(scale)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (mask,) = ctx.saved_tensors
        return grad * mask.to(grad.dtype).mul_(ctx.scale), None, None


class _KernelDropout(torch.autograd.Function):
    """The C dropout (and ReLU) of ``recforge.kernels``: saves only the bool mask for backward."""

    @staticmethod
    def forward(ctx, x: Tensor, p: float, relu: bool, k: kernels.Kernels) -> Tensor:  # type: ignore[override]
        out, mask = k.dropout(x.contiguous(), p, relu=relu)
        ctx.save_for_backward(mask)
        ctx.p, ctx.k = p, k
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:  # type: ignore[override]
        (mask,) = ctx.saved_tensors
        return ctx.k.dropout_backward(grad.contiguous(), mask, ctx.p), None, None, None


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """``F.dropout(x, p, training)`` with a cheaper mask on CPU (same distribution and scaling)."""
    return _dropout(x, p, training, relu=False)


def relu_dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """``dropout(relu(x), p, training)``; on CPU with the C kernels, both in one pass each way."""
    return _dropout(x, p, training, relu=True)


def _dropout(x: Tensor, p: float, training: bool, *, relu: bool) -> Tensor:
    if not training or p == 0.0:
        return F.relu(x) if relu else x
    if p == 1.0:
        return x * 0.0
    if x.device.type != "cpu" or torch.jit.is_tracing():
        return F.dropout(F.relu(x) if relu else x, p, training)
    if torch.compiler.is_compiling():
        return _opaque_cpu_dropout(x, p, relu)
    return _cpu_dropout(x, p, relu)


def _cpu_dropout(x: Tensor, p: float, relu: bool) -> Tensor:
    k = kernels.get() if x.dtype in (torch.float32, torch.bfloat16) else None
    if k is not None:
        return _KernelDropout.apply(x, p, relu, k)
    x = F.relu(x) if relu else x
    return _MaskedScale.apply(x, keep_mask(x.shape, p, x.device), 1.0 / (1.0 - p))


_opaque_cpu_dropout = torch.compiler.disable(_cpu_dropout)  # kept out of torch.compile's graphs


def dropout_reference(x: Tensor, p: float, training: bool = True) -> Tensor:
    """The plain reference of ``dropout``: ``torch.nn.functional.dropout``."""
    return F.dropout(x, p, training)


class Dropout(nn.Module):
    """``nn.Dropout`` with ``dropout``'s cheaper CPU mask; a drop-in replacement.

    Args:
        p: probability of zeroing an element (training only).
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        """Any shape -> the same shape."""
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
