"""Durable task storage: the ``Store`` protocol and its backends."""

from .base import Store
from .sqlite import SQLiteStore

__all__ = ["SQLiteStore", "Store"]
