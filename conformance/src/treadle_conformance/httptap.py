"""An HTTP tap between a long-poll worker under test and the orchestrator.

Over ``--transport longpoll`` the ``full`` profile points ``WEFT_WORKER_URL``
at this reverse proxy, so every call the worker derives from it (worker
sessions, §12.2, and the queue-scoped endpoints, §12.1) goes through here.
It forwards each request unchanged — method, raw path and query, headers
(``Authorization``, ``Weft-Worker-Session-Token``, …) and body — and records
it as an :class:`Exchange`: the body the worker sent (for the wire-schema
check) and the status and parsed JSON it got back.

The checks use it to do to a long-poll worker what a network or a server
would do, as :class:`~treadle_conformance.tap.Tap` does over WebSocket:

* lose an answer (:attr:`HttpTap.lose_answer`): the request reaches the
  server, which applies it, and the worker gets a dropped connection instead
  of the answer — a lost ``taskResultAck``;
* hand the worker a claim the orchestrator would never make
  (:meth:`HttpTap.inject_claim`) as the answer to a session poll, and answer
  that fabricated operation's results and heartbeats itself, with the bodies
  the server gives a live attempt (the server never sees them);
* say that a session is gone (:meth:`HttpTap.end_session`): every call on it,
  parked polls included, is answered ``409 stale_session`` (SESS-5) while the
  server keeps the session and its attempts — what a worker sees when the
  server forgot its session (a restart, RESUME-6) while the ledger still
  holds its attempts under their tokens.

The tap has no WebSocket: an upgrade request is forwarded as a plain request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

__all__ = ["STALE_SESSION", "Exchange", "HttpTap"]

STALE_SESSION: Final = (409, {"error": "Stale worker session", "code": "stale_session"})
"""SESS-5: what the orchestrator answers a call on a session that was replaced or closed."""

_BAD_GATEWAY: Final = (502, {"error": "Bad Gateway"})
_HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
_AUTO_HEADERS: Final = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
_SESSION_CALL: Final = re.compile(
    r"/api/v1/worker-sessions/(?P<session>[^/]+)(?P<call>/tasks|/results|/heartbeat)?\Z"
)
_QUEUE_CALL: Final = re.compile(r"/api/v1/tasks/(?P<queue>[^/]+)/(?P<call>result|heartbeat)\Z")


@dataclass(eq=False)
class Exchange:
    """One request the worker made, and what it got back."""

    method: str
    path: str
    """The decoded path, without the query."""
    query: str
    body: bytes
    status: int | None = None
    """The status the worker got (``None``: no answer yet, or the answer was lost)."""
    answer: Any = None
    """The parsed JSON answer (``None`` when there was none, or it was not JSON)."""
    by_tap: bool = False
    """Answered by the tap; the orchestrator never saw the request."""
    lost: bool = False
    """The orchestrator answered, and the worker got a dropped connection instead."""
    server_status: int | None = None
    server_answer: Any = None

    def json(self) -> Any:
        """The request body parsed, or ``None`` when it is empty or not JSON."""
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def session(self) -> str | None:
        """The worker session the call is on, if it is a session call."""
        match = _SESSION_CALL.fullmatch(self.path)
        return None if match is None else match["session"]

    @property
    def kind(self) -> str:
        """``open``, ``poll``, ``result``, ``heartbeat``, ``close``, ``queue-result``,
        ``queue-heartbeat``, ``queue-poll`` or ``other``."""
        match = _SESSION_CALL.fullmatch(self.path)
        if match is not None:
            call = match["call"]
            if call is None:
                return "close" if self.method == "DELETE" else "other"
            expected = {"/tasks": "GET", "/results": "POST", "/heartbeat": "POST"}[call]
            if self.method != expected:
                return "other"
            return {"/tasks": "poll", "/results": "result", "/heartbeat": "heartbeat"}[call]
        if self.path == "/api/v1/worker-sessions":
            return "open" if self.method == "POST" else "other"
        match = _QUEUE_CALL.fullmatch(self.path)
        if match is not None:
            return f"queue-{match['call']}" if self.method == "POST" else "other"
        if re.fullmatch(r"/api/v1/tasks/[^/]+", self.path) and self.method == "GET":
            return "queue-poll"
        return "other"

    def names(self, operation_id: str, attempt_token: str | None = None) -> bool:
        """Whether the request body names this operation (and attempt token)."""
        body = self.json()
        return (
            isinstance(body, dict)
            and body.get("operationId") == operation_id
            and (attempt_token is None or body.get("attemptToken") == attempt_token)
        )


@dataclass(eq=False)
class _Parked:
    """A session poll waiting on the server, which the tap may answer first."""

    session: str
    interrupt: asyncio.Future[tuple[int, Mapping[str, Any]]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class HttpTap:
    """Forward and record one worker's HTTP calls to ``upstream`` (``http://host:port``)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.exchanges: list[Exchange] = []
        self.lose_answer: Callable[[Exchange], bool] | None = None
        """Called once the server has answered; ``True`` drops the worker's connection instead."""
        self.sessions: list[str] = []
        """The sessions the orchestrator opened for the worker, oldest first."""
        self.ended: set[str] = set()
        self._injected: dict[str, dict[str, Any]] = {}
        self._answered: set[str] = set()
        self._claims: deque[dict[str, Any]] = deque()
        self._parked: list[_Parked] = []
        self._http: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url_base(self) -> str:
        """The tap as a ``ws://`` base, for ``WEFT_WORKER_URL`` (the worker swaps in ``http``)."""
        return f"ws://127.0.0.1:{self.port}"

    async def __aenter__(self) -> HttpTap:
        self._http = aiohttp.ClientSession(
            auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None)
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    # -- what the checks read and do ------------------------------------------------------

    def of_kind(self, *kinds: str) -> list[Exchange]:
        return [exchange for exchange in self.exchanges if exchange.kind in kinds]

    def results_for(self, operation_id: str, attempt_token: str | None = None) -> list[Exchange]:
        """The result posts (session or queue-scoped) that name this operation."""
        return [
            exchange
            for exchange in self.of_kind("result", "queue-result")
            if exchange.names(operation_id, attempt_token)
        ]

    def inject_claim(self, claim: Mapping[str, Any]) -> None:
        """Answer a session poll with ``claim`` (its ``workerId`` is set to the poll's session).

        A parked poll is answered at once (its request to the server is withdrawn,
        so use this only while no task is queued); without one, the next poll is.
        The fabricated operation's results and heartbeats are answered by the tap.
        """
        self._injected[str(claim["operationId"])] = dict(claim)
        while self._parked:
            parked = self._parked.pop(0)
            if parked.session not in self.ended and not parked.interrupt.done():
                parked.interrupt.set_result((200, {**claim, "workerId": parked.session}))
                return
        self._claims.append(dict(claim))

    def end_session(self, session: str | None = None) -> str | None:
        """Answer every call on ``session`` (the newest by default) ``409 stale_session`` from
        now on, parked polls first; the orchestrator keeps the session.  Which one was ended."""
        if session is None:
            open_ = [s for s in self.sessions if s not in self.ended]
            if not open_:
                return None
            session = open_[-1]
        self.ended.add(session)
        for parked in [p for p in self._parked if p.session == session]:
            self._parked.remove(parked)
            if not parked.interrupt.done():
                parked.interrupt.set_result(STALE_SESSION)
        return session

    # -- the proxy ------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        exchange = Exchange(request.method, request.path, request.query_string, body)
        self.exchanges.append(exchange)
        if exchange.session in self.ended:
            return self._answer(exchange, *STALE_SESSION)
        fabricated = self._fabricated(exchange)
        if fabricated is not None:
            return self._answer(exchange, *fabricated)
        if exchange.kind == "poll":
            return await self._poll(request, exchange)
        try:
            status, headers, raw = await self._forward(request, body)
        except (aiohttp.ClientError, OSError):
            return self._answer(exchange, *_BAD_GATEWAY)
        return self._relay(request, exchange, status, headers, raw)

    async def _poll(self, request: web.Request, exchange: Exchange) -> web.StreamResponse:
        session = exchange.session
        assert session is not None
        if self._claims:
            return self._answer(exchange, 200, {**self._claims.popleft(), "workerId": session})
        parked = _Parked(session)
        self._parked.append(parked)
        upstream = asyncio.ensure_future(self._forward(request, exchange.body))
        waiters: set[asyncio.Future[Any]] = {upstream, parked.interrupt}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            with contextlib.suppress(ValueError):
                self._parked.remove(parked)
            if not upstream.done():
                upstream.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(upstream, return_exceptions=True)
        if not upstream.cancelled() and upstream.exception() is None:
            if parked.interrupt.done():
                self._give_back(parked.interrupt.result())
            return self._relay(request, exchange, *upstream.result())
        if not parked.interrupt.done():  # the server could not be reached
            return self._answer(exchange, *_BAD_GATEWAY)
        return self._answer(exchange, *parked.interrupt.result())

    def _give_back(self, interrupt: tuple[int, Mapping[str, Any]]) -> None:
        """The server answered the poll before the tap could: keep an injected claim."""
        status, body = interrupt
        if status == 200:
            self._claims.appendleft({k: v for k, v in body.items() if k != "workerId"})

    async def _forward(
        self, request: web.Request, body: bytes
    ) -> tuple[int, CIMultiDict[str], bytes]:
        assert self._http is not None
        headers = CIMultiDict(
            (name, value)
            for name, value in request.headers.items()
            if name.lower() not in _HOP_BY_HOP
        )
        skip = [name for name in _AUTO_HEADERS if name not in request.headers]
        async with self._http.request(
            request.method,
            URL(self.upstream + request.raw_path, encoded=True),
            headers=headers,
            data=body or None,
            allow_redirects=False,
            skip_auto_headers=skip,
        ) as response:
            raw = await response.read()
            kept = CIMultiDict(
                (name, value)
                for name, value in response.headers.items()
                if name.lower() not in _HOP_BY_HOP
            )
            return response.status, kept, raw

    def _relay(
        self,
        request: web.Request,
        exchange: Exchange,
        status: int,
        headers: CIMultiDict[str],
        raw: bytes,
    ) -> web.StreamResponse:
        answer: Any = None
        with contextlib.suppress(ValueError):
            answer = json.loads(raw) if raw.strip() else None
        exchange.server_status, exchange.server_answer = status, answer
        if exchange.kind == "open" and status == 200 and isinstance(answer, dict):
            session = answer.get("sessionId")
            if isinstance(session, str):
                self.sessions.append(session)
        if self.lose_answer is not None and self.lose_answer(exchange):
            exchange.lost = True
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=status)
        exchange.status, exchange.answer = status, answer
        return web.Response(status=status, body=raw, headers=headers)

    def _answer(self, exchange: Exchange, status: int, body: Mapping[str, Any]) -> web.Response:
        exchange.status, exchange.answer, exchange.by_tap = status, dict(body), True
        return web.json_response(dict(body), status=status)

    def _fabricated(self, exchange: Exchange) -> tuple[int, Mapping[str, Any]] | None:
        """The tap's own answer to a result or heartbeat for an injected operation."""
        body = exchange.json()
        if not isinstance(body, dict) or body.get("operationId") not in self._injected:
            return None
        operation_id = str(body["operationId"])
        if exchange.kind in ("result", "queue-result"):
            disposition = "duplicate" if operation_id in self._answered else "applied"
            self._answered.add(operation_id)
            return 200, {"ok": True, "disposition": disposition}
        if exchange.kind in ("heartbeat", "queue-heartbeat"):
            if operation_id in self._answered:
                return 200, {"ok": True, "cancelled": False}
            vt = self._injected[operation_id].get("visibilityTimeout", 30_000)
            deadline = int(time.time() * 1000) + int(vt)
            return 200, {"ok": True, "cancelled": False, "leaseDeadline": deadline}
        return None
