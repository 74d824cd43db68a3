"""Reading tables: pandas, Polars, Arrow, CSV and Parquet become a pandas DataFrame (``read_table``),
or stay Arrow where they already are (``read_frame``, what the pipeline's Arrow kernels read)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias, Union

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

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

Frame: TypeAlias = pd.DataFrame | pa.Table
"""A table as the pipeline reads it: columns are ``pd.Series`` or ``pa.ChunkedArray``."""
Column: TypeAlias = pd.Series | pa.ChunkedArray

_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".csv.xz", ".csv.zst", ".tsv", ".tsv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")


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
    check_unique_columns(column_names(df), "the data")
    if columns is not None:
        require_columns(df, columns)
        if list(df.columns) != list(columns):
            df = df[list(columns)]
    return df


def read_frame(src: TableLike) -> Frame:
    """``src`` as a pandas DataFrame, except that Arrow tables and record batches stay Arrow: the
    encoders run on Arrow, so converting to pandas (and back, per column) would only cost time."""
    if isinstance(src, pa.RecordBatch):
        src = pa.Table.from_batches([src])
    if isinstance(src, pa.Table):
        check_unique_columns(src.column_names, "the data")
        return src
    return read_table(src)


def check_unique_columns(names: Sequence[object], source: str) -> None:
    """``ValueError`` naming every column that appears more than once (which one is meant?)."""
    seen: set[str] = set()
    dup: list[str] = []
    for n in map(str, names):
        if n in seen and n not in dup:
            dup.append(n)
        seen.add(n)
    if dup:
        raise ValueError(f"column(s) {dup} appear more than once in {source}; rename or drop the duplicates")


def _csv_header(path: Path, sep: str) -> list[str]:
    """The raw header of a CSV file (pandas would rename a repeated name ``age`` to ``age.1``)."""
    try:
        head = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: the file is empty (no header row)") from None
    return [str(v) for v in head.iloc[0].tolist()] if len(head) else []


def _read_csv(path: Path, **kwargs: object) -> pd.DataFrame:
    sep = "\t" if ".tsv" in path.name.lower() else ","
    check_unique_columns(_csv_header(path, sep), f"the header of {path}")
    return pd.read_csv(path, sep=sep, **kwargs)  # type: ignore[call-overload, no-any-return]


def column_names(frame: Frame) -> list[str]:
    return list(frame.column_names) if isinstance(frame, pa.Table) else [str(c) for c in frame.columns]


def _read_file(path: Path, columns: Sequence[str] | None) -> pd.DataFrame:
    name = path.name.lower()
    if not path.exists():
        raise FileNotFoundError(f"no such table file: {path}")
    if name.endswith(PARQUET_SUFFIXES):
        df = pd.read_parquet(path)
    elif name.endswith(_CSV_SUFFIXES):
        df = _read_csv(path)
    else:
        valid = ", ".join(_CSV_SUFFIXES + PARQUET_SUFFIXES)
        raise ValueError(f"{path}: unknown table format; the file name must end with one of {valid}")
    if columns is not None:
        require_columns(df, columns, source=str(path))
    return df


def require_columns(df: Frame, columns: Sequence[str], *, source: str = "the data") -> None:
    """``KeyError`` naming every missing column and listing the available ones."""
    have = set(column_names(df))
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
        if name.endswith(PARQUET_SUFFIXES):
            for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
                yield batch.to_pandas()
            return
        if name.endswith(_CSV_SUFFIXES):
            yield from _read_csv(path, chunksize=batch_rows)  # type: ignore[misc]
            return
    df = read_table(src)
    for start in range(0, len(df), batch_rows):
        yield df.iloc[start : start + batch_rows]


def list_parquet_files(path: str | os.PathLike[str]) -> list[Path]:
    """The Parquet files of ``path`` (a file, or a directory searched recursively), sorted; files
    and folders whose name starts with ``_`` or ``.`` (Spark's ``_SUCCESS``, ``.crc``) are skipped."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise FileNotFoundError(f"no Parquet file or directory at {str(p)!r}")
    files = sorted(
        f
        for f in p.rglob("*.parquet")
        if not any(part.startswith(("_", ".")) for part in f.relative_to(p).parts)
    )
    if not files:
        raise FileNotFoundError(f"directory {str(p)!r} holds no *.parquet files")
    return files


def iter_parquet_batches(
    path: str | os.PathLike[str], columns: Sequence[str] | None = None, batch_rows: int = 65_536
) -> Iterator[pa.RecordBatch]:
    """Record batches of every Parquet file of ``path`` (see ``list_parquet_files``), in file order,
    reading only ``columns``; at most one batch is held at a time."""
    for f in list_parquet_files(path):
        pf = pq.ParquetFile(f)
        if columns is not None:
            missing = [c for c in columns if c not in pf.schema_arrow.names]
            if missing:
                raise KeyError(f"column(s) {missing} not found in {str(f)!r}; it has {pf.schema_arrow.names}")
        yield from pf.iter_batches(batch_size=batch_rows, columns=None if columns is None else list(columns))
