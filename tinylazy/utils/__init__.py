"""Utilities that are not part of the engine itself: `tinylazy.utils.data` (datasets and loaders)."""
from . import data

__all__ = ["data"]
