"""Synthetic CTR data with a planted, known click model (for checking what models can learn).

``planted_ctr`` draws categorical fields uniformly and clicks from a logistic model with a
first-order weight per id and factorised pairwise field interactions:

    logit(x) = bias + Σ_f w_f[x_f] + Σ_{(i,j) ∈ pairs} <u_i[x_i], u_j[x_j]>

so the true click probability of every row is known and the Bayes-optimal AUC of a test split is
the AUC of that probability. An FM-family model (FM, DeepFM, FFM, ...) can represent the generator
exactly when every pair interacts; a subset of pairs needs field-aware weights (FFM, FwFM) or a
deep part.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


class PlantedCTR(NamedTuple):
    """Rows of ``planted_ctr``: ids per field (``f0 .. f{F-1}``, values in ``[1, vocab]``, 0 unused
    as padding), 0/1 labels, the true click probability and the interacting field pairs."""

    columns: dict[str, np.ndarray]
    labels: np.ndarray
    prob: np.ndarray
    pairs: list[tuple[int, int]]

    @property
    def vocab_size(self) -> int:
        """Table size for a ``SparseFeature`` of any field (ids 1..vocab plus padding 0)."""
        return int(max(c.max() for c in self.columns.values())) + 1


def planted_ctr(
    n_rows: int,
    n_fields: int = 8,
    vocab: int = 100,
    *,
    interactions: int | Sequence[tuple[int, int]] | None = None,
    rank: int = 4,
    first_order_scale: float = 0.4,
    interaction_scale: float = 0.33,
    bias: float = -1.0,
    seed: int = 0,
) -> PlantedCTR:
    """Draw ``n_rows`` rows from a planted logistic click model.

    Args:
        n_rows: rows to draw.
        n_fields: categorical fields F.
        vocab: distinct ids per field.
        interactions: which field pairs interact: None for all ``F(F-1)/2``, an int for that many
            pairs chosen at random, or explicit ``(i, j)`` pairs.
        rank: width of the interaction factors ``u``.
        first_order_scale, interaction_scale: standard deviations of ``w`` and of ``u``'s entries.
        bias: global logit offset (sets the base click rate).
        seed: the generator (model parameters and rows); the same seed gives the same click model,
            so train/test splits of one call share it.

    Returns:
        ``PlantedCTR(columns, labels, prob, pairs)``.
    """
    if n_rows < 1 or n_fields < 2 or vocab < 1 or rank < 1:
        raise ValueError(
            f"planted_ctr needs n_rows >= 1, n_fields >= 2, vocab >= 1, rank >= 1; "
            f"got {n_rows}, {n_fields}, {vocab}, {rank}"
        )
    rng = np.random.default_rng(seed)
    all_pairs = [(i, j) for i in range(n_fields) for j in range(i + 1, n_fields)]
    if interactions is None:
        pairs = all_pairs
    elif isinstance(interactions, int):
        if not 0 <= interactions <= len(all_pairs):
            raise ValueError(f"interactions must lie in [0, {len(all_pairs)}], got {interactions}")
        chosen = rng.choice(len(all_pairs), size=interactions, replace=False)
        pairs = [all_pairs[k] for k in sorted(chosen)]
    else:
        pairs = [(int(i), int(j)) for i, j in interactions]
        bad = [p for p in pairs if not (0 <= p[0] < n_fields and 0 <= p[1] < n_fields and p[0] != p[1])]
        if bad:
            raise ValueError(f"interaction pairs must name two different fields in [0, {n_fields}): {bad}")
    w = rng.normal(0.0, first_order_scale, size=(n_fields, vocab + 1))
    u = rng.normal(0.0, interaction_scale, size=(n_fields, vocab + 1, rank))
    ids = rng.integers(1, vocab + 1, size=(n_rows, n_fields))
    rows = np.arange(n_fields)
    logit = bias + w[rows, ids].sum(1)  # (N,)
    vecs = u[rows, ids]  # (N, F, rank)
    for i, j in pairs:
        logit += (vecs[:, i] * vecs[:, j]).sum(1)
    prob = 1.0 / (1.0 + np.exp(-logit))
    labels = (rng.random(n_rows) < prob).astype(np.float32)
    columns = {f"f{k}": ids[:, k].astype(np.int64) for k in range(n_fields)}
    return PlantedCTR(columns, labels, prob.astype(np.float64), pairs)
