"""Each registry entry's default build, as data: the feature groups that fill its feature-list
arguments and the settings of its other arguments (those validated by ``configs/`` and
``benchmarks/`` where one exists, else the constructor's own). Tests, benchmarks and
``recforge models NAME`` build from here:

```python
model = default_model("DeepFM", pipeline.features)                   # labelled rows
model = default_model("DSSM", feature_groups(features, ColumnRoles(user_columns=("age",))))
model = default_model("DIN", features, mlp_params={"dims": [64]})    # a setting overridden
```

Groups (also the selectors of a config's ``model.inputs``; ``user+history`` joins two):
``all``, ``sparse``, ``dense``, ``sequence``, ``embedded`` (sparse and sequence); ``history``
(sequence features sharing another feature's table, e.g. ``hist_item_id`` with
``shared_with="item_id"``; a name starting ``neg_`` marks a negative history instead:
``neg_history``) and ``target`` (the features those histories share); with the data's column
roles also ``user`` (the user id, then user-side columns), ``item`` (the item id, then item-side
columns) and ``item_id`` (the item id alone).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from torch import nn

from recforge.choices import Choice
from recforge.features import DenseFeature, Feature, SequenceFeature, SparseFeature, dedup
from recforge.models.registry import get_model

NEGATIVE_PREFIX = "neg_"  # a history whose name starts so holds sampled negatives (DIEN)


class Group(Choice):
    """A named subset of a feature list (module docstring)."""

    ALL = "all"
    SPARSE = "sparse"
    DENSE = "dense"
    SEQUENCE = "sequence"
    EMBEDDED = "embedded"
    HISTORY = "history"
    TARGET = "target"
    NEG_HISTORY = "neg_history"
    USER = "user"
    ITEM = "item"
    ITEM_ID = "item_id"


ROLE_GROUPS = (Group.USER, Group.ITEM, Group.ITEM_ID)


@dataclass(frozen=True)
class ColumnRoles:
    """Which columns are the user and the item, and which describe them (a config's ``data.user``,
    ``data.item``, ``data.user_columns``, ``data.item_columns``)."""

    user: str = "user_id"
    item: str = "item_id"
    user_columns: tuple[str, ...] = ()
    item_columns: tuple[str, ...] = ()


def feature_groups(features: Sequence[Feature], roles: ColumnRoles | None = None) -> dict[str, list[Feature]]:
    """Every group of ``features`` (module docstring); ``user``/``item``/``item_id`` need ``roles``."""
    shared = [f for f in features if isinstance(f, SequenceFeature) and f.shared_with]
    history = [f for f in shared if not f.name.startswith(NEGATIVE_PREFIX)]
    tables = [f.table for f in history]
    groups: dict[str, list[Feature]] = {
        Group.ALL.value: list(features),
        Group.SPARSE.value: [f for f in features if isinstance(f, SparseFeature)],
        Group.DENSE.value: [f for f in features if isinstance(f, DenseFeature)],
        Group.SEQUENCE.value: [f for f in features if isinstance(f, SequenceFeature)],
        Group.EMBEDDED.value: [f for f in features if not isinstance(f, DenseFeature)],
        Group.HISTORY.value: list(history),
        Group.TARGET.value: dedup(
            f for t in tables for f in features if f.name == t and not isinstance(f, DenseFeature)
        ),
        Group.NEG_HISTORY.value: [f for f in shared if f.name.startswith(NEGATIVE_PREFIX)],
    }
    if roles is not None:
        for group, names in (
            (Group.USER, (roles.user, *roles.user_columns)),
            (Group.ITEM, (roles.item, *roles.item_columns)),
            (Group.ITEM_ID, (roles.item,)),
        ):
            groups[group.value] = dedup(f for n in names for f in features if f.name == n)
    return groups


def pick(groups: Mapping[str, Sequence[Feature]], spec: str, where: str) -> list[Feature]:
    """The features of ``spec``: a group name, or several joined by ``+`` (``user+history``)."""
    out: list[Feature] = []
    for part in spec.split("+"):
        group = Group.parse(part.strip(), where=f"{where}: group (or a list of feature names)")
        if group.value not in groups:
            hint = " (they need the data's user/item column roles)" if group in ROLE_GROUPS else ""
            raise ValueError(f"{where}: no {group.value!r} group here{hint}; groups: {sorted(groups)}")
        out += groups[group.value]
    return dedup(out)


@dataclass(frozen=True)
class Default:
    """A registry entry's default build.

    Args:
        inputs: each feature-list argument of the constructor -> a group spec (``pick``).
        params: the other arguments (plain data, as a config's ``model.params``).
        required: arguments without any default (HLLM's item tokens and item LLM).
    """

    inputs: Mapping[str, str]
    params: Mapping[str, object] = field(default_factory=dict)
    required: tuple[str, ...] = ()


_MLP = {"dims": [256, 128], "dropout": 0.2}  # configs/adult_deepfm.yaml
_BEHAVIOR = {"features": "sparse", "history_features": "history", "target_features": "target"}
_BEHAVIOR_MLP = {"dims": [200, 80]}  # DIN's paper and benchmarks/_seq_ctr_common.py
_TWO_TOWER = {"user_features": "user+history", "item_features": "item"}
_MULTI_INTEREST = {"user_features": "user", "history_features": "history", "item_features": "item_id"}
_NEXT_ITEM = {"history_features": "history", "item_features": "item_id"}
_TWO_TASKS = ["classification", "classification"]  # benchmarks/multi_task_census.py
_USER_LLM = {  # configs/movielens_hllm.yaml
    "type": "llama", "vocab_size": 2, "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2,
    "num_attention_heads": 1, "num_key_value_heads": 1, "max_position_embeddings": 200,
    "attention_dropout": 0.2, "bos_token_id": None, "eos_token_id": None, "pad_token_id": None,
}  # fmt: skip

DEFAULTS: dict[str, Default] = {
    # ranking: benchmarks/_ranking_zoo.py's settings with the MLP of configs/adult_deepfm.yaml
    "WideDeep": Default({"wide_features": "all", "deep_features": "all"}, {"mlp_params": _MLP}),
    "DeepFM": Default({"deep_features": "all", "fm_features": "sparse"}, {"mlp_params": _MLP}),
    "DCN": Default({"features": "all"}, {"n_cross_layers": 3, "mlp_params": _MLP}),
    "DCNv2": Default({"features": "all"}, {"n_cross_layers": 3, "mlp_params": _MLP, "low_rank": 16}),
    "EDCN": Default({"features": "all"}, {"n_cross_layers": 3, "mlp_params": {"dropout": 0.2}}),
    "AFM": Default({"fm_features": "all"}, {"t": 16}),
    "FiBiNet": Default({"features": "all"}, {"mlp_params": _MLP}),
    "DeepFFM": Default({"linear_features": "all", "cross_features": "sparse"}, {"mlp_params": _MLP}),
    "FatDeepFFM": Default(
        {"linear_features": "all", "cross_features": "sparse"}, {"reduction_ratio": 2, "mlp_params": _MLP}
    ),
    "AutoInt": Default({"sparse_features": "embedded", "dense_features": "dense"}, {"num_layers": 2}),
    "xDeepFM": Default({"features": "all"}, {"cin_layer_sizes": [16, 16], "mlp_params": _MLP}),
    "NFM": Default({"features": "all"}, {"mlp_params": _MLP}),
    "PNN": Default({"features": "all"}, {"mlp_params": _MLP}),
    "FinalMLP": Default({"features": "all"}, {"mlp1_params": _MLP, "mlp2_params": _MLP}),
    "DLRM": Default({"dense_features": "dense", "sparse_features": "embedded"}, {"top_params": _MLP}),
    "DIN": Default(_BEHAVIOR, {"mlp_params": _BEHAVIOR_MLP, "softmax_attention": True}),
    "DIEN": Default({**_BEHAVIOR, "neg_history_features": "neg_history"}, {"mlp_params": _BEHAVIOR_MLP}),
    "BST": Default(_BEHAVIOR, {"mlp_params": _BEHAVIOR_MLP, "nhead": 2, "dropout": 0.1}),
    # matching: configs/gowalla_*.yaml
    "DSSM": Default(
        _TWO_TOWER, {"user_params": {"dims": [64]}, "item_params": {"dims": [64]}, "temperature": 0.1}
    ),
    "FacebookDSSM": Default(
        {"user_features": "user+history", "pos_item_features": "item"},
        {"user_params": {"dims": [64]}, "item_params": {"dims": [64]}},
    ),
    "YoutubeDNN": Default(
        {"user_features": "user+history", "item_features": "item_id"}, {"temperature": 0.08}
    ),
    "YoutubeSBC": Default(_TWO_TOWER, {"user_params": {"dims": [64]}, "item_params": {"dims": [64]}}),
    "MIND": Default(_MULTI_INTEREST, {"temperature": 0.1, "normalize": True}),
    "ComirecDR": Default(_MULTI_INTEREST, {"temperature": 0.1, "normalize": True}),
    "ComirecSA": Default(_MULTI_INTEREST, {"temperature": 0.1, "normalize": True}),
    "SINE": Default(_NEXT_ITEM, {"num_concept": 10, "num_intention": 2, "hidden_dim": 512}),  # Torch-RecHub's
    "GRU4Rec": Default(_NEXT_ITEM),
    "NARM": Default(_NEXT_ITEM),
    "STAMP": Default(_NEXT_ITEM),
    "SASRec": Default(_NEXT_ITEM),
    # multi-task: benchmarks/multi_task_census.py, benchmarks/multi_task_esmm.py
    "SharedBottom": Default(
        {"features": "all"}, {"task_types": _TWO_TASKS, "bottom_params": {"dims": [128, 64]}}
    ),
    "ESMM": Default(
        {"user_features": "user", "item_features": "item"},
        {"cvr_params": {"dims": [64, 32]}, "ctr_params": {"dims": [64, 32]}},
    ),
    "MMOE": Default({"features": "all"}, {"task_types": _TWO_TASKS, "expert_params": {"dims": [64]}}),
    "PLE": Default(
        {"features": "all"},
        {
            "task_types": _TWO_TASKS,
            "n_level": 2,
            "n_expert_specific": 1,
            "n_expert_shared": 2,
            "expert_params": {"dims": [64]},
        },
    ),
    "AITM": Default({"features": "all"}, {"n_task": 2, "bottom_params": {"dims": [64]}}),
    # generative (HLLM's user LLM: configs/movielens_hllm.yaml)
    "HSTU": Default(_NEXT_ITEM),
    "HLLM": Default({}, {"user_llm": _USER_LLM}, required=("item_tokens", "item_llm")),
    # TIGER paper (RQ-VAE 512-256-128 -> 32, 3 levels x 256 codes; the encoder-decoder's defaults)
    "RQVAE": Default({}, required=("input_dim",)),
    "TIGER": Default({}, required=("semantic_ids",)),
}


def get_default(name: str) -> Default:
    """The default of registry entry ``name`` (an unknown name is a ``ValueError`` listing the
    valid ones)."""
    get_model(name)
    try:
        return DEFAULTS[name]
    except KeyError:
        raise ValueError(f"model {name!r} has no entry in recforge.models.defaults.DEFAULTS") from None


def default_config(name: str) -> dict[str, object]:
    """The default as a config's ``model`` section (``name``, ``inputs``, ``params``)."""
    d = get_default(name)
    return {"name": name, "inputs": dict(d.inputs), "params": copy.deepcopy(dict(d.params))}


def default_model(
    name: str, groups: Mapping[str, Sequence[Feature]] | Sequence[Feature], **params: object
) -> nn.Module:
    """Registry entry ``name`` built from its default.

    Args:
        name: a registry name.
        groups: group name -> features (``feature_groups`` of a feature list and, for user/item
            groups, the data's ``ColumnRoles``), or a plain feature list (its groups without roles).
        params: constructor arguments overriding the default's (a feature-list argument given
            here replaces its group).
    """
    d = get_default(name)
    available = groups if isinstance(groups, Mapping) else feature_groups(groups)
    missing = [p for p in d.required if p not in params]
    if missing:
        raise ValueError(f"{name}: pass {', '.join(missing)} (no default exists)")
    inputs = {
        arg: pick(available, spec, f"{name}: {arg}") for arg, spec in d.inputs.items() if arg not in params
    }
    return get_model(name)(**inputs, **{**copy.deepcopy(dict(d.params)), **params})
