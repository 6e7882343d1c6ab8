"""Worker socket liveness: ping a silent socket, drop it if no pong comes back.

A worker whose host vanished without a FIN (power loss, a partition, a NAT
that forgot the flow) leaves a socket that looks open until TCP gives up,
which can take many minutes; meanwhile its attempts wait out their leases
and new ones may be offered to it.  Healthy workers send a session
``heartbeat`` every 10 s, and any frame received counts as life, so they are
never pinged; a socket silent for ``interval_s`` gets a WebSocket ping, and
one that has received nothing half an interval after the ping is aborted
(its read loop ends, and its attempts come back as for any lost worker).

One timer serves every socket: :meth:`Liveness.run` sweeps the set four
times an interval, and a frame costs the connection one clock read.  (aiohttp's
own ``heartbeat`` option keeps a timer per socket and re-arms it on every
frame, which costs more than the heartbeat handling itself at 10,000 workers.)
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

import structlog

__all__ = ["Liveness", "Pingable"]

log = structlog.get_logger("treadle.ws")
SWEEPS_PER_INTERVAL = 4


class Pingable(Protocol):
    """What :class:`Liveness` needs of a socket."""

    peer: str | None
    last_seen: float
    """``time.monotonic()`` of the last frame received (a pong included)."""
    pinged_at: float | None
    """When an unanswered ping was sent; ``None`` once anything is received."""

    def ping(self) -> None:
        """Send a ping frame (in the background)."""
        ...

    def abort(self) -> None:
        """Drop the connection at once."""
        ...


class Liveness:
    """The sockets to watch and the sweep that pings and drops them."""

    def __init__(self, interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError("the ping interval must be positive")
        self.interval_s = interval_s
        self.pong_timeout_s = interval_s / 2
        self._sockets: set[Pingable] = set()

    def __len__(self) -> int:
        return len(self._sockets)

    def add(self, socket: Pingable) -> None:
        self._sockets.add(socket)

    def discard(self, socket: Pingable) -> None:
        self._sockets.discard(socket)

    def sweep(self, now: float) -> tuple[int, int]:
        """Ping the sockets silent for an interval, drop those a ping did not wake;
        returns (pinged, dropped)."""
        pinged = dropped = 0
        for socket in list(self._sockets):
            if socket.pinged_at is not None:
                if now - socket.pinged_at >= self.pong_timeout_s:
                    log.warning(
                        "worker socket silent and no pong; dropping it",
                        peer=socket.peer,
                        silent_ms=round((now - socket.last_seen) * 1000),
                    )
                    self._sockets.discard(socket)
                    socket.abort()
                    dropped += 1
            elif now - socket.last_seen >= self.interval_s:
                socket.pinged_at = now
                socket.ping()
                pinged += 1
        return pinged, dropped

    async def run(self) -> None:
        """Sweep until cancelled."""
        while True:
            await asyncio.sleep(self.interval_s / SWEEPS_PER_INTERVAL)
            self.sweep(time.monotonic())
