"""What the worker needs from a transport, and the outcomes a connection can have.

A transport's ``serve(host)`` connects, registers, and feeds everything the
server says into ``host`` until the connection ends.  While it is up it offers
a :class:`Link` through which the worker sends frames.  The ways a connection
can end, other than returning, are the exceptions below; they are internal
signals to the worker's reconnect loop, not errors a user sees.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp

from .config import WorkerConfig
from .session import Effect, WorkerSession

__all__ = [
    "NETWORK_ERRORS",
    "ConnectionLost",
    "Host",
    "Link",
    "Pulse",
    "RetryableRefusal",
    "UpgradeRefused",
    "auth_headers",
]

NETWORK_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError)
"""Failures of the network itself: retried with backoff (SDK-4, SDK-5)."""


class ConnectionLost(Exception):
    """The connection failed or ended on its own; reconnect after a backoff delay."""


class UpgradeRefused(Exception):
    """The WebSocket upgrade was answered with ``status`` instead of 101 (SDK-4)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the WebSocket upgrade was refused with HTTP {status}")
        self.status = status


class RetryableRefusal(Exception):
    """A registration refusal that passes with time (SDK-6); reconnect after a delay."""


class Link(Protocol):
    """One live connection, as the worker uses it."""

    def send(self, frame: Mapping[str, Any]) -> None:
        """Send a frame (or its HTTP equivalent) without waiting."""

    def close(self, reason: str) -> None:
        """End this connection; ``serve`` then returns."""


class Host(Protocol):
    """The worker, as a transport sees it."""

    config: WorkerConfig
    session: WorkerSession
    http: aiohttp.ClientSession
    changed: Pulse

    def attach(self, link: Link | None) -> None:
        """The link frames go through now (None: there is none)."""

    def apply(self, effects: list[Effect]) -> None:
        """Carry out what the session asked for."""

    def now(self) -> float:
        """The session clock (monotonic seconds)."""


class Pulse:
    """Wake everyone waiting each time something changed (an attempt ended, a result settled)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Return at the next :meth:`fire`, or after ``timeout`` seconds."""
        event = self._event
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)


def auth_headers(config: WorkerConfig) -> dict[str, str]:
    """``Authorization: Bearer <key>`` when an API key is set (SDK-3)."""
    return {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
