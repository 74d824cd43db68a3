"""``torch_rechub.utils.onnx_export``: Torch-RecHub's ``ONNXExporter`` over ``recforge.export``.

``export(path, mode=None | "user" | "item")`` writes the model (its probability, as Torch-RecHub's
models end in a sigmoid) or one tower of a two-tower model (its vectors) with recforge's dynamo
exporter; the batch and sequence dimensions are dynamic.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from torch import Tensor, nn

from recforge.export import ExportHead, export_onnx


class ONNXExporter:
    def __init__(self, model: nn.Module, device: str = "cpu") -> None:
        self.model, self.device = model, device

    def export(
        self,
        output_path: str | os.PathLike[str],
        mode: str | None = None,
        dummy_input: Mapping[str, Tensor] | None = None,
        batch_size: int = 2,
        seq_length: int = 10,
        opset_version: int = 18,
        dynamic_batch: bool = True,
        verbose: bool = False,
    ) -> bool:
        """Write ``output_path``; True when it was written (errors are raised, not swallowed)."""
        if mode not in (None, "user", "item"):
            raise ValueError(f"mode must be None, 'user' or 'item', got {mode!r}")
        model = self.model.to(self.device)
        if mode is None:
            export_onnx(
                model, output_path, batch=dummy_input, head=ExportHead.PROBABILITY, opset=opset_version
            )
            return True
        side = "user" if mode == "user" else "item"
        features = getattr(model, f"{side}_features", None)
        if features is None:
            raise TypeError(
                f"mode={mode!r} needs a two-tower model with {side}_features; {type(model).__name__} has none"
            )
        call = (lambda m, b: m.user_tower(b)) if side == "user" else (lambda m, b: m.item_tower(b))
        export_onnx(
            model,
            output_path,
            features=features,
            batch=dummy_input,
            call=call,
            output_name="vectors",
            opset=opset_version,
        )
        return True


__all__ = ["ONNXExporter"]
