"""``torch_rechub.utils.quantization``: ``quantize_model`` over ``recforge.export.quantize_onnx``."""

from __future__ import annotations

from recforge.export import quantize_onnx


def quantize_model(input_path: str, output_path: str, mode: str = "int8", **options: object) -> str:
    """Write a quantised copy (``"int8"`` dynamic or ``"fp16"``) of the ONNX file ``input_path`` to
    ``output_path``; returns ``output_path``. recforge picks the quantiser's settings itself, so
    Torch-RecHub's fine-tuning options (``per_channel``, ``nodes_to_exclude``, ...) are refused."""
    if options:
        raise ValueError(
            f"quantize_model: options {sorted(options)} are not supported; call quantize_model(input_path, "
            "output_path, mode) (recforge.export.quantize_onnx chooses the settings)"
        )
    return str(quantize_onnx(input_path, output_path, mode))


__all__ = ["quantize_model"]
