"""Top-K retrieval metrics with full ranking over every item (the default).

Protocol:
- Every item id ``reserved .. V - 1`` is ranked for every evaluation row; the reserved ids (padding
  0, and the OOV id 1 of ids encoded by a ``FeaturePipeline``: ``ItemCatalog.reserved``) never are.
- Items in the row's ``seen`` set (e.g. its training interactions) are excluded from the ranking,
  except the row's own targets, which are always ranked.
- Ties are counted pessimistically: the rank of a target is ``1 + #{other ranked items with a
  score >= the target's}``, so a tied item always ranks above the target (a constant scorer gets no
  hits). Two targets tied with each other both take the lower place.
- Metrics are means over rows with at least one target. For a row with target set ``G`` and
  pessimistic ranks ``r_g``: ``recall@K = #{r_g <= K} / |G|``, ``precision@K = #{r_g <= K} / K``,
  ``hr@K = [any r_g <= K]``, ``ndcg@K = Σ_{r_g <= K} 1/log2(r_g + 1) / Σ_{i <= min(|G|, K)}
  1/log2(i + 1)``, ``mrr@K = 1 / min r_g`` when ``min r_g <= K`` (else 0). ``coverage@K`` is the
  share of items ``1 .. V - 1`` appearing in at least one row's top-K list.
- Memory: rows are processed in chunks of ``user_chunk`` and items in chunks of ``item_chunk``
  keeping a running top-(K+1), so 50,000 items x 40,000 users needs ``user_chunk * item_chunk``
  floats at a time. Only the top ``max(ks) + 1`` scores per row are kept, which decides every
  rank <= ``max(ks)`` exactly; results do not depend on the batch or chunk sizes.
- Models that return ranked lists themselves (beam search) are measured by ``list_ranks`` /
  ``ListRankingEvaluator`` with the same definitions: a target's rank is its place in the list
  after removing the row's seen items; a target not in the list is a miss at every cut-off.
- Sampled evaluation (``num_negatives=N``) is opt-in: each target is ranked against N items drawn
  uniformly from the row's non-seen, non-target items; metric names get a ``sampled_`` prefix.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor

from recforge.data.catalog import ItemCatalog
from recforge.data.interactions import SeenItems
from recforge.data.sampling import NegativeSampler
from recforge.outputs import TowerModel

ScoreFn = Callable[[Tensor, Tensor], Tensor]
METRICS = ("recall", "hr", "ndcg", "mrr", "precision")


def dot_score(user: Tensor, items: Tensor) -> Tensor:
    """Inner product of ``user (B, D)`` with ``items (N, D)`` or per-row ``items (B, N, D)`` ->
    ``(B, N)``; the default when no model is involved."""
    if items.dim() == 3:
        return torch.einsum("bd,bnd->bn", user, items)
    return user @ items.T


class TargetRanks(NamedTuple):
    """Pessimistic ranks of the targets (``inf`` beyond ``max_k``) and the rows' top-K ids."""

    ranks: Tensor  # (T,) float, 1-based
    topk_ids: Tensor  # (B, max_k)


def _keys(rows: Tensor, items: Tensor, num_items: int) -> Tensor:
    return rows.long() * num_items + items.long()


def rank_targets(
    user: Tensor,
    items: Tensor,
    targets: tuple[Tensor, Tensor],
    *,
    max_k: int,
    exclude: tuple[Tensor, Tensor] | None = None,
    score_fn: ScoreFn = dot_score,
    item_chunk: int = 16_384,
    reserved: int = 1,
) -> TargetRanks:
    """Full-ranking ranks of target items for a chunk of rows.

    Args:
        user: ``(B, D)`` (or ``(B, K, D)`` with a ``score_fn`` that handles it) row vectors.
        items: ``(V, D)`` item vectors indexed by item id (row 0 = padding, never ranked).
        targets: ``(row (T,), item (T,))`` pairs, ``row`` indexing ``user``.
        max_k: largest cut-off; ranks beyond it are ``inf``.
        exclude: ``(row (M,), item (M,))`` pairs removed from the ranking (targets never are).
        score_fn: ``(user, items (N, D)) -> (B, N)`` logits (``model.score``).
        item_chunk: items scored at a time.
        reserved: ids below this are never ranked (padding, OOV).
    """
    b, v = user.shape[0], items.shape[0]
    t_rows, t_items = targets
    if t_items.numel() and (int(t_items.min()) < reserved or int(t_items.max()) >= v):
        raise ValueError(
            f"target item ids must lie in [{reserved}, {v}) (0 is padding; ids below {reserved} are reserved), "
            f"got [{int(t_items.min())}, {int(t_items.max())}]"
        )
    keep = min(max_k + 1, v)
    dev = user.device
    t_rows, t_items = t_rows.to(dev), t_items.to(dev)
    if exclude is not None and exclude[0].numel():
        e_rows, e_items = exclude[0].to(dev), exclude[1].to(dev)
        drop = torch.isin(_keys(e_rows, e_items, v), _keys(t_rows, t_items, v))
        e_rows, e_items = e_rows[~drop], e_items[~drop]
    else:
        e_rows = e_items = torch.zeros(0, dtype=torch.long, device=dev)
    top_vals = torch.full((b, 0), -math.inf, device=dev)
    top_ids = torch.zeros((b, 0), dtype=torch.long, device=dev)
    t_scores = torch.empty(t_rows.shape[0], device=dev)
    for a in range(0, v, item_chunk):
        c = min(item_chunk, v - a)
        s = score_fn(user, items[a : a + c]).float()  # (B, c)
        if a < reserved:
            s[:, : reserved - a] = -math.inf
        in_chunk = (e_items >= a) & (e_items < a + c)
        s[e_rows[in_chunk], e_items[in_chunk] - a] = -math.inf
        t_in = (t_items >= a) & (t_items < a + c)
        t_scores[t_in] = s[t_rows[t_in], t_items[t_in] - a]
        cs, cj = torch.topk(s, min(keep, c), dim=1)  # the chunk's best, then merge short lists
        vals = torch.cat([top_vals, cs], 1)
        ids = torch.cat([top_ids, cj + a], 1)
        top_vals, idx = torch.topk(vals, min(keep, vals.shape[1]), dim=1)
        top_ids = ids.gather(1, idx)
    row_top = top_vals[t_rows]  # (T, keep)
    ranks = (row_top >= t_scores.unsqueeze(1)).sum(1).float()  # (T,)
    if keep == max_k + 1:
        # a target not above the (max_k + 1)-th score has max_k others >= it: rank > max_k
        ranks = torch.where(t_scores > row_top[:, -1], ranks, torch.full_like(ranks, math.inf))
    return TargetRanks(ranks, top_ids[:, :max_k])


class RankingAccumulator:
    """Sums per-row metrics over chunks; ``result()`` gives the means (batch-size independent)."""

    def __init__(
        self,
        ks: Sequence[int],
        num_items: int,
        *,
        prefix: str = "",
        coverage: bool = True,
        reserved: int = 1,
    ) -> None:
        self.ks = _check_ks(ks)
        self.num_items = num_items
        self.reserved = reserved
        self.prefix = prefix
        self.sums = {f"{m}@{k}": 0.0 for m in METRICS for k in self.ks}
        self.rows = 0
        self.covered = torch.zeros((len(self.ks), num_items), dtype=torch.bool) if coverage else None

    def update(self, ranks: Tensor, rows: Tensor, num_rows: int, topk_ids: Tensor | None = None) -> None:
        """Add ``num_rows`` rows whose targets (row index ``rows (T,)``) have ``ranks (T,)``;
        rows without targets are not counted."""
        ranks, rows = ranks.double().cpu(), rows.long().cpu()
        n_gt = torch.bincount(rows, minlength=num_rows).double()  # (B,)
        has = n_gt > 0
        self.rows += int(has.sum())
        disc = 1.0 / torch.log2(ranks + 1.0)  # 0 for inf ranks
        for k in self.ks:
            hit = (ranks <= k).double()
            hits = torch.zeros(num_rows, dtype=torch.float64).index_add_(0, rows, hit)
            dcg = torch.zeros(num_rows, dtype=torch.float64).index_add_(0, rows, hit * disc)
            ideal_n = torch.clamp(n_gt, max=k).long()
            idcg = torch.cumsum(1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64)), 0)
            idcg_row = torch.where(ideal_n > 0, idcg[(ideal_n - 1).clamp_min(0)], torch.ones_like(n_gt))
            best = torch.full((num_rows,), math.inf, dtype=torch.float64).scatter_reduce(
                0, rows, ranks, reduce="amin", include_self=True
            )
            rr = torch.where(best <= k, 1.0 / best, torch.zeros_like(best))
            self.sums[f"recall@{k}"] += float((hits[has] / n_gt[has]).sum())
            self.sums[f"precision@{k}"] += float((hits[has] / k).sum())
            self.sums[f"hr@{k}"] += float((hits[has] > 0).double().sum())
            self.sums[f"ndcg@{k}"] += float((dcg[has] / idcg_row[has]).sum())
            self.sums[f"mrr@{k}"] += float(rr[has].sum())
        if self.covered is not None and topk_ids is not None:
            top = topk_ids.cpu()[has]
            for j, k in enumerate(self.ks):
                self.covered[j, top[:, :k].reshape(-1)] = True

    def result(self) -> dict[str, float]:
        if self.rows == 0:
            raise ValueError("no evaluation row had a target: nothing to average")
        out = {f"{self.prefix}{name}": total / self.rows for name, total in self.sums.items()}
        if self.covered is not None:
            for j, k in enumerate(self.ks):
                covered = self.covered[j, self.reserved :].sum()
                out[f"{self.prefix}coverage@{k}"] = float(covered) / (self.num_items - self.reserved)
        return out


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    out = tuple(sorted({int(k) for k in ks}))
    if not out or out[0] < 1:
        raise ValueError(f"ks must be positive cut-offs, got {ks}")
    return out


def sampled_ranks(
    user: Tensor,
    items: Tensor,
    targets: tuple[Tensor, Tensor],
    negatives: Tensor,
    *,
    score_fn: ScoreFn = dot_score,
) -> Tensor:
    """Ranks of each target among its row's sampled negatives ``(B, N)``: ``1 + #{s_neg >= s_t}``."""
    rows, t_items = targets
    cand = torch.cat([t_items.unsqueeze(1), negatives[rows]], 1)  # (T, 1 + N)
    u = user[rows]  # (T, D) or (T, K, D)
    s = score_fn(u, items[cand]).float()  # (T, 1 + N)
    return 1.0 + (s[:, 1:] >= s[:, :1]).sum(1).float()


def full_ranking_metrics(
    user: Tensor,
    items: Tensor,
    targets: tuple[Tensor, Tensor],
    *,
    ks: Sequence[int] = (10, 20, 50),
    exclude: tuple[Tensor, Tensor] | None = None,
    score_fn: ScoreFn = dot_score,
    user_chunk: int = 1024,
    item_chunk: int = 16_384,
) -> dict[str, float]:
    """Full-ranking metrics for precomputed vectors: ``user (U, D)``, ``items (V, D)`` indexed by
    item id, targets/exclusions as ``(row, item)`` pairs with rows indexing ``user``."""
    acc = RankingAccumulator(ks, items.shape[0])
    t_rows, t_items = targets
    e_rows, e_items = exclude if exclude is not None else (t_rows[:0], t_items[:0])
    for a in range(0, user.shape[0], user_chunk):
        b = min(user_chunk, user.shape[0] - a)
        ts, es = (t_rows >= a) & (t_rows < a + b), (e_rows >= a) & (e_rows < a + b)
        r = rank_targets(
            user[a : a + b],
            items,
            (t_rows[ts] - a, t_items[ts]),
            max_k=acc.ks[-1],
            exclude=(e_rows[es] - a, e_items[es]),
            score_fn=score_fn,
            item_chunk=item_chunk,
        )
        acc.update(r.ranks, t_rows[ts] - a, b, r.topk_ids)
    return acc.result()


def pairs_from_columns(batch: Mapping[str, Tensor], column: str) -> tuple[Tensor, Tensor]:
    """One target per row from ``batch[column] (B,)``; rows whose target is 0 have none."""
    try:
        col = batch[column]
    except KeyError:
        raise KeyError(f"evaluation batch has no target column {column!r}; it has {sorted(batch)}") from None
    if col.dim() != 1:
        raise ValueError(f"target column {column!r} must be (B,), got {tuple(col.shape)}")
    rows = torch.nonzero(col > 0).squeeze(1)
    return rows, col[rows]


def iter_chunks(n: int, size: int) -> Iterable[slice]:
    for a in range(0, n, size):
        yield slice(a, min(a + size, n))


class RankingEvaluator:
    """Full-ranking (or opt-in sampled) evaluation of a two-tower model.

    Item vectors are computed once per call from the catalog; each evaluation batch gives user
    vectors through ``model.user_tower`` and is ranked against every item.

    Args:
        catalog: the item catalog (``recforge.data.ItemCatalog``) whose ``all()`` feeds the item tower.
        ks: cut-offs.
        seen: items to exclude per user id (``SeenItems`` indexed by ``batch[user_column]``).
        ground_truth: targets per user id (several per user); without it each row's single target is
            ``batch[target_column]`` (default: the model's item-id column).
        user_column: the user-id column used to index ``seen`` / ``ground_truth``.
        target_column: the single-target column (when ``ground_truth`` is None).
        num_negatives: opt-in sampled evaluation with this many uniform negatives per row; metric
            names get the ``sampled_`` prefix.
        user_chunk, item_chunk, item_batch_size: memory knobs (results do not depend on them).
        seed: seeds the negatives of sampled evaluation.
        normalize: L2-normalise user and item vectors before ``model.score`` (cosine similarity;
            match a model trained with ``SeqTrainer(l2_normalize=True)``).
    """

    def __init__(
        self,
        catalog: ItemCatalog,
        *,
        ks: Sequence[int] = (10, 20, 50),
        seen: SeenItems | None = None,
        ground_truth: SeenItems | None = None,
        user_column: str = "user_id",
        target_column: str | None = None,
        num_negatives: int | None = None,
        user_chunk: int = 256,
        item_chunk: int = 8192,
        item_batch_size: int = 65_536,
        seed: int = 0,
        normalize: bool = False,
    ) -> None:
        self.catalog = catalog
        self.normalize = normalize
        self.ks = _check_ks(ks)
        self.seen = seen
        self.ground_truth = ground_truth
        self.user_column = user_column
        self.target_column = target_column
        if num_negatives is not None and num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1 or None (full ranking), got {num_negatives}")
        self.num_negatives = num_negatives
        self.user_chunk = user_chunk
        self.item_chunk = item_chunk
        self.item_batch_size = item_batch_size
        self.seed = seed
        self.users_evaluated = 0  # rows with a target in the last ``evaluate`` call
        for name, csr in (("seen", seen), ("ground_truth", ground_truth)):
            if csr is not None and csr.num_items != catalog.num_items:
                raise ValueError(
                    f"{name}.num_items={csr.num_items} differs from the catalog's {catalog.num_items}"
                )

    @torch.no_grad()
    def item_vectors(self, model: TowerModel, device: torch.device | str = "cpu") -> Tensor:
        """Every item's vector ``(V, D)``, indexed by item id."""
        parts = [
            model.item_tower({k: v.to(device) for k, v in b.items()})
            for b in self.catalog.all(self.item_batch_size)
        ]
        items = torch.cat(parts)
        if self.normalize:
            items = torch.nn.functional.normalize(items, dim=-1)
        if items.shape[0] != self.catalog.num_items or items.dim() != 2:
            raise ValueError(
                f"item_tower on catalog batches must give (N, D) per batch; got {tuple(items.shape)} "
                f"for {self.catalog.num_items} items"
            )
        return items

    def _targets(self, batch: Mapping[str, Tensor], target_column: str) -> tuple[Tensor, Tensor]:
        if self.ground_truth is None:
            return pairs_from_columns(batch, target_column)
        return self.ground_truth.pairs(_column(batch, self.user_column).cpu())

    @torch.no_grad()
    def evaluate(
        self,
        model: TowerModel,
        user_batches: Iterable[Mapping[str, Tensor]],
        device: torch.device | str = "cpu",
    ) -> dict[str, float]:
        """Metrics over every row of ``user_batches`` (dicts with the user tower's columns, the
        user-id column when ``seen``/``ground_truth`` is set, and the target column otherwise)."""
        device = torch.device(device)
        was_training = getattr(model, "training", False)
        if hasattr(model, "eval"):
            model.eval()  # type: ignore[attr-defined]
        try:
            items = self.item_vectors(model, device)
            target_column = self.target_column or model.item_id
            sampled = self.num_negatives is not None
            acc = RankingAccumulator(
                self.ks,
                items.shape[0],
                prefix="sampled_" if sampled else "",
                coverage=not sampled,
                reserved=self.catalog.reserved,
            )
            gen = torch.Generator().manual_seed(self.seed)
            for raw in user_batches:
                batch = {k: v.to(device) for k, v in raw.items()}
                user = model.user_tower(batch)
                if self.normalize:
                    user = torch.nn.functional.normalize(user, dim=-1)
                t_rows, t_items = self._targets(batch, target_column)
                n = user.shape[0]
                if self.seen is not None:
                    e_rows, e_items = self.seen.pairs(_column(batch, self.user_column).cpu())
                else:
                    e_rows = e_items = torch.zeros(0, dtype=torch.long)
                for sl in iter_chunks(n, self.user_chunk):
                    ts = (t_rows >= sl.start) & (t_rows < sl.stop)
                    es = (e_rows >= sl.start) & (e_rows < sl.stop)
                    tr, ti = (t_rows[ts] - sl.start).to(device), t_items[ts].to(device)
                    er, ei = (e_rows[es] - sl.start).to(device), e_items[es].to(device)
                    u = user[sl]
                    if sampled:
                        negs = self._negatives(sl.stop - sl.start, (tr, ti), (er, ei), gen).to(device)
                        ranks = sampled_ranks(u, items, (tr, ti), negs, score_fn=model.score)
                        acc.update(ranks, tr, sl.stop - sl.start)
                    else:
                        r = rank_targets(
                            u,
                            items,
                            (tr, ti),
                            max_k=self.ks[-1],
                            exclude=(er, ei),
                            score_fn=model.score,
                            item_chunk=self.item_chunk,
                            reserved=self.catalog.reserved,
                        )
                        acc.update(r.ranks, tr, sl.stop - sl.start, r.topk_ids)
            self.users_evaluated = acc.rows
            return acc.result()
        finally:
            if hasattr(model, "train"):
                model.train(was_training)  # type: ignore[attr-defined]

    def _negatives(
        self, b: int, targets: tuple[Tensor, Tensor], exclude: tuple[Tensor, Tensor], gen: torch.Generator
    ) -> Tensor:
        reserved = torch.arange(1, self.catalog.reserved)  # OOV (1) when ids come from a vocabulary
        extra_rows = torch.arange(b).repeat_interleave(len(reserved))
        rows = torch.cat([targets[0].cpu(), exclude[0].cpu(), extra_rows])
        its = torch.cat([targets[1].cpu(), exclude[1].cpu(), reserved.repeat(b)])
        forbidden = SeenItems.from_pairs(rows, its, num_rows=b, num_items=self.catalog.num_items)
        sampler = NegativeSampler(self.catalog.num_items, seen=forbidden, generator=gen)
        assert self.num_negatives is not None
        return sampler.sample(torch.zeros(b, dtype=torch.long), self.num_negatives, users=torch.arange(b)).ids


def list_ranks(
    topk_ids: Tensor, targets: tuple[Tensor, Tensor], *, exclude: tuple[Tensor, Tensor] | None = None
) -> TargetRanks:
    """Ranks of targets in ranked lists ``topk_ids (B, K)`` (e.g. beam search output), under the
    full-ranking definitions: a target's rank is its 1-based place in its row's list once the row's
    ``exclude`` items (never its targets), padding id 0 and repeated ids are removed; a target not
    in the list ranks ``inf`` (a miss at every cut-off). Feed the result to ``RankingAccumulator``.

    Args:
        topk_ids: ``(B, K)`` item ids, best first.
        targets: ``(row (T,), item (T,))`` pairs.
        exclude: ``(row (M,), item (M,))`` pairs removed from the lists.

    Returns:
        ``TargetRanks``: ranks ``(T,)`` and the cleaned lists ``(B, K)`` (removed places become 0 at the end).
    """
    b, k = topk_ids.shape
    ids = topk_ids.long().cpu()
    t_rows, t_items = targets[0].long().cpu(), targets[1].long().cpu()
    num = int(max(int(ids.max()) if ids.numel() else 0, int(t_items.max()) if t_items.numel() else 0)) + 1
    row = torch.arange(b)[:, None].expand(b, k)  # (B, K)
    keys = _keys(row, ids, num)  # (B, K)
    keep = ids > 0
    first = torch.ones_like(keep)  # drop repeats: keep an id's first place in its row
    sorted_keys, order = keys.reshape(-1).sort(stable=True)
    dup = torch.zeros_like(sorted_keys, dtype=torch.bool)
    dup[1:] = sorted_keys[1:] == sorted_keys[:-1]
    first.view(-1)[order[dup]] = False
    keep &= first
    if exclude is not None and exclude[0].numel():
        e_items = exclude[1].long().cpu()
        ok = e_items < num
        e_keys = _keys(exclude[0].long().cpu()[ok], e_items[ok], num)
        e_keys = e_keys[~torch.isin(e_keys, _keys(t_rows, t_items, num))]
        keep &= ~torch.isin(keys, e_keys)
    place = torch.cumsum(keep, 1)  # (B, K) 1-based place among kept ids
    hit = keep[t_rows] & (ids[t_rows] == t_items[:, None])  # (T, K)
    ranks = torch.where(hit, place[t_rows].double(), torch.full(hit.shape, math.inf, dtype=torch.float64))
    ranks = ranks.amin(1) if k else torch.full((t_rows.numel(),), math.inf, dtype=torch.float64)
    cleaned = torch.zeros_like(ids)
    cleaned[row[keep], place[keep] - 1] = ids[keep]
    return TargetRanks(ranks.float(), cleaned)


@runtime_checkable
class ListModel(Protocol):
    """A model that returns ranked item lists ``(ids (B, k), scores (B, k))`` itself (e.g.
    ``TIGER``'s beam search with ``beam_width`` beams), never an ``exclude`` pair."""

    def generate(
        self,
        batch: Mapping[str, Tensor],
        k: int,
        *,
        beam_width: int | None = None,
        exclude: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]: ...


class ListRankingEvaluator:
    """``RankingEvaluator``'s metrics for models that produce top-K lists directly.

    Each batch's lists come from ``model.generate(batch, max(ks), exclude=seen pairs)``; ranks come
    from ``list_ranks`` (seen items removed again, so a model that ignores ``exclude`` is measured
    the same way) and feed one ``RankingAccumulator``, so HR/NDCG/recall/MRR/precision@K are the
    full-ranking definitions with every item beyond the list counted as a miss.

    Args:
        num_items: item-id space including padding (for coverage).
        ks: cut-offs. seen, ground_truth, user_column, target_column: as ``RankingEvaluator``
            (``target_column`` default ``"item_id"``).
        generate_kwargs: extra keyword arguments of ``generate`` (e.g. ``{"beam_width": 50}``).
    """

    def __init__(
        self,
        num_items: int,
        *,
        ks: Sequence[int] = (10, 20, 50),
        seen: SeenItems | None = None,
        ground_truth: SeenItems | None = None,
        user_column: str = "user_id",
        target_column: str = "item_id",
        generate_kwargs: Mapping[str, object] | None = None,
    ) -> None:
        self.num_items, self.ks = num_items, _check_ks(ks)
        self.seen, self.ground_truth = seen, ground_truth
        self.user_column, self.target_column = user_column, target_column
        self.generate_kwargs = dict(generate_kwargs or {})
        self.users_evaluated = 0  # rows with a target in the last ``evaluate`` call

    @torch.no_grad()
    def evaluate(
        self,
        model: ListModel,
        user_batches: Iterable[Mapping[str, Tensor]],
        device: torch.device | str = "cpu",
    ) -> dict[str, float]:
        was_training = getattr(model, "training", False)
        if hasattr(model, "eval"):
            model.eval()  # type: ignore[attr-defined]
        try:
            acc = RankingAccumulator(self.ks, self.num_items)
            for raw in user_batches:
                batch = {k: v.to(device) for k, v in raw.items()}
                if self.ground_truth is None:
                    t_rows, t_items = pairs_from_columns(batch, self.target_column)
                else:
                    t_rows, t_items = self.ground_truth.pairs(_column(batch, self.user_column).cpu())
                exclude = None
                if self.seen is not None:
                    exclude = self.seen.pairs(_column(batch, self.user_column).cpu())
                ids, _ = model.generate(
                    batch,
                    self.ks[-1],
                    exclude=exclude,
                    **self.generate_kwargs,  # type: ignore[arg-type]
                )
                r = list_ranks(ids, (t_rows, t_items), exclude=exclude)
                acc.update(r.ranks, t_rows, ids.shape[0], r.topk_ids)
            self.users_evaluated = acc.rows
            return acc.result()
        finally:
            if hasattr(model, "train"):
                model.train(was_training)  # type: ignore[attr-defined]


def evaluate_retrieval(
    model: TowerModel,
    user_batches: Iterable[Mapping[str, Tensor]],
    catalog: ItemCatalog,
    ground_truth: SeenItems | None = None,
    seen: SeenItems | None = None,
    ks: Sequence[int] = (10, 20, 50),
    *,
    user_column: str = "user_id",
    target_column: str | None = None,
    num_negatives: int | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Full-ranking metrics of ``model`` (see the module docstring): item vectors are computed once
    from ``catalog``; targets come from ``ground_truth`` (per user id) or each row's
    ``target_column``; ``seen`` items (per user id) are excluded."""
    return RankingEvaluator(
        catalog,
        ks=ks,
        seen=seen,
        ground_truth=ground_truth,
        user_column=user_column,
        target_column=target_column,
        num_negatives=num_negatives,
    ).evaluate(model, user_batches, device)


def _column(batch: Mapping[str, Tensor], name: str) -> Tensor:
    try:
        return batch[name]
    except KeyError:
        raise KeyError(f"evaluation batch has no column {name!r}; it has {sorted(batch)}") from None
