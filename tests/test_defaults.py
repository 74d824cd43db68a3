"""The registry defaults (``recforge.models.defaults``): one per entry, in terms of the constructor,
printed by ``recforge models NAME`` as a config section; feature groups; and Torch-RecHub's
positional hyper-parameters bound by ``rechub_order``. Each default is built on small generated
features by the contract tests (``tests/test_contract_*.py``, parametrized over the registry)."""

from __future__ import annotations

import inspect

import pytest
import torch
import yaml

from recforge.cli import main
from recforge.config import ModelConfig
from recforge.features import DenseFeature, SequenceFeature, SparseFeature
from recforge.models.defaults import DEFAULTS, ColumnRoles, default_config, default_model, feature_groups
from recforge.models.ranking import DCN, DIN, AutoInt, DeepFM
from recforge.models.registry import all_models
from recforge.runs import select

USER = SparseFeature("user_id", 10, 4)
AGE = DenseFeature("age")
ITEM = SparseFeature("item_id", 20, 4)
CATE = SparseFeature("cate_id", 5, 4)
HIST = SequenceFeature("hist_item_id", 20, 4, pooling="concat", shared_with="item_id")
HIST_CATE = SequenceFeature("hist_cate_id", 5, 4, pooling="concat", shared_with="cate_id")
NEG = SequenceFeature("neg_hist_item_id", 20, 4, pooling="concat", shared_with="item_id")
FEATURES = [USER, AGE, ITEM, CATE, HIST, HIST_CATE, NEG]


def names(features) -> list[str]:
    return [f.name for f in features]


def test_every_registry_entry_has_a_default_in_its_constructors_terms() -> None:
    assert set(DEFAULTS) == set(all_models())
    for name, cls in all_models().items():
        params = inspect.signature(cls.__init__).parameters
        d = DEFAULTS[name]
        unknown = sorted(set(d.inputs) | set(d.params) | set(d.required)) - params.keys()
        assert not unknown, f"{name}: {sorted(unknown)} are not constructor arguments"
        required = {
            n
            for n, p in list(params.items())[1:]
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }
        assert required <= set(d.inputs) | set(d.params) | set(d.required), name


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_recforge_models_prints_the_default_as_a_config_section(name: str, capsys) -> None:
    assert main(["models", name]) == 0
    out = capsys.readouterr().out
    block = out[out.index("\nmodel:") :]
    section = yaml.safe_load(block)["model"]
    assert section == default_config(name)
    ModelConfig(**section)  # the keys a config's model section takes


def test_feature_groups() -> None:
    groups = feature_groups(FEATURES, ColumnRoles(user_columns=("age",), item_columns=("cate_id",)))
    assert names(groups["sparse"]) == ["user_id", "item_id", "cate_id"]
    assert names(groups["embedded"]) == ["user_id", "item_id", "cate_id", *names([HIST, HIST_CATE, NEG])]
    assert names(groups["history"]) == ["hist_item_id", "hist_cate_id"]
    assert names(groups["target"]) == ["item_id", "cate_id"]
    assert names(groups["neg_history"]) == ["neg_hist_item_id"]
    assert names(groups["user"]) == ["user_id", "age"]
    assert names(groups["item"]) == ["item_id", "cate_id"]
    assert names(groups["item_id"]) == ["item_id"]
    assert "user" not in feature_groups(FEATURES)  # the user/item groups need the column roles


def test_config_inputs_join_groups_and_name_what_is_missing() -> None:
    roles = ColumnRoles(user_columns=("age",))
    assert names(select(FEATURES, "user+history", "model.inputs.user_features", roles=roles)) == [
        "user_id", "age", "hist_item_id", "hist_cate_id",
    ]  # fmt: skip
    assert names(select(FEATURES, ["item_id"], "x")) == ["item_id"]
    with pytest.raises(ValueError, match=r"model.inputs.x: group .* must be one of .*'item_id'"):
        select(FEATURES, "items", "model.inputs.x")
    with pytest.raises(ValueError, match=r"no 'user' group here .*column roles"):
        select(FEATURES, "user", "model.inputs.x")


def test_default_model_takes_groups_and_overrides() -> None:
    torch.manual_seed(0)
    model = default_model("DeepFM", [USER, AGE, ITEM], mlp_params={"dims": [8]})
    assert isinstance(model, DeepFM)
    assert names(model.deep_features) == ["user_id", "age", "item_id"] and names(model.fm_features) == [
        "user_id", "item_id",
    ]  # fmt: skip
    assert [m.out_features for m in model.mlp.modules() if isinstance(m, torch.nn.Linear)] == [8, 1]
    replaced = default_model(
        "DeepFM", [USER, AGE, ITEM], fm_features=[ITEM]
    )  # an argument replaces its group
    assert names(replaced.fm_features) == ["item_id"]
    din = default_model("DIN", FEATURES, mlp_params={"dims": [8]})
    assert isinstance(din, DIN) and names(din.target_features) == ["item_id", "cate_id"]
    with pytest.raises(ValueError, match="HLLM: pass item_tokens, item_llm"):
        default_model("HLLM", {})
    with pytest.raises(ValueError, match="unknown model 'Deep'"):
        default_model("Deep", FEATURES)
    assert DEFAULTS["DeepFM"].params["mlp_params"] == {"dims": [256, 128], "dropout": 0.2}  # not mutated


# -- Torch-RecHub's positional hyper-parameters ----------------------------------------------------
def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_positional_hyper_parameters_follow_torch_rechubs_order(capsys) -> None:
    sparse = [USER, ITEM]
    torch.manual_seed(0)
    positional = AutoInt(sparse, [AGE], 1, 2, 0.1, {"dims": [8]})
    torch.manual_seed(0)
    keywords = AutoInt(sparse, [AGE], num_layers=1, num_heads=2, dropout=0.1, mlp_params={"dims": [8]})
    assert same_weights(positional, keywords)
    assert AutoInt.rechub_order == ("num_layers", "num_heads", "dropout", "mlp_params")
    assert list(inspect.signature(DCN.__init__).parameters)[:3] == ["self", "features", "n_cross_layers"]
    assert inspect.signature(DCN.__init__).parameters["n_cross_layers"].kind is inspect.Parameter.KEYWORD_ONLY
    main(["models", "DCN"])
    assert (
        "features: Sequence[Feature]  (required)\n  *  (the rest by keyword)\n  n_cross_layers"
        in capsys.readouterr().out
    )


def test_positional_errors_name_the_model() -> None:
    with pytest.raises(
        TypeError,
        match=r"DCN: takes at most 2 positional arguments after the features \(n_cross_layers, mlp_params\)",
    ):
        DCN([USER, ITEM], 2, {"dims": [8]}, True)
    with pytest.raises(TypeError, match="DCN: got n_cross_layers both positionally and by keyword"):
        DCN([USER, ITEM], 2, n_cross_layers=3)
    with pytest.raises(TypeError):  # models Torch-RecHub does not have take no positional hyper-parameters
        all_models()["xDeepFM"]([USER, ITEM], (4, 4))
