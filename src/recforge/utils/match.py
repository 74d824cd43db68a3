"""Torch-RecHub's ``torch_rechub.utils.match`` names over recforge's own machinery.

- ``generate_seq_feature_match`` / ``gen_model_input``: retrieval samples in Torch-RecHub's layout
  (point-, pair- or list-wise rows, variable-length histories padded by ``gen_model_input``);
  negatives come from ``recforge.data.NegativeSampler``.
- ``negative_sample``: the four Torch-RecHub sampling distributions as ``NegativeSampler`` weights.
- ``Annoy`` / ``Faiss``: Torch-RecHub's index wrappers over ``recforge.retrieval.ExactIndex`` /
  ``FaissIndex`` (same ``fit``/``query`` calls and result layout; ``Annoy`` here is exact search).
- ``Milvus``: recforge has no Milvus client; constructing one says what to use instead.
- ``inbatch_negative_sampling`` / ``gather_inbatch_logits``: in-batch negatives picked from a score
  matrix (Torch-RecHub's test helpers); recforge's own in-batch training uses every other row
  (``MatchTrainer(negatives="in_batch")``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from recforge.data import NegativeSampler
from recforge.data.sampling import SamplingDistribution
from recforge.ints import as_int
from recforge.retrieval import ExactIndex, FaissIndex
from recforge.retrieval.base import ArrayLike
from recforge.utils.data import df_to_dict, pad_sequences

SAMPLE_METHODS = {
    0: "uniform over the items",
    1: "popularity: count ** 0.75 (word2vec)",
    2: "log(count + 1) + 1e-6",
    3: "Tencent RALM: (log(count + 2) - log(count + 1)) / log(n_items + 1)",
}


def _sampling_weights(counts: np.ndarray, method_id: int) -> np.ndarray:
    """Unnormalised probability of each item (``counts (n,)``) under Torch-RecHub's method."""
    if method_id == 0:
        return np.ones_like(counts, dtype=np.float64)
    if method_id == 1:
        return counts.astype(np.float64) ** 0.75
    if method_id == 2:
        return np.log(counts + 1.0) + 1e-6
    if method_id == 3:
        return (np.log(counts + 2.0) - np.log(counts + 1.0)) / np.log(len(counts) + 1.0)
    raise ValueError(f"method_id must be one of {SAMPLE_METHODS}, got {method_id!r}")


def negative_sample(items_cnt_order: Mapping[Hashable, int], ratio: int, method_id: int = 0) -> np.ndarray:
    """``ratio`` items drawn (with replacement) from ``{item: count}`` under ``method_id`` (see
    ``SAMPLE_METHODS``), by ``NegativeSampler`` with the method's weights."""
    ratio = as_int(ratio, "ratio", minimum=0)
    items = np.array(list(items_cnt_order.keys()), dtype=object)
    counts = np.array(list(items_cnt_order.values()), dtype=np.float64)
    if len(items) < 2:
        raise ValueError(f"negative_sample needs at least 2 items, got {len(items)}")
    if ratio == 0:
        return items[:0]
    weights = np.r_[0.0, _sampling_weights(counts, method_id)]  # id 0 is padding: never drawn
    sampler = NegativeSampler(
        len(weights), distribution=SamplingDistribution.POPULARITY, counts=weights, alpha=1.0
    )
    ids = sampler.sample_shared(ratio).ids.numpy()
    out = items[ids - 1]
    return out.astype(np.asarray(list(items_cnt_order.keys())).dtype)


def generate_seq_feature_match(
    data: pd.DataFrame,
    user_col: str,
    item_col: str,
    time_col: str,
    item_attribute_cols: Sequence[str] | None = None,
    sample_method: int = 0,
    mode: int = 0,
    neg_ratio: int = 0,
    min_item: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Retrieval samples from an interaction log (Torch-RecHub's layout).

    Per user, interactions in time order: every item after the first is a target whose history is
    all earlier items; the last one is the user's test row, the others train rows. Train rows by
    ``mode``: 0 point-wise (the positive with ``label`` 1 and ``neg_ratio`` rows with a sampled item
    and ``label`` 0), 1 pair-wise (one row per positive with a scalar ``neg_items``; ``neg_ratio`` is
    1), 2 list-wise (``neg_items`` holds ``neg_ratio`` items). Negatives are drawn from every item of
    the log by ``sample_method`` (``SAMPLE_METHODS``) and may equal the positive, as in Torch-RecHub.
    Users with fewer than ``min_item`` interactions are dropped. ``data`` is not modified.

    Returns:
        ``(train, test)`` with columns ``user_col``, ``item_col``, ``hist_<item_col>`` (lists),
        ``histlen_<item_col>``, ``hist_<attr>`` per attribute, then ``label`` (mode 0) or
        ``neg_items`` (modes 1 and 2; the test rows hold 1 there, as in Torch-RecHub).
    """
    attrs = list(item_attribute_cols or [])
    mode = as_int(mode, "mode")
    neg_ratio = as_int(neg_ratio, "neg_ratio", minimum=0)
    if mode not in (0, 1, 2):
        raise ValueError(f"mode must be 0 (point-wise), 1 (pair-wise) or 2 (list-wise), got {mode}")
    if mode == 2 and neg_ratio < 1:
        raise ValueError("mode=2 (list-wise) needs neg_ratio >= 1 negatives per row")
    if mode == 1:
        neg_ratio = 1
    missing = [c for c in (user_col, item_col, time_col, *attrs) if c not in data.columns]
    if missing:
        raise KeyError(f"data has no column(s) {missing}; it has {list(data.columns)}")
    log = data.sort_values(time_col, kind="mergesort")
    counts = Counter(log[item_col].tolist())
    popular_first = dict(sorted(counts.items(), key=lambda kv: kv[1], reverse=True))
    size = log.groupby(user_col, sort=True)[item_col].transform("size")
    log = log[size >= as_int(min_item, "min_item", minimum=0)]
    n_cold = data[user_col].nunique() - log[user_col].nunique()
    n_train = int((log.groupby(user_col)[item_col].size() - 2).clip(lower=0).sum())
    per_row = neg_ratio if mode != 1 else 1
    negatives = negative_sample(popular_first, n_train * per_row, sample_method) if per_row else np.zeros(0)
    last_col = "label" if mode == 0 else "neg_items"
    train: list[list[object]] = []
    test: list[list[object]] = []
    k = 0
    for uid, hist in log.groupby(user_col, sort=True):
        items = hist[item_col].tolist()
        attr_lists = [hist[c].tolist() for c in attrs]
        for i in range(1, len(items)):
            row = [uid, items[i], items[:i], i, *(a[:i] for a in attr_lists)]
            if i == len(items) - 1:
                test.append([*row, 1])
            elif mode == 0:
                train.append([*row, 1])
                for neg in negatives[k : k + neg_ratio]:
                    train.append([uid, neg, *row[2:], 0])
                k += neg_ratio
            elif mode == 1:
                train.append([*row, negatives[k]])
                k += 1
            else:
                train.append([*row, list(negatives[k : k + neg_ratio])])
                k += neg_ratio
    print(f"n_train: {len(train)}, n_test: {len(test)}; {n_cold} cold-start user(s) dropped")
    columns = [
        user_col,
        item_col,
        f"hist_{item_col}",
        f"histlen_{item_col}",
        *(f"hist_{c}" for c in attrs),
        last_col,
    ]
    out = []
    for rows in (train, test):
        frame = pd.DataFrame(rows, columns=columns)
        out.append(frame.iloc[np.random.permutation(len(frame))].reset_index(drop=True))
    return out[0], out[1]


def gen_model_input(
    df: pd.DataFrame,
    user_profile: pd.DataFrame,
    user_col: str,
    item_profile: pd.DataFrame,
    item_col: str,
    seq_max_len: int,
    padding: str = "pre",
    truncating: str = "pre",
) -> dict[str, np.ndarray]:
    """Join the user and item profiles onto ``df`` (row order kept), pad every ``hist_*`` and
    ``tag_*`` list column to ``seq_max_len`` (``pad_sequences``) and return ``{column: array}``."""
    out = df.merge(user_profile, on=user_col, how="left").merge(item_profile, on=item_col, how="left")
    for col in out.columns:
        if str(col).startswith(("hist_", "tag_")):
            out[col] = list(
                pad_sequences(out[col].tolist(), seq_max_len, padding=padding, truncating=truncating)
            )
    return df_to_dict(out)


# -- vector search -------------------------------------------------------------------------------
def _vector(v: ArrayLike) -> Tensor:
    t = v.detach().cpu() if isinstance(v, Tensor) else torch.as_tensor(np.asarray(v))
    return t.float().reshape(1, -1) if t.dim() == 1 else t.float()


class Annoy:
    """Torch-RecHub's ``Annoy`` engine as exact search (``recforge.retrieval.ExactIndex``).

    ``query`` returns Annoy's result: the ``n`` nearest item positions and their distances, nearest
    first. Metrics: ``"angular"`` (``sqrt(2 - 2 cos)``), ``"euclidean"``, ``"dot"`` (the dot products,
    largest first). ``n_trees``/``search_k`` are accepted; search is exact, so they change nothing.
    """

    METRICS = ("angular", "euclidean", "dot")

    def __init__(self, metric: str = "angular", n_trees: int = 10, search_k: int = -1) -> None:
        if metric not in self.METRICS:
            raise ValueError(f"Annoy metric must be one of {self.METRICS}, got {metric!r}")
        self._metric, self._n_trees, self._search_k = metric, n_trees, search_k
        self._index = ExactIndex("l2" if metric == "euclidean" else "ip")

    def _prepare(self, x: Tensor) -> Tensor:
        return torch.nn.functional.normalize(x, dim=-1) if self._metric == "angular" else x

    def fit(self, X: ArrayLike) -> None:
        """Index the rows of ``X (N, D)``; results refer to row positions."""
        self._index.build(self._prepare(_vector(X)))

    def set_query_arguments(self, search_k: int) -> None:
        self._search_k = search_k

    def query(self, v: ArrayLike, n: int) -> tuple[list[int], list[float]]:
        """``(positions, distances)`` of the ``n`` nearest rows to the vector ``v (D,)``."""
        res = self._index.search(self._prepare(_vector(v)), as_int(n, "n", minimum=1))
        keep = res.ids[0] >= 0
        ids, scores = res.ids[0][keep], res.scores[0][keep].double()
        if self._metric == "angular":
            dist = torch.sqrt((2.0 - 2.0 * scores).clamp_min(0.0))
        elif self._metric == "euclidean":
            dist = torch.sqrt((-scores).clamp_min(0.0))
        else:
            dist = scores
        return ids.tolist(), dist.tolist()

    def __str__(self) -> str:
        return f"Annoy(n_trees={self._n_trees}, search_k={self._search_k})"


class Faiss:
    """Torch-RecHub's ``Faiss`` engine over ``recforge.retrieval.FaissIndex``.

    ``index_type`` ``"flat"``, ``"ivf"`` or ``"hnsw"``; ``metric`` ``"l2"`` (distances are squared
    L2, smallest first) or ``"ip"`` (inner products, largest first). ``query`` returns
    ``(indices, distances)`` as nested lists, one row per query vector.
    """

    def __init__(
        self, dim: int, index_type: str = "flat", nlist: int = 100, m: int = 32, metric: str = "l2"
    ) -> None:
        self.dim = as_int(dim, "dim", minimum=1)
        self.index_type, self.metric = index_type.lower(), metric.lower()
        self.nlist, self.m = as_int(nlist, "nlist", minimum=1), as_int(m, "m", minimum=1)
        if self.metric not in ("l2", "ip"):
            raise ValueError(f"Faiss metric must be 'l2' or 'ip', got {metric!r}")
        self.index = FaissIndex(self.index_type, self.metric, nlist=self.nlist, hnsw_m=self.m)
        self.index.nprobe = min(self.nlist, max(1, self.nlist // 4))

    def fit(self, X: ArrayLike) -> None:
        """Add the rows of ``X (N, dim)`` (an IVF index is trained on the first call)."""
        self.index.add(_vector(X))

    def query(self, v: ArrayLike, n: int) -> tuple[list[list[int]], list[list[float]]]:
        res = self.index.search(_vector(v), as_int(n, "n", minimum=1))
        dist = res.scores if self.metric == "ip" else -res.scores
        return res.ids.tolist(), dist.tolist()

    def set_query_arguments(self, nprobe: int | None = None, efSearch: int | None = None) -> None:
        if nprobe is not None:
            self.index.nprobe = min(as_int(nprobe, "nprobe", minimum=1), self.nlist)
        if efSearch is not None:
            self.index.ef_search = as_int(efSearch, "efSearch", minimum=1)

    def save_index(self, filepath: str) -> None:
        """Write the index (recforge's format: ``FaissIndex.save``)."""
        self.index.save(filepath)

    def load_index(self, filepath: str) -> None:
        """Read an index written by ``save_index``."""
        self.index = FaissIndex.load(filepath)

    def __str__(self) -> str:
        return f"Faiss(index_type={self.index_type}, dim={self.dim}, metric={self.metric}, ntotal={len(self.index)})"


class Milvus:
    """Not available: recforge has no Milvus client."""

    def __init__(self, dim: int = 64, host: str = "localhost", port: str = "19530") -> None:
        raise NotImplementedError(
            "recforge has no Milvus client: use recforge.utils.match.Faiss(dim) or Annoy() (same fit/query "
            "calls), or recforge.retrieval.FaissIndex / ExactIndex for a saved, servable index"
        )


# -- in-batch negatives --------------------------------------------------------------------------
def inbatch_negative_sampling(
    scores: Tensor,
    neg_ratio: int | None = None,
    hard_negative: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Column indices ``(B, K)`` of in-batch negatives for each row of a ``(B, B)`` score matrix:
    ``K = neg_ratio`` other rows (all ``B - 1`` when ``neg_ratio`` is None or out of range), drawn
    uniformly without replacement, or the ``K`` highest-scoring others with ``hard_negative``."""
    if scores.dim() != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"scores must be a square (B, B) matrix, got shape {tuple(scores.shape)}")
    b = scores.shape[0]
    if b < 2:
        raise ValueError("in-batch negatives need a batch of at least 2 rows")
    k = b - 1 if neg_ratio is None or not 0 < neg_ratio <= b - 1 else int(neg_ratio)
    eye = torch.eye(b, dtype=torch.bool, device=scores.device)
    if hard_negative:
        key = scores.detach().float().masked_fill(eye, -math.inf)
    else:
        key = torch.rand((b, b), generator=generator, device=generator.device if generator else scores.device)
        key = key.to(scores.device).masked_fill(eye, -math.inf)
    return key.topk(k, dim=1).indices  # (B, K)


def gather_inbatch_logits(scores: Tensor, neg_indices: Tensor) -> Tensor:
    """``(B, 1 + K)`` logits: the diagonal (each row's positive) then ``scores[i, neg_indices[i]]``."""
    pos = scores.diagonal().unsqueeze(1)  # (B, 1)
    return torch.cat([pos, scores.gather(1, neg_indices)], 1)  # (B, 1 + K)


__all__ = [
    "Annoy",
    "Faiss",
    "Milvus",
    "gather_inbatch_logits",
    "gen_model_input",
    "generate_seq_feature_match",
    "inbatch_negative_sampling",
    "negative_sample",
]
