"""What every ``full``-profile check is built from: its context and its shape.

A :class:`Context` is one check's orchestrator (a :class:`~.harness.Stage`),
the tap the worker reaches it through — a WebSocket
:class:`~.tap.Tap` or an HTTP :class:`~.httptap.HttpTap` — and the worker that
registered.  A :class:`TreadleCheck` has a body per transport where the two
differ (:class:`Form`), each with the rules it cites.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from treadle.ledger import TaskRecord

from .harness import HarnessError, Stage, Transport, wait_for
from .httptap import HttpTap
from .tap import Tap

__all__ = ["GRACE_MS", "CheckBody", "Context", "Form", "TreadleCheck"]

GRACE_MS: Final = 5000
"""The reconnect grace (the maximum, GRACE-1) and the session lease of every ``full`` check,
so a worker that comes back at once can prove its resume."""


@dataclass
class Context:
    """One check's orchestrator, tap and registered worker."""

    stage: Stage
    tap: Tap | HttpTap | None
    worker_id: str
    timeout_ms: int

    def ws_tap(self) -> Tap:
        assert isinstance(self.tap, Tap)
        return self.tap

    def http_tap(self) -> HttpTap:
        assert isinstance(self.tap, HttpTap)
        return self.tap

    async def record(self, operation_id: str) -> TaskRecord:
        record = await self.stage.record(operation_id)
        if record is None:
            raise HarnessError(f"{operation_id} is not in the ledger")
        return record

    async def wait_terminal(self, operation_id: str, timeout_ms: int | None = None) -> TaskRecord:
        async def ended() -> bool:
            record = await self.stage.record(operation_id)
            return record is not None and record.is_terminal

        await wait_for(ended, timeout_ms or self.timeout_ms, f"{operation_id} to end")
        return await self.record(operation_id)

    async def wait_leased(self, operation_id: str) -> TaskRecord:
        async def leased() -> bool:
            record = await self.stage.record(operation_id)
            return record is not None and record.state == "leased"

        await wait_for(leased, self.timeout_ms, f"{operation_id} to be leased")
        return await self.record(operation_id)


CheckBody = Callable[[Context], Awaitable[str]]
"""A check's body: returns the PASS message, raises :class:`HarnessError` to fail."""


@dataclass(frozen=True)
class Form:
    """How a check runs over one transport: the rules it tests, and its body."""

    rules: tuple[str, ...]
    body: CheckBody


@dataclass(frozen=True)
class TreadleCheck:
    """A named check: its WebSocket form, and its long-poll form where that differs."""

    name: str
    websocket: Form
    longpoll: Form | None = None

    def form(self, transport: Transport) -> Form:
        if transport == "longpoll" and self.longpoll is not None:
            return self.longpoll
        return self.websocket
