"""Reading tables: pandas, Polars, Arrow, CSV and Parquet all become one pandas DataFrame."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias, Union

import pandas as pd
import pyarrow as pa

if TYPE_CHECKING:
    import polars

TableLike: TypeAlias = Union[
    pd.DataFrame,
    pa.Table,
    pa.RecordBatch,
    "polars.DataFrame",
    "polars.LazyFrame",
    str,
    os.PathLike[str],
    Mapping[str, Sequence[object]],
    Sequence[Mapping[str, object]],
]

_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".csv.xz", ".csv.zst", ".tsv", ".tsv.gz")
_PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")


def _is_polars(obj: object) -> bool:
    # Checked by module name so polars is imported only by whoever created the frame.
    return type(obj).__module__.split(".")[0] == "polars"


def read_table(src: TableLike, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """``src`` as a pandas DataFrame, restricted to ``columns`` when given.

    Args:
        src: a pandas DataFrame (returned without copying), a Polars DataFrame/LazyFrame, a pyarrow
            Table/RecordBatch, a dict of columns, a list of row dicts, or a path to a CSV (``.csv``,
            ``.tsv``, compressed variants) or Parquet (``.parquet``, ``.pq``) file.
        columns: the columns to keep; a missing one is a ``KeyError`` listing those available.

    Returns:
        The table as a pandas DataFrame. List columns hold lists or numpy arrays per row.
    """
    if isinstance(src, pd.DataFrame):
        df = src
    elif isinstance(src, pa.Table | pa.RecordBatch):
        df = src.to_pandas()
    elif _is_polars(src):
        frame = src.collect() if type(src).__name__ == "LazyFrame" else src  # type: ignore[union-attr]
        df = frame.to_pandas()  # type: ignore[union-attr]
    elif isinstance(src, str | os.PathLike):
        df = _read_file(Path(src), columns)
    elif isinstance(src, Mapping):
        df = pd.DataFrame(dict(src))
    elif isinstance(src, list) and src and all(isinstance(r, Mapping) for r in src):
        df = pd.DataFrame.from_records(src)  # online requests: one dict per row
    else:
        raise TypeError(
            "expected a pandas or Polars DataFrame, a pyarrow Table, a dict of columns, a list of "
            "row dicts or a "
            f"CSV/Parquet path, got {type(src).__name__}"
        )
    if columns is not None:
        require_columns(df, columns)
        if list(df.columns) != list(columns):
            df = df[list(columns)]
    return df


def _read_file(path: Path, columns: Sequence[str] | None) -> pd.DataFrame:
    name = path.name.lower()
    if not path.exists():
        raise FileNotFoundError(f"no such table file: {path}")
    if name.endswith(_PARQUET_SUFFIXES):
        df = pd.read_parquet(path)
    elif name.endswith(_CSV_SUFFIXES):
        df = pd.read_csv(path, sep="\t" if ".tsv" in name else ",")
    else:
        valid = ", ".join(_CSV_SUFFIXES + _PARQUET_SUFFIXES)
        raise ValueError(f"{path}: unknown table format; the file name must end with one of {valid}")
    if columns is not None:
        require_columns(df, columns, source=str(path))
    return df


def require_columns(df: pd.DataFrame, columns: Sequence[str], *, source: str = "the data") -> None:
    """``KeyError`` naming every missing column and listing the available ones."""
    have = set(map(str, df.columns))
    missing = [c for c in columns if c not in have]
    if missing:
        raise KeyError(f"column(s) {missing} not found in {source}; available columns: {sorted(have)}")


def iter_tables(src: TableLike, batch_rows: int) -> Iterator[pd.DataFrame]:
    """``src`` in pieces of at most ``batch_rows`` rows; CSV and Parquet files are streamed from
    disk, never loaded whole."""
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise ValueError(f"batch_rows must be a positive int, got {batch_rows!r}")
    if isinstance(src, str | os.PathLike):
        path = Path(src)
        name = path.name.lower()
        if not path.exists():
            raise FileNotFoundError(f"no such table file: {path}")
        if name.endswith(_PARQUET_SUFFIXES):
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
                yield batch.to_pandas()
            return
        if name.endswith(_CSV_SUFFIXES):
            yield from pd.read_csv(path, sep="\t" if ".tsv" in name else ",", chunksize=batch_rows)
            return
    df = read_table(src)
    for start in range(0, len(df), batch_rows):
        yield df.iloc[start : start + batch_rows]
