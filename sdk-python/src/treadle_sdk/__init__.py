"""Treadle worker SDK for Python: activities as ``async def`` or plain functions.

::

    from treadle_sdk import Worker

    async def echo(value):
        return value

    Worker("http://127.0.0.1:7233", workflows={"demo": {"echo": echo}}).run_sync()

and, from anywhere, submit work and wait for it::

    from treadle_sdk import Client

    with Client("http://127.0.0.1:7233") as client:
        print(client.submit("demo.echo", {"hello": "world"}).result(timeout=30))

``treadle_sdk.testing`` runs an activity with no server, for unit tests.

The worker speaks Weft's RemoteWorker protocol v8 (``protocol/README.md``) over
WebSocket or HTTP long-poll, to a Treadle orchestrator or a Weft server.
"""

from __future__ import annotations

from ._version import __version__
from .activities import Activity, activity
from .backoff import Backoff
from .cadence import SESSION_HEARTBEAT_MS, activity_heartbeat_ms
from .client import AsyncClient, AsyncTaskHandle, Client, RetryPolicy, TaskDetail, TaskHandle
from .config import Transport, WorkerConfig
from .context import ActivityContext, current
from .errors import (
    ActivityCancelledError,
    ActivityError,
    ApiError,
    AuthenticationError,
    ConfigError,
    OutboxFullError,
    RegistrationError,
    ResultTimeoutError,
    TaskCancelledError,
    TaskConflictError,
    TaskFailedError,
    TaskNotFoundError,
    TreadleSDKError,
)
from .outbox import DEFAULT_OUTBOX_LIMIT, Outbox
from .worker import Worker

__all__ = [
    "DEFAULT_OUTBOX_LIMIT",
    "SESSION_HEARTBEAT_MS",
    "Activity",
    "ActivityCancelledError",
    "ActivityContext",
    "ActivityError",
    "ApiError",
    "AsyncClient",
    "AsyncTaskHandle",
    "AuthenticationError",
    "Backoff",
    "Client",
    "ConfigError",
    "Outbox",
    "OutboxFullError",
    "RegistrationError",
    "ResultTimeoutError",
    "RetryPolicy",
    "TaskCancelledError",
    "TaskConflictError",
    "TaskDetail",
    "TaskFailedError",
    "TaskHandle",
    "TaskNotFoundError",
    "Transport",
    "TreadleSDKError",
    "Worker",
    "WorkerConfig",
    "__version__",
    "activity",
    "activity_heartbeat_ms",
    "current",
]
