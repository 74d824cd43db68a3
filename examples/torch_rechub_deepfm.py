"""Torch-RecHub's quick-start DeepFM, ported by renaming the imports only.

Run: python examples/torch_rechub_deepfm.py
"""

from pathlib import Path

import pandas as pd
from sklearn.preprocessing import LabelEncoder, MinMaxScaler

from recforge.features import DenseFeature, SparseFeature  # was: torch_rechub.basic.features
from recforge.models.ranking import DeepFM  # was: torch_rechub.models.ranking
from recforge.trainers import CTRTrainer  # was: torch_rechub.trainers
from recforge.utils.data import DataGenerator  # was: torch_rechub.utils.data


def main(model_path: str = "runs/example_deepfm") -> float:
    data = pd.read_csv(Path(__file__).parent / "data" / "criteo_sample.csv")
    dense_features = [f"I{i}" for i in range(1, 14)]
    sparse_features = [f"C{i}" for i in range(1, 27)]
    data[sparse_features] = data[sparse_features].fillna("-996")
    data[dense_features] = data[dense_features].fillna(0)
    data[dense_features] = MinMaxScaler().fit_transform(data[dense_features])
    for feat in sparse_features:
        data[feat] = LabelEncoder().fit_transform(data[feat].astype(str))

    dense_feas = [DenseFeature(name) for name in dense_features]
    sparse_feas = [
        SparseFeature(name, vocab_size=data[name].nunique(), embed_dim=16) for name in sparse_features
    ]
    y = data["label"]
    del data["label"]
    x = data

    dg = DataGenerator(x, y)
    train_dataloader, val_dataloader, test_dataloader = dg.generate_dataloader(
        split_ratio=[0.7, 0.1], batch_size=256
    )

    deep_features = dense_feas + sparse_feas
    fm_features = sparse_feas
    model = DeepFM(
        deep_features=deep_features,
        fm_features=fm_features,
        mlp_params={"dims": [256, 128], "dropout": 0.2, "activation": "relu"},
    )

    ctr_trainer = CTRTrainer(
        model, optimizer_params={"lr": 0.001}, n_epoch=2, device="cpu", model_path=model_path
    )
    ctr_trainer.fit(train_dataloader, val_dataloader)
    auc = ctr_trainer.evaluate(ctr_trainer.model, test_dataloader)
    print(f"test: {auc}")
    return auc["auc"]


if __name__ == "__main__":
    main()
