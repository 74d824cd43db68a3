"""recforge: a complete, fast, production-ready recommender-system library for PyTorch."""

__version__ = "0.1.0"
