"""Torch-RecHub's ``torch_rechub.basic`` import paths, so ported code only renames the prefix.

Each module is a thin adapter: the names come from recforge's own modules (features, metrics,
objectives, the training loop's early stopper); nothing here computes anything recforge computes
elsewhere. ``docs/migrating.md`` lists where behaviour differs.
"""
