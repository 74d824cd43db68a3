"""Vector quantisation: k-means, one codebook (``VectorQuantizer``) and a residual stack of them
(``ResidualQuantizer``, the RQ of RQ-VAE: Lee et al. 2022, arXiv 2203.01941; used for semantic IDs by
TIGER, Rajput et al. 2023, arXiv 2305.05065).

Residual quantisation of ``z (N, D)`` with L codebooks::

    r_0 = z;  c_l = argmin_k ||r_l - e_{l,k}||;  r_{l+1} = r_l - e_{l,c_l};  z_hat = Σ_l e_{l,c_l}

Choices:

* The layers return the residuals ``r_l`` and chosen codewords ``e_{l,c_l}``; the codebook and
  commitment losses (``||sg[r_l] - e||² + β ||r_l - sg[e]||²``) live in the objective
  (``recforge.objectives.RQVAELoss``). The next residual subtracts a *detached* codeword, so a
  codebook is trained by its own level's term only, and the encoder by every level's commitment.
* ``quantized`` is straight-through: its value is ``z_hat``, its gradient reaches ``z`` unchanged.
* Codebooks start from k-means on the first training batch (the residuals each level sees), as in
  the paper. Like BatchNorm's running statistics, this and the usage statistics below change
  buffers/parameters during a training-mode forward only; eval mode is a pure function.
* Dead-code restarts: each codebook keeps an exponential moving average of the share of the batch
  assigned to each code; before a training step, codes whose share fell below
  ``dead_fraction / num_codes`` are moved onto random vectors of the current batch (at that level)
  and their usage is reset to the uniform share.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, cast

import torch
from torch import Tensor, nn


def squared_distances(x: Tensor, centres: Tensor) -> Tensor:
    """``||x_n - c_k||²`` for ``x (N, D)`` and ``centres (K, D)`` -> ``(N, K)``."""
    d = x.pow(2).sum(1, keepdim=True) - 2 * x @ centres.T + centres.pow(2).sum(1)  # (N, K)
    return d.clamp_min(0.0)


@torch.no_grad()
def kmeans(x: Tensor, k: int, *, iters: int = 20, generator: torch.Generator | None = None) -> Tensor:
    """k-means++ seeding then Lloyd iterations: ``x (N, D) -> centres (k, D)``.

    An empty cluster is re-seeded on the point farthest from its centre. With fewer distinct points
    than ``k`` the extra centres repeat points (plus a tiny jitter, so ties break deterministically).
    """
    x = x.detach().float()
    n = x.shape[0]
    if n == 0:
        raise ValueError("kmeans: no points")
    g = generator if generator is not None else torch.Generator(device="cpu").manual_seed(0)
    first = int(torch.randint(n, (1,), generator=g))
    centres = [x[first]]
    best = squared_distances(x, x[first : first + 1]).squeeze(1)  # (N,)
    for _ in range(1, k):
        total = float(best.sum())
        if total <= 0:  # every point already is a centre: repeat random points
            idx = int(torch.randint(n, (1,), generator=g))
        else:
            idx = int(torch.multinomial((best / total).cpu(), 1, generator=g))
        centres.append(x[idx])
        best = torch.minimum(best, squared_distances(x, x[idx : idx + 1]).squeeze(1))
    c = torch.stack(centres)  # (k, D)
    for _ in range(iters):
        d = squared_distances(x, c)  # (N, k)
        assign = d.argmin(1)  # (N,)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)  # (k,)
        sums = torch.zeros_like(c).index_add_(0, assign, x)  # (k, D)
        empty = counts == 0
        c = torch.where(empty[:, None], c, sums / counts.clamp_min(1)[:, None])
        if bool(empty.any()):
            far = d.gather(1, assign[:, None]).squeeze(1).argsort(descending=True)  # (N,)
            c[empty] = x[far[torch.arange(int(empty.sum()), device=x.device) % n]]
    jitter = torch.randn(c.shape, generator=g) * 1e-6 * (x.std() + 1e-12)
    return c + jitter.to(c.device)


def perplexity(codes: Tensor, num_codes: int) -> float:
    """``exp(entropy)`` of the code histogram of ``codes (N,)``: 1 when one code is used, ``num_codes``
    when all are used equally."""
    p = torch.bincount(codes.reshape(-1), minlength=num_codes).double()
    p = p / p.sum().clamp_min(1)
    return float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))


class QuantizerOutput(NamedTuple):
    codes: Tensor  # (N,) int64
    codewords: Tensor  # (N, D) the chosen code vectors (with gradient to the codebook)


class VectorQuantizer(nn.Module):
    """One codebook of ``num_codes`` vectors of width ``dim``; nearest-code assignment.

    Args:
        num_codes: K. dim: D.
        kmeans_init: initialise the codebook by k-means on the first training batch.
        kmeans_iters: Lloyd iterations of that k-means.
        dead_fraction: restart a code whose usage share is below ``dead_fraction / K`` (0: never).
        usage_decay: decay of the usage moving average.
    """

    initialized: Tensor
    usage: Tensor

    def __init__(
        self,
        num_codes: int,
        dim: int,
        *,
        kmeans_init: bool = True,
        kmeans_iters: int = 20,
        dead_fraction: float = 0.03,
        usage_decay: float = 0.99,
    ) -> None:
        super().__init__()
        if num_codes < 1 or dim < 1:
            raise ValueError(f"num_codes and dim must be >= 1, got {num_codes}, {dim}")
        if not 0.0 <= dead_fraction < 1.0 or not 0.0 < usage_decay < 1.0:
            raise ValueError(
                f"need 0 <= dead_fraction < 1 and 0 < usage_decay < 1, got {dead_fraction}, {usage_decay}"
            )
        self.num_codes, self.dim = num_codes, dim
        self.kmeans_iters, self.dead_fraction, self.usage_decay = kmeans_iters, dead_fraction, usage_decay
        self.codebook = nn.Parameter(torch.randn(num_codes, dim) * dim**-0.5)
        self.register_buffer("initialized", torch.tensor(not kmeans_init))
        self.register_buffer("usage", torch.full((num_codes,), 1.0 / num_codes))

    def nearest(self, z: Tensor) -> Tensor:
        """Index of the nearest code of each row of ``z (N, D)`` -> ``(N,)``."""
        return squared_distances(z.detach(), self.codebook.detach()).argmin(1)

    @torch.no_grad()
    def _maintain(self, z: Tensor) -> None:
        """Training-mode upkeep before the assignment: k-means init, then dead-code restarts."""
        if not bool(self.initialized):
            self.codebook.copy_(kmeans(z, self.num_codes, iters=self.kmeans_iters).to(self.codebook))
            self.initialized.fill_(True)
            self.usage.fill_(1.0 / self.num_codes)
            return
        if self.dead_fraction <= 0:
            return
        dead = torch.nonzero(self.usage < self.dead_fraction / self.num_codes).squeeze(1)  # (M,)
        if dead.numel():
            pick = torch.randint(z.shape[0], (dead.numel(),), device=z.device)
            self.codebook[dead] = z[pick].detach().to(self.codebook.dtype)
            self.usage[dead] = 1.0 / self.num_codes

    def forward(self, z: Tensor) -> QuantizerOutput:
        """``z (N, D)`` -> nearest codes ``(N,)`` and their vectors ``(N, D)``."""
        if self.training and z.shape[0]:
            self._maintain(z)
        codes = self.nearest(z)  # (N,)
        if self.training and z.shape[0]:
            with torch.no_grad():
                share = torch.bincount(codes, minlength=self.num_codes).to(self.usage) / z.shape[0]
                self.usage.mul_(self.usage_decay).add_(share, alpha=1 - self.usage_decay)
        return QuantizerOutput(codes, self.codebook[codes])


class ResidualQuantizerOutput(NamedTuple):
    quantized: Tensor  # (N, D) straight-through: value Σ_l codewords, gradient to z
    codes: Tensor  # (N, L) int64
    residuals: Tensor  # (N, L, D) r_l, the input of each level
    codewords: Tensor  # (N, L, D) e_{l, c_l}


class ResidualQuantizer(nn.Module):
    """L codebooks applied to successive residuals (see the module docstring).

    Args:
        dim: D, the width of the quantised vectors.
        num_codes: K per level (an int for all levels, or one per level).
        num_levels: L (ignored when ``num_codes`` is a sequence).
        kmeans_init, kmeans_iters, dead_fraction, usage_decay: as ``VectorQuantizer``.
    """

    def __init__(
        self,
        dim: int,
        *,
        num_codes: int | Sequence[int] = 256,
        num_levels: int = 3,
        kmeans_init: bool = True,
        kmeans_iters: int = 20,
        dead_fraction: float = 0.03,
        usage_decay: float = 0.99,
    ) -> None:
        super().__init__()
        sizes = [num_codes] * num_levels if isinstance(num_codes, int) else list(num_codes)
        if not sizes:
            raise ValueError("ResidualQuantizer needs at least one level")
        self.num_codes = tuple(int(k) for k in sizes)
        self.levels = nn.ModuleList(
            VectorQuantizer(
                k, dim, kmeans_init=kmeans_init, kmeans_iters=kmeans_iters,
                dead_fraction=dead_fraction, usage_decay=usage_decay,
            )
            for k in self.num_codes
        )  # fmt: skip

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    def _levels(self) -> list[VectorQuantizer]:
        return [cast(VectorQuantizer, level) for level in self.levels]

    def forward(self, z: Tensor) -> ResidualQuantizerOutput:
        """``z (N, D)`` -> codes ``(N, L)``, residuals and codewords ``(N, L, D)``, quantised ``(N, D)``."""
        residual = z
        codes, residuals, words = [], [], []
        for level in self._levels():
            out = level(residual)
            codes.append(out.codes)
            residuals.append(residual)
            words.append(out.codewords)
            residual = residual - out.codewords.detach()  # (N, D)
        z_hat = torch.stack(words, 1).sum(1)  # (N, D)
        quantized = z + (z_hat - z).detach()  # straight-through
        return ResidualQuantizerOutput(
            quantized, torch.stack(codes, 1), torch.stack(residuals, 1), torch.stack(words, 1)
        )

    @torch.no_grad()
    def encode(self, z: Tensor) -> Tensor:
        """Codes ``(N, L)`` of ``z (N, D)`` (no state changes, whatever the mode)."""
        residual, codes = z, []
        for level in self._levels():
            c = level.nearest(residual)  # (N,)
            codes.append(c)
            residual = residual - level.codebook[c]
        return torch.stack(codes, 1)

    def decode(self, codes: Tensor) -> Tensor:
        """``codes (N, L)`` -> ``Σ_l e_{l, c_l}`` ``(N, D)``."""
        return torch.stack([lvl.codebook[codes[:, i]] for i, lvl in enumerate(self._levels())], 1).sum(1)
