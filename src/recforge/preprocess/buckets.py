"""Bucketize columns: boundaries fit on training values, and bucket ids from them.

``BucketAccumulator`` gathers what a fit needs one batch at a time (the in-memory fit is one
batch): the training minimum and maximum, and for quantile edges the values themselves, all of them
up to ``RESERVOIR_SIZE`` and beyond that a seeded uniform reservoir sample (Algorithm R) of that
size. Below the cap the kept values do not depend on batching or order, so quantiles are exact.
"""

from __future__ import annotations

import math

import numpy as np

from recforge.preprocess.columns import Binning, Bucketize
from recforge.preprocess.numeric import reject_infinite
from recforge.preprocess.vocab import NUM_RESERVED, OOV

RESERVOIR_SIZE = 1_000_000  # training values kept per quantile column: exact up to this many rows
RESERVOIR_SEED = 0


def bucket_ids(boundaries: tuple[float, ...], x: np.ndarray) -> np.ndarray:
    """int64 ids: ``2 + #{b <= x}`` (bucket ``[b[i-1], b[i])``), OOV (1) where ``x`` is NaN."""
    ids = np.searchsorted(np.asarray(boundaries, dtype=np.float64), x, side="right") + NUM_RESERVED
    ids[np.isnan(x)] = OOV
    return ids.astype(np.int64, copy=False)


class BucketAccumulator:
    """What a ``Bucketize`` column's boundaries need, gathered batch by batch.

    Memory: two floats for ``strategy="uniform"``; up to ``capacity`` float64 values for quantiles.
    """

    def __init__(
        self, spec: Bucketize, *, capacity: int = RESERVOIR_SIZE, seed: int = RESERVOIR_SEED
    ) -> None:
        self.spec = spec
        self.capacity = capacity
        self.n = 0  # non-missing values seen
        self.low, self.high = math.inf, -math.inf
        self.keep = spec.strategy is Binning.QUANTILE
        self._parts: list[np.ndarray] = []  # all values while n <= capacity
        self._reservoir: np.ndarray | None = None  # the sample, once n > capacity
        self._rng = np.random.default_rng(seed)

    def add(self, x: np.ndarray) -> None:
        """``x``: float64 values, NaN for missing."""
        present = x[~np.isnan(x)]
        reject_infinite(self.spec.name, present)
        if not present.size:
            return
        self.low, self.high = min(self.low, float(present.min())), max(self.high, float(present.max()))
        seen, self.n = self.n, self.n + present.size
        if not self.keep:
            return
        take = min(max(0, self.capacity - seen), present.size)
        if take:
            self._parts.append(present[:take].copy())
            present, seen = present[take:], seen + take
        if not present.size:
            return
        if self._reservoir is None:
            self._reservoir = np.concatenate(self._parts)
            self._parts = []
        # Algorithm R, vectorised: the value with 0-based index i replaces a uniform slot j <= i when
        # j < capacity; among draws for one slot the latest wins, as in the sequential loop.
        slots = self._rng.integers(0, seen + np.arange(present.size) + 1)
        hit = slots < self.capacity
        slots, values = slots[hit][::-1], present[hit][::-1]
        unique, last = np.unique(slots, return_index=True)
        self._reservoir[unique] = values[last]

    def boundaries(self) -> tuple[float, ...]:
        """The fitted bucket boundaries, strictly increasing (see ``quantile_boundaries``; uniform:
        the inner equally spaced points, equal ones merged)."""
        spec = self.spec
        if self.n == 0:
            raise ValueError(f"column {spec.name!r}: no non-missing training values to fit buckets on")
        if spec.strategy is Binning.QUANTILE:
            values = self._reservoir if self._reservoir is not None else np.concatenate(self._parts)
            return quantile_boundaries(values, spec.bins, self.high)
        edges = np.linspace(self.low, self.high, spec.bins + 1)
        return tuple(float(e) for e in np.unique(edges)[1:-1])


def quantile_boundaries(values: np.ndarray, bins: int, high: float) -> tuple[float, ...]:
    """Boundaries of equal-frequency buckets closed on the right at each inner quantile.

    The inner quantiles ``q`` at ``1/bins, .., (bins-1)/bins`` below the training maximum ``high``,
    duplicates merged, each moved up to the next float: with the ``[b[i-1], b[i])`` rule a value
    equal to ``q`` then stays in the bucket that ends at ``q``. A value repeated in many rows keeps
    a bucket of its own: a column that is 0 in 90% of rows gets ``(-inf, 0]`` and ``(0, inf)``
    rather than a single bucket.
    """
    inner = np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    return tuple(float(b) for b in np.nextafter(inner[inner < high], np.inf))
