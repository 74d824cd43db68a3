"""recforge: a complete, fast, production-ready recommender-system library for PyTorch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from recforge._version import __version__

if TYPE_CHECKING:
    from recforge.bundle import load

__all__ = ["__version__", "load"]


def __getattr__(name: str) -> Any:
    # ``recforge.load`` imports torch and the models: done on first use so ``import recforge`` stays light.
    if name == "load":
        from recforge.bundle import load

        return load
    raise AttributeError(f"module 'recforge' has no attribute {name!r}")
