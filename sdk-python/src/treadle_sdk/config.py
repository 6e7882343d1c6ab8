"""``WorkerConfig``: every worker setting, validated when it is made.

A bad setting raises :class:`~treadle_sdk.errors.ConfigError` naming the
field and the rule, before anything connects.  Defaults follow the protocol
(``protocol/README.md`` §14): queue ``default``, concurrency 10, session
heartbeat 10 s, a 30 s drain, result outbox of 1000.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import urlsplit

from .errors import ConfigError

__all__ = ["Transport", "WorkerConfig"]

Transport = Literal["auto", "websocket", "longpoll"]
QUEUE_NAME: Final = re.compile(r"[A-Za-z0-9_-]+\Z")
RESERVED_QUEUES: Final = frozenset({"diagnostics", "detail"})  # LP-10
MAX_IDENTIFIER_BYTES: Final = 512
MAX_CONCURRENCY: Final = 1000
STREAM_PATH: Final = re.compile(r"(?P<prefix>.*?)(?:/api)?/v1/tasks/(?P<queue>[^/]*)/stream/?\Z")
"""A full stream URL (SDK-2), as Weft's conformance harness passes it."""


def _identifier(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError(name, "must be a non-empty string")
    if len(value.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        raise ConfigError(name, f"must be at most {MAX_IDENTIFIER_BYTES} bytes of UTF-8")


def _positive(name: str, value: object, *, zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(name, "must be a number of seconds")
    if value < 0 or (value == 0 and not zero):
        raise ConfigError(name, "must be ≥ 0" if zero else "must be > 0")


def default_worker_id() -> str:
    """``<host>-<pid>-<random>``: unique per process, readable in ``GET /api/v1/workers``."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """How a worker reaches the server and what it offers.  Durations are seconds."""

    server_url: str
    """The server's base URL (``http(s)://host:port``, optionally with a path prefix), or
    a full stream URL ``ws://host:port[/api]/v1/tasks/<queue>/stream`` (SDK-2)."""
    queue: str = "default"
    """The task queue; taken from ``server_url`` when that is a stream URL."""
    concurrency: int = 10
    deployment_name: str = "default"
    build_id: str = "dev"
    artifact_digest: str | None = None
    """Identifies the build's artifact; defaults to ``build:<build_id>``."""
    worker_id: str = field(default_factory=default_worker_id)
    api_key: str | None = field(default=None, repr=False)
    transport: Transport = "auto"
    """``auto``: WebSocket, falling back to long-poll sessions when the upgrade is refused."""
    heartbeat_interval: float = 10.0
    shutdown_timeout: float = 30.0
    poll_timeout: float = 30.0
    reconnect_base: float = 0.5
    reconnect_cap: float = 30.0
    outbox_limit: int = 1000
    state_dir: str | None = None
    """Keep the outbox, worker id and session generation on disk here, so a restarted
    process resends its unacknowledged results and proves its session (SDK-13)."""

    def __post_init__(self) -> None:
        url = urlsplit(self.server_url) if isinstance(self.server_url, str) else None
        if url is None or url.scheme not in ("http", "https", "ws", "wss") or not url.netloc:
            raise ConfigError("server_url", "must look like http://host:port (or https, ws, wss)")
        stream = STREAM_PATH.match(url.path)
        if stream is not None:
            if self.queue == "default":
                object.__setattr__(self, "queue", stream["queue"])
            elif self.queue != stream["queue"]:
                raise ConfigError(
                    "queue",
                    f"{self.queue!r} conflicts with the queue in server_url ({stream['queue']!r})",
                )
        if not isinstance(self.queue, str) or QUEUE_NAME.match(self.queue) is None:
            raise ConfigError("queue", "must match [A-Za-z0-9_-]+")
        if self.queue in RESERVED_QUEUES:
            raise ConfigError("queue", f"{self.queue!r} is reserved by the HTTP routes (LP-10)")
        if (
            isinstance(self.concurrency, bool)
            or not isinstance(self.concurrency, int)
            or not 1 <= self.concurrency <= MAX_CONCURRENCY
        ):
            raise ConfigError("concurrency", f"must be a whole number from 1 to {MAX_CONCURRENCY}")
        for name in ("deployment_name", "build_id", "worker_id"):
            _identifier(name, getattr(self, name))
        if self.artifact_digest is not None:
            _identifier("artifact_digest", self.artifact_digest)
        if self.api_key is not None and not self.api_key:
            raise ConfigError("api_key", "must not be empty (leave it out instead)")
        if self.transport not in ("auto", "websocket", "longpoll"):
            raise ConfigError("transport", "must be 'auto', 'websocket' or 'longpoll'")
        _positive("heartbeat_interval", self.heartbeat_interval)
        _positive("shutdown_timeout", self.shutdown_timeout, zero=True)
        _positive("poll_timeout", self.poll_timeout, zero=True)
        if self.poll_timeout > 60:
            raise ConfigError("poll_timeout", "must be at most 60 seconds (LP-1)")
        _positive("reconnect_base", self.reconnect_base)
        _positive("reconnect_cap", self.reconnect_cap)
        if self.reconnect_cap < self.reconnect_base:
            raise ConfigError("reconnect_cap", "must be at least reconnect_base")
        if isinstance(self.outbox_limit, bool) or not isinstance(self.outbox_limit, int):
            raise ConfigError("outbox_limit", "must be a whole number")
        if self.outbox_limit < 1:
            raise ConfigError("outbox_limit", "must be at least 1")
        if self.state_dir is not None and (
            not isinstance(self.state_dir, str) or not self.state_dir
        ):
            raise ConfigError("state_dir", "must be a directory path")

    @property
    def artifact(self) -> str:
        """The artifact digest the manifest declares."""
        return self.artifact_digest or f"build:{self.build_id}"

    @property
    def base_url(self) -> str:
        """The HTTP base URL, without a trailing slash (``ws`` becomes ``http``)."""
        url = urlsplit(self.server_url)
        scheme = {"ws": "http", "wss": "https"}.get(url.scheme, url.scheme)
        stream = STREAM_PATH.match(url.path)
        path = stream["prefix"] if stream is not None else url.path
        return f"{scheme}://{url.netloc}{path.rstrip('/')}"

    @property
    def stream_url(self) -> str:
        """The worker WebSocket for this queue (``/api/v1/tasks/{queue}/stream``, or as given)."""
        given = urlsplit(self.server_url)
        url = urlsplit(self.base_url)
        scheme = "wss" if url.scheme == "https" else "ws"
        if STREAM_PATH.match(given.path):
            return f"{scheme}://{given.netloc}{given.path}"
        return f"{scheme}://{url.netloc}{url.path}/api/v1/tasks/{self.queue}/stream"
