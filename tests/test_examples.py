import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_torch_rechub_quick_start_runs_with_renamed_imports(tmp_path):
    spec = importlib.util.spec_from_file_location("example", ROOT / "examples" / "torch_rechub_deepfm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    auc = module.main(model_path=str(tmp_path))
    assert 0.0 <= auc <= 1.0
    assert (tmp_path / "best.pt").exists()
