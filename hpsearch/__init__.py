"""hpsearch: hyperparameter search for Keras image models, driven by Optuna."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["SearchResult", "__version__", "load", "run"]


def __getattr__(name: str) -> object:
    """`hpsearch.run`, `hpsearch.load` and `hpsearch.SearchResult` (see hpsearch/api.py), imported when first used so
    that `import hpsearch` stays light."""
    if name in ("run", "load", "SearchResult"):
        from hpsearch import api

        return getattr(api, name)
    raise AttributeError(f"module 'hpsearch' has no attribute {name!r}")
