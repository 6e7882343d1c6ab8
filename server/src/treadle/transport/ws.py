"""The WebSocket worker stream: ``/api/v1/tasks/{queue}/stream`` (and ``/v1/...``).

A thin adapter.  It upgrades (the route checked Origin and auth before),
reads frames, parses each with ``treadle_protocol`` in Weft's order, and
hands parsed messages to the :class:`~treadle.gateway.WorkerGateway`.
Fatal parse errors send the error frame and close with its code (1002, or
1008 after ``registerError``); the close reason is the error code (CLOSE-3).
Frames over the 4 MiB cap are refused by aiohttp before parsing, which closes
with 1009 (FRAME-3).

Registration runs as its own task so that a frame sent before
``registerAck`` is answered with ``registration_required`` (LIFE-1), as
Weft's server does.  Results and activity heartbeats also run as tasks, so a
busy worker's results reach the store's group commit together.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Mapping
from typing import Any, Final

import structlog
from aiohttp import WSMsgType, web

from treadle_protocol import FrameRejection, parse_worker_frame
from treadle_protocol.jsonjs import dumps

from ..gateway import WorkerGateway
from .liveness import Liveness

__all__ = ["WebSocketConnection", "serve_worker_stream"]

log = structlog.get_logger("treadle.ws")
CLOSE_TIMEOUT_S: Final = 0.01
"""Force-terminate this long after sending a close frame (CLOSE-3: about 10 ms)."""
CLOSE_SEND_TIMEOUT_S: Final = 1.0
"""A close frame the peer has not taken within this long is given up: the socket is aborted."""


class WebSocketConnection:
    """:class:`~treadle.registry.Connection` over an aiohttp ``WebSocketResponse``.

    Every send is bounded by ``send_timeout_s``: a peer that stops reading (or
    vanished without a FIN) fills the socket buffers and would otherwise hold
    the sender — a claim, the shutdown — forever.  Past the bound the socket
    is aborted, so the read loop ends and the worker's attempts come back.
    """

    def __init__(
        self,
        ws: web.WebSocketResponse,
        peer: str | None,
        *,
        transport: asyncio.Transport | None = None,
        send_timeout_s: float = 30.0,
    ) -> None:
        self._ws = ws
        self.peer = peer
        self._transport = transport
        self._send_timeout_s = send_timeout_s
        self._aborted = False
        self._closed = asyncio.Event()
        self.last_seen = time.monotonic()
        self.pinged_at: float | None = None
        self._pings: set[asyncio.Task[None]] = set()

    @property
    def closed(self) -> bool:
        return self._aborted or self._ws.closed or self._closed.is_set()

    @property
    def demand(self) -> None:
        return None  # a push transport: the worker's concurrency is the only bound

    async def send(self, message: Mapping[str, Any]) -> bool:
        if self.closed:
            return False
        try:
            async with asyncio.timeout(self._send_timeout_s):
                await self._ws.send_str(dumps(message).decode("utf-8"))
        except TimeoutError:
            log.warning(
                "worker socket takes no frames; dropping it",
                peer=self.peer,
                send_timeout_ms=round(self._send_timeout_s * 1000),
            )
            self.abort()
            return False
        except (ConnectionError, RuntimeError):
            # a peer that went away is the close path's business, not the sender's
            return False
        return True

    async def close(self, code: int, reason: str) -> None:
        """Send a close frame; abort instead if the peer does not take it in time."""
        if self._aborted:
            return
        try:
            async with asyncio.timeout(min(self._send_timeout_s, CLOSE_SEND_TIMEOUT_S)):
                await self._ws.close(code=code, message=reason.encode("utf-8"))
        except TimeoutError:
            self.abort()

    def received(self) -> None:
        """A frame arrived: the peer is alive (see :mod:`.liveness`)."""
        self.last_seen = time.monotonic()
        self.pinged_at = None

    def ping(self) -> None:
        task = asyncio.create_task(self._ping())
        self._pings.add(task)
        task.add_done_callback(self._pings.discard)

    async def _ping(self) -> None:
        try:
            async with asyncio.timeout(self._send_timeout_s):
                await self._ws.ping()
        except TimeoutError:
            self.abort()
        except (ConnectionError, RuntimeError):
            pass  # closing already

    def abort(self) -> None:
        """Drop the connection at once (no close frame): its read loop ends."""
        self._aborted = True
        if self._transport is not None:
            self._transport.abort()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def mark_closed(self) -> None:
        self._closed.set()


async def _logged(coro: Coroutine[Any, Any, None]) -> None:
    """Run one message's handling; a failure is logged, never fatal to the socket or process."""
    try:
        await coro
    except Exception:
        log.exception("worker message handling failed")


class _Stream:
    """Per-socket state: is it registered, and what is still running."""

    def __init__(self, gateway: WorkerGateway, connection: WebSocketConnection, queue: str) -> None:
        self.gateway = gateway
        self.connection = connection
        self.queue = queue
        self.registered = False
        self.registration: asyncio.Task[None] | None = None
        self.work: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(_logged(coro))
        self.work.add(task)
        task.add_done_callback(self.work.discard)

    async def register(self, message: Any, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        session = await self.gateway.register(self.connection, message, self.queue)
        if session is not None:
            self.registered = True

    async def handle(self, data: str) -> bool:
        """Handle one frame; ``False`` when the socket must close."""
        parsed = parse_worker_frame(data, registered=self.registered)
        if isinstance(parsed, FrameRejection):
            log.info(
                "frame refused", code=parsed.code, reason=parsed.message, peer=self.connection.peer
            )
            await self.connection.send(parsed.to_message())
            await self.connection.close(parsed.close_code, parsed.code)
            return False
        kind = parsed["type"]
        if kind == "register":
            self.registration = asyncio.create_task(
                _logged(self.register(parsed, self.registration))
            )
        elif kind == "heartbeat":
            self.gateway.heartbeat(self.connection)
        elif kind == "activityHeartbeat":
            self.spawn(self.gateway.activity_heartbeat(self.connection, dict(parsed)))
        else:
            self.spawn(self.gateway.task_result(self.connection, dict(parsed)))
        return True


async def serve_worker_stream(
    request: web.Request,
    gateway: WorkerGateway,
    *,
    max_frame_bytes: int,
    send_timeout_s: float = 30.0,
    liveness: Liveness | None = None,
) -> web.StreamResponse:
    """Run one worker socket to its end; ``liveness`` pings it when it falls silent.

    Pings and pongs are handled here rather than by aiohttp (``autoping`` off),
    so that a pong counts as a frame received.
    """
    queue = request.match_info["queue"]
    ws = web.WebSocketResponse(
        # aiohttp refuses a payload *equal* to max_msg_size; the cap itself is allowed (FRAME-3)
        max_msg_size=max_frame_bytes + 1,
        timeout=CLOSE_TIMEOUT_S,
        compress=False,
        autoping=False,
    )
    await ws.prepare(request)
    connection = WebSocketConnection(
        ws, request.remote, transport=request.transport, send_timeout_s=send_timeout_s
    )
    if not gateway.opened(connection):  # the stop has closed every socket already
        await connection.close(1001, "server shutting down")
        return ws
    stream = _Stream(gateway, connection, queue)
    if liveness is not None:
        liveness.add(connection)
    try:
        async for message in ws:
            connection.received()
            if message.type == WSMsgType.TEXT:
                data = message.data
            elif message.type == WSMsgType.BINARY:
                data = message.data.decode("utf-8", errors="replace")  # FRAME-2
            elif message.type == WSMsgType.PING:
                await ws.pong(message.data)
                continue
            elif message.type == WSMsgType.PONG:
                continue
            else:
                break
            if not await stream.handle(data):
                break
    finally:
        if liveness is not None:
            liveness.discard(connection)
        if stream.registration is not None:
            await asyncio.gather(stream.registration, return_exceptions=True)
        if stream.work:
            await asyncio.gather(*list(stream.work), return_exceptions=True)
        connection.mark_closed()
        gateway.disconnected(connection)
    return ws
