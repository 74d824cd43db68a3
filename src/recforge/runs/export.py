"""``recforge export RUN``: a run directory's model exported into ``RUN/export``."""

from __future__ import annotations

import os
from pathlib import Path

from recforge.export import ExportFormat, Quantization, export_model
from recforge.layout import RunLayout
from recforge.runs.model import load_run


def export_run(
    run_dir: str | os.PathLike[str],
    *,
    fmt: ExportFormat | str = ExportFormat.ONNX,
    quantize: Quantization | str | None = None,
    out_dir: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Export the run's model (or both towers) into ``run_dir/export`` (or ``out_dir``); returns
    the written files (see ``recforge.export.export_model``)."""
    run = load_run(run_dir)
    target = Path(out_dir) if out_dir is not None else RunLayout(run.path).export
    return export_model(run.model, target, fmt=fmt, quantize=quantize)
