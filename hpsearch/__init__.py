"""hpsearch: hyperparameter search for Keras image models, driven by Optuna."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
