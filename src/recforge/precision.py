"""Mixed precision: which compute dtype a device runs well, read from what the hardware reports.

``Precision.BF16`` autocasts the forward pass (matrix products, attention) to bfloat16 while
parameters, gradients, optimizer states, losses and metrics stay float32: the weights are cast per
step, autocast runs losses in float32, and ``autocast`` below hands float32 outputs to whatever
follows the model. On a CPU this pays only where the cores multiply bfloat16 natively (x86
``avx512_bf16`` or AMX, Arm ``bf16``); elsewhere bfloat16 is emulated and slower than float32, so
``amp=True`` there falls back to float32 with a warning, and an explicit ``precision="bf16"``
still runs (results are correct) with a warning that it is emulated.

Nothing here is a hard-coded description of a machine: ``cpu_info`` reads ``/proc/cpuinfo`` (or
``platform`` elsewhere) and torch's own dispatch level.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import platform
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import torch
from torch import Tensor

from recforge.choices import Choice

log = logging.getLogger("recforge")
T = TypeVar("T")

# CPU flags that mean native bfloat16 arithmetic (x86: AVX-512 BF16, AMX tiles; Arm: BF16).
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
# Flags worth printing beside a benchmark (whatever of them the CPU reports).
NOTABLE_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "sve",
    "bf16",
    "i8mm",
)


class Precision(Choice):
    """Compute dtype of the forward pass (parameters and optimizer states stay float32)."""

    FP32 = "fp32"
    BF16 = "bf16"


@dataclass(frozen=True)
class CPUInfo:
    """What this machine reports about its CPU."""

    model: str
    cores: int
    flags: frozenset[str]
    capability: str  # torch.backends.cpu.get_cpu_capability(): the kernels torch dispatches

    @property
    def native_bf16(self) -> bool:
        return any(f in self.flags for f in BF16_FLAGS)

    def describe(self) -> str:
        """One line: model, cores, torch's dispatch level, notable flags, torch version."""
        shown = [f for f in NOTABLE_FLAGS if f in self.flags]
        return (
            f"{self.model}, {self.cores} cores, torch {torch.__version__} dispatching {self.capability}, "
            f"flags: {' '.join(shown) or 'none of ' + '/'.join(NOTABLE_FLAGS[:3])}"
        )


def _read_cpuinfo() -> dict[str, str]:
    """The first processor's ``key: value`` lines of ``/proc/cpuinfo`` (empty where there is none)."""
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    if out:
                        break
                    continue
                key, _, value = line.partition(":")
                out.setdefault(key.strip().lower(), value.strip())
    except OSError:
        pass
    return out


@functools.cache
def cpu_info() -> CPUInfo:
    """The CPU as this machine reports it (cached: it does not change while a process runs)."""
    info = _read_cpuinfo()
    flags = frozenset((info.get("flags") or info.get("features") or "").split())
    model = info.get("model name") or info.get("cpu model") or platform.processor() or platform.machine()
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):  # very old torch
        capability = "unknown"
    return CPUInfo(model=model, cores=os.cpu_count() or 1, flags=flags, capability=capability)


def device_supports_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 natively (not by emulation)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False))
    if device.type == "cpu":
        return cpu_info().native_bf16
    return False


def resolve_precision(precision: Precision | str | None, amp: bool, device: torch.device) -> Precision:
    """The precision a trainer runs with.

    ``precision`` wins when given. Otherwise ``amp=True`` asks for bfloat16 where the device has it
    natively and float32 (with a warning saying why) where it has not.
    """
    if precision is not None:
        p = Precision.parse(precision, where="precision")
        if p is Precision.BF16 and not device_supports_bf16(device):
            if device.type not in ("cpu", "cuda"):
                raise ValueError(f"precision='bf16' is supported on cpu and cuda devices, not {device}")
            log.warning(
                "precision='bf16' on %s, which has no native bfloat16 (%s): it runs emulated and is "
                "likely slower than fp32",
                device,
                _why_not(device),
            )
        return p
    if not amp:
        return Precision.FP32
    if device_supports_bf16(device):
        return Precision.BF16
    log.warning("amp=True has no effect on %s (%s); training in float32", device, _why_not(device))
    return Precision.FP32


def _why_not(device: torch.device) -> str:
    if device.type == "cpu":
        info = cpu_info()
        return f"CPU {info.model!r} reports none of the flags {', '.join(BF16_FLAGS)}"
    if device.type == "cuda":
        return "this GPU has no bfloat16 tensor cores"
    return f"no bfloat16 autocast on {device.type}"


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager[None]:
    """The autocast context of ``precision`` on ``device`` (a no-op for float32)."""
    if precision is Precision.FP32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def to_float32(outputs: T) -> T:
    """``outputs`` with every bfloat16/float16 tensor cast to float32 (tensors, tuples incl.
    NamedTuples, lists and mappings are walked); anything else is returned as is."""
    return cast(T, _to_float32(outputs))


def _to_float32(outputs: object) -> object:
    if isinstance(outputs, Tensor):
        return outputs.float() if outputs.dtype in (torch.bfloat16, torch.float16) else outputs
    if isinstance(outputs, tuple):
        items = [_to_float32(o) for o in outputs]
        return cast(Any, type(outputs))(*items) if hasattr(outputs, "_fields") else tuple(items)
    if isinstance(outputs, list):
        return [_to_float32(o) for o in outputs]
    if isinstance(outputs, Mapping):
        return {k: _to_float32(v) for k, v in outputs.items()}
    return outputs


@contextlib.contextmanager
def no_autocast(device: torch.device) -> Iterator[None]:
    """Leave autocast for a block (e.g. a loss inside an autocast region)."""
    with torch.autocast(device.type, enabled=False):
        yield
