"""Treadle worker SDK for Python (in progress: the sans-I/O parts are here; see README)."""

from __future__ import annotations

from .backoff import Backoff
from .cadence import SESSION_HEARTBEAT_MS, activity_heartbeat_ms
from .config import Transport, WorkerConfig
from .errors import ConfigError, OutboxFullError, RegistrationError, TreadleSDKError
from .outbox import DEFAULT_OUTBOX_LIMIT, Outbox

__all__ = [
    "DEFAULT_OUTBOX_LIMIT",
    "SESSION_HEARTBEAT_MS",
    "Backoff",
    "ConfigError",
    "Outbox",
    "OutboxFullError",
    "RegistrationError",
    "Transport",
    "TreadleSDKError",
    "WorkerConfig",
    "activity_heartbeat_ms",
]

__version__ = "0.1.0"
