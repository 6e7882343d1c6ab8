"""``PollChannel``: the :class:`~treadle.registry.Connection` of an HTTP long-poll worker.

A WebSocket worker can be sent a task at any moment; a long-poll worker can
only be answered while one of its polls is parked.  A channel therefore
holds the parked polls (each a future and a liveness check for its HTTP
request) and reports how many are waiting as its :attr:`demand`, which is
what makes the registry route to it (see ``WorkerSession.routable``).
Sending a ``task`` resolves the oldest live poll, synchronously, so the
demand drops in the same step the dispatcher uses the slot.  When no live
poll is left — the client gave up or went away while the lease was being
written — :meth:`send` returns ``False`` and the dispatcher undoes the claim.

A parked poll costs one future and one timer: no thread, no wake-ups while it
waits.  There is no push channel, so ``cancel`` frames are dropped here
(long-poll workers learn of cancellation from heartbeat answers), and
``shutdown`` answers every parked poll at once with "no task".
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["PollChannel"]

Alive = Callable[[], bool]


@dataclass(slots=True, eq=False)
class _Poll:
    future: asyncio.Future[Mapping[str, Any] | None]
    alive: Alive

    def ready(self) -> bool:
        return not self.future.done() and self.alive()


class PollChannel:
    """Parked polls of one long-poll worker (a worker session, or one queue-scoped poll)."""

    def __init__(self) -> None:
        self._polls: deque[_Poll] = deque()
        self._closed = asyncio.Event()
        self.stopping = False
        """``shutdown`` was sent: new polls are refused (the session is draining)."""

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def demand(self) -> int:
        """Parked polls that can still be answered (dead ones are let go here)."""
        if self._polls and not all(p.ready() for p in self._polls):
            live: deque[_Poll] = deque()
            for poll in self._polls:
                if poll.ready():
                    live.append(poll)
                else:
                    _let_go(poll)
            self._polls = live
        return len(self._polls)

    async def send(self, message: Mapping[str, Any]) -> bool:
        kind = message.get("type")
        if kind == "task":
            while self._polls:
                poll = self._polls.popleft()
                if poll.ready():
                    poll.future.set_result(message)
                    return True
                _let_go(poll)
            return False
        if kind == "shutdown":
            self.stopping = True
            self._release()
        return not self.closed

    async def close(self, code: int, reason: str) -> None:
        self.finish()

    def finish(self) -> None:
        """Close the channel: parked polls are answered "no task", later sends fail."""
        self._closed.set()
        self._release()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def _release(self) -> None:
        while self._polls:
            _let_go(self._polls.popleft())

    async def poll(self, timeout_s: float, alive: Alive) -> Mapping[str, Any] | None:
        """Park until a task is sent here (the ``task`` frame) or ``timeout_s`` passes (``None``).

        ``alive`` says whether the HTTP request can still be answered; a poll
        whose client went away is never handed a task.
        """
        if self.closed or self.stopping:
            return None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Mapping[str, Any] | None] = loop.create_future()
        entry = _Poll(future, alive)
        self._polls.append(entry)
        timer = loop.call_later(max(timeout_s, 0.0), _expire, future)
        try:
            return await future
        finally:
            timer.cancel()
            if entry in self._polls:
                self._polls.remove(entry)


def _let_go(poll: _Poll) -> None:
    """End a poll that will not get a task: its handler answers "no task" and returns."""
    if not poll.future.done():
        poll.future.set_result(None)


def _expire(future: asyncio.Future[Mapping[str, Any] | None]) -> None:
    if not future.done():
        future.set_result(None)
