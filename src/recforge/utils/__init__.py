"""Torch-RecHub's ``torch_rechub.utils`` import paths (``data``, ``match``, ``hstu_utils``,
``onnx_export``, ``quantization``, ...): the compatibility layer only, over recforge's own modules.

``from recforge.utils import DataGenerator, quantize_model`` works as in Torch-RecHub; they are
loaded on first use, so importing the package stays light (no torch).
"""

from __future__ import annotations

from typing import Any

_LAZY = {"DataGenerator": "recforge.utils.data", "quantize_model": "recforge.utils.quantization"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'recforge.utils' has no attribute {name!r}")
