"""Multi-layer perceptron, the one used by every model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recforge import kernels
from recforge.choices import Choice
from recforge.ints import as_ints
from recforge.layers.dropout import Dropout, relu_dropout


class Activation(Choice):
    RELU = "relu"
    PRELU = "prelu"
    SIGMOID = "sigmoid"
    TANH = "tanh"
    GELU = "gelu"
    SILU = "silu"
    DICE = "dice"
    LINEAR = "linear"


class Dice(nn.Module):
    """Data-adaptive activation from DIN (arXiv 1706.06978): a PReLU gated by a batch-normalised input."""

    def __init__(self, dim: int, eps: float = 1e-9) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim, eps=eps, affine=False)
        self.alpha = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])  # (N, D)
        p = self.bn(flat).sigmoid().reshape(shape)
        return p * x + (1 - p) * self.alpha * x


class Linear(nn.Linear):
    """``nn.Linear`` whose bias is added in float32 under autocast.

    Under bfloat16 autocast ``addmm`` rounds ``x W^T + b`` to 8 significant bits, so an input
    signal much smaller than the bias (freshly initialised embeddings, std 1e-4, against biases of
    order 0.1) is rounded away, and a following batch norm, which would have rescaled it, gets
    nothing back. Here the product alone is rounded (bfloat16 keeps its relative precision at any
    scale) and the bias is added in float32. Outside autocast it is ``nn.Linear``; parameters and
    ``state_dict`` are the same.
    """

    def forward(self, x: Tensor) -> Tensor:
        """``(..., in_features) -> (..., out_features)``."""
        if self.bias is None or not torch.is_autocast_enabled(x.device.type):
            return super().forward(x)
        return F.linear(x, self.weight).float() + self.bias


def activation_layer(act: Activation | str, dim: int) -> nn.Module:
    a = Activation.parse(act)
    if a is Activation.DICE:
        return Dice(dim)
    return {
        Activation.RELU: nn.ReLU,
        Activation.PRELU: nn.PReLU,
        Activation.SIGMOID: nn.Sigmoid,
        Activation.TANH: nn.Tanh,
        Activation.GELU: nn.GELU,
        Activation.SILU: nn.SiLU,
        Activation.LINEAR: nn.Identity,
    }[a]()


@dataclass(frozen=True)
class MLPConfig:
    """Settings of an ``MLP``; Torch-RecHub's ``mlp_params`` dicts parse into this.

    Args:
        dims: hidden widths.
        dropout: dropout rate after each hidden layer.
        activation: hidden activation.
        batch_norm: batch normalisation before each activation.
        output_layer: append a final ``Linear(dims[-1], 1)`` (Torch-RecHub's default).
    """

    dims: tuple[int, ...] = (256, 128)
    dropout: float = 0.0
    activation: Activation = Activation.RELU
    batch_norm: bool = False
    output_layer: bool = True

    def __post_init__(self) -> None:
        dims = as_ints(self.dims, "MLP dims", minimum=1)
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"MLP dropout must be in [0, 1), got {self.dropout!r}")
        object.__setattr__(self, "dims", dims)
        object.__setattr__(self, "activation", Activation.parse(self.activation))

    @classmethod
    def parse(cls, value: MLPConfig | Mapping[str, object] | None, **defaults: object) -> MLPConfig:
        """Accept a config, a plain dict (unknown keys are refused) or None (the defaults)."""
        if isinstance(value, MLPConfig):
            return value
        merged = dict(defaults)
        if value is not None:
            known = {f.name for f in fields(cls)}
            unknown = set(value) - known
            if unknown:
                raise ValueError(f"unknown MLP parameter(s) {sorted(unknown)}; valid: {sorted(known)}")
            merged.update(value)
        return cls(**merged)  # type: ignore[arg-type]


class MLP(nn.Module):
    """``Linear -> [BatchNorm] -> activation -> Dropout`` per hidden width, then optionally ``Linear(., 1)``.

    Shapes: ``(B, input_dim) -> (B, dims[-1])``, or ``(B, 1)`` with the output layer (models squeeze
    it). Any leading dims are allowed when batch norm is off.
    """

    def __init__(
        self,
        input_dim: int,
        config: MLPConfig | Mapping[str, object] | None = None,
        *,
        output_layer: bool | None = None,
    ) -> None:
        super().__init__()
        cfg = MLPConfig.parse(config)
        if output_layer is not None and output_layer != cfg.output_layer:
            cfg = MLPConfig(cfg.dims, cfg.dropout, cfg.activation, cfg.batch_norm, output_layer)
        self.config = cfg
        layers: list[nn.Module] = []
        width = input_dim
        for d in cfg.dims:
            layers.append(Linear(width, d))
            if cfg.batch_norm:
                layers.append(nn.BatchNorm1d(d))
            layers.append(activation_layer(cfg.activation, d))
            if cfg.dropout > 0:
                layers.append(Dropout(cfg.dropout))
            width = d
        if cfg.output_layer:
            layers.append(Linear(width, 1))
            width = 1
        self.output_dim = width
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """``(..., input_dim) -> (..., output_dim)``.

        Runs ``net`` layer by layer, taking neighbours at once where that is one pass: a ``Linear``
        and its ``BatchNorm1d`` under autocast (``linear_batch_norm``), a ReLU and its ``Dropout``
        while training (``relu_dropout``), and all four while training under bf16 autocast on CPU
        (``linear_bn_relu_dropout``). Same modules, parameters and state."""
        fold_bn = self.config.batch_norm and x.dim() == 2 and torch.is_autocast_enabled(x.device.type)
        fuse_drop = self.training and self.config.dropout > 0 and self.config.activation is Activation.RELU
        if not (fold_bn or fuse_drop):
            return self.net(x)
        layers = list(self.net)
        i = 0
        while i < len(layers):
            layer, after = layers[i], layers[i + 1] if i + 1 < len(layers) else None
            if fold_bn and fuse_drop and _bn_relu_dropout_at(layers, i, x):
                x = linear_bn_relu_dropout(layer, layers[i + 1], x, layers[i + 3].p)  # type: ignore[arg-type]
                i += 4
                continue
            if fold_bn and isinstance(layer, Linear) and after is not None and _plain_bn(after):
                x = linear_batch_norm(layer, after, x)  # type: ignore[arg-type]
            elif fuse_drop and isinstance(layer, nn.ReLU) and isinstance(after, Dropout):
                x = relu_dropout(x, after.p, True)
            else:
                x = layer(x)
                i += 1
                continue
            i += 2
        return x


def _bn_relu_dropout_at(layers: list[nn.Module], i: int, x: Tensor) -> bool:
    """Whether ``layers[i:i + 4]`` is Linear, plain BatchNorm1d, ReLU, Dropout that
    ``linear_bn_relu_dropout`` takes for input ``x``: eager CPU training under bf16 autocast, more
    than one row, affine parameters in float32, with the C kernels."""
    if i + 3 >= len(layers):
        return False
    linear, bn, relu, drop = layers[i : i + 4]
    return (
        isinstance(linear, Linear)
        and _plain_bn(bn)
        and isinstance(relu, nn.ReLU)
        and isinstance(drop, Dropout)
        and 0.0 < drop.p < 1.0
        and all(p.dtype == torch.float32 for p in bn.parameters())
        and x.device.type == "cpu"
        and x.dim() == 2
        and x.shape[0] > 1
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
        and kernels.eager()
        and kernels.get() is not None
    )


def linear_bn_relu_dropout(linear: nn.Linear, bn: nn.BatchNorm1d, x: Tensor, p: float) -> Tensor:
    """``dropout(relu(bn(linear(x))), p)`` while training under bf16 autocast on CPU.

    The matmul runs in bf16 as in ``linear_batch_norm``, with the bias folded into the running mean.
    The batch norm, ReLU and dropout then run in one C pass each way (``recforge.kernels``), with the
    statistics in float32. The running statistics (the unbiased variance), ``num_batches_tracked``
    and the dropout masks are those of the modules run one by one.
    """
    y = F.linear(x, linear.weight).contiguous()  # (B, d) bf16
    out, mean, var = _BNReluDropout.apply(y, bn.weight, bn.bias, bn.eps, p, kernels.require())
    assert bn.running_mean is not None and bn.running_var is not None and bn.momentum is not None
    with torch.no_grad():
        m, n = bn.momentum, y.shape[0]
        batch_mean = mean if linear.bias is None else mean + linear.bias.detach()
        bn.running_mean.mul_(1.0 - m).add_(batch_mean, alpha=m)
        bn.running_var.mul_(1.0 - m).add_(var, alpha=m * n / (n - 1))  # the unbiased variance
        bn.num_batches_tracked.add_(1)  # type: ignore[union-attr]
    return out


class _BNReluDropout(torch.autograd.Function):
    """``Kernels.bn_relu_dropout``: outputs ``(out, batch mean, biased batch variance)``, the last
    two without gradient."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, y: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float, p: float, k: kernels.Kernels
    ) -> tuple[Tensor, Tensor, Tensor]:
        w = None if weight is None else weight.detach().contiguous()
        b = None if bias is None else bias.detach().contiguous()
        out, mask, mean, var, rstd = k.bn_relu_dropout(y, w, b, eps, p)
        ctx.save_for_backward(y, mask, mean, rstd, w)
        ctx.p, ctx.k = p, k
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    def backward(ctx, grad: Tensor, *_: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        y, mask, mean, rstd, w = ctx.saved_tensors
        grad_y, grad_w, grad_b = ctx.k.bn_relu_dropout_backward(
            y, grad.to(torch.bfloat16).contiguous(), mask, mean, rstd, w, ctx.p
        )
        return (
            grad_y,
            grad_w if w is not None else None,
            grad_b if ctx.needs_input_grad[2] else None,
            None,
            None,
            None,
        )


def _plain_bn(m: nn.Module) -> bool:
    return isinstance(m, nn.BatchNorm1d) and m.track_running_stats and m.momentum is not None


def linear_batch_norm(linear: nn.Linear, bn: nn.BatchNorm1d, x: Tensor) -> Tensor:
    """``bn(linear(x))`` under autocast, kept in the autocast dtype from the product to the output.

    A batch norm removes a constant: with batch statistics ``bn(x W + b) = bn(x W)``, and in eval
    ``bn(x W + b)`` normalises with ``running_mean - b``. So the product is normalised as it comes out
    of the low-precision matmul, and the bias is folded into the running mean, which is tracked exactly
    as ``bn(linear(x))`` tracks it (same state, same checkpoints). The float32 bias add of ``Linear``,
    and the casts to float32 and back between layers, are skipped; the bias gets no gradient (its
    gradient through a training-mode batch norm is zero).
    """
    y = F.linear(x, linear.weight)  # (B, d), the autocast dtype
    bias = linear.bias.detach() if linear.bias is not None else None
    assert bn.running_mean is not None and bn.running_var is not None
    if bn.training:
        shifted = bn.running_mean - bias if bias is not None else bn.running_mean.clone()
        bn.num_batches_tracked.add_(1)  # type: ignore[union-attr]
        out = F.batch_norm(y, shifted, bn.running_var, bn.weight, bn.bias, True, bn.momentum or 0.0, bn.eps)
        bn.running_mean.copy_(shifted + bias if bias is not None else shifted)
        return out
    mean = bn.running_mean - bias if bias is not None else bn.running_mean
    return F.batch_norm(y, mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
