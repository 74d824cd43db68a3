"""recforge export on a trained run: ONNX/pt2 files whose outputs equal the bundle's scores."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

import recforge
from recforge.cli import main
from recforge.export import quantize_onnx
from serving_runs import interactions, train_ranking_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train_ranking_run(tmp_path_factory.mktemp("export"))


def onnx_probabilities(path, bundle, rows):
    arrays = bundle.ranker.pipeline.transform(rows)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, {n: arrays[n] for n in names})[0]


def test_export_onnx_fp32_int8_fp16(run_dir):
    bundle = recforge.load(run_dir)
    rows = interactions(300, 7).drop(columns=["label"])
    want = bundle.score(rows)
    assert main(["export", str(run_dir)]) == 0
    exported = run_dir / "export"
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["graphs"]["model"]["inputs"] == ["user_id", "item_id", "cat", "age"]
    np.testing.assert_allclose(onnx_probabilities(exported / "model.onnx", bundle, rows), want, atol=1e-5)

    # the quantised copies (`recforge export --quantize int8|fp16` runs the same function)
    quantize_onnx(exported / "model.onnx", exported / "model.int8.onnx", "int8")
    got = onnx_probabilities(exported / "model.int8.onnx", bundle, rows)
    assert np.abs(got - want).max() < 0.05
    assert not np.array_equal(got, want)  # really a different (quantised) graph
    quantize_onnx(exported / "model.onnx", exported / "model.fp16.onnx", "fp16")
    got = onnx_probabilities(exported / "model.fp16.onnx", bundle, rows)
    assert np.abs(got - want).max() < 5e-3
    assert (exported / "model.fp16.onnx").stat().st_size < (exported / "model.onnx").stat().st_size
    assert not list(exported.glob("*.tmp"))


@pytest.mark.slow
def test_export_pt2(run_dir):
    bundle = recforge.load(run_dir)
    rows = interactions(300, 7).drop(columns=["label"])
    want = bundle.score(rows)
    assert main(["export", str(run_dir), "--format", "pt2"]) == 0
    exported = run_dir / "export"
    manifest = json.loads((exported / "manifest.json").read_text())
    program = torch.export.load(str(exported / "model.pt2"))
    arrays = bundle.ranker.pipeline.transform(rows)
    out = program.module()(*(torch.from_numpy(arrays[n]) for n in manifest["graphs"]["model"]["inputs"]))
    np.testing.assert_allclose(out.detach().numpy(), want, atol=1e-5)
    assert not list(exported.glob("*.tmp"))


def test_export_refuses_bad_choices(run_dir, capsys):
    assert main(["export", str(run_dir), "--format", "tflite"]) == 2
    assert "format must be one of 'onnx', 'pt2'" in capsys.readouterr().err
    assert main(["export", str(run_dir), "--format", "pt2", "--quantize", "int8"]) == 2
    assert "needs --format onnx" in capsys.readouterr().err
    assert main(["export", str(run_dir), "--quantize", "int4"]) == 2
    assert "int8" in capsys.readouterr().err


def test_prepare_writes_pipeline_and_encoded_splits(run_dir, tmp_path, capsys):
    import pyarrow.parquet as pq

    from recforge.preprocess import FeaturePipeline

    out = tmp_path / "prepared"
    assert main(["prepare", str(run_dir.parent / "ranking.yaml"), "--run-dir", str(out)]) == 0
    assert "train: 2,400 rows" in capsys.readouterr().out
    pipe = FeaturePipeline.load(out / "pipeline")
    assert pipe.to_dict() == recforge.load(run_dir).ranker.pipeline.to_dict()  # same fit as train's
    test = pq.read_table(out / "data" / "test.parquet").to_pandas()
    want = pipe.transform(interactions(500, 1))
    for col, arr in want.items():
        np.testing.assert_array_equal(test[col].to_numpy(), arr)
    assert sorted(p.name for p in (out / "data").iterdir()) == [
        "test.parquet",
        "train.parquet",
        "valid.parquet",
    ]
