"""multi_task models."""

MODELS: dict[str, type] = {}

__all__ = ["MODELS"]
