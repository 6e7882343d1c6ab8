"""Queued tasks waiting for a worker: an in-memory index over the ledger, sans I/O.

The ledger says a task is ``queued``; the backlog says which queued task a
free worker should get next.  Tasks are kept per (queue, activity) in a heap
ordered by priority (higher first), then by when they became available, then
by arrival.  A task whose retry backoff has not elapsed waits in a separate
heap until :meth:`Backlog.promote` is called with a later time.

Removal is lazy: :meth:`discard` forgets the task and its heap entry is
skipped when it surfaces.  The index can always be rebuilt from the ledger,
which is exactly what start-up recovery does.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from collections import Counter
from dataclasses import dataclass

__all__ = ["Backlog", "Pending"]


@dataclass(frozen=True, slots=True)
class Pending:
    """What the backlog needs to know of a queued task."""

    operation_id: str
    queue: str
    activity_name: str
    priority: int
    available_at: int
    ready_ns: int = 0
    """``time.perf_counter_ns()`` when it became ready to dispatch; 0 when unknown or delayed."""


class Backlog:
    """Ready and delayed queued tasks."""

    def __init__(self) -> None:
        self._ready: dict[tuple[str, str], list[tuple[int, int, int, str]]] = {}
        self._delayed: list[tuple[int, int, Pending]] = []
        self._members: dict[str, tuple[int, Pending]] = {}
        self._counts: Counter[str] = Counter()
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, operation_id: object) -> bool:
        return operation_id in self._members

    def add(self, task: Pending, now: int) -> None:
        """Index a queued task (replacing an earlier entry for the same operation)."""
        seq = next(self._seq)
        if task.operation_id not in self._members:
            self._counts[task.queue] += 1
        self._members[task.operation_id] = (seq, task)
        if task.available_at > now:
            if task.ready_ns:  # its wait for the backoff is not dispatch latency
                task = dataclasses.replace(task, ready_ns=0)
                self._members[task.operation_id] = (seq, task)
            heapq.heappush(self._delayed, (task.available_at, seq, task))
        else:
            self._push_ready(seq, task)

    def _push_ready(self, seq: int, task: Pending) -> None:
        heap = self._ready.setdefault((task.queue, task.activity_name), [])
        heapq.heappush(heap, (-task.priority, task.available_at, seq, task.operation_id))

    def discard(self, operation_id: str) -> None:
        member = self._members.pop(operation_id, None)
        if member is not None:
            self._forget(member[1].queue)

    def _forget(self, queue: str) -> None:
        self._counts[queue] -= 1
        if not self._counts[queue]:
            del self._counts[queue]

    def promote(self, now: int) -> bool:
        """Move tasks whose backoff has elapsed to the ready heaps; whether any moved."""
        moved = False
        while self._delayed and self._delayed[0][0] <= now:
            _, seq, task = heapq.heappop(self._delayed)
            if self._members.get(task.operation_id, (None,))[0] == seq:
                self._push_ready(seq, task)
                moved = True
        return moved

    def ready_keys(self) -> list[tuple[str, str]]:
        """The (queue, activity) pairs that have ready tasks (possibly stale entries)."""
        return [key for key, heap in self._ready.items() if heap]

    def pop(self, queue: str, activity_name: str) -> Pending | None:
        """Take the next ready task for (queue, activity), or ``None``."""
        heap = self._ready.get((queue, activity_name))
        while heap:
            _, _, seq, operation_id = heapq.heappop(heap)
            member = self._members.get(operation_id)
            if member is not None and member[0] == seq:
                del self._members[operation_id]
                self._forget(queue)
                if not heap:
                    del self._ready[(queue, activity_name)]
                return member[1]
        self._ready.pop((queue, activity_name), None)
        return None

    def counts(self) -> Counter[str]:
        """Queued tasks per queue (ready and delayed)."""
        return self._counts.copy()
