"""Every file name of a run directory, in one place (standard library only).

```
run_dir/
  config.yaml          the resolved config            (recforge.runs)
  pipeline/            the fitted FeaturePipeline     (recforge.preprocess)
  model.json           model class, arguments, feature specs
  model_tensors.pt     constructor tensors from the data (HLLM's item text tokens; weights-only)
  semantic_ids.json    item -> semantic ID table (TIGER runs; SemanticIDs' JSON form)
  rqvae.pt             the RQ-VAE tokenizer's weights (TIGER runs, new items get IDs; weights-only)
  best.pt              the selected weights           (trainers; weights-only)
  checkpoint.pt        exact-resume state             (trainers; weights-only)
  model.pth            the best weights as a state dict (Torch-RecHub's file name)
  weighting.pt         multi-task weighting state     (trainers.mtl; weights-only)
  metrics.jsonl        one line per epoch
  learning_curve.png
  tb/                  TensorBoard logs (trainer.tensorboard)
  test_metrics.json    metrics of the evaluated splits
  histories.pt         known users' training items (retrieval runs; serving and evaluation)
  index.pt             item vectors (retrieval runs)
  items.parquet        raw item-side columns (optional)
  data/                encoded splits (recforge prepare)
  export/              ONNX / torch.export files
```
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CONFIG = "config.yaml"
PIPELINE = "pipeline"
MODEL = "model.json"
MODEL_TENSORS = "model_tensors.pt"  # constructor tensors a model takes from the data (e.g. HLLM's item text)
SEMANTIC_IDS = "semantic_ids.json"  # TIGER's item -> semantic ID table
RQVAE = "rqvae.pt"  # the RQ-VAE that made the IDs (its arguments are in model.json)
BEST = "best.pt"
CHECKPOINT = "checkpoint.pt"
TORCH_RECHUB_WEIGHTS = "model.pth"  # the best weights as a plain state dict, where Torch-RecHub puts them
WEIGHTING = "weighting.pt"
METRICS_LOG = "metrics.jsonl"
CURVE = "learning_curve.png"
TENSORBOARD = "tb"
TEST_METRICS = "test_metrics.json"
HISTORIES = "histories.pt"
INDEX = "index.pt"
ITEMS = "items.parquet"
DATA = "data"
EXPORT = "export"
BUNDLE = "bundle.yaml"  # a serving directory naming a ranking and a retrieval run


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run directory."""

    root: Path

    @classmethod
    def of(cls, root: str | os.PathLike[str]) -> RunLayout:
        return cls(Path(root))

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def pipeline(self) -> Path:
        return self.root / PIPELINE

    @property
    def model(self) -> Path:
        return self.root / MODEL

    @property
    def model_tensors(self) -> Path:
        return self.root / MODEL_TENSORS

    @property
    def semantic_ids(self) -> Path:
        return self.root / SEMANTIC_IDS

    @property
    def rqvae(self) -> Path:
        return self.root / RQVAE

    @property
    def best(self) -> Path:
        return self.root / BEST

    @property
    def checkpoint(self) -> Path:
        return self.root / CHECKPOINT

    @property
    def weighting(self) -> Path:
        return self.root / WEIGHTING

    @property
    def metrics_log(self) -> Path:
        return self.root / METRICS_LOG

    @property
    def curve(self) -> Path:
        return self.root / CURVE

    @property
    def tensorboard(self) -> Path:
        return self.root / TENSORBOARD

    @property
    def test_metrics(self) -> Path:
        return self.root / TEST_METRICS

    @property
    def histories(self) -> Path:
        return self.root / HISTORIES

    @property
    def index(self) -> Path:
        return self.root / INDEX

    @property
    def items(self) -> Path:
        return self.root / ITEMS

    @property
    def data(self) -> Path:
        return self.root / DATA

    @property
    def export(self) -> Path:
        return self.root / EXPORT

    @property
    def bundle(self) -> Path:
        return self.root / BUNDLE

    def is_trained(self) -> bool:
        """Whether the directory holds a finished training run."""
        return self.best.exists() and self.model.exists()
