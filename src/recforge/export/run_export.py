"""Export a trained model into a folder of graphs (``recforge export`` on a run), optionally quantised.

A ranking run gives one graph, ``export/model.onnx`` (or ``model.pt2``), returning probabilities.
A retrieval run (``TwoTowerModel``) gives one graph per tower: ``export/user_tower.onnx`` and
``export/item_tower.onnx``, returning vectors. Inputs are named after the features (the encoded
columns the run's pipeline produces), the batch axis and every sequence length are dynamic.
``export/manifest.json`` lists the files with their inputs and output.

Quantisation (ONNX only): ``int8`` is onnxruntime's dynamic quantisation (int8 weights of MatMul/
Gemm/Gather, activations quantised on the fly); ``fp16`` converts weights and arithmetic to float16
while inputs and outputs stay float32.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from torch import Tensor, nn

from recforge.choices import Choice
from recforge.export.core import ExportHead, export_onnx, export_pt2, input_columns
from recforge.features import Feature
from recforge.files import atomic_write, atomic_write_text, staged_dir

MANIFEST = "manifest.json"


class ExportFormat(Choice):
    ONNX = "onnx"
    PT2 = "pt2"


class Quantization(Choice):
    INT8 = "int8"
    FP16 = "fp16"


def quantize_onnx(src: str | os.PathLike[str], dst: str | os.PathLike[str], mode: Quantization | str) -> Path:
    """Write a quantised copy of the ONNX file ``src`` to ``dst`` (atomically)."""
    import onnx

    q = Quantization.parse(mode, where="quantize")

    def write(tmp: Path) -> None:
        if q is Quantization.INT8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8)
        else:
            from onnxruntime.transformers.float16 import convert_float_to_float16

            onnx.save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(tmp))

    return atomic_write(dst, write)


def _user_tower(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    return model.user_tower(batch)  # type: ignore[operator]


def _item_tower(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    return model.item_tower(batch)  # type: ignore[operator]


def _graphs(
    model: nn.Module,
) -> list[tuple[str, list[Feature], Callable[[nn.Module, dict[str, Tensor]], Tensor] | None, ExportHead]]:
    from recforge.models.matching.base import TwoTowerModel

    if isinstance(model, TwoTowerModel):
        return [
            ("user_tower", list(model.user_features), _user_tower, ExportHead.LOGITS),
            ("item_tower", list(model.item_features), _item_tower, ExportHead.LOGITS),
        ]
    return [("model", list(model.features), None, ExportHead.PROBABILITY)]  # type: ignore[arg-type]


def export_model(
    model: nn.Module,
    target: str | os.PathLike[str],
    *,
    fmt: ExportFormat | str = ExportFormat.ONNX,
    quantize: Quantization | str | None = None,
) -> list[Path]:
    """Export ``model`` (or both towers of a retrieval model) into the folder ``target`` with its
    ``manifest.json``, written whole (a failed export leaves a previous one as it was); returns
    the written graph files. ``recforge.runs.export_run`` does this for a run directory."""
    f = ExportFormat.parse(fmt, where="format")
    q = Quantization.parse(quantize, where="quantize") if quantize is not None else None
    if q is not None and f is not ExportFormat.ONNX:
        raise ValueError(f"--quantize {q.value} needs --format onnx (pt2 export is not quantised)")
    out = Path(target)
    manifest: dict[str, object] = {"format": f.value, "quantize": q.value if q else None, "graphs": {}}
    names: list[str] = []
    with staged_dir(out) as stage:
        for name, feats, call, head in _graphs(model):
            if f is ExportFormat.PT2:
                path = export_pt2(model, stage / f"{name}.pt2", features=feats, call=call, head=head)
            else:
                path = export_onnx(model, stage / f"{name}.onnx", features=feats, call=call, head=head)
                if q is not None:
                    path = quantize_onnx(path, stage / f"{name}.{q.value}.onnx", q.value)
            names.append(path.name)
            manifest["graphs"][name] = {  # type: ignore[index]
                "file": path.name,
                "inputs": input_columns(feats),
                "output": head.value if call is None else "vectors",
            }
        atomic_write_text(stage / MANIFEST, json.dumps(manifest, indent=2))
    return [out / n for n in names]


def file_sizes(paths: Sequence[Path]) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in paths}
