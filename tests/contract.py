"""Reusable model-contract checks shared by every family's ``tests/test_contract_<family>.py``.

A plain module (not collected by pytest). Typical use::

    from contract import check_model_contract, synthetic_batch

    batch = synthetic_batch(FEATURES, 256, seed=0)
    check_model_contract(factory, batch, BinaryCrossEntropy(), sequence_columns=["hist_item"])

``factory`` is a zero-argument callable that builds a fresh model (the state_dict round trip needs a
second instance). Every check raises ``AssertionError`` with the model's name on failure.

Checks: output shape, finite loss, a gradient reaches every trainable parameter (not None and not
all zero), the loss falls on a learnable synthetic signal, ``state_dict`` round trip reproduces the
outputs, eval-mode determinism and (for models with histories) left-padding invariance.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from recforge.features import DenseFeature, Feature, SequenceFeature, SparseFeature, dedup
from recforge.outputs import RankingOutput

Batch = dict[str, Tensor]
Objective = Callable[[object, Mapping[str, Tensor]], Tensor]
Factory = Callable[[], nn.Module]


# -- data -----------------------------------------------------------------------------------------
def synthetic_batch(
    features: Sequence[Feature],
    batch_size: int,
    *,
    seed: int = 0,
    labels: Sequence[str] = ("label",),
    min_history: int = 1,
) -> Batch:
    """Random columns for ``features`` plus 0/1 targets that carry a learnable signal.

    Sparse ids are drawn from ``[1, vocab)``; sequences get a random length in
    ``[min_history, L]`` and are **left-padded** with 0 (``L`` = ``max_len`` or 8); dense features
    are standard normal. Each target is ``1[s > median(s)]`` where ``s`` is a planted score: a
    random weight per id (sparse, and mean over the history for sequences) plus a random linear
    term on dense values, so every model that sees its inputs can fit it. With several names in
    ``labels`` they get independent signals, stacked as ``(B, T)`` under ``"label"``; one name gives
    ``(B,)`` under that name.
    """
    g = torch.Generator().manual_seed(seed)
    batch: Batch = {}
    score = torch.zeros(len(labels), batch_size)
    seen_tables: dict[str, Tensor] = {}

    def table(name: str, vocab: int) -> Tensor:
        if name not in seen_tables:
            seen_tables[name] = torch.randn(len(labels), vocab, generator=g)
        return seen_tables[name]

    for f in dedup(features):
        if isinstance(f, SparseFeature):
            ids = torch.randint(1, max(f.vocab_size, 2), (batch_size,), generator=g)
            ids = ids.clamp_max(f.vocab_size - 1)
            batch[f.name] = ids
            score += table(f.table, f.vocab_size)[:, ids]
        elif isinstance(f, SequenceFeature):
            length = f.max_len or 8
            lens = torch.randint(min_history, length + 1, (batch_size,), generator=g)
            ids = torch.randint(1, max(f.vocab_size, 2), (batch_size, length), generator=g)
            ids = ids.clamp_max(f.vocab_size - 1)
            pos = torch.arange(length).expand(batch_size, length)  # (B, L)
            real = pos >= (length - lens).unsqueeze(1)  # left padding: real items at the end
            ids = ids * real
            batch[f.name] = ids
            w = table(f.table, f.vocab_size)[:, ids]  # (T, B, L)
            score += (w * real).sum(-1) / real.sum(-1).clamp_min(1)
        elif isinstance(f, DenseFeature):
            shape = (batch_size,) if f.embed_dim == 1 else (batch_size, f.embed_dim)
            x = torch.randn(shape, generator=g)
            batch[f.name] = x
            w = torch.randn(len(labels), f.embed_dim, generator=g)
            score += w @ x.reshape(batch_size, -1).T
    y = (score > score.median(dim=1, keepdim=True).values).float()  # (T, B)
    if len(labels) == 1:
        batch[labels[0]] = y[0]
    else:
        batch["label"] = y.T.contiguous()  # (B, T)
    return batch


def left_pad(batch: Mapping[str, Tensor], columns: Iterable[str], extra: int = 3) -> Batch:
    """A copy of ``batch`` with ``extra`` zero columns prepended to each sequence in ``columns``."""
    out = dict(batch)
    for c in columns:
        ids = batch[c]
        zeros = torch.zeros(ids.shape[0], extra, dtype=ids.dtype)
        out[c] = torch.cat([zeros, ids], 1)  # (B, extra + L)
    return out


# -- output helpers -------------------------------------------------------------------------------
def tensors_of(outputs: object) -> list[Tensor]:
    """Every tensor in a model output (tensor, NamedTuple/tuple, dict), in a fixed order."""
    if isinstance(outputs, Tensor):
        return [outputs]
    if isinstance(outputs, Mapping):
        return [t for k in sorted(outputs) for t in tensors_of(outputs[k])]
    if isinstance(outputs, tuple | list):
        return [t for o in outputs for t in tensors_of(o)]
    raise AssertionError(f"model output of unsupported type {type(outputs).__name__}")


def _name(model: nn.Module) -> str:
    return type(model).__name__


def _forward(model: nn.Module, batch: Mapping[str, Tensor]) -> object:
    return model(batch)


def _batch_size(batch: Mapping[str, Tensor]) -> int:
    return next(iter(batch.values())).shape[0]


# -- checks ---------------------------------------------------------------------------------------
def check_output_shape(model: nn.Module, batch: Mapping[str, Tensor]) -> None:
    """Logits ``(B,)`` (also inside ``RankingOutput`` or per task in a dict); other outputs
    (e.g. ``TowerOutput``) must at least lead with ``B``."""
    b = _batch_size(batch)
    model.eval()
    with torch.no_grad():
        out = _forward(model, batch)
    if isinstance(out, RankingOutput):
        assert out.aux_loss.dim() == 0, f"{_name(model)}: aux_loss must be a scalar"
        out = out.logits
    if isinstance(out, Tensor):
        assert out.shape == (b,), f"{_name(model)}: logits shape {tuple(out.shape)}, expected ({b},)"
        assert out.is_floating_point(), f"{_name(model)}: logits must be float"
    elif isinstance(out, Mapping):
        for task, t in out.items():
            t = t.logits if isinstance(t, RankingOutput) else t
            assert t.shape == (b,), f"{_name(model)}: task {task!r} logits {tuple(t.shape)}, expected ({b},)"
    else:
        for t in tensors_of(out):
            assert t.shape[0] == b, f"{_name(model)}: output leads with {t.shape[0]}, expected {b}"


def check_finite_loss(model: nn.Module, batch: Mapping[str, Tensor], objective: Objective) -> Tensor:
    """Training-mode loss is a finite scalar; returns it."""
    model.train()
    loss = objective(_forward(model, batch), batch)
    assert loss.dim() == 0, f"{_name(model)}: loss must be a scalar, got shape {tuple(loss.shape)}"
    assert torch.isfinite(loss), f"{_name(model)}: loss is {float(loss)}"
    return loss


def check_gradients(model: nn.Module, batch: Mapping[str, Tensor], objective: Objective) -> None:
    """One backward pass reaches every trainable parameter with a gradient that is not all zero."""
    model.zero_grad(set_to_none=True)
    check_finite_loss(model, batch, objective).backward()
    missing, zero = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:
            missing.append(name)
            continue
        grad = p.grad.coalesce().values() if p.grad.is_sparse else p.grad
        if not bool(torch.isfinite(grad).all()):
            raise AssertionError(f"{_name(model)}: non-finite gradient in {name}")
        if not bool((grad != 0).any()):
            zero.append(name)
    assert not missing, f"{_name(model)}: no gradient reaches {missing}"
    assert not zero, f"{_name(model)}: all-zero gradient in {zero}"
    model.zero_grad(set_to_none=True)


class _Adam:
    """Minimal Adam. ``torch.optim`` would import ``torch._dynamo`` on its first step, which costs
    seconds per test process; these checks only need the update rule."""

    def __init__(
        self, params: list[nn.Parameter], lr: float, betas: tuple[float, float] = (0.9, 0.999)
    ) -> None:
        self.params, self.lr, self.betas, self.t = params, lr, betas, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def __call__(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            g = p.grad.to_dense() if p.grad.is_sparse else p.grad
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v / (1 - b2**self.t)).sqrt_().add_(1e-8)
            p.addcdiv_(m, denom, value=-self.lr / (1 - b1**self.t))


def check_learns(
    model: nn.Module,
    batch: Mapping[str, Tensor],
    objective: Objective,
    *,
    steps: int = 40,
    lr: float = 1e-2,
    min_rel_drop: float = 0.1,
) -> tuple[float, float]:
    """Adam on one fixed batch with a learnable signal: the eval-mode loss falls by at least
    ``min_rel_drop`` (relative) within ``steps`` steps. Returns ``(before, after)``."""

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(objective(_forward(model, batch), batch))

    before = eval_loss()
    params = [p for p in model.parameters() if p.requires_grad]
    step = _Adam(params, lr)
    for _ in range(steps):
        model.train()
        model.zero_grad(set_to_none=True)
        objective(_forward(model, batch), batch).backward()
        step()
    after = eval_loss()
    assert after <= before * (1 - min_rel_drop), (
        f"{_name(model)}: loss did not fall enough in {steps} steps: {before:.4f} -> {after:.4f} "
        f"(needed a {min_rel_drop:.0%} drop)"
    )
    return before, after


def _eval_outputs(model: nn.Module, batch: Mapping[str, Tensor]) -> list[Tensor]:
    model.eval()
    with torch.no_grad():
        return tensors_of(_forward(model, batch))


def _assert_close(name: str, what: str, a: list[Tensor], b: list[Tensor], atol: float = 1e-5) -> None:
    assert len(a) == len(b), f"{name}: {what}: different number of outputs"
    for x, y in zip(a, b):
        assert x.shape == y.shape, f"{name}: {what}: shapes {tuple(x.shape)} vs {tuple(y.shape)}"
        diff = float((x - y).abs().max()) if x.numel() else 0.0
        assert torch.allclose(x, y, atol=atol, rtol=1e-5), f"{name}: {what}: max abs difference {diff:.3g}"


def check_state_dict_roundtrip(model: nn.Module, factory: Factory, batch: Mapping[str, Tensor]) -> None:
    """Save ``model.state_dict()`` through ``torch.save``, load into ``factory()``: same outputs."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    fresh = factory()
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    _assert_close(
        _name(model), "state_dict round trip", _eval_outputs(model, batch), _eval_outputs(fresh, batch)
    )


def check_eval_determinism(model: nn.Module, batch: Mapping[str, Tensor]) -> None:
    """Two eval-mode forwards give identical outputs (dropout off, no batch-stat updates)."""
    first = _eval_outputs(model, batch)
    second = _eval_outputs(model, batch)
    _assert_close(_name(model), "eval determinism", first, second, atol=0.0)


def check_padding_invariance(
    model: nn.Module, batch: Mapping[str, Tensor], sequence_columns: Sequence[str], *, extra: int = 3
) -> None:
    """Left-padding every history in ``sequence_columns`` with ``extra`` more zeros leaves the
    eval-mode outputs unchanged."""
    if not sequence_columns:
        raise ValueError("check_padding_invariance needs at least one sequence column")
    padded = left_pad(batch, sequence_columns, extra)
    _assert_close(
        _name(model), f"left-padding {list(sequence_columns)} by {extra}",
        _eval_outputs(model, batch), _eval_outputs(model, padded), atol=1e-5,
    )  # fmt: skip


def check_model_contract(
    factory: Factory,
    batch: Mapping[str, Tensor],
    objective: Objective,
    *,
    learnable: Mapping[str, Tensor] | None = None,
    sequence_columns: Sequence[str] = (),
    steps: int = 40,
    lr: float = 1e-2,
    min_rel_drop: float = 0.1,
    seed: int = 0,
) -> nn.Module:
    """Run every check on a model built by ``factory``; returns the trained model.

    Args:
        factory: zero-argument callable building a fresh model.
        batch: inputs (and targets) for the shape/loss/gradient/determinism checks.
        objective: ``objective(outputs, batch) -> scalar loss``.
        learnable: a batch whose targets carry a learnable signal (default: ``batch``).
        sequence_columns: history columns for the padding-invariance check (none: skipped).
        steps, lr, min_rel_drop: the loss-falls check (see ``check_learns``).
        seed: ``torch.manual_seed`` before building, so failures reproduce.
    """
    torch.manual_seed(seed)
    model = factory()
    check_output_shape(model, batch)
    check_finite_loss(model, batch, objective)
    check_gradients(model, batch, objective)
    check_learns(model, learnable if learnable is not None else batch, objective, steps=steps, lr=lr,
                 min_rel_drop=min_rel_drop)  # fmt: skip
    check_eval_determinism(model, batch)
    check_state_dict_roundtrip(model, factory, batch)
    if sequence_columns:
        check_padding_invariance(model, batch, sequence_columns)
    return model
