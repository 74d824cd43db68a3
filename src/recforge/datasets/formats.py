"""Readers for the files recommender users already hold.

Interaction data becomes an ``InteractionLog`` (``recforge.data``): raw user/item ids, a time column
that orders each user's interactions (the file order where the file has no timestamps), and side
tables when the format has them. Labelled-row data (Census-Income, Ali-CCP) becomes a DataFrame.

================  ==========================================================================
format            files
================  ==========================================================================
interactions      a CSV/Parquet log with user, item (and time) columns, any extra columns
lightgcn          LightGCN/BARS ``train.txt`` / ``test.txt`` (``uid i1 i2 ...`` per line;
                  a folder, or one of its files); the split is given, order is not meaningful
user_item_pairs   BERT4Rec/SASRec ``uid iid`` per line, each user's lines in time order
item_lists        S3-Rec ``uid i1 i2 ...`` per line in time order (+ ``*_item2attributes.json``
                  next to it: an ``attributes`` list column in the item table)
recbole           RecBole atomic files ``NAME.inter`` (+ ``NAME.item``, ``NAME.user``): a folder
                  or the ``.inter`` path; headers ``name:type``
movielens         MovieLens ``ratings.dat`` (+ ``movies.dat``, ``users.dat``) or ``u.data``
                  (+ ``u.item``, ``u.user``)
census_income     UCI Census-Income (KDD) (``census-income.{data,test}[.gz]``): rows with the
                  ``income`` and ``marital`` 0/1 labels of the MMoE paper
ali_ccp           Ali-CCP CSVs as Torch-RecHub ships them (``click``, ``purchase`` labels)
================  ==========================================================================
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from recforge.choices import Choice
from recforge.data.interactions import InteractionLog

PathLike = str | os.PathLike[str]


class DataFormat(Choice):
    TABLE = "table"
    INTERACTIONS = "interactions"
    LIGHTGCN = "lightgcn"
    USER_ITEM_PAIRS = "user_item_pairs"
    ITEM_LISTS = "item_lists"
    RECBOLE = "recbole"
    MOVIELENS = "movielens"
    CENSUS_INCOME = "census_income"
    ALI_CCP = "ali_ccp"

    @property
    def is_log(self) -> bool:
        """Whether the format holds interactions (``InteractionLog``) rather than labelled rows."""
        return self not in (DataFormat.TABLE, DataFormat.CENSUS_INCOME, DataFormat.ALI_CCP)


def _existing(path: PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"data path {str(p)!r} does not exist")
    return p


def _lines(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8") as fh:
        return [parts for parts in (line.split() for line in fh) if parts]


def _lists_frame(rows: list[list[str]], path: Path, *, with_position: bool) -> pd.DataFrame:
    """``uid i1 i2 ...`` lines -> one row per item; ``time`` is the item's place in the file."""
    bad = [i for i, r in enumerate(rows) if len(r) < 1]
    if bad:
        raise ValueError(f"{path}: line {bad[0] + 1} is empty")
    users = np.repeat([r[0] for r in rows], [len(r) - 1 for r in rows])
    items = [x for r in rows for x in r[1:]]
    try:
        user_ids, item_ids = users.astype(np.int64), np.asarray(items, dtype=np.int64)
    except ValueError:
        raise ValueError(f"{path}: expected integer ids 'uid i1 i2 ...' on every line") from None
    frame = pd.DataFrame({"user_id": user_ids, "item_id": item_ids})
    frame["time"] = np.arange(len(frame), dtype=np.int64) if with_position else 0
    return frame


def read_lightgcn(path: PathLike) -> InteractionLog:
    """LightGCN/BARS files: ``train.txt`` and ``test.txt`` (and ``valid.txt`` if present), each line
    ``uid i1 i2 ...``. ``path`` is their folder or one of them. The split is given (column
    ``split``); a user's items are a set (``ordered=False``)."""
    p = _existing(path)
    folder = p if p.is_dir() else p.parent
    parts = []
    for name in ("train", "valid", "test"):
        f = folder / f"{name}.txt"
        if f.exists():
            frame = _lists_frame(_lines(f), f, with_position=True)
            frame["split"] = name
            parts.append(frame)
    if not any((folder / f"{n}.txt").exists() for n in ("train",)):
        raise FileNotFoundError(f"{str(folder)!r} has no train.txt (LightGCN layout: train.txt, test.txt)")
    frame = pd.concat(parts, ignore_index=True)
    frame["time"] = np.arange(len(frame), dtype=np.int64)
    return InteractionLog(frame, ordered=False, split="split")


def read_user_item_pairs(path: PathLike) -> InteractionLog:
    """``uid iid`` per line (BERT4Rec's / SASRec's files), each user's lines in time order."""
    p = _existing(path)
    rows = _lines(p)
    bad = next((i for i, r in enumerate(rows) if len(r) != 2), None)
    if bad is not None:
        raise ValueError(f"{p}: line {bad + 1}: expected 'uid iid', got {' '.join(rows[bad])!r}")
    try:
        arr = np.asarray(rows, dtype=np.int64)
    except ValueError:
        raise ValueError(f"{p}: expected integer ids 'uid iid' on every line") from None
    frame = pd.DataFrame({"user_id": arr[:, 0], "item_id": arr[:, 1], "time": np.arange(len(arr))})
    return InteractionLog(frame)


def read_item_lists(path: PathLike, *, attributes: PathLike | None = None) -> InteractionLog:
    """S3-Rec's files: ``uid i1 i2 ...`` per line in time order. Item attributes come from
    ``attributes`` or, when absent, a ``<stem>_item2attributes.json`` next to the file (item id ->
    list of attribute ids): the item table's ``attributes`` column."""
    p = _existing(path)
    frame = _lists_frame(_lines(p), p, with_position=True)
    attr_path = Path(attributes) if attributes is not None else p.with_name(f"{p.stem}_item2attributes.json")
    items = None
    if attr_path.exists():
        raw = json.loads(attr_path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError(f"{attr_path}: expected a JSON object item id -> list of attribute ids")
        items = pd.DataFrame(
            {
                "item_id": np.asarray(list(raw), dtype=np.int64),
                "attributes": [list(map(int, v)) for v in raw.values()],
            }
        )
    elif attributes is not None:
        raise FileNotFoundError(f"attributes file {str(attr_path)!r} does not exist")
    return InteractionLog(frame, items=items)


_RECBOLE_TYPES = {"token": str, "float": "float64", "token_seq": str, "float_seq": str}


def _read_atomic(path: Path) -> pd.DataFrame:
    """One RecBole atomic file: tab-separated, header ``name:type``; ``token_seq`` columns become
    lists of strings, ``float`` columns numbers."""
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE)
    names, kinds = [], {}
    for col in frame.columns:
        name, _, kind = str(col).partition(":")
        names.append(name)
        kinds[name] = kind
    frame.columns = names
    for name, kind in kinds.items():
        if kind == "float":
            frame[name] = pd.to_numeric(frame[name].replace("", np.nan))
        elif kind.endswith("_seq"):
            frame[name] = frame[name].str.split()
    return frame


def read_recbole(path: PathLike) -> InteractionLog:
    """RecBole atomic files: ``NAME.inter`` (``user_id``, ``item_id``, optional ``timestamp``) plus
    ``NAME.item`` / ``NAME.user`` when present. ``path``: the folder (holding one ``.inter``) or the
    ``.inter`` file. Ids stay strings (RecBole tokens); ``time`` is the timestamp, else file order."""
    p = _existing(path)
    if p.is_dir():
        inters = sorted(p.glob("*.inter"))
        if len(inters) != 1:
            raise FileNotFoundError(f"{str(p)!r}: expected one RecBole .inter file, found {len(inters)}")
        p = inters[0]
    inter = _read_atomic(p)
    for col in ("user_id", "item_id"):
        if col not in inter.columns:
            raise ValueError(f"{p}: no {col!r} column; it has {list(inter.columns)}")
    inter["time"] = inter["timestamp"] if "timestamp" in inter.columns else np.arange(len(inter))
    side = {ext: p.with_suffix(f".{ext}") for ext in ("item", "user")}
    items = _read_atomic(side["item"]) if side["item"].exists() else None
    users = _read_atomic(side["user"]) if side["user"].exists() else None
    return InteractionLog(inter, items=items, users=users)


def read_movielens(path: PathLike) -> InteractionLog:
    """MovieLens: ``ratings.dat`` (1M/10M, ``::``-separated; ``movies.dat`` and ``users.dat`` next to
    it become the side tables) or ``u.data`` (100K, tab-separated; ``u.item``/``u.user``). ``path``:
    the folder or the ratings file. Columns ``user_id, item_id, rating, time`` (Unix seconds)."""
    p = _existing(path)
    if p.is_dir():
        p = next(
            (p / n for n in ("ratings.dat", "u.data", "ratings.csv") if (p / n).exists()), p / "ratings.dat"
        )
        _existing(p)
    cols = ["user_id", "item_id", "rating", "time"]
    items = users = None
    if p.name == "u.data":
        frame = pd.read_csv(p, sep="\t", header=None, names=cols)
        if (p.parent / "u.item").exists():
            raw = pd.read_csv(p.parent / "u.item", sep="|", header=None, encoding="latin-1")
            genre_names = [
                "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                "Romance", "Sci-Fi", "Thriller", "War", "Western",
            ]  # fmt: skip
            flags = raw.iloc[:, 5:24].to_numpy()
            items = pd.DataFrame(
                {
                    "item_id": raw[0].astype(np.int64),
                    "title": raw[1].astype(str),
                    "genres": [[g for g, f in zip(genre_names, row) if f] for row in flags],
                }
            )
        if (p.parent / "u.user").exists():
            users = pd.read_csv(
                p.parent / "u.user",
                sep="|",
                header=None,
                names=["user_id", "age", "gender", "occupation", "zip"],
            )
    elif p.suffix == ".csv":
        frame = pd.read_csv(p).rename(
            columns={"userId": "user_id", "movieId": "item_id", "timestamp": "time"}
        )
    else:
        frame = pd.read_csv(p, sep="::", header=None, names=cols, engine="python")
        if (p.parent / "movies.dat").exists():
            raw = pd.read_csv(
                p.parent / "movies.dat", sep="::", header=None, names=["item_id", "title", "genres"],
                engine="python", encoding="latin-1",
            )  # fmt: skip
            raw["genres"] = raw["genres"].str.split("|")
            items = raw
        if (p.parent / "users.dat").exists():
            users = pd.read_csv(
                p.parent / "users.dat", sep="::", header=None,
                names=["user_id", "gender", "age", "occupation", "zip"], engine="python",
            )  # fmt: skip
    return InteractionLog(frame, items=items, users=users)


def read_interactions(
    path: PathLike, *, user: str = "user_id", item: str = "item_id", time: str | None = "time"
) -> InteractionLog:
    """A CSV/Parquet interaction log with ``user``/``item`` (and ``time``) columns; without a time
    column the file order orders each user's interactions."""
    from recforge.preprocess import read_table

    frame = read_table(str(_existing(path)))
    if time is None or time not in frame.columns:
        if time not in (None, "time"):
            raise KeyError(f"{path}: no time column {time!r}; it has {list(frame.columns)}")
        frame["time"] = np.arange(len(frame))
        time = "time"
    return InteractionLog(frame, user=user, item=item, time=time)


CENSUS_COLUMNS = [
    "age", "class of worker", "detailed industry recode", "detailed occupation recode", "education",
    "wage per hour", "enroll in edu inst last wk", "marital stat", "major industry code",
    "major occupation code", "race", "hispanic origin", "sex", "member of a labor union",
    "reason for unemployment", "full or part time employment stat", "capital gains", "capital losses",
    "dividends from stocks", "tax filer stat", "region of previous residence",
    "state of previous residence", "detailed household and family stat",
    "detailed household summary in household", "instance weight", "migration code-change in msa",
    "migration code-change in reg", "migration code-move within reg", "live in this house 1 year ago",
    "migration prev res in sunbelt", "num persons worked for employer", "family members under 18",
    "country of birth father", "country of birth mother", "country of birth self", "citizenship",
    "own business or self employed", "fill inc questionnaire for veteran's admin", "veterans benefits",
    "weeks worked in year", "year", "income",
]  # fmt: skip
CENSUS_CONTINUOUS = [
    "age", "wage per hour", "capital gains", "capital losses", "dividends from stocks",
    "num persons worked for employer", "weeks worked in year",
]  # fmt: skip


def read_census_income(path: PathLike) -> pd.DataFrame:
    """UCI Census-Income (KDD): 42 ``", "``-separated columns, no header (names from the UCI
    ``census-income.names``). Adds the MMoE paper's two 0/1 tasks: ``income_50k`` (``50000+.``) and
    ``never_married`` (marital status ``Never married``); the source columns ``income`` and
    ``marital stat`` and the ``instance weight`` (a sampling weight) stay in the frame, so a config
    lists the input columns it uses."""
    p = _existing(path)
    df = pd.read_csv(
        p, header=None, names=CENSUS_COLUMNS, sep=",", skipinitialspace=True, dtype=str, keep_default_na=False
    )
    if df.shape[1] != len(CENSUS_COLUMNS) or df[CENSUS_COLUMNS[-1]].isna().any():
        raise ValueError(f"{p}: expected {len(CENSUS_COLUMNS)} comma-separated columns per row")
    df["income_50k"] = (df["income"].str.strip() == "50000+.").astype("float32")
    df["never_married"] = (df["marital stat"].str.strip() == "Never married").astype("float32")
    for c in CENSUS_CONTINUOUS:
        df[c] = df[c].astype("float64")
    return df


def read_ali_ccp(path: PathLike) -> pd.DataFrame:
    """Ali-CCP as Torch-RecHub's samples ship it: a CSV with ``click`` and ``purchase`` labels and
    categorical feature columns."""
    from recforge.preprocess import read_table

    df = read_table(str(_existing(path)))
    missing = [c for c in ("click", "purchase") if c not in df.columns]
    if missing:
        raise ValueError(
            f"{path}: not an Ali-CCP file, no {missing} column(s); it has {list(df.columns)[:10]}..."
        )
    return df


LOG_READERS: dict[DataFormat, Callable[..., InteractionLog]] = {
    DataFormat.INTERACTIONS: read_interactions,
    DataFormat.LIGHTGCN: read_lightgcn,
    DataFormat.USER_ITEM_PAIRS: read_user_item_pairs,
    DataFormat.ITEM_LISTS: read_item_lists,
    DataFormat.RECBOLE: read_recbole,
    DataFormat.MOVIELENS: read_movielens,
}
ROW_READERS: dict[DataFormat, Callable[[PathLike], pd.DataFrame]] = {
    DataFormat.CENSUS_INCOME: read_census_income,
    DataFormat.ALI_CCP: read_ali_ccp,
}
