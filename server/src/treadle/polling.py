"""The HTTP long-poll worker protocol (reference §16A and §16B), after the HTTP layer.

The HTTP adapter (:mod:`treadle.transport.longpoll`) reads the request and
calls these methods with plain values; each returns a :class:`Reply`, the
status and JSON body the protocol prescribes, with Weft's texts
(``protocol/README.md`` §12).  Nothing here is a second implementation of
the worker protocol: polls are parked on a :class:`~treadle.channel.PollChannel`
and matched by the same dispatcher as WebSocket workers; results are fenced
by :func:`treadle.fencing.check_claim` and committed by
:meth:`WorkerGateway.commit`; heartbeats renew through
:meth:`WorkerGateway.renew`; sessions are registry entries that count
against capacity, can be drained, and give their attempts back through
:meth:`WorkerGateway.retire` when they expire or close.

* Queue-scoped polls (§16A) register nothing.  Each parked poll is a
  single-use, capacity-one registry entry with its own ``longpoll-xxxxxxxx``
  id, routed to only when no registered worker can take the task.
* Worker sessions (§16B) register a manifest and get a token; their polls
  take tasks up to the session's concurrency.
"""

from __future__ import annotations

import asyncio
import math
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

import structlog

from treadle_protocol import PROTOCOL_VERSION, JsonValue, ManifestError, parse_manifest
from treadle_protocol.jsonjs import dumps

from . import fencing, ledger
from .book import TaskBook
from .channel import Alive, PollChannel
from .config import ServerConfig
from .dispatch import Dispatcher
from .gateway import WorkerGateway, oversize_message
from .metrics import Metrics
from .registry import Registry, WorkerSession
from .sessions import EndCode, Ended, LongPollSession, SessionTable

__all__ = [
    "DEFAULT_POLL_TIMEOUT_MS",
    "MAX_POLL_TIMEOUT_MS",
    "PollGateway",
    "Reply",
    "poll_timeout_ms",
]

log = structlog.get_logger("treadle.longpoll")
Clock = Callable[[], int]

DEFAULT_POLL_TIMEOUT_MS: Final = 30_000
MAX_POLL_TIMEOUT_MS: Final = 60_000
MAX_SAFE_INTEGER: Final = 2**53 - 1
QUEUE_NAME: Final = re.compile(r"[A-Za-z0-9_-]+\Z")
PAYLOAD_TOO_LARGE: Final = "PayloadSizeExceededError"
_STATUSES: Final = ("completed", "failed", "cancelled")
_JS_NUMBER = re.compile(r"[+-]?(?:Infinity|\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)\Z")
_JS_RADIX = re.compile(r"0(?:[xX](?P<x>[0-9a-fA-F]+)|[oO](?P<o>[0-7]+)|[bB](?P<b>[01]+))\Z")
_RADIX = {"x": 16, "o": 8, "b": 2}
_JS_SPACE = (  # StrWhiteSpaceChar: the Zs spaces, tab, VT, FF, BOM and the line terminators
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)


def _js_number(text: str) -> float:
    """JavaScript's ``Number(text)``: the timeout query is read as Weft reads it."""
    text = text.strip(_JS_SPACE)
    if not text:
        return 0.0
    literal = _JS_RADIX.match(text)
    if literal is not None:
        kind = next(k for k, digits in literal.groupdict().items() if digits is not None)
        return float(int(literal[kind], _RADIX[kind]))
    if _JS_NUMBER.match(text) is None:
        return math.nan
    return float(text.replace("Infinity", "inf"))


def poll_timeout_ms(raw: str | None) -> float:
    """LP-1: default 30 000, clamped ``min(max(0, t), 60000)``; not a number reads as 0."""
    if raw is None:
        return DEFAULT_POLL_TIMEOUT_MS
    value = _js_number(raw)
    if math.isnan(value):
        return 0.0
    return min(max(0.0, value), MAX_POLL_TIMEOUT_MS)


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer: status, and the JSON body (``None``: no body, as for 204)."""

    status: int
    body: Mapping[str, Any] | None = None


NO_TASK: Final = Reply(204)
FORBIDDEN: Final = Reply(403, {"error": "Forbidden"})
UNKNOWN_SESSION: Final = Reply(404, {"error": "Unknown worker session"})
SESSION_MISMATCH: Final = Reply(403, {"error": "Forbidden", "code": "worker_session_mismatch"})
SESSION_EXPIRED: Final = Reply(
    410, {"error": "Worker session lease expired", "code": "session_expired"}
)
STALE_SESSION: Final = Reply(409, {"error": "Stale worker session", "code": "stale_session"})
SESSION_DRAINING: Final = Reply(
    409, {"error": "Worker session is draining", "code": "session_draining"}
)
SHUTTING_DOWN: Final = Reply(503, {"error": "The orchestrator is shutting down"})


def _bad(message: str) -> Reply:
    return Reply(400, {"error": message})


def _too_large(kind: str, size: int, limit: int) -> Reply:
    return Reply(
        413,
        {
            "error": oversize_message(kind, size, limit),
            "code": PAYLOAD_TOO_LARGE,
            "maxBytes": limit,
            "serializedBytes": size,
            "payloadKind": kind,
        },
    )


def _claim_body(frame: Mapping[str, Any], worker_id: str) -> dict[str, Any]:
    """LP-4: the ``task`` frame's fields, without ``type``, plus the claim's ``workerId``."""
    body = {key: value for key, value in frame.items() if key != "type"}
    body.setdefault("headers", {})  # listed with the fields every claim has (LP-4)
    body["workerId"] = worker_id
    return body


def _text(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    return value if isinstance(value, str) else None


def _positive_int(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and float(value).is_integer()
        and 1 <= value <= MAX_SAFE_INTEGER
    )


@dataclass(frozen=True, slots=True)
class _Result:
    operation_id: str
    status: ledger.Status
    token: str
    worker_id: str | None
    value: JsonValue
    error: str | None
    revision: str | None


def _parse_result(body: object) -> _Result | Reply:
    """The result body checks, in Weft's order and words (the 400 rows of §12.1)."""
    fields = body if isinstance(body, dict) else {}
    operation_id, status = fields.get("operationId"), fields.get("status")
    if not isinstance(operation_id, str) or not isinstance(status, str):
        return _bad("Missing required fields: operationId, status")
    if status not in _STATUSES:
        return _bad('status must be "completed", "failed", or "cancelled"')
    token = fields.get("attemptToken")
    if not isinstance(token, str) or not token:
        return _bad("attemptToken must be a non-empty string")
    completed = status == "completed"
    return _Result(
        operation_id=operation_id,
        status=cast(ledger.Status, status),
        token=token,
        worker_id=_text(fields, "workerId"),
        value=fields.get("value") if completed else None,
        error=None if completed else _text(fields, "error"),
        revision=_text(fields, "workflowRevision"),
    )


class PollGateway:
    """Queue-scoped polls, worker sessions, and their results and heartbeats."""

    def __init__(
        self,
        *,
        config: ServerConfig,
        book: TaskBook,
        registry: Registry,
        dispatcher: Dispatcher,
        gateway: WorkerGateway,
        metrics: Metrics,
        clock: Clock,
        ready: asyncio.Event,
    ) -> None:
        self._config = config
        self._book = book
        self._registry = registry
        self._dispatcher = dispatcher
        self._gateway = gateway
        self._metrics = metrics
        self._clock = clock
        self._ready = ready
        self.sessions = SessionTable(config.session_lease_ms)

    async def _admit(self) -> Reply | None:
        """LP-2: wait for start-up recovery; 503 if it failed."""
        await self._ready.wait()
        error = self._gateway.recovery_error
        if error is None:
            return None
        return Reply(
            503,
            {
                "error": "Startup task-ledger recovery failed \u2014 cannot admit new task "
                f"claims: {error}"
            },
        )

    # -- queue-scoped long-poll (§16A) ---------------------------------------------

    async def poll_queue(
        self, queue: str, activities: list[str], timeout_ms: float, alive: Alive
    ) -> Reply:
        """Park until a task for one of ``activities`` on ``queue`` is claimed for this poll."""
        refused = await self._admit()
        if refused is not None:
            return refused
        if not activities:
            return _bad('At least one "activity" query parameter is required')
        if self._gateway.stopping:
            return SHUTTING_DOWN
        now = self._clock()
        channel = PollChannel()
        poller = WorkerSession(
            worker_id=f"longpoll-{secrets.token_hex(4)}",
            queue=queue,
            activities=frozenset(activities),
            concurrency=1,
            manifest=None,
            generation=0,
            connection=channel,
            registered_at=now,
            started_at=now,
            last_heartbeat=now,
            transport="long-poll",
        )
        self._registry.park(poller)
        self._dispatcher.kick()
        try:
            frame = await channel.poll(timeout_ms / 1000, alive)
        finally:
            self._registry.unpark(poller)
            channel.finish()  # a claim still being written for this poll undoes itself
        if frame is None:
            return NO_TASK
        return Reply(200, _claim_body(frame, poller.worker_id))

    async def submit_result(
        self, queue: str, body: object, *, worker_id: str | None = None
    ) -> Reply:
        """Apply a result (LP-6 to LP-8); ``worker_id`` stands in for a missing ``workerId``."""
        refused = await self._admit()
        if refused is not None:
            return refused
        result = _parse_result(body)
        if isinstance(result, Reply):
            return result
        holder = result.worker_id or worker_id
        op, token = result.operation_id, result.token

        def judge(record: ledger.TaskRecord | None) -> fencing.Reject | fencing.Accept:
            return fencing.check_claim(
                record,
                queue=queue,
                worker_id=holder,
                token=token,
                revision=result.revision,
                digest=ledger.result_digest(result.status, result.value, result.error),
            )

        verdict = judge(await self._book.get(op))
        if isinstance(verdict, fencing.Reject):
            return self._refuse_result(op, token, verdict)
        if verdict.action != "commit":
            self._metrics.results.labels(verdict.action).inc()
            return Reply(200, {"ok": True, "disposition": verdict.action})
        status, value, error = result.status, result.value, result.error
        oversize: Reply | None = None
        limit = self._config.payload_max_bytes
        if limit is not None:
            size = len(dumps(value if status == "completed" else (error or "")))
            if size > limit:
                oversize = _too_large("activity result", size, limit)
                status, value = "failed", None
                error = oversize_message("activity result", size, limit)
        outcome = await self._gateway.commit(
            op, token, status, value, error, worker_id=holder, recheck=judge
        )
        if outcome is None:
            return Reply(503, {"error": "The task ledger is unavailable; send the result again"})
        if isinstance(outcome, fencing.Reject):
            return self._refuse_result(op, token, outcome)
        if oversize is not None:
            return oversize
        return Reply(200, {"ok": True, "disposition": outcome})

    def _refuse_result(self, operation_id: str, token: str, reject: fencing.Reject) -> Reply:
        self._metrics.results.labels("rejected").inc()
        log.info("long-poll result refused", operation_id=operation_id, reason=reject.code)
        body = {
            "error": "Forbidden",
            "operationId": operation_id,
            "attemptToken": token,
            "reason": reject.code,
        }
        return Reply(403, body)

    async def heartbeat(self, queue: str, body: object, *, worker_id: str | None = None) -> Reply:
        """LP-9: renew the lease, or say the attempt is being cancelled or already over.

        ``worker_id`` (a session's id) replaces whatever ``workerId`` the body has.
        """
        refused = await self._admit()
        if refused is not None:
            return refused
        fields = body if isinstance(body, dict) else {}
        operation_id, token = fields.get("operationId"), fields.get("attemptToken")
        if not isinstance(operation_id, str) or not operation_id:
            return _bad("Missing required field: operationId")
        if not isinstance(token, str) or not token:
            return _bad("attemptToken must be a non-empty string")
        holder = worker_id or _text(fields, "workerId")
        record = await self._book.get(operation_id)
        if not fencing.check_claim_heartbeat(record, queue=queue, worker_id=holder, token=token):
            return FORBIDDEN
        assert record is not None
        details: Any = fields.get("details", ledger.NO_DETAILS)
        limit = self._config.payload_max_bytes
        if "details" in fields and limit is not None:
            size = len(dumps(details))
            if size > limit:
                return _too_large("heartbeat details", size, limit)
        if record.state == "leased":
            renewed = await self._gateway.renew(operation_id, token, details)
            if renewed is not None:
                body = {"ok": True, "cancelled": False, "leaseDeadline": renewed.lease_deadline}
                return Reply(200, body)
            record = await self._book.get(operation_id)  # lost a race: answer from what won
        return self._heartbeat_state(record, token)

    @staticmethod
    def _heartbeat_state(record: ledger.TaskRecord | None, token: str) -> Reply:
        if record is not None and record.state == "cancelling" and record.attempt_token == token:
            reason = record.cancellation_reason or "Task cancelled"
            return Reply(200, {"ok": True, "cancelled": True, "reason": reason})
        return Reply(200, {"ok": True, "cancelled": False})

    # -- worker sessions (§16B) ----------------------------------------------------

    async def open_session(self, body: object, owner: str | None) -> Reply:
        """SESS-1, SESS-2: validate, register, and hand out the session token."""
        refused = await self._admit()
        if refused is not None:
            return refused
        fields = body if isinstance(body, dict) else {}
        try:
            manifest = parse_manifest(fields.get("manifest"))
        except ManifestError as exc:
            return Reply(
                400, {"error": "Invalid worker manifest", "reason": exc.reason, "path": exc.path}
            )
        queue = fields.get("queue", "default")
        if not isinstance(queue, str) or QUEUE_NAME.match(queue) is None:
            return _bad("queue must be a non-empty URL-safe queue name")
        concurrency = fields.get("concurrency", 10)
        if not _positive_int(concurrency):
            return _bad("concurrency must be a positive safe integer")
        started_at = fields.get("startedAt")
        if started_at is not None and not (
            isinstance(started_at, (int, float))
            and not isinstance(started_at, bool)
            and math.isfinite(started_at)
            and started_at >= 0
        ):
            return _bad("startedAt must be a non-negative number")
        if manifest.manifest["protocolVersion"] != PROTOCOL_VERSION:
            return _bad("Unsupported worker protocol version")
        if self._gateway.stopping:
            return SHUTTING_DOWN
        channel = PollChannel()
        worker = self._gateway.open_session(
            manifest=manifest,
            queue=queue,
            concurrency=int(concurrency),
            started_at=started_at,
            connection=channel,
        )
        if worker is None:
            return Reply(
                409, {"error": "Deployment artifact digest conflict", "code": "deployment_conflict"}
            )
        session = LongPollSession(
            session_id=worker.worker_id,
            token=secrets.token_hex(32),
            owner=owner,
            worker=worker,
            channel=channel,
            last_seen=self._clock(),
        )
        self.sessions.add(session)
        return Reply(
            200,
            {
                "ok": True,
                "sessionId": session.session_id,
                "workerId": session.session_id,
                "queue": queue,
                "sessionToken": session.token,
                "acceptedManifestDigest": manifest.digest,
                "protocolVersion": PROTOCOL_VERSION,
                "sessionGeneration": worker.generation,
            },
        )

    def access(
        self, session_id: str, token: str | None, owner: str | None, *, polling: bool = False
    ) -> LongPollSession | Reply:
        """SESS-3, SESS-5: the open session this call may use, or why not."""
        found = self.sessions.lookup(session_id)
        if found is None:
            return UNKNOWN_SESSION
        if not found.presented_by(token, owner):
            return SESSION_MISMATCH
        if isinstance(found, Ended):
            return SESSION_EXPIRED if found.code == "session_expired" else STALE_SESSION
        if self._registry.get(session_id) is not found.worker:
            self.sessions.end(found, "stale_session")
            found.channel.finish()
            return STALE_SESSION
        now = self._clock()
        if self.sessions.expired(found, now):
            self._expire(found)
            return SESSION_EXPIRED
        if polling and (found.worker.draining or found.channel.stopping):
            return SESSION_DRAINING
        self.sessions.touch(found, now)
        found.worker.last_heartbeat = now
        return found

    async def poll_session(
        self, session: LongPollSession, timeout_ms: float, alive: Alive
    ) -> Reply:
        """A session poll: LP-1 and LP-3 to LP-5, the claim bound to the session."""
        refused = await self._admit()
        if refused is not None:
            return refused
        self._dispatcher.kick()
        frame = await session.channel.poll(timeout_ms / 1000, alive)
        self.sessions.touch(session, self._clock())
        if frame is None:
            return NO_TASK
        return Reply(200, _claim_body(frame, session.session_id))

    async def session_result(self, session: LongPollSession, body: object) -> Reply:
        """As the queue result endpoint; a missing ``workerId`` is the session's."""
        return await self.submit_result(session.worker.queue, body, worker_id=session.session_id)

    async def session_heartbeat(self, session: LongPollSession, body: object) -> Reply:
        """No ``operationId``: the session is alive; else an activity heartbeat for the
        session's attempt (SESS-4)."""
        fields = body if isinstance(body, dict) else {}
        if "operationId" not in fields:
            return Reply(200, {"ok": True})
        return await self.heartbeat(session.worker.queue, body, worker_id=session.session_id)

    def close_session(self, session: LongPollSession) -> Reply:
        """``DELETE``: the worker is done; attempts it still holds go back to the queue."""
        self.sessions.remove(session)
        session.channel.finish()
        self._gateway.retire(session.worker)
        log.info("worker session closed", worker_id=session.session_id)
        return Reply(200, {"ok": True})

    def _end(self, session: LongPollSession, code: EndCode) -> None:
        self.sessions.end(session, code)
        session.channel.finish()
        log.info(
            "worker session ended",
            worker_id=session.session_id,
            code=code,
            in_flight=len(session.worker.in_flight),
        )
        self._gateway.retire(session.worker)

    def end_session(self, worker_id: str, code: EndCode = "stale_session") -> bool:
        """End the worker's open session from the server's side (its next request gets
        ``code``; its attempts go back to the queue).  Whether one was open."""
        session = self.sessions.lookup(worker_id)
        if not isinstance(session, LongPollSession):
            return False
        self._end(session, code)
        return True

    def _expire(self, session: LongPollSession) -> None:
        self._end(session, "session_expired")

    def expire_sessions(self) -> None:
        """End every session past its lease (called by the lease scan)."""
        for session in self.sessions.due(self._clock()):
            self._expire(session)
