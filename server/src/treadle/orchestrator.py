"""``Orchestrator``: the whole service as one embeddable object.

It composes the parts, each in its own module: the :class:`TaskBook` over a
:class:`Store` (the durable truth), the :class:`Registry` of live workers, the
:class:`Backlog` of queued work, the :class:`Dispatcher` that matches them,
the :class:`WorkerGateway` that speaks to workers, and :class:`Metrics`.
The HTTP layer (:mod:`treadle.app`) is a thin wrapper over the public
methods here, and Python programs can use them directly::

    async with Orchestrator(ServerConfig(db=":memory:")) as orch:
        handle = await orch.submit("default", "billing.charge", {"amount": 5})
        record = await handle.result(timeout=30)

Start-up (:meth:`start`) opens the store and rebuilds memory from the ledger
before anything is accepted: queued tasks are indexed, attempts held by
workers from before a restart wait one grace window for their worker to come
back, then are requeued.  Registration and dispatch wait for this.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from treadle_protocol import JsonValue, build

from . import ledger
from .backlog import Backlog
from .book import TaskBook
from .config import ServerConfig
from .dispatch import Dispatcher, pending_of
from .errors import NotReadyError, TaskExistsError, TransitionError, UnknownTaskError
from .gateway import WorkerGateway
from .ids import new_operation_id
from .leases import Deadlines
from .ledger import TaskRecord
from .metrics import Metrics, Snapshot
from .polling import PollGateway
from .registry import STALE_HEARTBEAT_MS, Registry
from .retry import RetryPolicy
from .store import SQLiteStore, Store
from .submission import TaskRequest, parse_submission

__all__ = ["Orchestrator", "Submission", "TaskHandle", "wall_clock_ms"]

log = structlog.get_logger("treadle")
Clock = Callable[[], int]
MAX_RESULT_WAIT_S = 60.0


def wall_clock_ms() -> int:
    """Epoch milliseconds: ledger times must survive a restart, so not a monotonic clock."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Submission:
    """The outcome of :meth:`Orchestrator.submit`."""

    record: TaskRecord
    created: bool
    """``False`` when the same request had been submitted before (idempotent)."""


class TaskHandle:
    """A submitted task: wait for its result or cancel it."""

    def __init__(self, orchestrator: Orchestrator, submission: Submission) -> None:
        self._orchestrator = orchestrator
        self.submission = submission
        self.operation_id = submission.record.operation_id

    async def result(self, timeout: float = 30.0) -> TaskRecord | None:  # noqa: ASYNC109
        """The terminal record, or ``None`` if it is still running after ``timeout`` seconds."""
        return await self._orchestrator.wait_result(self.operation_id, timeout)

    async def cancel(self, reason: str | None = None) -> bool:
        return await self._orchestrator.cancel(self.operation_id, reason)


class Orchestrator:
    """The Treadle orchestrator: ledger, registry, dispatch, leases and worker protocol."""

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        store: Store | None = None,
        clock: Clock = wall_clock_ms,
    ) -> None:
        self.config = config or ServerConfig()
        self._store_given = store
        self._store: Store | None = store
        self._clock = clock
        self.registry = Registry(self.config.routing_policy)
        self.backlog = Backlog()
        self.deadlines = Deadlines()
        self.metrics = Metrics(self._snapshot)
        self._book: TaskBook | None = None
        self._ready = asyncio.Event()
        self._accepting = False
        self._stopped = False
        self._loops: list[asyncio.Task[None]] = []
        self._gateway: WorkerGateway | None = None
        self._dispatcher: Dispatcher | None = None
        self._polls: PollGateway | None = None

    # -- lifecycle -----------------------------------------------------------

    @property
    def book(self) -> TaskBook:
        if self._book is None:
            raise NotReadyError("the orchestrator has not been started")
        return self._book

    @property
    def gateway(self) -> WorkerGateway:
        if self._gateway is None:
            raise NotReadyError("the orchestrator has not been started")
        return self._gateway

    @property
    def polls(self) -> PollGateway:
        """The HTTP long-poll side (queue-scoped polls and worker sessions)."""
        if self._polls is None:
            raise NotReadyError("the orchestrator has not been started")
        return self._polls

    @property
    def dispatcher(self) -> Dispatcher:
        if self._dispatcher is None:
            raise NotReadyError("the orchestrator has not been started")
        return self._dispatcher

    @property
    def ready(self) -> bool:
        """Recovered and accepting work (``/readyz``)."""
        return self._accepting

    async def start(self, *, recover_in_background: bool = False) -> None:
        """Open the store, recover, and start the dispatch and lease loops.

        With ``recover_in_background`` this returns as soon as the store is
        open; :meth:`wait_ready` (and registration, and dispatch) wait for
        recovery.  The HTTP server uses it so ``/readyz`` answers meanwhile.
        """
        if self._store is None:
            self._store = await asyncio.to_thread(
                SQLiteStore, self.config.db, synchronous=self.config.sqlite_synchronous
            )
        self._book = TaskBook(self._store)
        self._book.listen(self._on_write)
        self._dispatcher = Dispatcher(
            book=self._book,
            registry=self.registry,
            backlog=self.backlog,
            deadlines=self.deadlines,
            metrics=self.metrics,
            clock=self._clock,
            cancel_settle_ms=self.config.cancel_settle_ms,
        )
        self._gateway = WorkerGateway(
            config=self.config,
            book=self._book,
            registry=self.registry,
            dispatcher=self._dispatcher,
            deadlines=self.deadlines,
            metrics=self.metrics,
            clock=self._clock,
            ready=self._ready,
        )
        self._polls = PollGateway(
            config=self.config,
            book=self._book,
            registry=self.registry,
            dispatcher=self._dispatcher,
            gateway=self._gateway,
            metrics=self.metrics,
            clock=self._clock,
            ready=self._ready,
        )
        self._loops = [
            asyncio.create_task(self._dispatcher.run(), name="treadle-dispatch"),
            asyncio.create_task(self._scan_leases(), name="treadle-leases"),
        ]
        if recover_in_background:
            self._loops.append(
                asyncio.create_task(self._recover_or_fail(), name="treadle-recovery")
            )
        else:
            await self._recover_or_fail()

    async def wait_ready(self) -> bool:
        """Wait until recovery has finished; whether the orchestrator accepts work."""
        await self._ready.wait()
        return self._accepting

    def clock(self) -> int:
        """The orchestrator's current time, epoch milliseconds."""
        return self._clock()

    async def _recover_or_fail(self) -> None:
        try:
            await self._recover()
        except Exception as exc:
            self.gateway.recovery_error = str(exc) or type(exc).__name__
            log.error(
                "ledger recovery failed; not accepting work", error=self.gateway.recovery_error
            )
        else:
            self._accepting = True
        self._ready.set()

    async def _recover(self) -> None:
        records = await self.book.recover()
        now = self._clock()
        held = []
        for record in records:
            if record.state == "queued":
                self.backlog.add(pending_of(record), now)
            elif record.holds_attempt:
                held.append(record)
        self.gateway.hold_orphans(held)
        log.info("ledger recovered", queued=len(self.backlog), held=len(held))
        self.dispatcher.kick()

    async def _scan_leases(self) -> None:
        interval = self.config.expiry_scan_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                self.polls.expire_sessions()
                await self.dispatcher.expire_due()
            except Exception:  # keep scanning: one bad record must not stop expiry
                log.exception("lease scan failed")

    async def stop(self) -> None:
        """Stop dispatching, drain workers (``shutdown``), stop the loops, close the store."""
        if self._stopped:
            return
        self._stopped = True
        self._accepting = False
        self.book.release_waiters()  # result long-waits answer "still running" now
        wait_s = self.config.worker_shutdown_timeout_ms / 1000
        if self._dispatcher is not None:
            self._dispatcher.paused = True
            # frames being sent go out before `shutdown`, unless a peer stopped reading
            await self._dispatcher.idle(timeout=wait_s)
        if self._gateway is not None:
            await self._gateway.shutdown_workers(self.config.worker_shutdown_timeout_ms)
        if self._dispatcher is not None:
            await self._dispatcher.idle()  # every socket is closed now: no send can block
        if self._gateway is not None:
            await self._gateway.settle()
        for loop in self._loops:
            loop.cancel()
        for loop in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        self._loops = []
        if self._store is not None:
            await self._store.close()

    async def __aenter__(self) -> Orchestrator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _require_ready(self) -> None:
        if not self._accepting:
            raise NotReadyError("the orchestrator is not accepting work")

    def _on_write(self, before: TaskRecord | None, after: TaskRecord) -> None:
        if after.is_terminal and (before is None or not before.is_terminal):
            self.metrics.ended(after)
            self.backlog.discard(after.operation_id)
            extra = {"uncertain": True} if after.uncertain else {}
            log.debug(
                "task ended",
                operation_id=after.operation_id,
                disposition=after.disposition or after.state,
                attempt=after.attempt,
                **extra,
            )

    # -- tasks -------------------------------------------------------------------

    async def submit(
        self,
        queue: str,
        activity_name: str,
        input: JsonValue = None,
        *,
        operation_id: str | None = None,
        visibility_timeout: float | None = None,
        retry_policy: RetryPolicy | None = None,
        priority: int = 0,
        headers: dict[str, str] | None = None,
        workflow_revision: str | None = None,
    ) -> TaskHandle:
        """Accept a task; it is durable when this returns.  See :meth:`submit_request`."""
        optional = {
            "operationId": operation_id,
            "visibilityTimeout": visibility_timeout,
            "headers": headers,
            "workflowRevision": workflow_revision,
        }
        body: dict[str, Any] = {
            "activityName": activity_name,
            "input": input,
            "priority": priority,
            **{key: value for key, value in optional.items() if value is not None},
        }
        if retry_policy is not None:
            body["retryPolicy"] = retry_policy.to_wire()
        submission = await self.submit_request(parse_submission(queue, body))
        return TaskHandle(self, submission)

    @staticmethod
    def _new_record(request: TaskRequest, now: int) -> TaskRecord:
        return ledger.new_task(
            operation_id=request.operation_id or new_operation_id(),
            queue=request.queue,
            activity_name=request.activity_name,
            input=request.input,
            now=now,
            visibility_timeout_ms=request.visibility_timeout,
            retry_policy=request.retry_policy,
            priority=request.priority,
            headers=request.headers,
            workflow_revision=request.workflow_revision,
            request_digest=request.digest,
        )

    async def submit_request(self, request: TaskRequest) -> Submission:
        """Accept a validated request.  The same operation id and request again is
        idempotent (``created=False``); a different request raises ``TaskExistsError``."""
        self._require_ready()
        record = self._new_record(request, self._clock())
        if await self.book.insert(record):
            self.metrics.submitted.inc()
            self.dispatcher.enqueue(record)
            return Submission(record, created=True)
        existing = await self.book.get(record.operation_id)
        if existing is None or existing.request_digest != record.request_digest:
            raise TaskExistsError(record.operation_id)
        return Submission(existing, created=False)

    async def submit_requests(self, requests: Sequence[TaskRequest]) -> list[Submission]:
        """Accept many validated requests in one transaction: all of them, or none.

        Each is treated as :meth:`submit_request` would (an identical resubmission
        is ``created=False``); if any reuses an operation id with a different
        request, nothing is accepted and ``TaskExistsError`` names its ``index``.
        """
        self._require_ready()
        now = self._clock()
        records = [self._new_record(request, now) for request in requests]
        existing = await self.book.insert_many(records)
        created = [record for record, found in zip(records, existing, strict=True) if found is None]
        if created:
            self.metrics.submitted.inc(len(created))
            self.dispatcher.enqueue_many(created)
        return [
            Submission(record, created=True) if found is None else Submission(found, created=False)
            for record, found in zip(records, existing, strict=True)
        ]

    async def get(self, operation_id: str) -> TaskRecord:
        record = await self.book.get(operation_id)
        if record is None:
            raise UnknownTaskError(operation_id)
        return record

    async def wait_result(
        self,
        operation_id: str,
        timeout: float,  # noqa: ASYNC109
    ) -> TaskRecord | None:
        """The terminal record, or ``None`` if the task is still running after ``timeout`` s."""
        record = await self.book.wait_terminal(
            operation_id, min(max(timeout, 0.0), MAX_RESULT_WAIT_S)
        )
        if record is None:
            await self.get(operation_id)  # raises for an unknown operation
            return None
        return record if record.state == "terminal" else None

    async def cancel(self, operation_id: str, reason: str | None = None) -> bool:
        """Record cancellation intent, then tell the worker (CANCEL-1, CANCEL-2).

        Returns whether intent was recorded: ``False`` for a task already
        ended or already being cancelled.
        """
        self._require_ready()
        text = reason or "Task cancelled"
        try:
            _, after = await self.book.apply(
                operation_id, lambda r: ledger.request_cancel(r, reason=text, now=self._clock())
            )
        except KeyError:
            raise UnknownTaskError(operation_id) from None
        except TransitionError:
            return False
        log.info("cancellation recorded", operation_id=operation_id, state=after.state)
        if after.state == "cancelling":
            await self.gateway.deliver_cancel(after)
        return True

    async def clear_dead_letter(self, operation_id: str) -> TaskRecord:
        """End a dead-lettered task with its stored result; ``TransitionError`` if it is not one."""
        try:
            _, after = await self.book.apply(
                operation_id, lambda r: ledger.clear_dead_letter(r, now=self._clock())
            )
        except KeyError:
            raise UnknownTaskError(operation_id) from None
        return after

    async def requeue(self, operation_id: str, reason: str = "operator") -> TaskRecord | None:
        """Take the running attempt back from its worker and queue the task again.

        A task being cancelled is settled instead, as an uncertain cancellation.
        The worker's late result for the old attempt is then refused as stale
        (FENCE-1).  Returns the new record, or ``None`` if no attempt was running.
        """
        self._require_ready()
        record = await self.get(operation_id)
        if not record.holds_attempt or record.attempt_token is None:
            return None
        return await self.dispatcher.take_back(operation_id, record.attempt_token, reason=reason)

    def listen(self, listener: Callable[[TaskRecord | None, TaskRecord], None]) -> None:
        """Call ``listener(before, after)`` after every ledger write (``before`` is ``None``
        for a new task).  It runs on the event loop, inside the write: keep it short."""
        self.book.listen(listener)

    def unlisten(self, listener: Callable[[TaskRecord | None, TaskRecord], None]) -> None:
        self.book.unlisten(listener)

    # -- workers, queues, drain ----------------------------------------------------

    def workers(self) -> list[dict[str, Any]]:
        now = self._clock()
        return [s.describe(now) for s in sorted(self.registry, key=lambda s: s.worker_id)]

    def worker(self, worker_id: str) -> dict[str, Any] | None:
        """One worker as ``GET /api/v1/workers`` lists it (still listed through its grace)."""
        session = self.registry.get(worker_id)
        return None if session is None else session.describe(self._clock())

    async def shutdown_worker(self, worker_id: str, timeout_ms: int) -> bool:
        """Ask one worker to finish (``shutdown``) and wait up to ``timeout_ms`` for it to
        go; then close whatever is still open (SHUTDOWN-1).  Whether it was connected."""
        session = self.registry.get(worker_id)
        connection = None if session is None else session.connection
        if session is None or connection is None:
            return False
        await connection.send(build.shutdown())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(connection.wait_closed(), timeout_ms / 1000)
        if connection.closed:
            return True
        log.warning("worker did not finish in time; closing it", worker_id=worker_id)
        if session.transport == "long-poll":
            self.polls.end_session(worker_id)
        else:
            await connection.close(1001, "server shutting down")
        return True

    def task_queues(self) -> list[dict[str, Any]]:
        backlog = self.backlog.counts()
        names = sorted(set(backlog) | set(self.registry.queues()))
        queues = []
        for name in names:
            sessions = list(self.registry.on_queue(name))
            queues.append(
                {
                    "name": name,
                    "backlog": backlog.get(name, 0),
                    "workers": len(sessions),
                    "inFlight": sum(len(s.in_flight) for s in sessions),
                    "capacity": sum(s.concurrency for s in sessions if s.connection is not None),
                }
            )
        return queues

    def drain_worker(self, worker_id: str, draining: bool = True) -> bool:
        found = self.registry.drain_worker(worker_id, draining)
        if not draining:
            self.dispatcher.kick()
        return found

    def drain_deployment(self, name: str, draining: bool = True) -> list[str]:
        touched = self.registry.drain_deployment(name, draining)
        if not draining:
            self.dispatcher.kick()
        return touched

    def _snapshot(self) -> Snapshot:
        now = self._clock()
        in_flight: Counter[str] = Counter()
        capacity: Counter[str] = Counter()
        workers: Counter[str] = Counter()
        stale = 0
        for session in self.registry:
            workers[session.queue] += 1
            in_flight[session.queue] += len(session.in_flight)
            if session.connection is not None:
                capacity[session.queue] += session.concurrency
            if now - session.last_heartbeat > STALE_HEARTBEAT_MS:
                stale += 1
        return Snapshot(
            self.backlog.counts(), in_flight, capacity, workers, stale, self.registry.parked()
        )
