"""``benchmarks/torch_rechub_examples.py`` on a generated stand-in for Torch-RecHub's ``examples/``:
it renames the prefix, finds every ``--model_name`` a script offers, runs each and counts."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch_rechub_examples as runner  # noqa: E402

SCRIPT = '''
import argparse
from torch_rechub.basic.features import SparseFeature
from torch_rechub.ints import as_int

def main(model_name, epoch):
    if model_name == "good":
        print(SparseFeature("a", vocab_size=as_int(epoch + 1, "x")))
    elif model_name == "bad":
        raise ValueError("bad model")

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model_name", default="good")
    parser.add_argument("--epoch", type=int, default=100)
    parser.add_argument("--device", default="cuda:0")
    args = parser.parse_args()
    main(args.model_name, args.epoch)
"""
python run_demo.py --model_name good
python run_demo.py --model_name bad
python run_demo.py --model_name missing
"""
'''


def test_plan_rename_and_run(tmp_path):
    examples = tmp_path / "examples"
    (examples / "ranking").mkdir(parents=True)
    (examples / "ranking" / "run_demo.py").write_text(SCRIPT, encoding="utf-8")
    assert runner.rename_prefix(examples) == 1
    assert "torch_rechub" not in (examples / "ranking" / "run_demo.py").read_text(encoding="utf-8")
    runs, notes = runner.plan(examples, ["ranking"])
    assert [r.label for r in runs] == [
        "ranking/run_demo.py --model_name good",
        "ranking/run_demo.py --model_name bad",
    ]
    assert runs[0].args[-4:] == ("--epoch", "1", "--device", "cpu")
    assert notes == [
        "ranking/run_demo.py --model_name missing: listed in its docstring, not handled by its code"
    ]
    results = runner.run_all(examples, runs, sys.executable, timeout=120, threads=1, keep=None, tag="test")
    good, bad = (results[r.label] for r in runs)
    assert good.ok and not bad.ok and bad.error == "ValueError: bad model"
    assert runner.summarize(runs, results, None) == "1 of 2 examples run"
