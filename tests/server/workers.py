"""Transport-neutral test workers: one API over a WebSocket, a worker session and queue polls.

Behaviour tests are written once against :class:`TestWorker` and run over
every transport that can express them (``TRANSPORTS``):

* ``ws`` — a :class:`~harness.RawWorker` socket (reference §3 to §11);
* ``session`` — an HTTP worker session (§16B): open, poll, results, heartbeats;
* ``queue`` — queue-scoped long-poll (§16A): no registration, a fresh
  ``longpoll-…`` worker id per claim.

Everything is raw protocol (no SDK), and every wait is bounded.  HTTP polls
ask for at most the remaining wait, so "no task within N seconds" is a
single poll that comes back 204, not a sleep.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import aiohttp

from harness import WAIT, RawWorker, Server, manifest, result_frame

__all__ = ["TRANSPORTS", "Outcome", "TestWorker", "Transport", "make_worker"]

Transport = Literal["ws", "session", "queue"]
TRANSPORTS: Final[tuple[Transport, ...]] = ("ws", "session", "queue")
TOKEN_HEADER: Final = "Weft-Worker-Session-Token"
_UNSET: Final = object()


@dataclass(slots=True)
class Outcome:
    """What the server said to a result: an acknowledgement, or a refusal."""

    disposition: str | None = None
    """``applied``, ``duplicate`` or ``dead-lettered`` when accepted."""
    rejected: bool = False
    detail: dict[str, Any] = field(default_factory=dict)
    """The ``taskResultAck`` / ``protocolError`` frame, or the HTTP body."""
    status: int = 200
    """The HTTP status (a WebSocket ack reads 200, a rejection 403)."""


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
        self.activities: list[str] = []
        self.session: dict[str, Any] | None = None
        self.raw: RawWorker | None = None
        self._frames: list[dict[str, Any]] = []

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

    async def _poll(self, wait_s: float) -> dict[str, Any] | None:
        timeout = str(max(0, int(wait_s * 1000)))
        if self.transport == "session":
            status, body = await self._call(
                "GET", self._session_path("/tasks"), params={"timeout": timeout}
            )
        else:
            params = [("timeout", timeout)] + [("activity", a) for a in self.activities]
            status, body = await self._call("GET", f"/api/v1/tasks/{self.queue}", params=params)
        assert status in (200, 204), (status, body)
        return body if status == 200 else None

    def _result_path(self) -> str:
        if self.transport == "session":
            return self._session_path("/results")
        return f"/api/v1/tasks/{self.queue}/result"

    def _heartbeat_path(self) -> str:
        if self.transport == "session":
            return self._session_path("/heartbeat")
        return f"/api/v1/tasks/{self.queue}/heartbeat"

    # -- WebSocket frames ------------------------------------------------------------

    async def _frame(self, kinds: tuple[str, ...], timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        """The next frame of one of ``kinds``; other frames wait in order for later calls."""
        assert self.raw is not None
        for index, frame in enumerate(self._frames):
            if frame["type"] in kinds:
                return self._frames.pop(index)
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.raw.recv(timeout)
                if frame["type"] in kinds:
                    return frame
                self._frames.append(frame)

    # -- the worker protocol ---------------------------------------------------------

    async def task(self, timeout: float = WAIT) -> dict[str, Any]:  # noqa: ASYNC109
        """The next task handed to this worker (a ``task`` frame or a claim body)."""
        if self.transport == "ws":
            return await self._frame(("task",), timeout)
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            claim = await self._poll(remaining)
            if claim is not None:
                return claim
        raise TimeoutError(f"no task within {timeout} s")

    async def no_task(self, within: float = 0.3) -> None:
        """Assert that no task is handed over within ``within`` seconds."""
        if self.transport == "ws":
            try:
                frame = await self._frame(("task",), within)
            except TimeoutError:
                return
            raise AssertionError(f"unexpected task {frame}")
        claim = await self._poll(within)
        assert claim is None, f"unexpected task {claim}"

    async def result(self, task: dict[str, Any], value: Any = None, **fields: Any) -> Outcome:
        """Report ``task`` (completed with ``value`` unless ``fields`` say otherwise)."""
        frame = result_frame(task, value=value, **fields)
        if self.transport == "ws":
            assert self.raw is not None
            await self.raw.send(frame)
            reply = await self._frame(("taskResultAck", "protocolError"), WAIT)
            if reply["type"] == "taskResultAck":
                return Outcome(disposition=reply["disposition"], detail=reply)
            return Outcome(rejected=True, detail=reply, status=403)
        body = {key: value for key, value in frame.items() if key != "type"}
        body.setdefault("workerId", task.get("workerId"))
        if body["workerId"] is None:
            del body["workerId"]
        status, reply = await self._call("POST", self._result_path(), body)
        if status == 200:
            return Outcome(disposition=reply["disposition"], detail=reply)
        return Outcome(rejected=True, detail=reply, status=status)

    async def heartbeat(self, task: dict[str, Any], details: Any = _UNSET) -> dict[str, Any] | None:
        """An activity heartbeat for ``task``: ``None`` over a WebSocket (no reply), the HTTP
        body otherwise (``{"ok": true, "cancelled": …}``)."""
        body: dict[str, Any] = {
            "operationId": task["operationId"],
            "attemptToken": task["attemptToken"],
        }
        if details is not _UNSET:
            body["details"] = details
        if self.transport == "ws":
            assert self.raw is not None
            await self.raw.send({"type": "activityHeartbeat", **body})
            return None
        if self.transport == "queue":
            body["workerId"] = task["workerId"]
        status, reply = await self._call("POST", self._heartbeat_path(), body)
        assert status == 200, (status, reply)
        assert isinstance(reply, dict)
        return reply

    async def ping(self) -> None:
        """A session heartbeat (liveness only); queue-scoped polls have none."""
        if self.transport == "ws":
            assert self.raw is not None
            await self.raw.send({"type": "heartbeat"})
        elif self.transport == "session":
            status, reply = await self._call("POST", self._session_path("/heartbeat"), {})
            assert (status, reply) == (200, {"ok": True}), (status, reply)

    async def cancellation(self, task: dict[str, Any], timeout: float = WAIT) -> str:  # noqa: ASYNC109
        """The cancel reason for ``task``, once cancellation has been recorded: the ``cancel``
        frame over a WebSocket, the heartbeat answer over HTTP (LP-9)."""
        if self.transport == "ws":
            frame = await self._frame(("cancel",), timeout)
            assert frame["operationId"] == task["operationId"], frame
            assert frame["attemptToken"] == task["attemptToken"], frame
            return str(frame["reason"])
        reply = await self.heartbeat(task)
        assert reply is not None
        assert reply.get("cancelled") is True, reply
        return str(reply["reason"])


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
