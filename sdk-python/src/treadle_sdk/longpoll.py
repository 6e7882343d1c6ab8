"""The worker-session transport: the protocol over plain HTTP (§12.2, SDK-12).

Used when ``transport="longpoll"``, or with ``"auto"`` once the WebSocket
upgrade has been refused (SDK-4).  The same :class:`~treadle_sdk.session.WorkerSession`
runs the protocol; this adapter only translates:

=============================================  ==============================================
session core                                   HTTP
=============================================  ==============================================
registration                                   ``POST /api/v1/worker-sessions`` (open)
``task``                                       a claim from ``GET …/tasks?timeout=`` (parked polls)
``heartbeat``                                  ``POST …/heartbeat`` with ``{}``
``activityHeartbeat``; ``cancel``              ``POST …/heartbeat``; an answer ``cancelled: true``
``taskResult``; ``taskResultAck``              ``POST …/results``, retried; its ``resultResponse``
correlated ``protocolError``                   a 403 (or 400, 413) answer to that result
=============================================  ==============================================

The worker keeps up to ``free`` polls parked (its concurrency minus what it
runs).  When the session is gone (404, 409 ``stale_session``, 410) the worker
opens a new one; results still owed for attempts claimed by the old session go
to the queue-scoped result endpoint (§12.1), whose answer settles them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any, Final

import aiohttp
import orjson

from treadle_protocol import TaskMessage

from .backoff import Backoff
from .errors import AuthenticationError, RegistrationError
from .links import NETWORK_ERRORS, ConnectionLost, Host, RetryableRefusal, auth_headers

__all__ = ["SessionTransport"]

log = logging.getLogger("treadle_sdk")
Key = tuple[str, str]
TOKEN_HEADER: Final = "Weft-Worker-Session-Token"
POLL_ERROR_BACKOFF_S: Final = 1.0  # SESS-6
CALL_TIMEOUT_S: Final = 30.0
CLAIM_FIELDS: Final = (
    "operationId",
    "activityName",
    "input",
    "attempt",
    "attemptToken",
    "headers",
    "workflowExecutionToken",
    "workflowRevision",
    "visibilityTimeout",
    "lastHeartbeatDetails",
)


def _gone(status: int | None, body: Any) -> bool:
    """Whether an answer says the session no longer exists (SESS-5)."""
    if status in (404, 410):
        return True
    return status == 409 and isinstance(body, dict) and body.get("code") == "stale_session"


def claim_to_task(claim: Mapping[str, Any]) -> TaskMessage | None:
    """A claim (LP-4) as the ``task`` message the session core expects, or None if unusable."""
    if not all(
        isinstance(claim.get(k), str) and claim[k]
        for k in ("operationId", "activityName", "attemptToken")
    ):
        return None
    task: dict[str, Any] = {"type": "task"}
    for name in CLAIM_FIELDS:
        if name in claim and claim[name] is not None:
            task[name] = claim[name]
    task.setdefault("input", None)
    return task  # type: ignore[return-value]


class SessionTransport:
    """Opens worker sessions and serves each until it ends; outlives any one session."""

    def __init__(self) -> None:
        self.holders: dict[Key, str] = {}
        """Which session claimed each attempt still owed a result (its ``workerId``)."""

    async def serve(self, host: Host) -> None:
        opened = await self._open(host)
        link = _SessionLink(self, host, opened)
        host.attach(link)
        polls: list[asyncio.Task[None]] = []
        try:
            host.apply(
                host.session.accepted(
                    int(opened["sessionGeneration"]), host.now(), worker_id=opened["workerId"]
                )
            )
            polls = [
                asyncio.create_task(link.poll(), name=f"treadle:poll-{n}")
                for n in range(host.config.concurrency)
            ]
            await link.ended.wait()
        finally:
            host.attach(None)
            host.session.closed()
            await link.stop(polls)
        if link.fatal is not None:
            raise link.fatal
        if not link.deliberate:
            raise ConnectionLost(f"worker session {link.session_id} ended: {link.reason}")

    async def _open(self, host: Host) -> dict[str, Any]:
        config = host.config
        body = {
            "manifest": host.session.manifest,
            "queue": config.queue,
            "concurrency": config.concurrency,
        }
        if host.session.started_at is not None:
            body["startedAt"] = host.session.started_at
        url = f"{config.base_url}/api/v1/worker-sessions"
        try:
            status, answer = await call(host.http, "POST", url, body, auth_headers(config))
        except NETWORK_ERRORS as exc:
            raise ConnectionLost(f"cannot open a worker session at {url}: {exc}") from exc
        error = answer.get("error", "") if isinstance(answer, dict) else ""
        if status == 200 and isinstance(answer, dict):
            log.info("opened worker session %s", answer.get("sessionId"))
            return answer
        if status == 401:
            raise AuthenticationError("the server answered 401 Authentication required")
        if status == 403:
            raise AuthenticationError(f"the server answered 403: {error or 'Insufficient scope'}")
        if status == 400:
            path = answer.get("path") if isinstance(answer, dict) else None
            detail = f"{error} (at {path})" if path else error
            raise RegistrationError("invalid_registration", detail)
        if status == 409:
            raise RegistrationError(str(answer.get("code", "deployment_conflict")), error)
        if status == 503:
            raise RetryableRefusal(f"the server cannot open sessions now: {error}")
        raise ConnectionLost(f"opening a worker session answered HTTP {status}: {error}")


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    body: Mapping[str, Any] | None,
    headers: Mapping[str, str],
    timeout: float = CALL_TIMEOUT_S,  # noqa: ASYNC109
) -> tuple[int, Any]:
    """One HTTP request with a JSON body; the status and the parsed JSON answer (None if none)."""
    data = None if body is None else orjson.dumps(dict(body))
    sent = {**headers, "Content-Type": "application/json"} if data is not None else dict(headers)
    async with http.request(
        method, url, data=data, headers=sent, timeout=aiohttp.ClientTimeout(total=timeout)
    ) as response:
        raw = await response.read()
        try:
            return response.status, orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            return response.status, None


class _SessionLink:
    """One open worker session: its polls, heartbeats and result deliveries."""

    def __init__(self, transport: SessionTransport, host: Host, opened: Mapping[str, Any]) -> None:
        config = host.config
        self.transport = transport
        self.host = host
        self.session_id: str = opened["sessionId"]
        self.url = f"{config.base_url}/api/v1/worker-sessions/{self.session_id}"
        self.queue_result_url = f"{config.base_url}/api/v1/tasks/{config.queue}/result"
        self.headers = {**auth_headers(config), TOKEN_HEADER: opened["sessionToken"]}
        self.ended = asyncio.Event()
        self.deliberate = False
        self.reason = ""
        self.fatal: BaseException | None = None
        self.parked = 0
        self._delivering: dict[Key, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()

    # -- links.Link --------------------------------------------------------------------

    def send(self, frame: Mapping[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "taskResult":
            key = (frame["operationId"], frame["attemptToken"])
            if key not in self._delivering:
                self._delivering[key] = self._spawn(self._deliver(dict(frame)))
        elif kind == "heartbeat":
            self._spawn(self._heartbeat({}))
        elif kind == "activityHeartbeat":
            key = (frame["operationId"], frame["attemptToken"])
            body = {k: v for k, v in frame.items() if k != "type"}
            body["workerId"] = self.transport.holders.get(key, self.session_id)
            self._spawn(self._heartbeat(body))

    def close(self, reason: str) -> None:
        self.deliberate = True
        self._end(reason)

    # -- lifecycle -----------------------------------------------------------------------

    def _end(self, reason: str, fatal: BaseException | None = None) -> None:
        if not self.ended.is_set():
            self.reason, self.fatal = reason, fatal
            self.ended.set()
            self.host.changed.fire()

    def _spawn(self, work: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def stop(self, polls: list[asyncio.Task[None]]) -> None:
        for task in [*polls, *self._background]:
            task.cancel()
        await asyncio.gather(*polls, *self._background, return_exceptions=True)
        if self.deliberate:
            with contextlib.suppress(*NETWORK_ERRORS):
                await call(self.host.http, "DELETE", self.url, None, self.headers, timeout=5.0)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ended.wait(), seconds)

    # -- polls ---------------------------------------------------------------------------

    async def poll(self) -> None:
        session = self.host.session
        timeout_ms = int(self.host.config.poll_timeout * 1000)
        while not self.ended.is_set():
            if session.free - self.parked <= 0:
                await self.host.changed.wait()
                continue
            self.parked += 1
            try:
                status, body = await call(
                    self.host.http,
                    "GET",
                    f"{self.url}/tasks?timeout={timeout_ms}",
                    None,
                    self.headers,
                    timeout=self.host.config.poll_timeout + CALL_TIMEOUT_S,
                )
            except NETWORK_ERRORS as exc:
                log.debug("poll failed: %s", exc)
                status, body = None, None
            finally:
                self.parked -= 1
            if status == 200 and isinstance(body, dict):
                self._claimed(body)
            elif status == 204:
                continue
            elif _gone(status, body):
                self._end(f"the server answered a poll with HTTP {status}")
            elif status == 401:
                self._end("unauthenticated", AuthenticationError("the server answered 401"))
            elif status == 409:  # session_draining: the server routes nothing to us for now
                await self._pause(POLL_ERROR_BACKOFF_S * 5)
            else:
                await self._pause(POLL_ERROR_BACKOFF_S)

    def _claimed(self, claim: Mapping[str, Any]) -> None:
        task = claim_to_task(claim)
        if task is None:
            log.warning("dropping a malformed claim: %r", dict(claim))
            return
        key = (task["operationId"], task["attemptToken"])
        self.transport.holders[key] = str(claim.get("workerId") or self.session_id)
        self.host.apply(self.host.session.receive(task, self.host.now()))

    # -- heartbeats ----------------------------------------------------------------------

    async def _heartbeat(self, body: dict[str, Any]) -> None:
        try:
            status, answer = await call(
                self.host.http, "POST", f"{self.url}/heartbeat", body, self.headers
            )
        except NETWORK_ERRORS as exc:
            log.debug("heartbeat failed: %s", exc)
            return
        if _gone(status, answer):
            self._end(f"the server answered a heartbeat with HTTP {status}")
        elif status == 200 and isinstance(answer, dict) and answer.get("cancelled") is True:
            reason = answer.get("reason")
            cancel = self.host.session.cancel(
                body["operationId"],
                body["attemptToken"],
                reason if isinstance(reason, str) else None,
            )
            self.host.apply(cancel)
        elif status not in (200, None):
            log.warning("heartbeat answered HTTP %s: %r", status, answer)

    # -- results -------------------------------------------------------------------------

    async def _deliver(self, frame: dict[str, Any]) -> None:
        key = (frame["operationId"], frame["attemptToken"])
        holder = self.transport.holders.get(key, self.session_id)
        own = holder == self.session_id
        url, headers = (
            (f"{self.url}/results", self.headers)
            if own
            else (self.queue_result_url, auth_headers(self.host.config))
        )
        body = {k: v for k, v in frame.items() if k != "type"}
        body["workerId"] = holder
        backoff = Backoff(1.0, 30.0)  # SESS-6
        try:
            while key in self.host.session.outbox and not self.ended.is_set():
                try:
                    status, answer = await call(self.host.http, "POST", url, body, headers)
                except NETWORK_ERRORS as exc:
                    log.debug("result delivery failed: %s", exc)
                    status, answer = None, None
                if status == 200 and isinstance(answer, dict):
                    self.host.session.settle(*key, str(answer.get("disposition", "applied")))
                    self._settled(key)
                    return
                if status in (400, 403, 413):
                    log.warning("result for %s refused (HTTP %s): %r", key[0], status, answer)
                    self.host.session.outbox.settle(*key)
                    self._settled(key)
                    return
                if own and _gone(status, answer):
                    self._end(f"the server answered a result with HTTP {status}")
                    return
                await self._pause(backoff.next())
        finally:
            self._delivering.pop(key, None)

    def _settled(self, key: Key) -> None:
        self.transport.holders.pop(key, None)
        self.host.changed.fire()
