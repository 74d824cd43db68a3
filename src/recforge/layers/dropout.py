"""Dropout whose mask costs one random draw per two elements on CPU.

``torch.nn.Dropout`` on CPU draws its mask with ``bernoulli_`` on a float tensor: one generator
call and one float per element, which made dropout a tenth of a DeepFM step and a quarter of a
SASRec step. ``dropout`` draws 64-bit random integers instead, one per *two* elements, and keeps an
element when its 31-bit share is at least ``p * 2**31``: each element is still kept independently
with probability ``1 - p`` (to within ``2**-31``, finer than a float32 uniform's ``2**-24``) and
scaled by ``1 / (1 - p)``; backward multiplies by the same mask. The mask is a bool tensor, a
quarter of a float mask's memory between forward and backward.

``dropout_reference`` is ``torch.nn.functional.dropout``; off CPU (CUDA's fused dropout is
already fast) and inside ``torch.compile`` (Inductor fuses its own) ``Dropout`` uses it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """``F.dropout(x, p, training)`` with a cheaper mask on CPU (same distribution and scaling)."""
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    if x.device.type != "cpu" or torch.jit.is_tracing():
        return F.dropout(x, p, training)
    if torch.compiler.is_compiling():
        return _eager_dropout(x, p)
    return _MaskedScale.apply(x, keep_mask(x.shape, p, x.device), 1.0 / (1.0 - p))


@torch.compiler.disable
def _eager_dropout(x: Tensor, p: float) -> Tensor:
    return _MaskedScale.apply(x, keep_mask(x.shape, p, x.device), 1.0 / (1.0 - p))


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
