"""Treadle orchestrator: remote workers over Weft protocol v8, with a durable ledger.

Work in progress: the ledger and the SQLite store are here; the WebSocket
server, dispatch, leases and the Task API follow.
"""

from .errors import ConfigError, ConflictError, StoreError, TransitionError, TreadleError
from .ledger import TaskRecord
from .retry import RetryPolicy
from .store import SQLiteStore, Store

__all__ = [
    "ConfigError",
    "ConflictError",
    "RetryPolicy",
    "SQLiteStore",
    "Store",
    "StoreError",
    "TaskRecord",
    "TransitionError",
    "TreadleError",
]
