"""The task ledger: the durable record of every task and its transitions, sans I/O.

A :class:`TaskRecord` is immutable.  Each transition below is a pure function
from a record (and the time, and fresh tokens passed in) to the next record,
with ``generation`` bumped by one; it raises :class:`TransitionError` when it
does not apply.  The store writes the result only if the stored generation is
still the one the transition started from (compare-and-swap), so two writers —
two coroutines, or two orchestrator nodes on one database — can never both
win: one lease per attempt, one applied result per task.

States::

    queued ──lease──▶ leased ──complete──▶ terminal{completed|failed}
      ▲                 │ │ ╲──cancel──▶ cancelling ──complete──▶ terminal{cancelled|…}
      └──requeue────────┘ │                   └──settle_uncertain──▶ terminal{cancelled, uncertain}
      └──unclaim────────┘ (the task frame never left: same attempt, no penalty)
    queued ──cancel──▶ terminal{cancelled}
    requeue past maxAttempts ──▶ terminal{retryExhausted}

Weft writes ``completing`` between ``leased`` and ``terminal``; a single-row
compare-and-swap makes that intermediate step unnecessary here, so Treadle
never stores it (the state name stays reserved in the schema).
"""

from __future__ import annotations

import hashlib
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Final, Literal

from treadle_protocol import JsonValue, ResultStatusValue, TaskDispositionValue
from treadle_protocol.jsonjs import canonical_json

from .errors import TransitionError
from .retry import RetryPolicy

__all__ = [
    "ATTEMPT_DEADLINE_MULTIPLIER",
    "DEFAULT_VISIBILITY_TIMEOUT_MS",
    "MAX_VISIBILITY_TIMEOUT_MS",
    "MIN_VISIBILITY_TIMEOUT_MS",
    "NO_DETAILS",
    "TaskRecord",
    "clamp_visibility_timeout",
    "clear_dead_letter",
    "complete",
    "dead_letter",
    "exhausted_message",
    "lease",
    "new_task",
    "renew",
    "request_cancel",
    "requeue",
    "result_digest",
    "settle_uncertain",
    "unclaim",
]

DEFAULT_VISIBILITY_TIMEOUT_MS: Final = 30_000
MIN_VISIBILITY_TIMEOUT_MS: Final = 10
MAX_VISIBILITY_TIMEOUT_MS: Final = 3_600_000
ATTEMPT_DEADLINE_MULTIPLIER: Final = 6

State = Literal["queued", "leased", "cancelling", "terminal", "deadLettered"]
"""The stored states: the schema's ``TaskStateValue`` less ``completing`` (never stored)."""
Disposition = TaskDispositionValue
Status = ResultStatusValue


class _NoDetails:
    """No heartbeat details were stored (distinct from details ``null``)."""

    def __repr__(self) -> str:
        return "NO_DETAILS"


NO_DETAILS: Final = _NoDetails()


def clamp_visibility_timeout(value: float | None) -> int:
    """Weft's rule: default 30 000 ms, clamped to [10, 3 600 000]; non-finite → default."""
    if value is None or not math.isfinite(value):
        return DEFAULT_VISIBILITY_TIMEOUT_MS
    return int(min(max(value, MIN_VISIBILITY_TIMEOUT_MS), MAX_VISIBILITY_TIMEOUT_MS))


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """One task, as the ledger holds it.  Times are epoch milliseconds."""

    operation_id: str
    queue: str
    activity_name: str
    input: JsonValue
    state: State
    generation: int
    attempt: int
    created_at: int
    available_at: int
    visibility_timeout_ms: int = DEFAULT_VISIBILITY_TIMEOUT_MS
    retry_policy: RetryPolicy | None = None
    priority: int = 0
    headers: dict[str, str] | None = None
    workflow_revision: str | None = None
    workflow_execution_token: str | None = None
    request_digest: str = ""
    # the live attempt
    attempt_token: str | None = None
    worker_id: str | None = None
    lease_deadline: int | None = None
    attempt_deadline: int | None = None
    last_heartbeat_details: JsonValue | _NoDetails = field(default=NO_DETAILS)
    # cancellation
    cancellation_reason: str | None = None
    cancellation_requested_at: int | None = None
    # the outcome
    disposition: Disposition | None = None
    status: Status | None = None
    value: JsonValue = None
    error: str | None = None
    uncertain: bool = False
    result_token: str | None = None
    result_digest: str | None = None
    finished_at: int | None = None
    requeue_count: int = 0
    retry_count: int = 0

    @property
    def is_terminal(self) -> bool:
        return self.state in ("terminal", "deadLettered")

    @property
    def holds_attempt(self) -> bool:
        """Leased or cancelling: a worker holds the current attempt."""
        return self.state in ("leased", "cancelling")

    def wire_detail(self) -> dict[str, Any]:
        """The Task API view (task-api.json ``#/$defs/taskDetail``)."""
        detail: dict[str, Any] = {
            "operationId": self.operation_id,
            "state": self.state,
            "attempt": self.attempt,
            "queue": self.queue,
            "activityName": self.activity_name,
        }
        if self.is_terminal:
            detail["disposition"] = self.disposition
            if self.status is not None:
                detail["status"] = self.status
            if self.status == "completed":
                detail["value"] = self.value
            elif self.error is not None:
                detail["error"] = self.error
            if self.uncertain:
                detail["uncertain"] = True
        return detail


_FIELD_NAMES: Final = tuple(f.name for f in fields(TaskRecord))
_FIELD_INDEX: Final = {name: index for index, name in enumerate(_FIELD_NAMES)}
_GENERATION: Final = _FIELD_INDEX["generation"]
_read_fields: Final = operator.attrgetter(*_FIELD_NAMES)
_SLOT_SETTERS: Final[tuple[Callable[[TaskRecord, Any], None], ...]] = tuple(
    TaskRecord.__dict__[name].__set__ for name in _FIELD_NAMES
)


def _next(record: TaskRecord, **changes: Any) -> TaskRecord:
    """``record`` with ``changes`` and the generation bumped by one.

    What ``dataclasses.replace`` returns, at about half its cost (it runs twice per task):
    every field is read in one ``attrgetter`` call and the slots of a new instance are set
    directly, which is all the generated ``__init__`` does (there is no ``__post_init__``).
    """
    values = list(_read_fields(record))
    for name, value in changes.items():
        values[_FIELD_INDEX[name]] = value
    values[_GENERATION] = record.generation + 1
    copy = object.__new__(TaskRecord)
    for set_slot, value in zip(_SLOT_SETTERS, values, strict=True):
        set_slot(copy, value)
    return copy


def new_task(
    *,
    operation_id: str,
    queue: str,
    activity_name: str,
    input: JsonValue,
    now: int,
    visibility_timeout_ms: float | None = None,
    retry_policy: RetryPolicy | None = None,
    priority: int = 0,
    headers: dict[str, str] | None = None,
    workflow_revision: str | None = None,
    workflow_execution_token: str | None = None,
    request_digest: str = "",
) -> TaskRecord:
    """A freshly accepted task: queued, attempt 1, generation 1."""
    return TaskRecord(
        operation_id=operation_id,
        queue=queue,
        activity_name=activity_name,
        input=input,
        state="queued",
        generation=1,
        attempt=1,
        created_at=now,
        available_at=now,
        visibility_timeout_ms=clamp_visibility_timeout(visibility_timeout_ms),
        retry_policy=retry_policy,
        priority=priority,
        headers=headers,
        workflow_revision=workflow_revision,
        workflow_execution_token=workflow_execution_token,
        request_digest=request_digest,
    )


def lease(record: TaskRecord, *, token: str, worker_id: str, now: int) -> TaskRecord:
    """queued → leased: a worker takes attempt ``record.attempt`` under a fresh token."""
    if record.state != "queued":
        raise TransitionError(record.operation_id, record.state, "lease")
    vt = record.visibility_timeout_ms
    return _next(
        record,
        state="leased",
        attempt_token=token,
        worker_id=worker_id,
        lease_deadline=now + vt,
        attempt_deadline=now + ATTEMPT_DEADLINE_MULTIPLIER * vt,
    )


def renew(
    record: TaskRecord, *, now: int, details: JsonValue | _NoDetails = NO_DETAILS
) -> TaskRecord:
    """An ``activityHeartbeat``: lease = min(now + vt, attempt deadline), never shortened."""
    if not record.holds_attempt:
        raise TransitionError(record.operation_id, record.state, "renew")
    assert record.lease_deadline is not None
    assert record.attempt_deadline is not None
    deadline = max(
        record.lease_deadline, min(now + record.visibility_timeout_ms, record.attempt_deadline)
    )
    kept = record.last_heartbeat_details if isinstance(details, _NoDetails) else details
    return _next(record, lease_deadline=deadline, last_heartbeat_details=kept)


def exhausted_message(activity_name: str, max_attempts: int) -> str:
    """Weft's error text for a task that ran out of attempts."""
    return f'Activity "{activity_name}" exhausted all {max_attempts} retry attempts'


def _release(**extra: Any) -> dict[str, Any]:
    return {
        "attempt_token": None,
        "worker_id": None,
        "lease_deadline": None,
        "attempt_deadline": None,
        **extra,
    }


def requeue(record: TaskRecord, *, now: int, failed: bool = False) -> TaskRecord:
    """Take the attempt back (lease expiry, lost worker, or a retryable failure).

    The next attempt gets ``attempt + 1``, a delay from the retry policy, and —
    when it is leased — a new token, so a late result of this attempt is stale.
    Past ``maxAttempts`` the task ends ``retryExhausted`` instead.
    """
    if not record.holds_attempt:
        raise TransitionError(record.operation_id, record.state, "requeue")
    next_attempt = record.attempt + 1
    policy = record.retry_policy
    if policy is not None and not policy.allows(next_attempt):
        assert policy.max_attempts is not None
        return _next(
            record,
            **_release(
                state="terminal",
                disposition="retryExhausted",
                status="failed",
                error=exhausted_message(record.activity_name, policy.max_attempts),
                finished_at=now,
            ),
        )
    delay = int(policy.delay_ms(next_attempt)) if policy is not None else 0
    return _next(
        record,
        **_release(
            state="queued",
            attempt=next_attempt,
            available_at=now + delay,
            cancellation_reason=None,
            cancellation_requested_at=None,
            requeue_count=record.requeue_count + (0 if failed else 1),
            retry_count=record.retry_count + (1 if failed else 0),
        ),
    )


def request_cancel(record: TaskRecord, *, reason: str, now: int) -> TaskRecord:
    """Record cancellation intent: queued → terminal cancelled; leased → cancelling."""
    if record.state == "queued":
        return _next(
            record,
            state="terminal",
            disposition="cancelled",
            status="cancelled",
            error=reason,
            cancellation_reason=reason,
            cancellation_requested_at=now,
            finished_at=now,
        )
    if record.state == "leased":
        return _next(
            record, state="cancelling", cancellation_reason=reason, cancellation_requested_at=now
        )
    raise TransitionError(record.operation_id, record.state, "cancel")


def result_digest(status: str, value: JsonValue, error: str | None) -> str:
    """Content identity of a result: sha256 over the canonical JSON of {status, value, error}."""
    body = canonical_json({"status": status, "value": value, "error": error})
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _content(status: Status, value: JsonValue, error: str | None) -> dict[str, Any]:
    """The stored fields of a result as sent: a value only when completed, else an error.

    The digest identifies the content as submitted, so an identical resend is
    recognised as a duplicate even when the status is normalised afterwards.
    """
    kept_value = value if status == "completed" else None
    kept_error = error if status != "completed" else None
    return {
        "value": kept_value,
        "error": kept_error,
        "result_digest": result_digest(status, kept_value, kept_error),
    }


def complete(
    record: TaskRecord,
    *,
    token: str,
    status: Status,
    value: JsonValue = None,
    error: str | None = None,
    now: int,
) -> TaskRecord:
    """Apply the result of the current attempt: leased/cancelling → terminal.

    ``cancelled`` becomes the cancelled disposition only when the record is
    ``cancelling`` under this token; otherwise it is recorded as ``failed``
    with its error text kept (Weft's rule).  Fencing (worker, token, revision)
    is the caller's job; this checks only that ``token`` is the live one.
    """
    if not record.holds_attempt or record.attempt_token != token:
        raise TransitionError(record.operation_id, record.state, "complete")
    content = _content(status, value, error)  # before the status is normalised below
    disposition: Disposition
    if status == "cancelled":
        disposition = "cancelled" if record.state == "cancelling" else "failed"
        status = disposition
    else:
        disposition = status
    return _next(
        record,
        state="terminal",
        disposition=disposition,
        status=status,
        result_token=token,
        lease_deadline=None,
        attempt_deadline=None,
        finished_at=now,
        **content,
    )


def unclaim(record: TaskRecord, *, token: str, now: int) -> TaskRecord:
    """Undo a lease whose ``task`` was never delivered (the poll or socket went away first).

    The attempt never started, so it is not counted: leased → queued with the
    same attempt number.  A cancel that arrived meanwhile ends the task
    cancelled — certainly, since no worker ever ran it.
    """
    if not record.holds_attempt or record.attempt_token != token:
        raise TransitionError(record.operation_id, record.state, "unclaim")
    if record.state == "cancelling":
        return _cancelled(record, now=now, uncertain=False)
    return _next(record, **_release(state="queued"))


def settle_uncertain(record: TaskRecord, *, now: int) -> TaskRecord:
    """A cancelling attempt whose worker never answered: terminal cancelled, uncertain."""
    if record.state != "cancelling":
        raise TransitionError(record.operation_id, record.state, "settle")
    return _cancelled(record, now=now, uncertain=True)


def _cancelled(record: TaskRecord, *, now: int, uncertain: bool) -> TaskRecord:
    """End a cancelling attempt with no result from its worker."""
    return _next(
        record,
        **_release(
            state="terminal",
            disposition="cancelled",
            status="cancelled",
            error=record.cancellation_reason,
            uncertain=uncertain,
            finished_at=now,
        ),
    )


def dead_letter(
    record: TaskRecord,
    *,
    token: str,
    status: Status,
    value: JsonValue = None,
    error: str | None = None,
    now: int,
) -> TaskRecord:
    """A result that could not be applied after bounded retries, kept for an operator.

    The task leaves the live set (``deadLettered``); the result is stored as
    sent so it can be inspected and cleared through diagnostics.
    """
    if record.is_terminal:
        raise TransitionError(record.operation_id, record.state, "dead-letter")
    return _next(
        record,
        **_release(
            state="deadLettered",
            status=status,
            result_token=token,
            finished_at=now,
            **_content(status, value, error),
        ),
    )


def clear_dead_letter(record: TaskRecord, *, now: int) -> TaskRecord:
    """An operator accepts a dead-lettered result: the task ends with it.

    A completed result resolves the task as completed; anything else as failed
    (there was no live cancellation to honour any more).
    """
    if record.state != "deadLettered":
        raise TransitionError(record.operation_id, record.state, "clear dead letter")
    disposition: Disposition = "completed" if record.status == "completed" else "failed"
    return _next(
        record, state="terminal", disposition=disposition, status=disposition, finished_at=now
    )
