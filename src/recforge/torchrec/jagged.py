"""TorchRec's jagged containers in plain PyTorch: ``JaggedTensor``, ``KeyedJaggedTensor``, ``KeyedTensor``.

Layout (the same as TorchRec's, so data moves between the two without copies):

* ``JaggedTensor``: one feature for a batch of ``B`` rows; ``values (ΣL,)`` with ``lengths (B,)`` or
  ``offsets (B + 1,)``, optional per-value ``weights (ΣL,)``.
* ``KeyedJaggedTensor`` (KJT): several features; values are grouped key-major, so
  ``lengths (K * B,)`` holds the lengths of key 0 for every row, then of key 1, ...
* ``KeyedTensor``: pooled outputs ``values (B, ΣD)`` with the width of each key.

``as_kjt`` converts the real ``torchrec.KeyedJaggedTensor`` (or anything with the same methods).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from recforge.jagged import offsets_from_lengths

_offsets_from_lengths = offsets_from_lengths  # the one home: recforge.jagged


def _check_1d(name: str, t: Tensor) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(t).__name__}")
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(t.shape)}")


class JaggedTensor:
    """One ragged feature: ``values (ΣL,)`` split into ``B`` rows by ``lengths`` or ``offsets``.

    Args:
        values: the concatenated rows ``(ΣL,)`` (ids) or ``(ΣL, D)`` (embeddings).
        weights: optional per-value weights ``(ΣL,)``.
        lengths: row lengths ``(B,)``.
        offsets: row starts ``(B + 1,)``; one of ``lengths``/``offsets`` is required.
    """

    def __init__(
        self,
        values: Tensor,
        weights: Tensor | None = None,
        lengths: Tensor | None = None,
        offsets: Tensor | None = None,
    ) -> None:
        if lengths is None and offsets is None:
            raise ValueError("JaggedTensor needs lengths or offsets")
        if lengths is not None:
            _check_1d("lengths", lengths)
        if offsets is not None:
            _check_1d("offsets", offsets)
        self._values = values
        self._weights = weights
        self._lengths = lengths
        self._offsets = offsets
        total = int(self.offsets()[-1]) if self.offsets().numel() else 0
        if total != values.shape[0]:
            raise ValueError(f"JaggedTensor: lengths sum to {total} but values has {values.shape[0]} rows")
        if weights is not None and weights.shape[0] != values.shape[0]:
            raise ValueError(f"JaggedTensor: {weights.shape[0]} weights for {values.shape[0]} values")

    @staticmethod
    def from_dense(rows: Sequence[Tensor], weights: Sequence[Tensor] | None = None) -> JaggedTensor:
        """From a list of ``B`` 1-D (or ``(L_i, D)``) tensors."""
        lengths = torch.tensor([r.shape[0] for r in rows], dtype=torch.long)
        w = torch.cat(list(weights)) if weights is not None else None
        return JaggedTensor(torch.cat(list(rows)), weights=w, lengths=lengths)

    def values(self) -> Tensor:
        return self._values

    def weights(self) -> Tensor:
        if self._weights is None:
            raise ValueError("this JaggedTensor has no weights")
        return self._weights

    def weights_or_none(self) -> Tensor | None:
        return self._weights

    def lengths(self) -> Tensor:
        if self._lengths is None:
            assert self._offsets is not None
            self._lengths = self._offsets.diff()
        return self._lengths

    def offsets(self) -> Tensor:
        if self._offsets is None:
            assert self._lengths is not None
            self._offsets = _offsets_from_lengths(self._lengths)
        return self._offsets

    def to_dense(self) -> list[Tensor]:
        """The ``B`` rows as a list of tensors."""
        return list(torch.split(self._values, self.lengths().tolist()))

    def to_padded_dense(self, desired_length: int | None = None, padding_value: float = 0) -> Tensor:
        """Right-padded ``(B, L)`` (TorchRec's convention; recforge batches are left-padded)."""
        lengths = self.lengths()
        width = int(lengths.max()) if desired_length is None and lengths.numel() else desired_length or 0
        b = lengths.numel()
        out = self._values.new_full((b, width, *self._values.shape[1:]), padding_value)  # (B, L, ...)
        pos = torch.arange(self._values.shape[0], device=self._values.device) - torch.repeat_interleave(
            self.offsets()[:-1], lengths
        )  # (ΣL,) position inside its row
        row = torch.repeat_interleave(torch.arange(b, device=lengths.device), lengths)  # (ΣL,)
        keep = pos < width
        out[row[keep], pos[keep]] = self._values[keep]
        return out

    def to(self, device: torch.device | str) -> JaggedTensor:
        return JaggedTensor(
            self._values.to(device),
            None if self._weights is None else self._weights.to(device),
            lengths=self.lengths().to(device),
        )

    def __repr__(self) -> str:
        return f"JaggedTensor(values={self._values}, lengths={self.lengths()})"


class KeyedJaggedTensor:
    """Several ragged features of one batch, key-major (TorchRec's layout).

    Args:
        keys: feature names ``K``.
        values: all ids ``(ΣL,)``: key 0's rows, then key 1's, ...
        weights: optional per-id weights ``(ΣL,)``.
        lengths: ``(K * B,)``; or ``offsets`` ``(K * B + 1,)``.
        stride: the batch size ``B`` (inferred from ``lengths`` when omitted).
    """

    def __init__(
        self,
        keys: Sequence[str],
        values: Tensor,
        weights: Tensor | None = None,
        lengths: Tensor | None = None,
        offsets: Tensor | None = None,
        stride: int | None = None,
    ) -> None:
        self._keys = list(keys)
        if len(set(self._keys)) != len(self._keys):
            raise ValueError(f"KeyedJaggedTensor: duplicate keys in {self._keys}")
        _check_1d("values", values)
        if lengths is None and offsets is None:
            raise ValueError("KeyedJaggedTensor needs lengths or offsets")
        self._jt = JaggedTensor(values, weights, lengths, offsets)
        n = self._jt.lengths().numel()
        k = len(self._keys)
        if k == 0:
            if n:
                raise ValueError("KeyedJaggedTensor without keys cannot have lengths")
            self._stride = stride or 0
        else:
            if n % k:
                raise ValueError(f"KeyedJaggedTensor: {n} lengths do not split evenly over {k} keys")
            if stride is not None and stride * k != n:
                raise ValueError(f"KeyedJaggedTensor: stride {stride} x {k} keys != {n} lengths")
            self._stride = n // k

    # -- construction ---------------------------------------------------------------------------
    @staticmethod
    def from_lengths_sync(
        keys: Sequence[str],
        values: Tensor,
        lengths: Tensor,
        weights: Tensor | None = None,
        stride: int | None = None,
    ) -> KeyedJaggedTensor:
        return KeyedJaggedTensor(keys, values, weights, lengths=lengths, stride=stride)

    @staticmethod
    def from_offsets_sync(
        keys: Sequence[str],
        values: Tensor,
        offsets: Tensor,
        weights: Tensor | None = None,
        stride: int | None = None,
    ) -> KeyedJaggedTensor:
        return KeyedJaggedTensor(keys, values, weights, offsets=offsets, stride=stride)

    @staticmethod
    def from_jt_dict(jt_dict: Mapping[str, JaggedTensor]) -> KeyedJaggedTensor:
        """Inverse of ``to_dict``: every ``JaggedTensor`` must have the same number of rows."""
        keys = list(jt_dict)
        jts = [jt_dict[k] for k in keys]
        strides = {jt.lengths().numel() for jt in jts}
        if len(strides) > 1:
            raise ValueError(f"from_jt_dict: features have different batch sizes {sorted(strides)}")
        has_w = [jt.weights_or_none() is not None for jt in jts]
        if any(has_w) and not all(has_w):
            raise ValueError("from_jt_dict: either every feature has weights or none does")
        weights = torch.cat([jt.weights() for jt in jts]) if jts and all(has_w) else None
        values = torch.cat([jt.values() for jt in jts]) if jts else torch.zeros(0, dtype=torch.long)
        lengths = torch.cat([jt.lengths() for jt in jts]) if jts else torch.zeros(0, dtype=torch.long)
        return KeyedJaggedTensor(keys, values, weights, lengths=lengths)

    # -- accessors -------------------------------------------------------------------------------
    def keys(self) -> list[str]:
        return self._keys

    def values(self) -> Tensor:
        return self._jt.values()

    def weights(self) -> Tensor:
        return self._jt.weights()

    def weights_or_none(self) -> Tensor | None:
        return self._jt.weights_or_none()

    def lengths(self) -> Tensor:
        return self._jt.lengths()

    def offsets(self) -> Tensor:
        return self._jt.offsets()

    def stride(self) -> int:
        """The batch size ``B``."""
        return self._stride

    def length_per_key(self) -> list[int]:
        """Number of values of each key."""
        if not self._keys:
            return []
        return self.lengths().reshape(len(self._keys), self._stride).sum(1).tolist()  # (K,)

    def offset_per_key(self) -> list[int]:
        out = [0]
        for n in self.length_per_key():
            out.append(out[-1] + n)
        return out

    # -- operations ------------------------------------------------------------------------------
    def __getitem__(self, key: str) -> JaggedTensor:
        try:
            i = self._keys.index(key)
        except ValueError:
            raise KeyError(f"KeyedJaggedTensor has no key {key!r}; keys: {self._keys}") from None
        start, end = self.offset_per_key()[i : i + 2]
        w = self.weights_or_none()
        return JaggedTensor(
            self.values()[start:end],
            None if w is None else w[start:end],
            lengths=self.lengths()[i * self._stride : (i + 1) * self._stride],
        )

    def to_dict(self) -> dict[str, JaggedTensor]:
        """``{key: JaggedTensor}`` with ``B`` rows each (views into this KJT's tensors)."""
        return {k: self[k] for k in self._keys}

    def split(self, segments: Sequence[int]) -> list[KeyedJaggedTensor]:
        """Consecutive groups of keys: ``segments`` are group sizes summing to the number of keys."""
        if sum(segments) != len(self._keys) or any(s < 0 for s in segments):
            raise ValueError(
                f"split: segments {list(segments)} must be >= 0 and sum to {len(self._keys)} keys"
            )
        opk = self.offset_per_key()
        w = self.weights_or_none()
        out, k = [], 0
        for s in segments:
            start, end = opk[k], opk[k + s]
            out.append(
                KeyedJaggedTensor(
                    self._keys[k : k + s],
                    self.values()[start:end],
                    None if w is None else w[start:end],
                    lengths=self.lengths()[k * self._stride : (k + s) * self._stride],
                    stride=self._stride,
                )
            )
            k += s
        return out

    def permute(self, indices: Sequence[int]) -> KeyedJaggedTensor:
        """Keys reordered (or repeated/dropped) so that new key ``i`` is old key ``indices[i]``."""
        k = len(self._keys)
        if any(not 0 <= i < k for i in indices):
            raise IndexError(f"permute: indices {list(indices)} must lie in [0, {k})")
        opk = self.offset_per_key()
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        lengths = self.lengths().reshape(k, self._stride)[idx].reshape(-1)  # (K' * B,)
        # One gather of the values: the positions of every chosen key's segment, in the new order.
        starts = torch.tensor([opk[i] for i in indices], dtype=torch.long)
        sizes = torch.tensor([opk[i + 1] - opk[i] for i in indices], dtype=torch.long)
        seg_start = torch.repeat_interleave(starts, sizes)  # (ΣL',)
        within = torch.arange(int(sizes.sum())) - torch.repeat_interleave(
            _offsets_from_lengths(sizes)[:-1], sizes
        )  # (ΣL',)
        pos = (seg_start + within).to(self.values().device)
        w = self.weights_or_none()
        return KeyedJaggedTensor(
            [self._keys[i] for i in indices],
            self.values()[pos],
            None if w is None else w[pos],
            lengths=lengths,
            stride=self._stride,
        )

    def to(self, device: torch.device | str) -> KeyedJaggedTensor:
        w = self.weights_or_none()
        return KeyedJaggedTensor(
            self._keys,
            self.values().to(device),
            None if w is None else w.to(device),
            lengths=self.lengths().to(device),
            stride=self._stride,
        )

    def __repr__(self) -> str:
        return f"KeyedJaggedTensor(keys={self._keys}, stride={self._stride}, values={self.values().shape[0]})"


class KeyedTensor:
    """Pooled per-key outputs ``values (B, ΣD)``; key ``i`` occupies ``length_per_key[i]`` columns.

    Args:
        keys: names ``K``.
        length_per_key: widths ``D_k``.
        values: ``(B, ΣD)`` (``key_dim=1``, the only layout supported here).
    """

    def __init__(self, keys: Sequence[str], length_per_key: Sequence[int], values: Tensor, key_dim: int = 1):
        if key_dim != 1:
            raise ValueError(f"KeyedTensor: only key_dim=1 is supported, got {key_dim}")
        if len(keys) != len(length_per_key):
            raise ValueError(f"KeyedTensor: {len(keys)} keys but {len(length_per_key)} lengths")
        if values.dim() != 2 or values.shape[1] != sum(length_per_key):
            raise ValueError(
                f"KeyedTensor: values must be (B, {sum(length_per_key)}), got {tuple(values.shape)}"
            )
        self._keys = list(keys)
        self._length_per_key = [int(n) for n in length_per_key]
        self._values = values

    @staticmethod
    def from_tensor_list(keys: Sequence[str], tensors: Sequence[Tensor]) -> KeyedTensor:
        """From ``(B, D_k)`` tensors, one per key."""
        return KeyedTensor(keys, [t.shape[1] for t in tensors], torch.cat(list(tensors), 1))

    def keys(self) -> list[str]:
        return self._keys

    def values(self) -> Tensor:
        return self._values

    def length_per_key(self) -> list[int]:
        return self._length_per_key

    def offset_per_key(self) -> list[int]:
        out = [0]
        for n in self._length_per_key:
            out.append(out[-1] + n)
        return out

    def key_dim(self) -> int:
        return 1

    def __getitem__(self, key: str) -> Tensor:
        try:
            i = self._keys.index(key)
        except ValueError:
            raise KeyError(f"KeyedTensor has no key {key!r}; keys: {self._keys}") from None
        start, end = self.offset_per_key()[i : i + 2]
        return self._values[:, start:end]  # (B, D_k)

    def to_dict(self) -> dict[str, Tensor]:
        return dict(zip(self._keys, torch.split(self._values, self._length_per_key, dim=1)))

    @staticmethod
    def regroup(keyed_tensors: Sequence[KeyedTensor], groups: Sequence[Sequence[str]]) -> list[Tensor]:
        """One ``(B, ΣD_group)`` tensor per group of keys, taken from any of ``keyed_tensors``."""
        parts: dict[str, Tensor] = {}
        for kt in keyed_tensors:
            for k, v in kt.to_dict().items():
                if k in parts:
                    raise ValueError(f"regroup: key {k!r} appears in more than one KeyedTensor")
                parts[k] = v
        out = []
        for group in groups:
            missing = [k for k in group if k not in parts]
            if missing:
                raise KeyError(f"regroup: keys {missing} are in no KeyedTensor; known: {sorted(parts)}")
            out.append(torch.cat([parts[k] for k in group], 1))  # (B, ΣD_group)
        return out

    def __repr__(self) -> str:
        return f"KeyedTensor(keys={self._keys}, length_per_key={self._length_per_key})"


def as_kjt(features: object) -> KeyedJaggedTensor:
    """recforge's ``KeyedJaggedTensor`` from ours (returned as is) or from TorchRec's.

    Anything with TorchRec's accessors (``keys()``, ``values()``, ``lengths()``,
    ``weights_or_none()``, ``stride()``) is converted; the tensors are shared, not copied.
    """
    if isinstance(features, KeyedJaggedTensor):
        return features
    needed = ("keys", "values", "lengths", "weights_or_none", "stride")
    if all(callable(getattr(features, m, None)) for m in needed):
        f = features
        return KeyedJaggedTensor(
            list(f.keys()),  # type: ignore[attr-defined]
            f.values(),  # type: ignore[attr-defined]
            f.weights_or_none(),  # type: ignore[attr-defined]
            lengths=f.lengths(),  # type: ignore[attr-defined]
            stride=int(f.stride()),  # type: ignore[attr-defined]
        )
    raise TypeError(f"expected a KeyedJaggedTensor (recforge's or TorchRec's), got {type(features).__name__}")
