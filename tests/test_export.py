"""ONNX (dynamo exporter) and torch.export parity for every ranking model in the registry."""

from __future__ import annotations

import pytest
import torch

from contract import synthetic_batch
from recforge.export import ExportHead, export_onnx, export_pt2, onnx_parity
from recforge.models import ranking
from test_contract_ranking import ALL, FACTORIES, FEATURE_MODELS
from test_contract_seq_ranking import FACTORIES as SEQ_FACTORIES

pytest.importorskip("onnxruntime", reason="the 'onnx' extra is not installed")

# Models the exporter cannot handle, each with the reason; a test checks that they really fail.
NOT_EXPORTABLE: dict[str, str] = {
    name: "drops padding by sizing tensors from the data (trimmed histories, packed GRU steps): "
    "data-dependent shapes that torch.export cannot trace; needs an export-time dense path"
    for name in ranking.SEQUENCE_MODELS
}


def test_every_registered_ranking_model_has_a_factory():
    assert set(FACTORIES) | set(ranking.SEQUENCE_MODELS) == set(ranking.MODELS)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SEQ_FACTORIES))
def test_listed_models_really_refuse_export(name, tmp_path):
    assert name.split("[")[0] in NOT_EXPORTABLE
    with pytest.raises(Exception):  # noqa: B017 - any exporter error: the reason is documented above
        export_onnx(SEQ_FACTORIES[name]().eval(), tmp_path / "m.onnx")


# Each export takes seconds: two models run by default, the whole registry with `-m slow`.
FAST = {"DeepFM", "DCNv2"}


@pytest.mark.parametrize(
    "name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in FEATURE_MODELS]
)
def test_onnx_matches_pytorch(name, tmp_path):
    if name in NOT_EXPORTABLE:
        with pytest.raises(Exception):  # noqa: B017 - documented: the exporter refuses this model
            export_onnx(FACTORIES[name](), tmp_path / "m.onnx")
        return
    torch.manual_seed(0)
    model = FACTORIES[name]().eval()
    path = export_onnx(model, tmp_path / f"{name}.onnx", head=ExportHead.PROBABILITY)
    # A different batch size and history length than the export example: the axes are dynamic.
    batch = synthetic_batch(ALL, 37, seed=1)
    diff = onnx_parity(path, model, batch, head=ExportHead.PROBABILITY)
    assert diff <= 1e-5, f"{name}: max abs diff {diff}"


def test_pt2_round_trip(tmp_path):
    model = FACTORIES["DeepFM"]().eval()
    path = export_pt2(model, tmp_path / "deepfm.pt2")
    program = torch.export.load(str(path))
    batch = synthetic_batch(ALL, 9, seed=2)
    names = [f.name for f in model.features]
    got = program.module()(*(batch[n] for n in names))
    torch.testing.assert_close(got, model(batch))
