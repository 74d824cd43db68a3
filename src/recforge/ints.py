"""Integer arguments of any integer type (standard library only).

Counts and sizes often arrive as NumPy or torch scalars: ``df[col].max() + 1`` is an ``np.int64``,
``t.max()`` a 0-d tensor. ``as_int`` is the one place where such a value becomes a Python ``int``:
every integer type that implements ``__index__`` is accepted (``int``, NumPy integer scalars and 0-d
arrays, 0-d integer tensors); bools, floats (even integral ones such as ``8.0``), strings and arrays
with a dimension are refused with a ``ValueError`` naming the argument.
"""

from __future__ import annotations

import operator


def is_int(value: object) -> bool:
    """Whether ``value`` is an integer scalar of any integer type (never a bool)."""
    if isinstance(value, bool) or "bool" in str(getattr(value, "dtype", "")):
        return False
    if tuple(getattr(value, "shape", ())) != ():
        return False
    try:
        operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return False
    return True


def as_int(value: object, what: str, *, minimum: int | None = None) -> int:
    """``value`` as a Python ``int`` (see the module docstring).

    Args:
        value: the argument as given.
        what: how the error names it, e.g. ``"feature 'age': vocab_size"``.
        minimum: refuse smaller values (1 makes it "a positive int").
    """
    kind = "a positive int" if minimum == 1 else "an int" if minimum is None else f"an int >= {minimum}"
    if not is_int(value):
        hint = ""
        if isinstance(value, float) and value.is_integer():
            hint = f" (write {int(value)})"
        raise ValueError(f"{what} must be {kind}, got {value!r}{hint}")
    out = operator.index(value)  # type: ignore[arg-type]
    if minimum is not None and out < minimum:
        raise ValueError(f"{what} must be {kind}, got {out!r}")
    return out


def as_ints(values: object, what: str, *, minimum: int | None = None) -> tuple[int, ...]:
    """A sequence of integers (``dims=[256, 128]``) as a tuple of Python ints."""
    if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
        raise ValueError(f"{what} must be a sequence of ints, got {values!r}")
    return tuple(
        as_int(v, f"{what}[{i}]", minimum=minimum)
        for i, v in enumerate(values)  # type: ignore[call-overload]
    )
