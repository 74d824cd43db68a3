"""Marks for tests of recforge's C kernels: they need a C compiler, which a machine may lack."""

from __future__ import annotations

import os
import shutil

import pytest

HAS_CC = shutil.which(os.environ.get("CC") or "cc") is not None
needs_cc = pytest.mark.skipif(not HAS_CC, reason="no C compiler here: recforge's C kernels cannot be built")


def paths(*extra: str) -> list[object]:
    """``["kernel", "torch", ...]`` parameters, the kernel one skipped without a compiler."""
    return [pytest.param("kernel", marks=needs_cc), "torch", *extra]
