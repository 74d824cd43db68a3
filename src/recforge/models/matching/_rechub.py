"""Torch-RecHub's call shapes of the matching models, translated in one place.

Torch-RecHub passes ``neg_item_feature`` (a feature list) where recforge's two-tower models take
their tower parameters, calls the session models with a bare ``SequenceFeature`` and positional
hyper-parameters, and builds SINE from column names. Each model's constructor accepts both forms
and hands the Torch-RecHub one to these helpers (positional values are bound by
``recforge.models._rechub``, as for every model), so no model file repeats the translation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from recforge.features import DenseFeature, Feature, Initializer, Pooling, SequenceFeature, SparseFeature
from recforge.ints import as_int
from recforge.layers import MLPConfig
from recforge.models.matching.base import negative_targets

Params = MLPConfig | Mapping[str, object] | None
_FEATURES = (DenseFeature, SparseFeature, SequenceFeature)


def is_feature_list(value: object) -> bool:
    """A list/tuple of feature specs (Torch-RecHub's ``neg_item_feature`` and friends)."""
    return isinstance(value, list | tuple) and all(isinstance(v, _FEATURES) for v in value)


def features_or_params(
    model: str, arg: str, value: object, params: Sequence[Params]
) -> tuple[tuple[Feature, ...], tuple[Params, ...]]:
    """Split a positional slot that holds Torch-RecHub's feature list ``arg`` or, in recforge's own
    order, the first of the tower ``params`` (which then move up one place)."""
    if value is None:  # the slot is empty: the parameters stay where they were given
        return (), tuple(params)
    if isinstance(value, Mapping | MLPConfig):
        if params and params[-1] is not None:
            raise TypeError(
                f"{model}: got tower parameters in the {arg} position and in every parameter slot; pass "
                f"{arg} a list of features, or the tower parameters by keyword"
            )
        return (), (value, *params[:-1])  # type: ignore[return-value]
    if not is_feature_list(value):
        raise TypeError(f"{model}: {arg} must be a list of features (or None), got {type(value).__name__}")
    return tuple(value), tuple(params)  # type: ignore[arg-type]


def check_negatives(
    model: str, negatives: Sequence[Feature], item_features: Sequence[Feature]
) -> tuple[Feature, ...]:
    """``neg_item_feature`` validated against the item tower's inputs (``negative_targets``)."""
    if negatives:
        try:
            negative_targets(negatives, item_features)
        except ValueError as e:
            raise ValueError(f"{model}: {e}") from None
    return tuple(negatives)


def merge(
    model: str,
    given: Mapping[str, object],
    keywords: Mapping[str, object],
    defaults: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """Positional values merged into keyword values; one given both ways (a keyword that is neither
    ``None`` nor its default in ``defaults``) is a ``TypeError``."""
    defaults = defaults or {}
    out = dict(keywords)
    for name, value in given.items():
        kw = keywords.get(name)
        if kw is not None and kw != defaults.get(name) and kw is not value:
            raise TypeError(f"{model}: got {name} both positionally and by keyword")
        out[name] = value
    return out


def session_features(
    model: str, history: SequenceFeature, item: object, initializer: Initializer | None = None
) -> tuple[list[Feature], list[Feature]]:
    """Torch-RecHub's session models take one history feature and optionally the item feature; with
    ``item=None`` items are scored with the history's table: an item-id feature ``"item_id"`` owns
    that table (initialised by ``initializer``, default the history's) and the history shares it."""
    if not isinstance(history, SequenceFeature):
        raise TypeError(
            f"{model}: item_history_feature must be a SequenceFeature, got {type(history).__name__}"
        )
    if item is not None:
        if not isinstance(item, SparseFeature):
            raise TypeError(f"{model}: item_feature must be a SparseFeature, got {type(item).__name__}")
        return [history], [item]
    if history.shared_with is not None:
        raise ValueError(
            f"{model}: history {history.name!r} shares {history.shared_with!r}; pass that item feature "
            "as item_feature"
        )
    owner = SparseFeature(
        "item_id",
        history.vocab_size,
        history.dim,
        padding_idx=history.padding_idx,
        initializer=initializer if initializer is not None else history.initializer,
    )
    if history.name == owner.name:
        raise ValueError(f"{model}: name the history feature something other than 'item_id'")
    return [dataclasses.replace(history, shared_with=owner.name)], [owner]


def features_from_names(
    model: str,
    history: Sequence[object],
    items: Sequence[object],
    num_items: object,
    embed_dim: object,
    max_len: object,
) -> tuple[list[Feature], list[Feature]]:
    """Torch-RecHub's SINE names its columns (``["hist_movie_id"]``, ``["movie_id"]``) and gives
    ``num_items``/``embedding_dim``: the matching history and item-id specs."""
    if len(history) != 1 or len(items) != 1 or not all(isinstance(n, str) for n in (*history, *items)):
        raise ValueError(
            f"{model}: history_features and item_features must each name one column, got {history}, {items}"
        )
    if num_items is None or embed_dim is None:
        raise TypeError(f"{model}: with column names, pass num_items and embedding_dim too")
    vocab = as_int(num_items, f"{model}: num_items", minimum=1)
    dim = as_int(embed_dim, f"{model}: embedding_dim", minimum=1)
    item = SparseFeature(str(items[0]), vocab, dim)
    length = None if max_len is None else as_int(max_len, f"{model}: seq_max_len", minimum=1)
    hist = SequenceFeature(
        str(history[0]), vocab, dim, pooling=Pooling.CONCAT, shared_with=item.name, max_len=length
    )
    return [hist], [item]
