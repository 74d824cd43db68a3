"""``torch_rechub.utils.visualization``: recforge has no model-graph renderer. Calling one says what
to use instead (``print(model)`` for the module tree, or the ``torchview`` package directly)."""

from __future__ import annotations


def visualize_model(*args: object, **kwargs: object) -> None:
    raise NotImplementedError(
        "visualize_model: recforge has no graph renderer; print(model) shows the module tree, or call "
        "torchview.draw_graph(model, input_data=[batch]) from the torchview package"
    )


def display_graph(*args: object, **kwargs: object) -> None:
    raise NotImplementedError("display_graph: recforge has no graph renderer (see visualize_model)")


__all__ = ["display_graph", "visualize_model"]
