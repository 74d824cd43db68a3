"""Torch-RecHub's positional hyper-parameters, accepted in one place.

recforge's constructors take the feature lists positionally and everything else by keyword.
Torch-RecHub code passes the hyper-parameters after the feature lists positionally too
(``DCN(features, 3, {"dims": [64]})``); a model that Torch-RecHub also has declares Torch-RecHub's
order of those arguments with ``rechub_order`` above its class, and the extra positional values are
bound to those names before the keyword-only constructor runs:

```python
@rechub_order("n_cross_layers", "mlp_params")
class DCN(nn.Module):
    def __init__(self, features, *, n_cross_layers=3, mlp_params=None): ...
```
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import TypeVar

M = TypeVar("M", bound=type)


def positional(model: str, values: Sequence[object], names: Sequence[str]) -> dict[str, object]:
    """Torch-RecHub's extra positional arguments by name (too many is a ``TypeError``)."""
    if len(values) > len(names):
        raise TypeError(
            f"{model}: takes at most {len(names)} positional arguments after the features "
            f"({', '.join(names)}); pass the others by keyword"
        )
    return dict(zip(names, values))


def rechub_order(*names: str) -> Callable[[M], M]:
    """Class decorator: positional arguments after the constructor's positional parameters (its
    feature lists) bind to ``names`` in order, Torch-RecHub's order; each name must be a
    keyword-only parameter of the constructor (checked when the class is defined)."""

    def decorate(cls: M) -> M:
        init = vars(cls)["__init__"]  # the class's own constructor
        params = list(inspect.signature(init).parameters.values())[1:]
        slots = sum(p.kind is p.POSITIONAL_OR_KEYWORD for p in params)
        keyword_only = {p.name for p in params if p.kind is p.KEYWORD_ONLY}
        unknown = [n for n in names if n not in keyword_only]
        if unknown or any(p.kind is p.VAR_POSITIONAL for p in params):
            raise TypeError(
                f"{cls.__name__}: rechub_order names {unknown} that are not keyword-only parameters"
            )

        @functools.wraps(init)
        def __init__(self: object, *args: object, **kwargs: object) -> None:
            if len(args) > slots:
                given = positional(cls.__name__, args[slots:], names)
                both = sorted(set(given) & set(kwargs))
                if both:
                    raise TypeError(f"{cls.__name__}: got {', '.join(both)} both positionally and by keyword")
                args, kwargs = args[:slots], {**kwargs, **given}
            init(self, *args, **kwargs)

        cls.__init__ = __init__  # type: ignore[misc]
        cls.rechub_order = names  # type: ignore[attr-defined]
        return cls

    return decorate
