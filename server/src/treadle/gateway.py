"""The worker side of the orchestrator: registration, heartbeats, results, disconnects.

Transport-neutral: the WebSocket handler parses frames with
``treadle_protocol`` and calls these methods with a
:class:`~treadle.registry.Connection`; the long-poll layer
(:mod:`treadle.polling`) registers sessions and commits results and
renewals through the same methods.  Everything the reference says about
what happens next lives here: the registration algorithm (reference §5.3),
session generation and proven resume, reconnect grace, result fencing and
acknowledgement (§7), lease renewal (§8) and cancellation delivery (§10).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, cast

import structlog

from treadle_protocol import (
    AdmittedRegistration,
    DispositionValue,
    ErrorCode,
    FrameRejection,
    JsonValue,
    ParsedManifest,
    RegisterErrorCode,
    RegisterMessage,
    admit_registration,
    build,
)
from treadle_protocol.frames import register_error
from treadle_protocol.jsonjs import dumps

from . import fencing, ledger
from .book import TaskBook
from .config import ServerConfig
from .dispatch import Dispatcher
from .errors import ConflictError, StoreError, TransitionError
from .leases import Deadlines, expiry_of
from .ledger import TaskRecord
from .metrics import Metrics
from .registry import Connection, InFlight, Registry, WorkerSession

__all__ = ["WorkerGateway", "oversize_message"]

log = structlog.get_logger("treadle.workers")
Clock = Callable[[], int]


def oversize_message(kind: str, size: int, limit: int) -> str:
    return (
        f"{kind} exceeds the configured maximum serialized size: {size} bytes > {limit} byte limit."
    )


def _payload_size(value: JsonValue) -> int:
    return len(dumps(value))


class WorkerGateway:
    """Handles every worker message and connection event for the orchestrator."""

    def __init__(
        self,
        *,
        config: ServerConfig,
        book: TaskBook,
        registry: Registry,
        dispatcher: Dispatcher,
        deadlines: Deadlines,
        metrics: Metrics,
        clock: Clock,
        ready: asyncio.Event,
    ) -> None:
        self._config = config
        self._book = book
        self._registry = registry
        self._dispatcher = dispatcher
        self._deadlines = deadlines
        self._metrics = metrics
        self._clock = clock
        self._ready = ready
        self.recovery_error: str | None = None
        self.stopping = False
        """Shutdown has begun: no new registrations; results are still taken."""
        registry.on_idle = self._on_idle
        self._grace: dict[str, asyncio.TimerHandle] = {}
        self._orphans: dict[str, dict[str, TaskRecord]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._sockets: set[Connection] = set()
        self._sealed = False

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settle(self) -> None:
        """Wait for background work (grace forfeits, recovery sweeps) to finish."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    # -- registration (reference §5.3) ------------------------------------------

    async def _refuse(self, connection: Connection, rejection: FrameRejection) -> None:
        self._metrics.registrations.labels(rejection.code).inc()
        log.info("registration refused", code=rejection.code, reason=rejection.message)
        await connection.send(rejection.to_message())
        await connection.close(rejection.close_code, rejection.code)

    async def register(
        self, connection: Connection, message: RegisterMessage, queue: str
    ) -> WorkerSession | None:
        """Admit a parsed ``register``; send ``registerAck`` or ``registerError`` + close."""
        admitted = admit_registration(message)
        if isinstance(admitted, FrameRejection):
            await self._refuse(connection, admitted)
            return None
        await self._ready.wait()
        if self.stopping:
            await self._refuse(
                connection,
                register_error(
                    RegisterErrorCode.REGISTRATION_REJECTED, "The server is shutting down"
                ),
            )
            return None
        if self.recovery_error is not None:
            await self._refuse(
                connection,
                register_error(
                    RegisterErrorCode.REGISTRATION_REJECTED,
                    "Server task-ledger recovery failed \u2014 cannot admit new workers: "
                    f"{self.recovery_error}",
                ),
            )
            return None
        worker_id = admitted.worker_id
        resume = admitted.resume_session_generation
        kind = self._registry.classify(worker_id, connection, resume)
        existing = self._registry.get(worker_id)
        stale = None if existing is None else existing.connection
        if kind == "hijack" and stale is not None and stale.closed:
            # the old socket is closed but its close has not been handled yet
            self.disconnected(stale)
            kind = self._registry.classify(worker_id, connection, resume)
        if kind == "unproven" and existing is not None:
            self._cancel_grace(worker_id)
            await self._forfeit(existing)
        if connection.closed:
            return None
        if self._registry.deployment_conflict(admitted.manifest, worker_id):
            name, build_id, _ = admitted.manifest.deployment
            await self._refuse(
                connection,
                register_error(
                    RegisterErrorCode.DEPLOYMENT_CONFLICT,
                    f'Deployment "{name}" build "{build_id}" is already registered with a '
                    "different artifact digest",
                ),
            )
            return None
        if self._registry.classify(worker_id, connection, resume) == "hijack":
            await self._refuse(
                connection,
                register_error(
                    RegisterErrorCode.INVALID_REGISTRATION,
                    "workerId is already registered to an active connection",
                ),
            )
            return None
        session = self._admit(connection, admitted, queue, proven=kind == "proven")
        await connection.send(
            build.register_ack(
                worker_id=worker_id,
                queue=queue,
                concurrency=session.concurrency,
                accepted_manifest_digest=admitted.manifest.digest,
                session_generation=session.generation,
            )
        )
        self._metrics.registrations.labels("accepted").inc()
        log.info(
            "worker registered",
            worker_id=worker_id,
            queue=queue,
            concurrency=session.concurrency,
            generation=session.generation,
            resume=kind,
            activities=len(session.activities),
            in_flight=len(session.in_flight),
        )
        self._dispatcher.kick()
        return session

    def _admit(
        self, connection: Connection, admitted: AdmittedRegistration, queue: str, *, proven: bool
    ) -> WorkerSession:
        now = self._clock()
        worker_id = admitted.worker_id
        if proven:
            session = self._registry.get(worker_id)
            assert session is not None
            self._cancel_grace(worker_id)
            self._registry.resume(
                session,
                connection,
                concurrency=admitted.concurrency,
                manifest=admitted.manifest,
                now=now,
            )
            return session
        previous = self._registry.bound_to(connection)
        if previous is not None and previous.worker_id != worker_id:
            # the socket re-registers under another id: its old identity is gone now
            self.retire(previous)
        session = self._registry.add(
            worker_id=worker_id,
            queue=queue,
            concurrency=admitted.concurrency,
            manifest=admitted.manifest,
            connection=connection,
            started_at=admitted.started_at,
            now=now,
        )
        self._adopt_orphans(session)
        return session

    def open_session(
        self,
        *,
        manifest: ParsedManifest,
        queue: str,
        concurrency: int,
        started_at: float | None,
        connection: Connection,
    ) -> WorkerSession | None:
        """Register a long-poll worker session (SESS-1); ``None`` on a deployment conflict."""
        worker_id = str(uuid.uuid4())
        if self._registry.deployment_conflict(manifest, worker_id):
            self._metrics.registrations.labels(RegisterErrorCode.DEPLOYMENT_CONFLICT).inc()
            return None
        session = self._registry.add(
            worker_id=worker_id,
            queue=queue,
            concurrency=concurrency,
            manifest=manifest,
            connection=connection,
            started_at=started_at,
            now=self._clock(),
            transport="long-poll",
        )
        self._metrics.registrations.labels("accepted").inc()
        log.info(
            "worker session opened",
            worker_id=worker_id,
            queue=queue,
            concurrency=concurrency,
            activities=len(session.activities),
        )
        return session

    # -- disconnect, grace and forfeit (reference §9) ----------------------------

    def opened(self, connection: Connection) -> bool:
        """A worker socket was accepted; ``False`` once the stop has closed every socket
        (the caller closes it at once).  Until then even an unregistered socket is
        tracked, so that the stop can close it."""
        if self._sealed:
            return False
        self._sockets.add(connection)
        return True

    def disconnected(self, connection: Connection) -> None:
        """A socket closed.  Events of sockets no longer bound are ignored (GRACE-5)."""
        self._sockets.discard(connection)
        session = self._registry.bound_to(connection)
        if session is None:
            return
        grace = self._config.reconnect_grace_ms
        log.info("worker disconnected", worker_id=session.worker_id, grace_ms=grace)
        if grace == 0:
            self.retire(session)
            return
        self._registry.detach(session)
        loop = asyncio.get_running_loop()
        self._grace[session.worker_id] = loop.call_later(grace / 1000, self._grace_lapsed, session)

    def _cancel_grace(self, worker_id: str) -> None:
        handle = self._grace.pop(worker_id, None)
        if handle is not None:
            handle.cancel()

    def _grace_lapsed(self, session: WorkerSession) -> None:
        self._grace.pop(session.worker_id, None)
        if self._registry.get(session.worker_id) is session and session.connection is None:
            self.retire(session)

    def retire(self, session: WorkerSession) -> None:
        """Stop tracking ``session`` and take back its attempts in the background."""
        self._registry.remove(session)
        self._spawn(self._forfeit(session))

    async def _forfeit(self, session: WorkerSession) -> None:
        """Take back every attempt ``session`` holds (GRACE-4, RESUME-2).

        Callers take the session out of routing first (``remove`` or detached).
        """
        entries = list(session.in_flight.values())
        if entries:
            log.info(
                "requeueing a lost worker's attempts",
                worker_id=session.worker_id,
                count=len(entries),
            )
        await asyncio.gather(
            *(
                self._dispatcher.take_back(
                    e.operation_id, e.attempt_token, reason="worker-disconnect"
                )
                for e in entries
            )
        )
        for entry in entries:  # a removed session is no longer consulted by release()
            session.in_flight.pop(entry.operation_id, None)

    # -- recovery orphans ----------------------------------------------------------

    def hold_orphans(self, records: list[TaskRecord]) -> None:
        """Attempts recovered from the ledger whose workers have not reconnected yet.

        They keep their tokens for one grace window: a worker that registers
        again with the same id in that window gets them back (and its outbox
        resends complete them); the rest are taken back when it ends.
        """
        for record in records:
            assert record.worker_id is not None
            assert record.attempt_token is not None
            self._orphans.setdefault(record.worker_id, {})[record.operation_id] = record
            deadline = expiry_of(record, self._config.cancel_settle_ms)
            if deadline is not None:
                self._deadlines.push(deadline, record.operation_id, record.attempt_token)
        if not records:
            return
        grace = self._config.reconnect_grace_ms
        if grace == 0:
            self._spawn(self._sweep_orphans())
        else:
            asyncio.get_running_loop().call_later(
                grace / 1000, lambda: self._spawn(self._sweep_orphans())
            )

    def _adopt_orphans(self, session: WorkerSession) -> None:
        for operation_id, record in self._orphans.pop(session.worker_id, {}).items():
            live = self._book.live(operation_id)
            if (
                live is None
                or live.attempt_token != record.attempt_token
                or live.queue != session.queue
                or live.attempt_token is None
            ):
                continue
            self._registry.adopt(
                session,
                InFlight(
                    operation_id=operation_id,
                    attempt_token=live.attempt_token,
                    activity_name=live.activity_name,
                    workflow_revision=live.workflow_revision,
                    dispatched_at=self._clock(),
                ),
            )

    async def _sweep_orphans(self) -> None:
        orphans, self._orphans = self._orphans, {}
        await asyncio.gather(
            *(
                self._dispatcher.take_back(op, record.attempt_token or "", reason="recovery")
                for held in orphans.values()
                for op, record in held.items()
            )
        )

    # -- heartbeats (reference §8) -----------------------------------------------

    def heartbeat(self, connection: Connection) -> None:
        """A bare ``heartbeat``: liveness only, renews no lease (LEASE-4)."""
        session = self._registry.bound_to(connection)
        if session is not None:
            session.last_heartbeat = self._clock()

    async def activity_heartbeat(self, connection: Connection, message: dict[str, Any]) -> None:
        session = self._registry.bound_to(connection)
        if session is None:
            return
        operation_id, token = message["operationId"], message["attemptToken"]
        reason = fencing.check_heartbeat(
            self._holder_of(operation_id), worker_id=session.worker_id, token=token
        )
        if reason is not None:
            await connection.send(
                build.protocol_error(
                    code=ErrorCode.INVALID_MESSAGE,
                    message=fencing.rejection_message("activityHeartbeat", operation_id, reason),
                )
            )
            return
        details: Any = message.get("details", ledger.NO_DETAILS)
        limit = self._config.payload_max_bytes
        if "details" in message and limit is not None:
            size = _payload_size(message["details"])
            if size > limit:
                await connection.send(
                    build.protocol_error(
                        code=ErrorCode.INVALID_MESSAGE,
                        message=oversize_message("heartbeat details", size, limit),
                    )
                )
                details = ledger.NO_DETAILS
        await self.renew(operation_id, token, details)

    async def renew(self, operation_id: str, token: str, details: Any) -> TaskRecord | None:
        """Renew a leased attempt (LEASE-3); a cancelling one is left as it is (CANCEL-5)."""
        now = self._clock()

        def step(record: TaskRecord) -> TaskRecord:
            if record.state != "leased" or record.attempt_token != token:
                raise TransitionError(record.operation_id, record.state, "renew")
            return ledger.renew(record, now=now, details=details)

        try:
            _, record = await self._book.apply(operation_id, step)
        except (TransitionError, KeyError, ConflictError):
            return None
        return record

    def _holder_of(self, operation_id: str) -> tuple[str, InFlight] | None:
        held = self._registry.holder(operation_id)
        return None if held is None else (held[0].worker_id, held[1])

    # -- results (reference §7) ----------------------------------------------------

    async def task_result(self, connection: Connection, message: dict[str, Any]) -> None:
        session = self._registry.bound_to(connection)
        if session is None:
            return
        operation_id, token = message["operationId"], message["attemptToken"]
        status: ledger.Status = message["status"]
        value = message.get("value") if status == "completed" else None
        error = None if status == "completed" else message.get("error")
        revision = message.get("workflowRevision")
        held = self._holder_of(operation_id)
        if held is not None:
            verdict = fencing.check_in_flight(
                held[0], held[1], worker_id=session.worker_id, token=token, revision=revision
            )
        else:
            verdict = fencing.check_record(
                await self._book.get(operation_id),
                worker_id=session.worker_id,
                token=token,
                revision=revision,
                digest=ledger.result_digest(status, value, error),
            )
        if isinstance(verdict, fencing.Reject):
            await self._reject(connection, operation_id, token, verdict.reason)
            return
        if verdict.action != "commit":
            await self._ack(connection, operation_id, token, verdict.action)
            return
        limit = self._config.payload_max_bytes
        if limit is not None:
            size = _payload_size(value if status == "completed" else error)
            if size > limit:
                text = oversize_message("activity result", size, limit)
                await connection.send(
                    build.protocol_error(code=ErrorCode.INVALID_MESSAGE, message=text)
                )
                status, value, error = "failed", None, text
        outcome = await self.commit(
            operation_id, token, status, value, error, worker_id=session.worker_id
        )
        if isinstance(outcome, fencing.Reject):
            await self._reject(connection, operation_id, token, outcome.reason)
        elif outcome is not None:
            await self._ack(connection, operation_id, token, outcome)

    async def commit(
        self,
        operation_id: str,
        token: str,
        status: ledger.Status,
        value: JsonValue,
        error: str | None,
        *,
        worker_id: str | None,
        recheck: Callable[[TaskRecord | None], fencing.Reject | fencing.Accept] | None = None,
    ) -> fencing.Reject | str | None:
        """Write the result of the live attempt: the disposition to ack, a refusal, or
        ``None`` when the store failed (no ack: the worker keeps the result and resends).

        If the attempt ended while the result was on its way, the result is
        judged again by ``recheck`` (long-poll's rules), or RESULT-2's.
        """
        now = self._clock()

        def step(record: TaskRecord) -> TaskRecord:
            if not record.holds_attempt or record.attempt_token != token:
                raise TransitionError(record.operation_id, record.state, "complete")
            policy = record.retry_policy
            if (
                status == "failed"
                and record.state == "leased"
                and policy is not None
                and policy.retries_error(error or "")
                and policy.allows(record.attempt + 1)
            ):
                return ledger.requeue(record, now=now, failed=True)
            return ledger.complete(
                record,
                token=token,
                status=status,
                value=value,
                error=error,
                now=now,
            )

        try:
            _, record = await self._book.apply(operation_id, step)
        except (TransitionError, KeyError):
            # the attempt ended while this result was on its way: judge it again
            current = await self._book.get(operation_id)
            if recheck is not None:
                verdict = recheck(current)
            else:
                verdict = fencing.check_record(
                    current,
                    worker_id=worker_id,
                    token=token,
                    revision=None,
                    digest=ledger.result_digest(status, value, error),
                )
            return verdict if isinstance(verdict, fencing.Reject) else verdict.action
        except ConflictError:
            return await self._dead_letter(operation_id, token, status, value, error)
        except StoreError as exc:
            log.error(
                "result not committed; the worker will resend",
                operation_id=operation_id,
                error=str(exc),
            )
            return None
        held = self._registry.holder(operation_id)
        if held is not None and held[1].attempt_token == token:
            self._metrics.execution_latency.observe(max(0, now - held[1].dispatched_at))
        self._registry.release(operation_id, token)
        self._metrics.results.labels("applied").inc()
        if record.state == "queued":
            self._metrics.retries.inc()
            self._dispatcher.enqueue(record)
        else:
            self._dispatcher.kick()
        return "applied"

    async def _dead_letter(
        self,
        operation_id: str,
        token: str,
        status: ledger.Status,
        value: JsonValue,
        error: str | None,
    ) -> str | None:
        now = self._clock()
        try:
            await self._book.apply(
                operation_id,
                lambda r: ledger.dead_letter(
                    r,
                    token=token,
                    status=status,
                    value=value,
                    error=error,
                    now=now,
                ),
            )
        except (TransitionError, KeyError, ConflictError, StoreError) as exc:
            log.error(
                "result could not be dead-lettered", operation_id=operation_id, error=str(exc)
            )
            return None
        self._registry.release(operation_id, token)
        log.warning("result dead-lettered", operation_id=operation_id)
        return "dead-lettered"

    async def _reject(
        self, connection: Connection, operation_id: str, token: str, reason: str
    ) -> None:
        self._metrics.results.labels("rejected").inc()
        await connection.send(
            build.protocol_error(
                code=ErrorCode.INVALID_MESSAGE,
                message=fencing.rejection_message("taskResult", operation_id, reason),
                operation_id=operation_id,
                attempt_token=token,
            )
        )

    async def _ack(
        self, connection: Connection, operation_id: str, token: str, disposition: str
    ) -> None:
        if disposition != "applied":
            self._metrics.results.labels(disposition).inc()
        await connection.send(
            build.task_result_ack(
                operation_id=operation_id,
                attempt_token=token,
                disposition=cast(DispositionValue, disposition),
            )
        )

    # -- cancellation and shutdown ------------------------------------------------

    async def deliver_cancel(self, record: TaskRecord) -> None:
        """Send ``cancel`` to the worker holding a ``cancelling`` attempt (CANCEL-2)."""
        assert record.attempt_token is not None
        deadline = expiry_of(record, self._config.cancel_settle_ms)
        if deadline is not None:
            self._deadlines.push(deadline, record.operation_id, record.attempt_token)
        held = self._registry.holder(record.operation_id)
        if held is None or held[1].attempt_token != record.attempt_token:
            return
        connection = held[0].connection
        if connection is not None:
            await connection.send(
                build.cancel(
                    operation_id=record.operation_id,
                    attempt_token=record.attempt_token,
                    reason=record.cancellation_reason or "Task cancelled",
                )
            )

    async def shutdown_workers(self, timeout_ms: int) -> None:
        """Send ``shutdown`` to every connected worker and wait for them to finish (§14).

        A WebSocket worker finishes by closing its socket.  A long-poll session
        has no socket: its parked polls are answered, new polls get
        ``session_draining``, and it finishes when its last attempt's result is
        in (the HTTP listener stays up meanwhile; see :func:`treadle.app.stop`).
        Workers still there at the timeout are closed, and so is every other
        socket — one that never registered, or opened during the drain — so
        nothing holds the stop.
        """
        self.stopping = True
        for poller in self._registry.pollers():  # queue-scoped polls: answered "no task" now
            if poller.connection is not None:
                await poller.connection.send(build.shutdown())
        sessions = [s for s in self._registry if s.connection is not None]
        connections = [s.connection for s in sessions if s.connection is not None]
        if connections:
            log.info(
                "waiting for workers to finish",
                workers=len(connections),
                in_flight=sum(len(s.in_flight) for s in sessions),
                timeout_ms=timeout_ms,
            )
            # each its own task: a peer that stopped reading must not hold the others
            drains = [asyncio.create_task(self._drain(s)) for s in sessions]
            _, pending = await asyncio.wait(drains, timeout=timeout_ms / 1000)
            for task in pending:
                task.cancel()
            await asyncio.gather(*drains, return_exceptions=True)
            late = [c for c in connections if not c.closed]
            if late:
                log.warning("workers did not finish in time; closing them", count=len(late))
            await self._close_all(late)
        self._sealed = True
        await self._close_all([c for c in self._sockets if not c.closed])
        for handle in self._grace.values():
            handle.cancel()
        self._grace.clear()

    async def _drain(self, session: WorkerSession) -> None:
        connection = session.connection
        assert connection is not None
        await connection.send(build.shutdown())
        if session.transport == "long-poll" and not session.in_flight:
            await connection.close(1000, "drained")
        await connection.wait_closed()

    @staticmethod
    async def _close_all(connections: list[Connection]) -> None:
        await asyncio.gather(
            *(c.close(1001, "server shutting down") for c in connections), return_exceptions=True
        )

    def _on_idle(self, session: WorkerSession) -> None:
        """A session's last attempt ended: a draining long-poll session is now finished."""
        connection = session.connection
        if self.stopping and session.transport == "long-poll" and connection is not None:
            self._spawn(connection.close(1000, "drained"))
