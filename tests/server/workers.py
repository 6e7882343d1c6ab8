"""Transport-neutral test workers: one API over a WebSocket, a worker session and queue polls.

Behaviour tests are written once against :class:`TestWorker` and run over
every transport that can express them (``TRANSPORTS``):

* ``ws`` — a :class:`~harness.RawWorker` socket (reference §3 to §11);
* ``session`` — an HTTP worker session (§16B): open, poll, results, heartbeats;
* ``queue`` — queue-scoped long-poll (§16A): no registration, a fresh
  ``longpoll-…`` worker id per claim.

A worker speaks as itself: over a socket or a session its identity is the
connection (the ``workerId`` it puts in a frame or body is its own id); a
queue-scoped worker has no identity but its claims, so for a task it was
handed it sends that claim's ``workerId``, and for any other task its own
``worker_id`` (a name no claim has).  ``worker_id=`` on :meth:`TestWorker.result`
and :meth:`TestWorker.heartbeat` overrides that (``None`` leaves it out).

Everything is raw protocol (no SDK), and every wait is bounded.  HTTP polls
ask for at most the remaining wait, so "no task within N seconds" is a
single poll that comes back 204, not a sleep.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import aiohttp

from harness import WAIT, RawWorker, Server, manifest, result_frame

__all__ = [
    "HTTP_TRANSPORTS",
    "REGISTERED",
    "TRANSPORTS",
    "Outcome",
    "TestWorker",
    "Transport",
    "cancel",
    "detail",
    "drain",
    "expect_refused",
    "listed",
    "make_worker",
    "until",
]

Transport = Literal["ws", "session", "queue"]
TRANSPORTS: Final[tuple[Transport, ...]] = ("ws", "session", "queue")
REGISTERED: Final[tuple[Transport, ...]] = ("ws", "session")
"""Transports whose workers register: they have capacity, can be drained and are shut down."""
HTTP_TRANSPORTS: Final[tuple[Transport, ...]] = ("session", "queue")
TOKEN_HEADER: Final = "Weft-Worker-Session-Token"
_UNSET: Final = object()
_OWN: Final = object()

Frame = dict[str, Any]


@dataclass(slots=True)
class Outcome:
    """What the server said to a result: an acknowledgement, or a refusal."""

    disposition: str | None = None
    """``applied``, ``duplicate`` or ``dead-lettered`` when accepted."""
    rejected: bool = False
    detail: dict[str, Any] = field(default_factory=dict)
    """The ``taskResultAck`` / correlated ``protocolError`` frame, or the HTTP body."""
    status: int = 200
    """The HTTP status (a WebSocket ack reads 200, a rejection 403)."""
    notices: list[Frame] = field(default_factory=list)
    """Uncorrelated ``protocolError`` frames that came before the answer (WebSocket only)."""


class TestWorker:
    """One worker over ``transport``; see the module docstring."""

    __test__ = False  # not a pytest class

    def __init__(
        self,
        transport: Transport,
        http: aiohttp.ClientSession,
        server: Server,
        *,
        queue: str = "default",
        worker_id: str = "w1",
    ) -> None:
        self.transport: Transport = transport
        self.http = http
        self.server = server
        self.queue = queue
        self.worker_id = worker_id
        """The registered id (a session's is the server's ``sessionId``)."""
        self.activities: list[str] = []
        self.session: dict[str, Any] | None = None
        self.raw: RawWorker | None = None
        self._frames: list[Frame] = []
        self._claims: dict[tuple[str, str], str] = {}

    # -- start and stop ------------------------------------------------------------

    async def start(
        self,
        activities: dict[str, list[str]] | None = None,
        *,
        concurrency: int | None = None,
        **manifest_fields: Any,
    ) -> TestWorker:
        """Register (ws), open a session, or just remember what to poll for (queue)."""
        doc = manifest(activities, **manifest_fields)
        self.activities = [
            f"{workflow}.{name}"
            for workflow, contract in doc["workflows"].items()
            for name in contract["activities"]
        ]
        if self.transport == "ws":
            self.raw = RawWorker(self.http, self.server.ws_url(self.queue), self.worker_id)
            await self.raw.register(concurrency=concurrency, manifest_doc=doc)
        elif self.transport == "session":
            body: dict[str, Any] = {"manifest": doc, "queue": self.queue}
            if concurrency is not None:
                body["concurrency"] = concurrency
            status, opened = await self._call("POST", "/api/v1/worker-sessions", body)
            assert status == 200, (status, opened)
            self.session = opened
            self.worker_id = opened["sessionId"]
        return self

    async def stop(self) -> None:
        """Leave cleanly: close the socket, or close the session (``DELETE``)."""
        if self.raw is not None:
            await self.raw.close()
        elif self.session is not None:
            status, _ = await self._call("DELETE", self._session_path())
            assert status in (200, 404, 409, 410), status

    @property
    def connected(self) -> bool:
        """Over a WebSocket, whether the socket is still open (CLOSE-4); HTTP has none."""
        return self.raw is None or not self.raw.socket.closed

    async def ready(self, timeout: float = WAIT) -> None:  # noqa: ASYNC109
        """Return once the server could hand this worker a task now (:meth:`routable`):
        at once for a registered socket with a free slot; for HTTP, once a poll of this
        worker is parked at the server (start :meth:`task` or :meth:`no_task` in a task
        first)."""
        await until(self.routable, timeout)

    def routable(self) -> bool:
        """Whether the server's routing would consider this worker now (``routable()`` of
        its registry entry: connected, not draining, a free slot, a live parked poll)."""
        registry = self.server.orchestrator.registry
        if self.transport != "queue":
            entry = registry.get(self.worker_id)
            return entry is not None and entry.routable()
        wanted = frozenset(self.activities)
        return any(
            poller.activities == wanted and poller.queue == self.queue and poller.routable()
            for poller in registry.pollers()
        )

    # -- HTTP ------------------------------------------------------------------------

    def _session_path(self, suffix: str = "") -> str:
        assert self.session is not None, "start() first"
        return f"/api/v1/worker-sessions/{self.session['sessionId']}{suffix}"

    async def _call(
        self,
        method: str,
        path: str,
        body: Any = _UNSET,
        params: Any = None,
    ) -> tuple[int, Any]:
        headers = {}
        if self.session is not None:
            headers[TOKEN_HEADER] = self.session["sessionToken"]
        kwargs: dict[str, Any] = {"headers": headers, "params": params}
        if body is not _UNSET:
            kwargs["json"] = body
        async with self.http.request(method, self.server.url + path, **kwargs) as response:
            payload = await response.json() if response.status != 204 else None
            return response.status, payload

    async def _poll(self, wait_s: float) -> tuple[int, Any]:
        timeout = str(max(0, int(wait_s * 1000)))
        if self.transport == "session":
            status, body = await self._call(
                "GET", self._session_path("/tasks"), params={"timeout": timeout}
            )
        else:
            params = [("timeout", timeout)] + [("activity", a) for a in self.activities]
            status, body = await self._call("GET", f"/api/v1/tasks/{self.queue}", params=params)
        if status == 200:
            self._claims[(body["operationId"], body["attemptToken"])] = body["workerId"]
        return status, body

    def _result_path(self) -> str:
        if self.transport == "session":
            return self._session_path("/results")
        return f"/api/v1/tasks/{self.queue}/result"

    def _heartbeat_path(self) -> str:
        if self.transport == "session":
            return self._session_path("/heartbeat")
        return f"/api/v1/tasks/{self.queue}/heartbeat"

    def _identity(self, task: dict[str, Any]) -> str:
        """The ``workerId`` this worker reports ``task`` under (see the module docstring)."""
        if self.transport == "queue":
            claim = self._claims.get((task["operationId"], task["attemptToken"]))
            return claim or self.worker_id
        return self.worker_id

    # -- WebSocket frames ------------------------------------------------------------

    async def _next(self, wanted: Callable[[Frame], bool], timeout: float) -> Frame:  # noqa: ASYNC109
        """The next frame ``wanted`` accepts; other frames wait in order for later calls."""
        assert self.raw is not None
        for index, frame in enumerate(self._frames):
            if wanted(frame):
                return self._frames.pop(index)
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.raw.recv(timeout)
                if wanted(frame):
                    return frame
                self._frames.append(frame)

    async def _kind(self, kind: str, timeout: float) -> Frame:  # noqa: ASYNC109
        return await self._next(lambda frame: frame["type"] == kind, timeout)

    # -- the worker protocol ---------------------------------------------------------

    async def task(self, timeout: float = WAIT) -> dict[str, Any]:  # noqa: ASYNC109
        """The next task handed to this worker (a ``task`` frame or a claim body)."""
        if self.transport == "ws":
            return await self._kind("task", timeout)
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            status, claim = await self._poll(remaining)
            assert status in (200, 204), (status, claim)
            if status == 200:
                assert isinstance(claim, dict)
                return claim
        raise TimeoutError(f"no task within {timeout} s")

    async def no_task(self, within: float = 0.3) -> None:
        """Assert that no task is handed over within ``within`` seconds."""
        if self.transport == "ws":
            try:
                frame = await self._kind("task", within)
            except TimeoutError:
                return
            raise AssertionError(f"unexpected task {frame}")
        status, claim = await self._poll(within)
        assert status == 204, f"unexpected poll answer {status} {claim}"

    async def poll_refused(self, timeout: float = WAIT) -> tuple[int, dict[str, Any]]:  # noqa: ASYNC109
        """HTTP only: poll until the server refuses the poll (not 200, not 204); the
        status and body.  A poll answered "no task" first (a drain or a stop releases the
        parked polls) is polled again."""
        assert self.transport != "ws"
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            status, body = await self._poll(remaining)
            assert status != 200, f"unexpected task {body}"
            if status != 204:
                return status, body
        raise TimeoutError(f"no refused poll within {timeout} s")

    async def result(
        self, task: dict[str, Any], value: Any = None, *, worker_id: Any = _OWN, **fields: Any
    ) -> Outcome:
        """Report ``task`` (completed with ``value`` unless ``fields`` say otherwise)."""
        frame = result_frame(task, value=value, **fields)
        if self.transport == "ws":
            return await self._ws_result(frame)
        body = {key: field_ for key, field_ in frame.items() if key != "type"}
        claimed = self._identity(task) if worker_id is _OWN else worker_id
        if claimed is not None:
            body["workerId"] = claimed
        status, reply = await self._call("POST", self._result_path(), body)
        if status == 200:
            return Outcome(disposition=reply["disposition"], detail=reply)
        return Outcome(rejected=True, detail=reply, status=status)

    async def _ws_result(self, frame: Frame) -> Outcome:
        assert self.raw is not None
        op, token = frame["operationId"], frame["attemptToken"]
        await self.raw.send(frame)

        def answer(reply: Frame) -> bool:
            if reply["type"] not in ("taskResultAck", "protocolError"):
                return False
            correlated = reply.get("operationId") == op and reply.get("attemptToken") == token
            return correlated or "operationId" not in reply

        notices = []
        while True:
            reply = await self._next(answer, WAIT)
            if "operationId" not in reply:
                notices.append(reply)
            elif reply["type"] == "taskResultAck":
                return Outcome(disposition=reply["disposition"], detail=reply, notices=notices)
            else:
                return Outcome(rejected=True, detail=reply, status=403, notices=notices)

    async def heartbeat(
        self,
        task: dict[str, Any],
        details: Any = _UNSET,
        *,
        worker_id: Any = _OWN,
        expect: int | None = 200,
    ) -> dict[str, Any] | None:
        """An activity heartbeat for ``task``: ``None`` over a WebSocket (no reply; a
        refusal is a :meth:`notice`), else the HTTP body, whose status must be ``expect``
        (``None``: any)."""
        claimed = self._identity(task) if worker_id is _OWN else worker_id
        body: dict[str, Any] = {} if claimed is None else {"workerId": claimed}
        body["operationId"] = task["operationId"]
        body["attemptToken"] = task["attemptToken"]
        if details is not _UNSET:
            body["details"] = details
        if self.transport == "ws":
            assert self.raw is not None
            await self.raw.send({"type": "activityHeartbeat", **body})
            return None
        status, reply = await self._call("POST", self._heartbeat_path(), body)
        assert expect is None or status == expect, (status, reply)
        assert isinstance(reply, dict)
        return reply

    async def notice(self, timeout: float = WAIT) -> Frame:  # noqa: ASYNC109
        """WebSocket only: the next uncorrelated ``protocolError`` (no operationId)."""
        return await self._next(
            lambda frame: frame["type"] == "protocolError" and "operationId" not in frame, timeout
        )

    async def ping(self) -> None:
        """A session heartbeat (liveness only); queue-scoped polls have none."""
        if self.transport == "ws":
            assert self.raw is not None
            await self.raw.send({"type": "heartbeat", "workerId": self.worker_id})
        elif self.transport == "session":
            status, reply = await self._call("POST", self._session_path("/heartbeat"), {})
            assert (status, reply) == (200, {"ok": True}), (status, reply)

    async def cancellation(self, task: dict[str, Any], timeout: float = WAIT) -> str:  # noqa: ASYNC109
        """The cancel reason for ``task``, once cancellation has been recorded: the ``cancel``
        frame over a WebSocket (exactly its four keys), the heartbeat answer over HTTP (LP-9)."""
        if self.transport == "ws":
            frame = await self._kind("cancel", timeout)
            reason = frame.get("reason")
            assert isinstance(reason, str), frame
            assert frame == {
                "type": "cancel",
                "operationId": task["operationId"],
                "attemptToken": task["attemptToken"],
                "reason": reason,
            }
            return reason
        reply = await self.heartbeat(task)
        assert reply is not None
        assert set(reply) == {"ok", "cancelled", "reason"}, reply
        assert reply["ok"] is True, reply
        assert reply["cancelled"] is True, reply
        return str(reply["reason"])

    async def shutdown_notice(self, timeout: float = WAIT) -> None:  # noqa: ASYNC109
        """The server is stopping: the ``shutdown`` frame over a WebSocket; for a session,
        its polls are refused with 409 ``session_draining`` (its parked poll answered first)."""
        if self.transport == "ws":
            assert await self._kind("shutdown", timeout) == {"type": "shutdown"}
            return
        assert self.transport == "session", "queue-scoped polls are not told to stop"
        assert await self.poll_refused(timeout) == (
            409,
            {"error": "Worker session is draining", "code": "session_draining"},
        )


def make_worker(
    transport: Transport,
    http: aiohttp.ClientSession,
    server: Server,
    *,
    queue: str = "default",
    worker_id: str = "w1",
) -> TestWorker:
    """A worker over ``transport`` (call :meth:`TestWorker.start` next)."""
    return TestWorker(transport, http, server, queue=queue, worker_id=worker_id)


async def until(condition: Callable[[], bool], timeout: float = WAIT) -> None:  # noqa: ASYNC109
    """Wait (bounded) until ``condition()`` holds, checking it every loop iteration.

    For server state no event announces (a poll parked, a poll seen to be dead); it
    never sleeps for a duration, it only yields so the server, on this loop, runs.
    """
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - no event exists for this state
            await asyncio.sleep(0)


# -- assertions and operator calls shared by the transport tests ------------------------


def expect_refused(
    worker: TestWorker, outcome: Outcome, op: str, token: str, *, ws: str, http: str
) -> None:
    """The result was refused (RESULT-3 / LP-6): over a WebSocket the correlated
    ``protocolError`` whose reason text is ``ws``; over HTTP the 403 body with reason ``http``."""
    if worker.transport == "ws":
        expected: tuple[int, dict[str, Any]] = (
            403,
            {
                "type": "protocolError",
                "code": "invalid_message",
                "message": f'taskResult for operation "{op}" rejected \u2014 {ws}',
                "operationId": op,
                "attemptToken": token,
            },
        )
    else:
        expected = (
            403,
            {"error": "Forbidden", "operationId": op, "attemptToken": token, "reason": http},
        )
    actual = (outcome.status, outcome.detail)
    assert actual == expected, f"refused as {actual}, expected {expected}"
    assert outcome.rejected


async def _json(
    http: aiohttp.ClientSession, method: str, url: str, body: Any = _UNSET
) -> tuple[int, Any]:
    kwargs: dict[str, Any] = {} if body is _UNSET else {"json": body}
    async with http.request(method, url, **kwargs) as response:
        return response.status, await response.json()


async def cancel(
    http: aiohttp.ClientSession, server: Server, op: str, reason: str | None = None
) -> dict[str, Any]:
    """``POST …/cancel`` (202 ``cancelResponse``)."""
    body = {} if reason is None else {"reason": reason}
    url = f"{server.url}/api/v1/tasks/detail/{op}/cancel"
    status, payload = await _json(http, "POST", url, body)
    assert status == 202, payload
    assert isinstance(payload, dict)
    return payload


async def detail(http: aiohttp.ClientSession, server: Server, op: str) -> dict[str, Any]:
    """``GET /api/v1/tasks/detail/{op}``."""
    status, payload = await _json(http, "GET", f"{server.url}/api/v1/tasks/detail/{op}")
    assert status == 200, payload
    assert isinstance(payload, dict)
    return payload


async def drain(
    http: aiohttp.ClientSession, server: Server, worker_id: str, *, draining: bool = True
) -> dict[str, Any]:
    """``POST`` (or, to undo, ``DELETE``) ``/api/v1/workers/{id}/drain``."""
    url = f"{server.url}/api/v1/workers/{worker_id}/drain"
    status, payload = await _json(http, "POST" if draining else "DELETE", url)
    assert status == 200, payload
    assert isinstance(payload, dict)
    return payload


async def listed(http: aiohttp.ClientSession, server: Server, worker_id: str) -> dict[str, Any]:
    """The worker's entry in ``GET /api/v1/workers``."""
    status, payload = await _json(http, "GET", f"{server.url}/api/v1/workers")
    assert status == 200, payload
    found = [w for w in payload["workers"] if w["workerId"] == worker_id]
    assert len(found) == 1, payload
    entry = found[0]
    assert isinstance(entry, dict)
    return entry
