"""Export trained models for serving: ONNX (the dynamo exporter) and ``torch.export`` (.pt2).

A model takes a ``dict`` batch; exporters need positional tensors, so ``Positional`` fixes the
order of the input columns and names the ONNX inputs after the features. The batch dimension
(and the length of every sequence input) is dynamic; dense inputs keep their training width.
"""

from recforge.export.core import (
    ExportHead,
    Positional,
    example_batch,
    export_onnx,
    export_pt2,
    input_columns,
    onnx_parity,
)
from recforge.export.run_export import ExportFormat, Quantization, export_model, quantize_onnx

__all__ = [
    "ExportFormat",
    "ExportHead",
    "Positional",
    "example_batch",
    "export_onnx",
    "export_pt2",
    "input_columns",
    "export_model",
    "onnx_parity",
    "quantize_onnx",
    "Quantization",
]
