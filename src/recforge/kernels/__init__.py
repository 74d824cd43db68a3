"""recforge's C kernels (``kernels.c``), compiled on first use and called through ctypes.

Kernels, each where PyTorch's CPU operators take several passes over memory for what is one pass of
work:

* the sparse row updates of ``LazyAdam`` / ``RowWiseAdagrad`` (``recforge.optim``): group the
  looked-up rows without sorting, then update each distinct row once, in place;
* dropout, optionally fused with the ReLU before it (``recforge.layers.dropout``): the mask drawn,
  applied and kept in one pass, in float32 or bfloat16; and a training-mode batch norm + ReLU +
  dropout on a bfloat16 block (``recforge.layers.mlp.linear_bn_relu_dropout``);
* the lookup of a sparse-gradient embedding table (``recforge.layers.embedding``) and a shuffled
  batch's rows of every column (``recforge.data.ColumnarDataset.take``), prefetching rows ahead;
  a fused table's ids for several fields (stacked, range-checked and offset at once);
* DeepFM's two reads of its field embeddings (``recforge.layers.wide_fm_and_deep_input``): the
  first-order + FM logit and the deep tower's input in one pass, their gradients in one more.

``kernels.c`` is plain C, with no torch or Python headers. It is built with ``-fopenmp`` where the
compiler has it: its large loops then run on the OpenMP runtime torch itself uses (torch's libgomp is
already loaded under the same soname), so ``torch.set_num_threads`` governs them too; every parallel
loop writes disjoint elements, so the results do not depend on the thread count.

Each process that asks for the kernels compiles them itself, once, with the system's C compiler
(``$CC``, else ``cc``; portable flags, no ``-march=native``; under a second), into a private
temporary directory that is removed as soon as the library is loaded. Nothing compiled is kept on
disk or read back later, so no file another process could have replaced is ever loaded as code.

``require()`` returns the loaded kernels or raises ``NativeUnavailable`` with the compiler's own
message; ``get()`` returns them or None, warning once per process with that message. Setting
``RECFORGE_KERNELS=torch`` turns them off (``get()`` is then None without a warning); the torch paths
compute the same things.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("kernels.c")
FLAGS = ("-O3", "-fno-math-errno", "-shared", "-fPIC")
OPENMP = "-fopenmp"  # tried first; a compiler without it builds the same kernels single-threaded

_P, _I, _F = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float

# Kernels that sum over rows do it by fixed blocks of rows, one partial per block summed in block
# order, so their results do not depend on the thread count.
HEAD_BLOCK_ROWS = 64  # fm_head_backward: the first-order weights' gradient
BN_BLOCK_ROWS = 256  # bn_relu_dropout: the batch statistics and the affine gradients


class NativeUnavailable(RuntimeError):
    """The C row kernels could not be built or loaded here (the message says why)."""


@dataclass
class RowScratch:
    """Per-table scratch of the C kernels: ``slot (V,)`` int32, every entry -1 between calls, and
    ``uniq (n,)`` / ``acc (n, D)`` buffers that grow to the largest gradient seen."""

    slot: Tensor
    uniq: Tensor
    acc: Tensor

    @classmethod
    def for_table(cls, weight: Tensor) -> RowScratch:
        return cls(
            slot=torch.full((weight.shape[0],), -1, dtype=torch.int32),
            uniq=torch.empty(0, dtype=torch.int64),
            acc=torch.empty(0, weight.shape[1], dtype=torch.float32),
        )

    def fit(self, nnz: int) -> None:
        if self.uniq.numel() < nnz:
            self.uniq = torch.empty(nnz, dtype=torch.int64)
            self.acc = torch.empty(nnz, self.acc.shape[1], dtype=torch.float32)


def eager() -> bool:
    """Whether operations run eagerly, where recforge's one-pass paths may take over: not while
    TorchScript traces, ``torch.compile`` compiles or an ONNX export runs (those see the plain
    formulas, which they fuse or translate themselves)."""
    return not (torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export())


def can_run(weight: Tensor, state: Tensor, grad: Tensor) -> bool:
    """Whether the C kernels take this table: a CPU, contiguous float32 ``weight (V, D)`` and
    optimizer ``state``, and a float32 row-sparse gradient (anything else takes the torch path)."""
    return (
        grad.is_sparse
        and grad.sparse_dim() == 1
        and weight.device.type == "cpu"
        and weight.dim() == 2
        and weight.dtype == state.dtype == grad.dtype == torch.float32
        and weight.is_contiguous()
        and state.is_contiguous()
        and grad._nnz() < 2**31
    )


def _sparse_parts(grad: Tensor) -> tuple[Tensor, Tensor]:
    """``(ids (nnz,) int64, values (nnz, D) float32)``, both contiguous."""
    return grad._indices()[0].contiguous(), grad._values().contiguous()


class Kernels:
    """The loaded kernels. The row updates change a table in place from its raw sparse gradient."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._adam = lib.recforge_lazy_adam_rows
        self._adam.restype = _I
        self._adam.argtypes = [_P, _P, _I, _I, _P, _P, _I, _P, _P, _P, _F, _F, _F, _F, _F, _F]
        self._adagrad = lib.recforge_rowwise_adagrad_rows
        self._adagrad.restype = _I
        self._adagrad.argtypes = [_P, _P, _I, _I, _I, _P, _P, _I, _P, _P, _P, _F, _F, _F]
        self._drop = lib.recforge_dropout_forward
        self._drop.restype = None
        self._drop.argtypes = [
            _P,
            _P,
            _P,
            _I,
            ctypes.c_int,
            ctypes.c_uint32,
            _F,
            ctypes.c_uint64,
            ctypes.c_int,
        ]
        self._gather = lib.recforge_gather_rows
        self._gather.restype = _I
        self._gather.argtypes = [_P, _I, _I, _P, _I, _P]
        self._columns = lib.recforge_gather_columns
        self._columns.restype = _I
        self._columns.argtypes = [_P, _P, _I, _I, _P, _I, _P]
        self._drop_back = lib.recforge_dropout_backward
        self._drop_back.restype = None
        self._drop_back.argtypes = [_P, _P, _P, _I, ctypes.c_int, _F]
        self._field_ids = lib.recforge_field_ids
        self._field_ids.restype = _I
        self._field_ids.argtypes = [_P, _I, _I, _P, _P, _P]
        self._bn = lib.recforge_bn_relu_dropout_forward
        self._bn.restype = None
        self._bn.argtypes = [
            _P,
            _I,
            _I,
            _P,
            _P,
            _F,
            ctypes.c_uint32,
            _F,
            ctypes.c_uint64,
            _P,
            _P,
            _P,
            _P,
            _P,
            _P,
        ]
        self._bn_back = lib.recforge_bn_relu_dropout_backward
        self._bn_back.restype = None
        self._bn_back.argtypes = [_P, _P, _P, _I, _I, _P, _P, _P, _F, _P, _P, _P, _P, _I]
        self._head = lib.recforge_fm_head_forward
        self._head.restype = None
        self._head.argtypes = [_P, _I, _I, _I, _P, _F, _P, _P, _I, ctypes.c_int, _P, _P, _I]
        self._head_back = lib.recforge_fm_head_backward
        self._head_back.restype = None
        self._head_back.argtypes = [_P, _I, _I, _I, _P, _P, _P, _I, ctypes.c_int, _P, _P, _I]

    def gather(self, weight: Tensor, ids: Tensor) -> Tensor:
        """``weight[ids]`` for a contiguous float32 ``weight (V, D)`` and contiguous int64 ``ids``:
        shape ``ids.shape + (D,)``."""
        out = torch.empty(*ids.shape, weight.shape[1], dtype=weight.dtype)
        code = self._gather(
            weight.data_ptr(), weight.shape[0], weight.shape[1], ids.data_ptr(), ids.numel(), out.data_ptr()
        )
        if code < 0:
            bad = int(ids.reshape(-1)[-1 - code])
            raise IndexError(f"embedding id {bad} is outside the table's {weight.shape[0]} rows")
        return out

    def field_ids(self, columns: list[Tensor], offsets: list[int], vocab: list[int]) -> tuple[Tensor, int]:
        """``(ids (B, F), bad)``: ``ids[:, f] = offsets[f] + columns[f]`` for contiguous int64 CPU
        columns of one length ``B``; ``bad`` is -1, or the index of the first column holding an id
        outside ``[0, vocab[f])`` (``ids`` is then not usable)."""
        n, rows = len(columns), columns[0].shape[0]
        ids = torch.empty(rows, n, dtype=torch.int64)
        code = self._field_ids(
            (ctypes.c_void_p * n)(*(c.data_ptr() for c in columns)), n, rows, (ctypes.c_int64 * n)(*offsets),
            (ctypes.c_int64 * n)(*vocab), ids.data_ptr(),
        )  # fmt: skip
        return ids, -1 if code == 0 else (-1 - code) % n

    def take_rows(self, columns: list[Tensor], index: Tensor) -> list[Tensor]:
        """``[c.index_select(0, index) for c in columns]`` in one pass over ``index``: CPU columns,
        contiguous, of one length; ``index`` int64 and contiguous."""
        rows = columns[0].shape[0]
        outs = [torch.empty((index.numel(), *c.shape[1:]), dtype=c.dtype) for c in columns]
        k = len(columns)
        srcs = (ctypes.c_void_p * k)(*(c.data_ptr() for c in columns))
        dsts = (ctypes.c_void_p * k)(*(o.data_ptr() for o in outs))
        widths = (ctypes.c_int64 * k)(*(c[0].numel() * c.element_size() if rows else 0 for c in columns))
        code = self._columns(srcs, widths, k, rows, index.data_ptr(), index.numel(), dsts)
        if code < 0:
            raise IndexError(f"row {int(index[-1 - code])} is outside the {rows} rows of the columns")
        return outs

    def dropout(self, x: Tensor, p: float, *, relu: bool = False) -> tuple[Tensor, Tensor]:
        """``(out, mask)``: ``x`` (contiguous float32 or bfloat16 on CPU), each element kept with
        probability ``1 - p`` (and, with ``relu``, only where ``x > 0``) and scaled by ``1 / (1 - p)``;
        ``mask`` is the bool tensor of what was kept. The random words come from a seed drawn from
        torch's default generator."""
        seed = int(torch.empty((), dtype=torch.int64).random_())
        out = torch.empty_like(x)
        mask = torch.empty(x.shape, dtype=torch.bool)
        self._drop(
            x.data_ptr(), out.data_ptr(), mask.data_ptr(), x.numel(), x.dtype == torch.bfloat16,
            round(p * 2**31), 1.0 / (1.0 - p), seed, relu,
        )  # fmt: skip
        return out, mask

    def dropout_backward(self, grad: Tensor, mask: Tensor, p: float) -> Tensor:
        """``grad`` where ``mask``, scaled by ``1 / (1 - p)``; zero elsewhere."""
        out = torch.empty_like(grad)
        self._drop_back(
            grad.data_ptr(), out.data_ptr(), mask.data_ptr(), grad.numel(), grad.dtype == torch.bfloat16,
            1.0 / (1.0 - p),
        )  # fmt: skip
        return out

    def fm_head(
        self, x: Tensor, weight: Tensor, bias: float, deep: Tensor | None, extra: Sequence[Tensor] = ()
    ) -> Tensor:
        """First-order + FM logit ``(B, 1)`` of fields ``x (B, F, D)`` (contiguous float32) with
        first-order weights ``weight (F*D,)``; when given, each row of ``deep (B, W)`` (float32 or
        bfloat16, rows contiguous) receives ``x``'s row flattened, then the rows of the contiguous
        float32 ``extra`` blocks ``(B, w_e)``."""
        batch, fields, dim = x.shape
        logit = torch.empty(batch, 1, dtype=torch.float32)
        n = len(extra)
        self._head(
            x.data_ptr(), batch, fields, dim, weight.data_ptr(), bias, logit.data_ptr(),
            None if deep is None else deep.data_ptr(), 0 if deep is None else deep.stride(0),
            deep is not None and deep.dtype == torch.bfloat16, (ctypes.c_void_p * n)(*(e.data_ptr() for e in extra)),
            (ctypes.c_int64 * n)(*(e.shape[1] for e in extra)), n,
        )  # fmt: skip
        return logit

    def fm_head_backward(
        self, x: Tensor, weight: Tensor, grad: Tensor, deep_grad: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Gradients of ``fm_head``: ``(grad_x (B, F, D), grad_weight (F*D,))`` from the logit's
        ``grad (B, 1)`` (contiguous float32) and ``deep_grad`` (the deep input's, rows contiguous; its
        first ``F*D`` columns are ``x``'s share; None: zero)."""
        batch, fields, dim = x.shape
        out = torch.empty_like(x)
        parts = _block_partials(batch, HEAD_BLOCK_ROWS, fields * dim)
        self._head_back(
            x.data_ptr(), batch, fields, dim, weight.data_ptr(), grad.data_ptr(),
            None if deep_grad is None else deep_grad.data_ptr(),
            0 if deep_grad is None else deep_grad.stride(0),
            deep_grad is not None and deep_grad.dtype == torch.bfloat16, out.data_ptr(), parts.data_ptr(),
            HEAD_BLOCK_ROWS,
        )  # fmt: skip
        return out, parts.sum(0)

    def bn_relu_dropout(
        self, y: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float, p: float
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """A training-mode batch norm of the contiguous bfloat16 ``y (B, d)`` (batch statistics;
        contiguous float32 affine ``weight`` / ``bias``, or None), then ReLU, then dropout ``p``
        (masks drawn as ``dropout`` draws them): ``(out, mask, mean, var, rstd)``, ``var`` the biased
        batch variance."""
        rows, width = y.shape
        seed = int(torch.empty((), dtype=torch.int64).random_())
        out = torch.empty_like(y)
        mask = torch.empty(y.shape, dtype=torch.bool)
        mean, var, rstd = (torch.empty(width, dtype=torch.float32) for _ in range(3))
        parts = _block_partials(rows, BN_BLOCK_ROWS, 2 * width)
        self._bn(
            y.data_ptr(), rows, width, None if weight is None else weight.data_ptr(),
            None if bias is None else bias.data_ptr(), eps, round(p * 2**31), 1.0 / (1.0 - p), seed,
            out.data_ptr(), mask.data_ptr(), mean.data_ptr(), var.data_ptr(), rstd.data_ptr(), parts.data_ptr(),
            BN_BLOCK_ROWS,
        )  # fmt: skip
        return out, mask, mean, var, rstd

    def bn_relu_dropout_backward(
        self,
        y: Tensor,
        grad: Tensor,
        mask: Tensor,
        mean: Tensor,
        rstd: Tensor,
        weight: Tensor | None,
        p: float,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Gradients of ``bn_relu_dropout`` from the output's contiguous bfloat16 ``grad``:
        ``(grad_y, grad_weight, grad_bias)``."""
        rows, width = y.shape
        grad_y = torch.empty_like(y)
        grad_w, grad_b = torch.empty(width, dtype=torch.float32), torch.empty(width, dtype=torch.float32)
        parts = _block_partials(rows, BN_BLOCK_ROWS, 2 * width)
        self._bn_back(
            y.data_ptr(), grad.data_ptr(), mask.data_ptr(), rows, width, mean.data_ptr(), rstd.data_ptr(),
            None if weight is None else weight.data_ptr(), 1.0 / (1.0 - p), grad_y.data_ptr(), grad_w.data_ptr(),
            grad_b.data_ptr(), parts.data_ptr(), BN_BLOCK_ROWS,
        )  # fmt: skip
        return grad_y, grad_w, grad_b

    def lazy_adam(
        self, weight: Tensor, moments: Tensor, grad: Tensor, scratch: RowScratch, *, lr: float, beta1: float,
        beta2: float, eps: float, weight_decay: float, step: int,
    ) -> int:  # fmt: skip
        """LazyAdam on the rows of ``grad`` (duplicates summed); ``moments (V, 2, D)``. Returns the
        number of distinct rows."""
        ids, values = _sparse_parts(grad)
        scratch.fit(ids.numel())
        n = self._adam(
            weight.data_ptr(), moments.data_ptr(), weight.shape[0], weight.shape[1], ids.data_ptr(),
            values.data_ptr(), ids.numel(), scratch.slot.data_ptr(), scratch.uniq.data_ptr(),
            scratch.acc.data_ptr(), beta1, beta2, eps, lr / (1 - beta1**step), 1 / (1 - beta2**step),
            lr * weight_decay,
        )  # fmt: skip
        return _checked(n, ids, weight)

    def rowwise_adagrad(
        self, weight: Tensor, sums: Tensor, grad: Tensor, scratch: RowScratch, *, lr: float, eps: float,
        weight_decay: float,
    ) -> int:  # fmt: skip
        """RowWiseAdagrad on the rows of ``grad``; ``sums (V,)`` or ``(V, k)``. Returns the number of
        distinct rows."""
        ids, values = _sparse_parts(grad)
        scratch.fit(ids.numel())
        blocks = 1 if sums.dim() == 1 else sums.shape[1]
        n = self._adagrad(
            weight.data_ptr(), sums.data_ptr(), weight.shape[0], weight.shape[1], blocks, ids.data_ptr(),
            values.data_ptr(), ids.numel(), scratch.slot.data_ptr(), scratch.uniq.data_ptr(),
            scratch.acc.data_ptr(), lr, eps, weight_decay,
        )  # fmt: skip
        return _checked(n, ids, weight)


def _block_partials(rows: int, block_rows: int, width: int) -> Tensor:
    """Scratch for the per-block partial sums: one row of ``width`` floats per block."""
    return torch.empty(-(-rows // block_rows), width, dtype=torch.float32)


def _checked(n: int, ids: Tensor, weight: Tensor) -> int:
    if n < 0:
        bad = int(ids[-1 - n])
        raise IndexError(f"sparse gradient row {bad} is outside the table's {weight.shape[0]} rows")
    return n


def _compiler() -> str:
    cc = os.environ.get("CC") or "cc"
    if shutil.which(cc) is None:
        raise NativeUnavailable(f"no C compiler: {cc!r} is not on PATH (set $CC to one)")
    return cc


def _build(cc: str, target: Path) -> None:
    """Compile ``SOURCE`` to ``target``: with OpenMP where the compiler has it, else without."""
    for extra in ([OPENMP], []):
        cmd = [cc, *FLAGS, *extra, str(SOURCE), "-o", str(target), "-lm"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise NativeUnavailable(f"{' '.join(cmd)} failed: {e}") from None
        if done.returncode == 0:
            return
    raise NativeUnavailable(f"{' '.join(cmd)} failed:\n{done.stderr.strip()[-2000:]}")


@functools.cache
def _load() -> Kernels | NativeUnavailable:
    try:
        cc = _compiler()
        # a directory only this process writes (mode 0700), gone once the library is mapped
        with tempfile.TemporaryDirectory(prefix="recforge-kernels-", ignore_cleanup_errors=True) as tmp:
            target = Path(tmp) / "kernels.so"
            _build(cc, target)
            return Kernels(ctypes.CDLL(str(target)))
    except NativeUnavailable as e:
        return e
    except OSError as e:  # no temporary directory, or ctypes could not load the library
        return NativeUnavailable(f"cannot build or load the compiled kernels: {e}")


def require() -> Kernels:
    """The C kernels, compiled and loaded once per process; ``NativeUnavailable`` says why not."""
    if os.environ.get("RECFORGE_KERNELS", "").lower() == "torch":
        raise NativeUnavailable("RECFORGE_KERNELS=torch turns the C kernels off")
    got = _load()
    if isinstance(got, NativeUnavailable):
        raise got
    return got


_WARNED: set[str] = set()


def get() -> Kernels | None:
    """The C kernels, or None where they cannot be built (with one warning per reason and process
    that gives the reason) or are turned off with ``RECFORGE_KERNELS=torch`` (silently)."""
    if os.environ.get("RECFORGE_KERNELS", "").lower() == "torch":
        return None
    try:
        return require()
    except NativeUnavailable as e:
        reason = str(e)
        if reason not in _WARNED:
            _WARNED.add(reason)
            warnings.warn(
                "recforge: the C kernels are unavailable, so sparse embedding updates and dropout take "
                f"the slower torch paths (set RECFORGE_KERNELS=torch to choose them and silence this): {reason}",
                RuntimeWarning,
                stacklevel=2,
            )
        return None
