"""Torch-RecHub-compatible import paths (``recforge.utils.data``)."""
