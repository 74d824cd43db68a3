"""Closed sets of string options (standard library only).

Every closed choice in recforge is an ``Enum`` deriving from ``Choice``; ``Choice.parse`` is the one
place where a user's string (from Python, YAML or the CLI) becomes a member, and an unknown value is
a ``ValueError`` that lists the valid ones.
"""

from __future__ import annotations

import enum
import re
from typing import TypeVar

C = TypeVar("C", bound="Choice")


def _label(cls: type) -> str:
    """``BridgeType`` -> ``bridge_type``, ``GRUType`` -> ``gru_type``: a choice's name in error messages."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", cls.__name__).lower()


class Choice(str, enum.Enum):
    """A string enum whose ``parse`` accepts members or (case-insensitive) values."""

    @classmethod
    def parse(cls: type[C], value: object, *, where: str | None = None) -> C:
        """The member for ``value``; ``where`` names the argument in the error message."""
        if isinstance(value, cls):
            return value
        text = str(value).lower()
        for member in cls:
            if member.value.lower() == text:
                return member
        valid = ", ".join(repr(m.value) for m in cls)
        raise ValueError(f"{where or _label(cls)} must be one of {valid}, got {value!r}")
