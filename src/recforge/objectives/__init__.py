"""Losses. An objective maps ``(model outputs, batch) -> scalar loss``; models never hold losses."""

from recforge.objectives.pointwise import BinaryCrossEntropy, MeanSquaredError, Objective

__all__ = ["BinaryCrossEntropy", "MeanSquaredError", "Objective"]
