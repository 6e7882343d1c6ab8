"""Result and heartbeat fencing: whose result may be applied, sans I/O.

A result is applied only for the current attempt of a task, from the worker
that holds it, echoing the revision it was given (RESULT-1…RESULT-4).  Two
paths, as in Weft: the fast path checks the in-flight entry of the attempt,
the fallback — when no worker holds the task in memory (a resend after a
reconnect, a restart, or after completion) — checks the durable record.
Every refusal is a reason string that goes, verbatim, into a correlated
``protocolError`` (or, for long-poll, a 403 ``reason``).

HTTP long-poll (LP-6) has no in-memory entry to consult: :func:`check_claim`
authorizes against the record alone, in Weft's long-poll order — the URL's
queue first, then the holder (a live attempt needs the ``workerId`` it was
given), then the token, then the revision, strictly (LP-7).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from treadle_protocol import ForbiddenReasonValue

from .ledger import TaskRecord
from .registry import InFlight

__all__ = [
    "REVISION_MISMATCH",
    "STALE_TOKEN",
    "UNKNOWN_OPERATION",
    "Accept",
    "Reject",
    "check_claim",
    "check_claim_heartbeat",
    "check_heartbeat",
    "check_in_flight",
    "check_record",
    "conflicting_content",
    "not_assigned",
    "rejection_message",
]

STALE_TOKEN: Final = "stale attempt token"
REVISION_MISMATCH: Final = "revision mismatch"
UNKNOWN_OPERATION: Final = "unknown operation"
QUEUE_MISMATCH: Final = "queue mismatch"


def not_assigned(worker_id: str) -> str:
    return f'task not assigned to worker "{worker_id}"'


def conflicting_content(operation_id: str, token: str) -> str:
    return (
        f'conflicting content resubmitted for operation "{operation_id}" '
        f'under attempt token "{token}"'
    )


def rejection_message(subject: str, operation_id: str, reason: str) -> str:
    """``<subject> for operation "X" rejected — <reason>`` (em dash, U+2014)."""
    return f'{subject} for operation "{operation_id}" rejected \u2014 {reason}'


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse the result; ``reason`` is the text, ``code`` the long-poll 403 reason."""

    reason: str
    code: ForbiddenReasonValue


@dataclass(frozen=True, slots=True)
class Accept:
    """Go on: ``commit`` a new result, or answer a repeat (``duplicate``, ``dead-lettered``)."""

    action: Literal["commit", "duplicate", "dead-lettered"]


def _revision_differs(expected: str | None, echoed: str | None) -> bool:
    return expected is not None and echoed != expected


def check_in_flight(
    holder_id: str, entry: InFlight, *, worker_id: str, token: str, revision: str | None
) -> Reject | Accept:
    """The fast path: the attempt is held in memory by ``holder_id`` (RESULT-1)."""
    if holder_id != worker_id:
        return Reject(not_assigned(worker_id), "worker-mismatch")
    if entry.attempt_token != token:
        return Reject(STALE_TOKEN, "stale-attempt")
    if _revision_differs(entry.workflow_revision, revision):
        return Reject(REVISION_MISMATCH, "revision-mismatch")
    return Accept("commit")


def check_record(
    record: TaskRecord | None,
    *,
    worker_id: str | None,
    token: str,
    revision: str | None,
    digest: str,
) -> Reject | Accept:
    """The fallback: authorize against the durable record (RESULT-2, RESULT-7).

    ``worker_id`` ``None`` skips the holder check (the queue-scoped long-poll
    identifies a claim by its token alone).
    """
    if record is None:
        return Reject(UNKNOWN_OPERATION, "unknown-operation")
    operation_id = record.operation_id
    if record.is_terminal:
        if record.result_token != token:
            return Reject(STALE_TOKEN, "stale-attempt")
        if record.result_digest != digest:
            return Reject(conflicting_content(operation_id, token), "conflicting-content")
        return Accept("dead-lettered" if record.state == "deadLettered" else "duplicate")
    if record.attempt_token != token:
        return Reject(STALE_TOKEN, "stale-attempt")
    if not record.holds_attempt or (worker_id is not None and record.worker_id != worker_id):
        return Reject(not_assigned(worker_id or ""), "worker-mismatch")
    if _revision_differs(record.workflow_revision, revision):
        return Reject(REVISION_MISMATCH, "revision-mismatch")
    return Accept("commit")


def check_heartbeat(held: tuple[str, InFlight] | None, *, worker_id: str, token: str) -> str | None:
    """Why an ``activityHeartbeat`` is refused, or ``None`` (LEASE-5: no ledger fallback)."""
    if held is None:
        return STALE_TOKEN
    holder_id, entry = held
    if holder_id != worker_id:
        return not_assigned(worker_id)
    if entry.attempt_token != token:
        return STALE_TOKEN
    return None


def _claim_identity(
    record: TaskRecord | None, *, queue: str, worker_id: str | None, token: str
) -> Reject | None:
    """LP-6 up to the token: whether this claim's holder may speak for the record's attempt."""
    if record is None:
        return Reject(UNKNOWN_OPERATION, "unknown-operation")
    if record.queue != queue:
        return Reject(QUEUE_MISMATCH, "queue-mismatch")
    if record.holds_attempt:
        if worker_id is None or worker_id != record.worker_id:
            return Reject(not_assigned(worker_id or ""), "worker-mismatch")
        if token != record.attempt_token:
            return Reject(STALE_TOKEN, "attempt-token-mismatch")
        return None
    if record.is_terminal and record.result_token is not None:
        # resolved: the token alone proves a resend belongs to the attempt that resolved it
        if token != record.result_token:
            return Reject(STALE_TOKEN, "attempt-token-mismatch")
        return None
    return Reject(STALE_TOKEN, "stale-attempt")


def check_claim(
    record: TaskRecord | None,
    *,
    queue: str,
    worker_id: str | None,
    token: str,
    revision: str | None,
    digest: str,
) -> Reject | Accept:
    """Authorize a long-poll result (LP-6, LP-7) against the durable record."""
    refused = _claim_identity(record, queue=queue, worker_id=worker_id, token=token)
    if refused is not None:
        return refused
    assert record is not None
    if record.holds_attempt:
        if _revision_differs(record.workflow_revision, revision):
            return Reject(REVISION_MISMATCH, "revision-mismatch")
        return Accept("commit")
    if record.result_digest != digest:
        return Reject(conflicting_content(record.operation_id, token), "conflicting-content")
    return Accept("dead-lettered" if record.state == "deadLettered" else "duplicate")


def check_claim_heartbeat(
    record: TaskRecord | None, *, queue: str, worker_id: str | None, token: str
) -> bool:
    """Whether a long-poll heartbeat may be answered (LP-9); the fencing of a result, minus
    the revision (a heartbeat carries none)."""
    return _claim_identity(record, queue=queue, worker_id=worker_id, token=token) is None
