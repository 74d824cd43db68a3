"""ONNX and torch.export of any model or tower that reads a dict batch."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from recforge.choices import Choice
from recforge.features import DenseFeature, Feature, SequenceFeature, SparseFeature
from recforge.files import atomic_write
from recforge.outputs import logits_of


class ExportHead(Choice):
    """What the exported graph returns: raw logits or probabilities (sigmoid of the logits)."""

    LOGITS = "logits"
    PROBABILITY = "probability"


class Positional(nn.Module):
    """Wraps ``fn(batch)`` so it takes the batch columns positionally, in ``names`` order."""

    def __init__(
        self,
        model: nn.Module,
        names: Sequence[str],
        *,
        call: Callable[[nn.Module, dict[str, Tensor]], Tensor] | None = None,
        head: ExportHead = ExportHead.LOGITS,
    ) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)
        self.call = call
        self.head = head

    def forward(self, *columns: Tensor) -> Tensor:
        batch = dict(zip(self.names, columns))
        out = self.call(self.model, batch) if self.call is not None else logits_of(self.model(batch))
        return torch.sigmoid(out) if self.head is ExportHead.PROBABILITY else out


def input_columns(features: Sequence[Feature]) -> list[str]:
    """Input names of an exported graph: the features' names in order, each once."""
    seen: list[str] = []
    for f in features:
        if f.name not in seen:
            seen.append(f.name)
    return seen


def example_batch(
    features: Sequence[Feature], batch_size: int = 3, seq_len: int = 4, seed: int = 0
) -> dict[str, Tensor]:
    """A small valid batch for tracing: ids in range, histories with some left padding."""
    g = torch.Generator().manual_seed(seed)
    out: dict[str, Tensor] = {}
    for f in features:
        if isinstance(f, DenseFeature):
            shape = (batch_size,) if f.embed_dim == 1 else (batch_size, f.embed_dim)
            out[f.name] = torch.randn(shape, generator=g)
        elif isinstance(f, SparseFeature):
            out[f.name] = torch.randint(1, f.vocab_size, (batch_size,), generator=g)
        elif isinstance(f, SequenceFeature):
            length = f.max_len or seq_len
            ids = torch.randint(1, f.vocab_size, (batch_size, length), generator=g)
            ids[0, : length // 2] = 0
            out[f.name] = ids
    return out


def _dynamic_shapes(batch: Mapping[str, Tensor], names: Sequence[str]) -> tuple[dict[int, object], ...]:
    b = torch.export.Dim("batch", min=1, max=1 << 20)
    lengths: dict[int, object] = {}
    shapes = []
    for n in names:
        t = batch[n]
        dims: dict[int, object] = {0: b}
        if t.dim() == 2 and not t.is_floating_point():
            width = int(t.shape[1])
            lengths.setdefault(width, torch.export.Dim(f"len_{n}", min=1, max=1 << 16))
            dims[1] = lengths[width]
        shapes.append(dims)
    return tuple(shapes)


class _Traceable(NamedTuple):
    """What both exporters trace: the positional wrapper, its example arguments and their names."""

    wrapper: Positional
    args: tuple[Tensor, ...]
    names: list[str]
    dynamic_shapes: tuple[tuple[dict[int, object], ...]]


def _traceable(
    model: nn.Module,
    features: Sequence[Feature] | None,
    batch: Mapping[str, Tensor] | None,
    head: ExportHead,
    call: Callable[[nn.Module, dict[str, Tensor]], Tensor] | None,
) -> _Traceable:
    feats = list(features if features is not None else model.features)  # type: ignore[arg-type]
    names = input_columns(feats)
    example = dict(batch) if batch is not None else example_batch(feats)
    missing = [n for n in names if n not in example]
    if missing:
        raise KeyError(f"the example batch lacks input column(s) {missing}")
    model.eval()
    wrapper = Positional(model, names, call=call, head=head).eval()
    args = tuple(example[n] for n in names)
    return _Traceable(wrapper, args, names, (_dynamic_shapes(example, names),))


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    features: Sequence[Feature] | None = None,
    batch: Mapping[str, Tensor] | None = None,
    head: ExportHead | str = ExportHead.LOGITS,
    call: Callable[[nn.Module, dict[str, Tensor]], Tensor] | None = None,
    output_name: str | None = None,
    opset: int = 18,
) -> Path:
    """Export ``model`` (or ``call(model, batch)``, e.g. a tower) to ONNX with the dynamo exporter.

    Args:
        model: reads a dict batch; put in eval mode here.
        path: the ``.onnx`` file, written atomically.
        features: the inputs (default ``model.features``).
        batch: an example batch (default: synthesised from ``features``).
        head: ``logits`` or ``probability``.
        call: what to export instead of ``model(batch)``, e.g. ``lambda m, b: m.user_tower(b)``.
        output_name: the graph output's name (default: the head's value).
    Returns:
        The written path.
    """
    head = ExportHead.parse(head)
    t = _traceable(model, features, batch, head, call)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            t.wrapper,
            t.args,
            dynamo=True,
            input_names=t.names,
            output_names=[output_name or head.value],
            dynamic_shapes=t.dynamic_shapes,
            opset_version=opset,
            verbose=False,
        )
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    _rename_shadowing_values(program.model, t.names)
    return atomic_write(path, lambda tmp: program.save(str(tmp)))


def _rename_shadowing_values(ir_model: object, input_names: Sequence[str]) -> None:
    """Internal values named like an input (a feature called ``cat`` meets a ``cat`` node) make
    an invalid graph: give those internal values a suffix."""
    graph = ir_model.graph  # type: ignore[attr-defined]
    inputs = {id(v) for v in graph.inputs}
    taken = set(input_names)
    for node in graph.all_nodes() if hasattr(graph, "all_nodes") else graph:
        for value in node.outputs:
            if value.name in taken and id(value) not in inputs:
                value.name = f"{value.name}__internal"


def export_pt2(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    features: Sequence[Feature] | None = None,
    batch: Mapping[str, Tensor] | None = None,
    head: ExportHead | str = ExportHead.LOGITS,
    call: Callable[[nn.Module, dict[str, Tensor]], Tensor] | None = None,
) -> Path:
    """``torch.export`` the model to a ``.pt2`` archive (load with ``torch.export.load``); inputs are
    positional in ``input_columns(features)`` order."""
    t = _traceable(model, features, batch, ExportHead.parse(head), call)
    program = torch.export.export(t.wrapper, t.args, dynamic_shapes=t.dynamic_shapes, strict=False)
    return atomic_write(path, lambda tmp: torch.export.save(program, tmp))


def onnx_parity(
    path: str | os.PathLike[str],
    model: nn.Module,
    batch: Mapping[str, Tensor],
    *,
    features: Sequence[Feature] | None = None,
    head: ExportHead | str = ExportHead.LOGITS,
    call: Callable[[nn.Module, dict[str, Tensor]], Tensor] | None = None,
) -> float:
    """Max absolute difference between onnxruntime on ``path`` and PyTorch on ``batch``."""
    import onnxruntime as ort

    head = ExportHead.parse(head)
    feats = list(features if features is not None else model.features)  # type: ignore[arg-type]
    names = input_columns(feats)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {n: batch[n].numpy() for n in names})[0]
    with torch.no_grad():
        want = Positional(model.eval(), names, call=call, head=head)(*(batch[n] for n in names)).numpy()
    if got.shape != want.shape:
        raise AssertionError(f"ONNX output shape {got.shape} differs from PyTorch's {want.shape}")
    return float(np.abs(got - want).max()) if want.size else 0.0
