"""Attempt deadlines: when a held attempt must be taken back, sans I/O.

Every attempt a worker holds has a deadline: its lease deadline while
``leased`` (renewed only by ``activityHeartbeat``, never past the absolute
attempt deadline), and its cancellation deadline while ``cancelling``.  The
orchestrator pushes (deadline, operation, token) here when it leases an
attempt and scans :meth:`Deadlines.due` on a short interval (LEASE-8).

Entries are not updated when a lease is renewed.  A popped entry is only a
prompt to look at the record: if the record's own deadline is later, the
entry is pushed again at that deadline (:func:`expiry_of` says which).  So a
heartbeat costs nothing here, and a stale entry costs one look.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from .ledger import TaskRecord

__all__ = ["Deadlines", "Due", "expiry_of"]


@dataclass(frozen=True, slots=True, order=True)
class Due:
    deadline: int
    operation_id: str
    attempt_token: str


def expiry_of(record: TaskRecord, cancel_settle_ms: int | None) -> int | None:
    """When the attempt ``record`` holds must be taken back, or ``None`` if it holds none.

    A cancelling attempt settles at ``cancellationRequestedAt + cancel_settle_ms``
    when that is configured, else at its lease deadline (which is no longer
    renewed: CANCEL-5).
    """
    if record.state == "leased":
        return record.lease_deadline
    if record.state == "cancelling":
        if cancel_settle_ms is not None and record.cancellation_requested_at is not None:
            return record.cancellation_requested_at + cancel_settle_ms
        return record.lease_deadline
    return None


class Deadlines:
    """A min-heap of attempt deadlines."""

    def __init__(self) -> None:
        self._heap: list[Due] = []

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, deadline: int, operation_id: str, attempt_token: str) -> None:
        heapq.heappush(self._heap, Due(deadline, operation_id, attempt_token))

    def due(self, now: int) -> list[Due]:
        """Pop every entry whose deadline is at or before ``now``."""
        popped = []
        while self._heap and self._heap[0].deadline <= now:
            popped.append(heapq.heappop(self._heap))
        return popped

    def next_deadline(self) -> int | None:
        return self._heap[0].deadline if self._heap else None
