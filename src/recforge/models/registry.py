"""The one explicit registry of models: family -> {class name -> class}."""

from __future__ import annotations

from torch import nn

from recforge.models import generative, matching, multi_task, ranking

FAMILIES: dict[str, dict[str, type[nn.Module]]] = {
    "ranking": ranking.MODELS,
    "matching": matching.MODELS,
    "multi_task": multi_task.MODELS,
    "generative": generative.MODELS,
}


def all_models() -> dict[str, type[nn.Module]]:
    out: dict[str, type[nn.Module]] = {}
    for family in FAMILIES.values():
        out.update(family)
    return out


def get_model(name: str) -> type[nn.Module]:
    """The model class called ``name``; an unknown name is a ``ValueError`` listing the valid ones."""
    models = all_models()
    try:
        return models[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; valid: {sorted(models)}") from None
