"""Dispatch: queued tasks to free workers, and attempts taken back to the queue.

One loop (:meth:`Dispatcher.run`) wakes whenever something may have made a
match possible — a task was queued, a worker registered or freed a slot, a
backoff elapsed — and, without yielding, pairs every ready task it can with
an eligible worker (:meth:`Registry.select`), reserving the slot at once so
no worker is ever offered more than its concurrency.  Each pair then becomes
a claim task: write the lease durably (compare-and-swap), and only then send
the ``task`` frame (DISPATCH-3).  Claims run concurrently, so the store's
group commit turns a burst of them into a few fsyncs.

:meth:`Dispatcher.take_back` is the other direction, shared by lease expiry,
lost workers, recovery and retried failures: requeue the attempt (or settle
it, if it was being cancelled), free the slot, and index the task again.
:meth:`Dispatcher.unclaim` undoes a lease whose frame never left — a socket
that closed or a poll that was answered while the lease was being written —
without counting the attempt.

A ledger that refuses writes (disk full, read-only) must not turn either
direction into a busy loop or a loss: a claim that cannot be written puts
its task back and holds matching for a backoff that doubles up to
:data:`MAX_HOLD_MS` (:class:`StoreHold`), then lets one claim at a time
probe the ledger until one succeeds; and an attempt that cannot be
taken back keeps its deadline entry a little later, so the lease scan tries
again until the ledger takes the write.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Final

import structlog

from treadle_protocol import UNSET, TaskMessage, build

from . import ledger
from .backlog import Backlog, Pending
from .book import TaskBook
from .errors import ConflictError, StoreError, TransitionError
from .leases import Deadlines, expiry_of
from .ledger import NO_DETAILS, TaskRecord
from .metrics import Metrics
from .registry import InFlight, Registry, WorkerSession

__all__ = ["MAX_HOLD_MS", "MIN_HOLD_MS", "Dispatcher", "StoreHold", "pending_of"]

log = structlog.get_logger("treadle.dispatch")
Clock = Callable[[], int]
MIN_HOLD_MS: Final = 50
MAX_HOLD_MS: Final = 2000
"""Matching pauses this long (doubling from :data:`MIN_HOLD_MS`) after a claim the ledger
refused, and a take-back the ledger refused is tried again this long after."""


class StoreHold:
    """Backoff after ledger write failures, sans I/O: no claims until ``until``."""

    def __init__(self) -> None:
        self.until = 0
        self._delay = 0

    def failed(self, now: int) -> int:
        """A write failed at ``now``; returns the delay (ms) before the next try.

        Failures during a hold (claims that were already under way) do not
        lengthen it: one burst of refusals is one step of the backoff."""
        if now < self.until:
            return self.until - now
        self._delay = min(max(self._delay * 2, MIN_HOLD_MS), MAX_HOLD_MS)
        self.until = now + self._delay
        return self._delay

    def succeeded(self) -> None:
        self._delay = 0
        self.until = 0

    @property
    def failing(self) -> bool:
        """The last write failed, and none has succeeded since."""
        return self._delay > 0

    def holding(self, now: int) -> bool:
        return now < self.until

    def lapsed(self, now: int) -> bool:
        """``True`` once, when a hold is over (the delay is kept until a success)."""
        if self.until and now >= self.until:
            self.until = 0
            return True
        return False


def pending_of(record: TaskRecord, ready_ns: int = 0) -> Pending:
    """The backlog entry of a queued record; ``ready_ns`` is when it was indexed
    (``time.perf_counter_ns``), for the dispatch latency, or 0 when unknown."""
    return Pending(
        record.operation_id,
        record.queue,
        record.activity_name,
        record.priority,
        record.available_at,
        ready_ns,
    )


def task_frame(record: TaskRecord) -> TaskMessage:
    """The ``task`` frame for the attempt ``record`` holds (DISPATCH-6)."""
    assert record.attempt_token is not None
    details = record.last_heartbeat_details
    return build.task(
        operation_id=record.operation_id,
        activity_name=record.activity_name,
        input=record.input,
        attempt=record.attempt,
        attempt_token=record.attempt_token,
        visibility_timeout=record.visibility_timeout_ms,
        workflow_execution_token=record.workflow_execution_token,
        workflow_revision=record.workflow_revision,
        headers=record.headers,
        last_heartbeat_details=UNSET if details is NO_DETAILS else details,  # type: ignore[arg-type]
    )


class Dispatcher:
    """Matches the backlog to the registry and owns the claim and take-back writes."""

    def __init__(
        self,
        *,
        book: TaskBook,
        registry: Registry,
        backlog: Backlog,
        deadlines: Deadlines,
        metrics: Metrics,
        clock: Clock,
        cancel_settle_ms: int | None,
    ) -> None:
        self._book = book
        self._registry = registry
        self._backlog = backlog
        self._deadlines = deadlines
        self._metrics = metrics
        self._clock = clock
        self._cancel_settle_ms = cancel_settle_ms
        self._wake = asyncio.Event()
        self._claims: set[asyncio.Task[None]] = set()
        self._hold = StoreHold()
        self.paused = False

    # -- the loop --------------------------------------------------------------

    def kick(self) -> None:
        """Something changed that may allow a match; the loop will look."""
        self._wake.set()

    def enqueue(self, record: TaskRecord) -> None:
        """Index a queued record and wake the loop."""
        self._backlog.add(pending_of(record, time.perf_counter_ns()), self._clock())
        self._wake.set()

    def enqueue_many(self, records: Sequence[TaskRecord]) -> None:
        """Index many queued records and wake the loop once."""
        now = self._clock()
        ready_ns = time.perf_counter_ns()
        for record in records:
            self._backlog.add(pending_of(record, ready_ns), now)
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self.paused:
                self.match()

    def match(self) -> int:
        """Pair ready tasks with free workers, reserving slots; returns claims started."""
        if self._hold.holding(self._clock()):
            return 0  # the lease scan kicks the loop when the hold is over
        if self._hold.failing and self._claims:
            return 0  # after a refused write, one claim at a time probes the ledger
        started = 0
        for queue, activity in self._backlog.ready_keys():
            while True:
                session = self._registry.select(queue, activity)
                if session is None:
                    break
                pending = self._backlog.pop(queue, activity)
                if pending is None:
                    break
                self._registry.reserve(session)
                claim = asyncio.create_task(self._claim(session, pending))
                self._claims.add(claim)
                claim.add_done_callback(self._claims.discard)
                started += 1
                if self._hold.failing:
                    return started
        return started

    async def idle(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait for the claims in progress (shutdown, tests), at most ``timeout`` seconds;
        ``False`` if some are still running then (none is cancelled)."""
        loop = asyncio.get_running_loop()
        end = None if timeout is None else loop.time() + timeout
        while self._claims:
            left = None if end is None else end - loop.time()
            if left is not None and left <= 0:
                return False
            await asyncio.wait(list(self._claims), timeout=left)
        return True

    # -- claim -----------------------------------------------------------------

    async def _claim(self, session: WorkerSession, pending: Pending) -> None:
        token = str(uuid.uuid4())
        now = self._clock()
        if not self._deliverable(session):
            # the poll or socket went away after the match: nothing written yet
            self._registry.unreserve(session)
            self._backlog.add(pending, now)
            self.kick()
            return
        try:
            _, record = await self._book.apply(
                pending.operation_id,
                lambda r: ledger.lease(r, token=token, worker_id=session.worker_id, now=now),
            )
        except TransitionError:
            # cancelled or otherwise moved on while it waited: nothing to send
            self._registry.unreserve(session)
            self.kick()
            return
        except KeyError:
            log.warning("a queued task has no ledger record", operation_id=pending.operation_id)
            self._registry.unreserve(session)
            self.kick()
            return
        except (ConflictError, StoreError) as exc:
            self._registry.unreserve(session)
            retry_ms = self._hold.failed(self._clock()) if isinstance(exc, StoreError) else 0
            log.error(
                "claim failed; task stays queued",
                operation_id=pending.operation_id,
                error=str(exc),
                retry_in_ms=retry_ms,
            )
            self._backlog.add(pending, now)
            self.kick()
            return
        self._hold.succeeded()
        self._registry.hold(
            session,
            InFlight(
                operation_id=record.operation_id,
                attempt_token=token,
                activity_name=record.activity_name,
                workflow_revision=record.workflow_revision,
                dispatched_at=now,
            ),
        )
        assert record.lease_deadline is not None
        self._deadlines.push(record.lease_deadline, record.operation_id, token)
        self._metrics.dispatched(record, now)
        connection = session.connection
        if (
            not self._registry.tracked(session)  # forfeited, or the poll answered, meanwhile
            or connection is None
            or not await connection.send(task_frame(record))
        ):
            # The frame never left (the session is gone, the socket closed, or the
            # poll was answered or abandoned meanwhile): the attempt never started.
            await self.unclaim(record.operation_id, token)
        elif pending.ready_ns:
            self._metrics.dispatch_latency.observe(
                (time.perf_counter_ns() - pending.ready_ns) / 1e6
            )

    def _deliverable(self, session: WorkerSession) -> bool:
        connection = session.connection
        if connection is None or connection.closed:
            return False
        demand = connection.demand
        return demand is None or demand >= session.reserved

    # -- take back ---------------------------------------------------------------

    async def take_back(self, operation_id: str, token: str, *, reason: str) -> TaskRecord | None:
        """Requeue the attempt held under ``token`` (or settle it if cancelling).

        ``reason`` is ``lease-expired``, ``worker-disconnect`` or ``recovery``.
        Returns the new record, or ``None`` if that attempt had already ended.
        """
        now = self._clock()

        def step(record: TaskRecord) -> TaskRecord:
            if not record.holds_attempt or record.attempt_token != token:
                raise TransitionError(record.operation_id, record.state, "take back")
            if record.state == "cancelling":
                return ledger.settle_uncertain(record, now=now)
            return ledger.requeue(record, now=now)

        try:
            _, record = await self._book.apply(operation_id, step)
        except (TransitionError, KeyError):
            self._registry.release(operation_id, token)
            return None
        except (ConflictError, StoreError) as exc:
            # the attempt stays leased, and so its slot held: try again shortly
            retry_at = self._clock() + MAX_HOLD_MS
            self._deadlines.push(retry_at, operation_id, token)
            log.error(
                "take back failed; will retry",
                operation_id=operation_id,
                reason=reason,
                error=str(exc),
                retry_in_ms=MAX_HOLD_MS,
            )
            return None
        session = self._registry.release(operation_id, token)
        log.info(
            "attempt taken back",
            operation_id=operation_id,
            reason=reason,
            state=record.state,
            disposition=record.disposition,
            attempt=record.attempt,
            worker_id=None if session is None else session.worker_id,
        )
        self._metrics.requeued(record)
        if record.state == "queued":
            self.enqueue(record)
        elif session is not None:
            self.kick()
        return record

    async def unclaim(self, operation_id: str, token: str) -> TaskRecord | None:
        """Undo the lease of an undelivered ``task`` frame; no attempt is spent."""
        now = self._clock()
        try:
            _, record = await self._book.apply(
                operation_id, lambda r: ledger.unclaim(r, token=token, now=now)
            )
        except (TransitionError, KeyError):
            self._registry.release(operation_id, token)
            return None
        except (ConflictError, StoreError) as exc:
            # the lease stands; expiry will take it back
            log.error("undelivered claim not undone", operation_id=operation_id, error=str(exc))
            return None
        self._registry.release(operation_id, token)
        log.info("undelivered attempt undone", operation_id=operation_id, state=record.state)
        if record.state == "queued":
            self.enqueue(record)
        else:
            self.kick()
        return record

    async def expire_due(self) -> None:
        """Take back every attempt whose deadline has passed (the lease scan)."""
        now = self._clock()
        if self._backlog.promote(now) | self._hold.lapsed(now):
            self.kick()
        due = self._deadlines.due(now)
        if not due:
            return
        expired = []
        for entry in due:
            record = self._book.live(entry.operation_id)
            if record is None or record.attempt_token != entry.attempt_token:
                continue
            deadline = expiry_of(record, self._cancel_settle_ms)
            if deadline is None:
                continue
            if deadline > now:
                self._deadlines.push(deadline, entry.operation_id, entry.attempt_token)
                continue
            expired.append(
                self.take_back(entry.operation_id, entry.attempt_token, reason="lease-expired")
            )
        if expired:
            await asyncio.gather(*expired)
