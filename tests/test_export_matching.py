"""ONNX export of both towers of every matching model: parity with PyTorch at a new batch size and
history length (the batch and sequence axes are dynamic)."""

from __future__ import annotations

import pytest
import torch

from recforge.export import export_onnx, onnx_parity
from recforge.models.matching import MODELS
from test_contract_matching import BUILDERS, CATALOG, make_batch

pytest.importorskip("onnxruntime", reason="the 'onnx' extra is not installed")

# Towers the exporter cannot handle, each with the reason (checked below: they really fail).
_PACKED_GRU = (
    "layers/recurrent.py packs the histories by their real lengths and branches on "
    "`bool(real.any())`: a data-dependent guard torch.export cannot trace"
)
NOT_EXPORTABLE: dict[tuple[str, str], str] = {
    ("GRU4Rec", "user_tower"): _PACKED_GRU,
    ("NARM", "user_tower"): _PACKED_GRU,
}

FAST = {
    "DSSM",
    "SASRec",
    "GRU4Rec",
}  # the rest of the registry runs with `-m slow` (each export takes seconds)
TOWERS = ("user_tower", "item_tower")


def test_every_registered_matching_model_is_covered():
    assert set(BUILDERS) == set(MODELS)


def _call(tower: str):
    return (lambda m, b: m.user_tower(b)) if tower == "user_tower" else (lambda m, b: m.item_tower(b))


@pytest.mark.parametrize(
    ("name", "tower"),
    [pytest.param(n, t, marks=() if n in FAST else pytest.mark.slow) for n in sorted(MODELS) for t in TOWERS],
)
def test_tower_onnx_matches_pytorch(name, tower, tmp_path):
    torch.manual_seed(0)
    model = BUILDERS[name]().eval()
    feats = model.user_features if tower == "user_tower" else model.item_features
    call = _call(tower)
    if (name, tower) in NOT_EXPORTABLE:
        with pytest.raises(Exception):  # noqa: B017 - documented above: the exporter refuses it
            export_onnx(model, tmp_path / "t.onnx", features=feats, call=call, batch=make_batch(4, 0))
        return
    path = export_onnx(
        model, tmp_path / f"{name}_{tower}.onnx", features=feats, call=call, batch=make_batch(4, 0)
    )
    batch = make_batch(11, 1) if tower == "user_tower" else {**make_batch(11, 1), **CATALOG}
    if tower == "user_tower":
        short = dict(batch, hist_item_id=batch["hist_item_id"][:, -3:])  # shorter history than traced
        assert onnx_parity(path, model, short, features=feats, call=call) <= 1e-5
    assert onnx_parity(path, model, batch, features=feats, call=call) <= 1e-5
