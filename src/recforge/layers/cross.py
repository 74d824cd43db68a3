"""Cross networks: DCN's CrossNet (v1), DCN-V2's full/low-rank and mixture-of-low-rank crosses,
and EDCN's bridge and regulation modules that couple a cross network with a deep one.

All operate on the flat input ``x0 (B, N)`` (N = sum of feature widths), so features of different
widths mix freely.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from recforge.choices import Choice
from recforge.ints import is_int


class CrossLayer(nn.Module):
    """DCN (arXiv 1708.05123) cross layer: ``x0 * (x · w) + b + x``, ``w, b ∈ R^N``."""

    def __init__(self, input_dim: int) -> None:
        super().__init__()
        self.w = nn.Linear(input_dim, 1, bias=False)
        self.b = nn.Parameter(torch.zeros(input_dim))

    def forward(self, x0: Tensor, x: Tensor) -> Tensor:
        """``x0, x (B, N) -> (B, N)``."""
        return x0 * self.w(x) + self.b + x


class CrossNet(nn.Module):
    """A stack of ``num_layers`` DCN cross layers: ``(B, N) -> (B, N)``."""

    def __init__(self, input_dim: int, num_layers: int) -> None:
        super().__init__()
        _check_layers(num_layers)
        self.layers = nn.ModuleList(CrossLayer(input_dim) for _ in range(num_layers))

    def forward(self, x0: Tensor) -> Tensor:
        x = x0
        for layer in self.layers:
            x = layer(x0, x)
        return x


class CrossLayerV2(nn.Module):
    """DCN-V2 (arXiv 2008.13535) cross layer: ``x0 ⊙ (W x + b) + x``.

    Args:
        input_dim: N.
        low_rank: ``None`` for a full ``N x N`` matrix W; an int r factorises ``W = U V^T``
            (``U, V ∈ R^{N x r}``), the paper's cost-saving low-rank cross.
    """

    def __init__(self, input_dim: int, *, low_rank: int | None = None) -> None:
        super().__init__()
        if low_rank is None:
            self.proj: nn.Module = nn.Linear(input_dim, input_dim)
        else:
            if low_rank < 1:
                raise ValueError(f"low_rank must be a positive int, got {low_rank!r}")
            self.proj = nn.Sequential(
                nn.Linear(input_dim, low_rank, bias=False), nn.Linear(low_rank, input_dim)
            )

    def forward(self, x0: Tensor, x: Tensor) -> Tensor:
        """``x0, x (B, N) -> (B, N)``."""
        return x0 * self.proj(x) + x


class CrossNetV2(nn.Module):
    """A stack of DCN-V2 cross layers (full-rank, or low-rank with ``low_rank``): ``(B, N) -> (B, N)``."""

    def __init__(self, input_dim: int, num_layers: int, *, low_rank: int | None = None) -> None:
        super().__init__()
        _check_layers(num_layers)
        self.layers = nn.ModuleList(CrossLayerV2(input_dim, low_rank=low_rank) for _ in range(num_layers))

    def forward(self, x0: Tensor) -> Tensor:
        x = x0
        for layer in self.layers:
            x = layer(x0, x)
        return x


class CrossNetMix(nn.Module):
    """DCN-V2's mixture of low-rank experts (DCN-Mix, paper Eq. 4-5).

    Each layer: ``x + Σ_k G_k(x) · x0 ⊙ (U_k g(C_k g(V_k^T x)) + b)`` with K experts of rank r,
    ``g = tanh`` and a softmax gate ``G`` over experts.
    """

    def __init__(self, input_dim: int, num_layers: int, *, low_rank: int = 32, num_experts: int = 4) -> None:
        super().__init__()
        _check_layers(num_layers)
        if low_rank < 1 or num_experts < 1:
            raise ValueError(f"low_rank and num_experts must be positive, got {low_rank}, {num_experts}")
        n, r, k = input_dim, low_rank, num_experts
        self.v = nn.ParameterList(nn.Parameter(_xavier(k, n, r)) for _ in range(num_layers))
        self.c = nn.ParameterList(nn.Parameter(_xavier(k, r, r)) for _ in range(num_layers))
        self.u = nn.ParameterList(nn.Parameter(_xavier(k, r, n)) for _ in range(num_layers))
        self.b = nn.ParameterList(nn.Parameter(torch.zeros(n)) for _ in range(num_layers))
        self.gates = nn.ModuleList(nn.Linear(n, k, bias=False) for _ in range(num_layers))

    def forward(self, x0: Tensor) -> Tensor:
        """``x0 (B, N) -> (B, N)``."""
        x = x0
        for v, c, u, b, gate in zip(self.v, self.c, self.u, self.b, self.gates):
            h = torch.tanh(torch.einsum("bn,knr->bkr", x, v))  # (B, K, r)
            h = torch.tanh(torch.einsum("bkr,krs->bks", h, c))  # (B, K, r)
            experts = x0.unsqueeze(1) * (torch.einsum("bkr,krn->bkn", h, u) + b)  # (B, K, N)
            weights = gate(x).softmax(-1).unsqueeze(-1)  # (B, K, 1)
            x = x + (weights * experts).sum(1)  # (B, N)
        return x


class BridgeType(Choice):
    """How EDCN's bridge module fuses the cross and deep hidden vectors."""

    HADAMARD_PRODUCT = "hadamard_product"
    POINTWISE_ADDITION = "pointwise_addition"
    CONCATENATION = "concatenation"
    ATTENTION_POOLING = "attention_pooling"


class BridgeModule(nn.Module):
    """EDCN bridge: fuse the cross output ``x`` and deep output ``h`` (both ``(B, N)``) to ``(B, N)``."""

    def __init__(self, input_dim: int, bridge_type: BridgeType | str = BridgeType.HADAMARD_PRODUCT) -> None:
        super().__init__()
        self.bridge_type = BridgeType.parse(bridge_type)
        n = input_dim
        if self.bridge_type is BridgeType.CONCATENATION:
            self.concat = nn.Sequential(nn.Linear(2 * n, n), nn.ReLU())
        elif self.bridge_type is BridgeType.ATTENTION_POOLING:
            self.att_x = nn.Sequential(nn.Linear(n, n), nn.ReLU(), nn.Linear(n, n, bias=False))
            self.att_h = nn.Sequential(nn.Linear(n, n), nn.ReLU(), nn.Linear(n, n, bias=False))

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        """``x, h (B, N) -> (B, N)``."""
        kind = self.bridge_type
        if kind is BridgeType.HADAMARD_PRODUCT:
            return x * h
        if kind is BridgeType.POINTWISE_ADDITION:
            return x + h
        if kind is BridgeType.CONCATENATION:
            return self.concat(torch.cat([x, h], -1))
        return self.att_x(x).softmax(-1) * x + self.att_h(h).softmax(-1) * h


class RegulatedInputs(NamedTuple):
    """The regulation module's two views of one flat input."""

    cross: Tensor  # (B, N)
    deep: Tensor  # (B, N)


class RegulationModule(nn.Module):
    """EDCN regulation: field-wise gates that route each field differently to the cross and deep parts.

    Two learnable gate vectors over the F fields, each a temperature softmax; a field's gate scales
    all of its columns. Gates are multiplied by F so that they start at 1 (the identity).

    Args:
        field_dims: width of each field in the flat input (their sum is N).
        temperature: softmax temperature τ.
    """

    repeats: Tensor

    def __init__(self, field_dims: list[int], *, temperature: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        self.temperature = temperature
        self.g_cross = nn.Parameter(torch.ones(len(field_dims)))
        self.g_deep = nn.Parameter(torch.ones(len(field_dims)))
        self.register_buffer("repeats", torch.tensor(field_dims), persistent=False)

    def _gate(self, g: Tensor) -> Tensor:
        w = (g / self.temperature).softmax(0) * g.numel()  # (F,)
        return w.repeat_interleave(self.repeats)  # (N,)

    def forward(self, x: Tensor) -> RegulatedInputs:
        """``x (B, N) -> RegulatedInputs(cross (B, N), deep (B, N))``."""
        return RegulatedInputs(x * self._gate(self.g_cross), x * self._gate(self.g_deep))


def _xavier(*shape: int) -> Tensor:
    w = torch.empty(*shape)
    for i in range(shape[0]):
        nn.init.xavier_normal_(w[i])
    return w


def _check_layers(num_layers: int) -> None:
    if not is_int(num_layers) or num_layers < 1:  # any integer type (np.int64 too), never a bool
        raise ValueError(f"the number of cross layers must be a positive int, got {num_layers!r}")
