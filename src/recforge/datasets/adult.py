"""UCI Adult (census income), bundled compressed: predict whether income exceeds $50K.

Source: UCI Machine Learning Repository, "Adult" (Becker & Kohavi, 1996), licence CC BY 4.0,
https://doi.org/10.24432/C5XW20. Files are the original ``adult.data`` (32,561 rows) and
``adult.test`` (16,281 rows), gzip-compressed, unchanged. Missing values are ``"?"`` in the
original; here they stay as the string ``"?"`` (an ordinary category).
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

from recforge.features import LABEL

COLUMNS = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education_num",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
    "native_country",
    "income",
]
CATEGORICAL = [
    "workclass",
    "education",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "native_country",
]
NUMERIC = ["age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week"]


def _read(name: str) -> pd.DataFrame:
    path = resources.files("recforge.datasets") / "data" / name
    with resources.as_file(path) as p:
        df = pd.read_csv(
            p, header=None, names=COLUMNS, sep=",", skipinitialspace=True, comment="|", compression="gzip"
        )
    df = df.dropna(subset=["income"]).reset_index(drop=True)
    df[LABEL] = df.pop("income").str.rstrip(".").eq(">50K").astype("float32")
    return df


def load_adult() -> dict[str, pd.DataFrame]:
    """``{"train": 32,561 rows, "test": 16,281 rows}``; target column ``"label"`` (1 = income >50K)."""
    return {"train": _read("adult.data.gz"), "test": _read("adult.test.gz")}
