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


def describe_model(name: str) -> str:
    """A model's constructor parameters with their types and defaults (``recforge models NAME``)."""
    import inspect

    cls = get_model(name)
    family = next(f for f, models in FAMILIES.items() if name in models)
    doc = (inspect.getdoc(cls) or "").split("\n\n")[0]
    lines = [f"{name} ({family}): {doc}", "", "parameters:"]
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    for i, p in enumerate(params):
        if p.kind is p.KEYWORD_ONLY and params[i - 1].kind in (p.POSITIONAL_OR_KEYWORD, p.POSITIONAL_ONLY):
            lines.append("  *  (the rest by keyword)")
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            lines.append(f"  {'*' if p.kind is p.VAR_POSITIONAL else '**'}{p.name}")
            continue
        ann = p.annotation if isinstance(p.annotation, str) else inspect.formatannotation(p.annotation)
        default = "required" if p.default is p.empty else f"default {p.default!r}"
        lines.append(f"  {p.name}: {ann}  ({default})")
    module_doc = (inspect.getdoc(inspect.getmodule(cls)) or "").split("\n\n")[0]
    if module_doc:
        lines += ["", module_doc]
    return "\n".join(lines)
