"""The learning-curve figure of a run (``learning_curve.png``): the training and validation losses
on one panel, the monitored metric on the next (per task for multi-task runs), the best epoch
marked on every panel, whole-epoch ticks; series that never change are left out."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

log = logging.getLogger("recforge")

Panel = tuple[str, Sequence[str]]  # title, history keys drawn on it


def _varies(values: Sequence[float]) -> bool:
    finite = [v for v in values if not math.isnan(v)]
    return len(finite) > 0 and (len(finite) == 1 or max(finite) - min(finite) > 1e-12)


def plot_curves(
    history: Sequence[Mapping[str, float]],
    panels: Sequence[Panel],
    best_epoch: int | None,
    path: Path,
    save: Callable[[Path, Callable[[Path], None]], object],
) -> bool:
    """Draw ``panels`` of ``history`` into ``path`` through ``save(path, writer)`` (an atomic
    write). Returns False when matplotlib is missing (the plot is skipped with a warning)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        log.warning("learning-curve plot skipped: matplotlib is not installed (pip install 'recforge[plot]')")
        return False
    epochs = [int(r["epoch"]) for r in history]
    drawn: list[tuple[str, list[tuple[str, list[float]]]]] = []
    for title, keys in panels:
        series = [(k, [float(r.get(k, math.nan)) for r in history]) for k in keys]
        series = [(k, v) for k, v in series if _varies(v)]
        if series:
            drawn.append((title, series))
    if not drawn:
        return False
    cols = min(3, len(drawn))
    rows = -(-len(drawn) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(drawn) :]:
        ax.set_visible(False)
    for ax, (title, series) in zip(axes.flat, drawn):
        for key, values in series:
            ax.plot(epochs, values, marker="o", markersize=3, label=key)
        if best_epoch is not None and best_epoch >= 0:
            ax.axvline(
                best_epoch, color="grey", linestyle="--", linewidth=1, label=f"best (epoch {best_epoch})"
            )
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save(path, lambda tmp: fig.savefig(tmp, dpi=90))
    plt.close(fig)
    return True
