"""Runs: a config trained into a run directory (``train``), and a run directory restored from disk
(``load_run``). ``recforge.layout`` names the files of a run directory."""

from recforge.layout import RunLayout
from recforge.runs.export import export_run
from recforge.runs.index import build_item_index
from recforge.runs.model import (
    ColumnKind,
    Run,
    build_model,
    column_specs,
    load_histories,
    load_model_spec,
    load_run,
    read_source,
    save_histories,
    save_model_spec,
    select,
    with_initializers,
)
from recforge.runs.rows import prepare_rows, read_rows, split_rows
from recforge.runs.train import RunResult, train

__all__ = [
    "ColumnKind",
    "Run",
    "RunLayout",
    "RunResult",
    "build_item_index",
    "build_model",
    "column_specs",
    "export_run",
    "load_histories",
    "load_model_spec",
    "load_run",
    "prepare_rows",
    "read_rows",
    "read_source",
    "save_histories",
    "save_model_spec",
    "select",
    "split_rows",
    "train",
    "with_initializers",
]
