"""Treadle orchestrator: remote workers over Weft protocol v8, with a durable ledger.

Run it with ``treadle serve``, or embed it::

    from treadle import Orchestrator, ServerConfig

    async with Orchestrator(ServerConfig(db="treadle.db")) as orchestrator:
        handle = await orchestrator.submit("default", "billing.charge", {"amount": 5})
        record = await handle.result(timeout=30)

``create_app`` gives the aiohttp application (Task API, worker stream,
metrics) around an orchestrator; ``serve`` runs it until a signal.
"""

__version__ = "0.1.0"

from .app import create_app, serve
from .config import ApiKey, ServerConfig, parse_api_key
from .errors import (
    ConfigError,
    ConflictError,
    InvalidTaskError,
    NotReadyError,
    StoreError,
    TaskExistsError,
    TransitionError,
    TreadleError,
    UnknownTaskError,
)
from .ledger import TaskRecord
from .orchestrator import Orchestrator, Submission, TaskHandle
from .retry import RetryPolicy
from .store import SQLiteStore, Store

__all__ = [
    "ApiKey",
    "ConfigError",
    "ConflictError",
    "InvalidTaskError",
    "NotReadyError",
    "Orchestrator",
    "RetryPolicy",
    "SQLiteStore",
    "ServerConfig",
    "Store",
    "StoreError",
    "Submission",
    "TaskExistsError",
    "TaskHandle",
    "TaskRecord",
    "TransitionError",
    "TreadleError",
    "UnknownTaskError",
    "__version__",
    "create_app",
    "parse_api_key",
    "serve",
]
