"""Task diagnostics (``GET /api/v1/tasks/diagnostics``): what looks stuck, and why.

Weft's item kinds (reference §13), computed from memory — the live records,
the backlog and the registry — so a diagnostics call never scans the store:

* ``stuck-queued``: queued longer than ``staleQueuedAfterMs`` (default 60 000);
* ``stale-inflight``: held by a worker that is disconnected (in grace) or whose
  last session heartbeat is older than ``staleHeartbeatAfterMs`` (60 000);
* ``retry-storm``: on attempt ``retryStormMinimumAttempts`` (3) or later;
* ``all-workers-at-capacity``: a queue with a backlog whose connected workers are all full.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .ledger import TaskRecord
from .registry import WorkerSession

__all__ = ["DiagnosticsQuery", "diagnose"]

MAX_LIMIT = 200


@dataclass(frozen=True, slots=True)
class DiagnosticsQuery:
    operation_id: str | None = None
    queue: str | None = None
    stale_queued_after_ms: int = 60_000
    stale_heartbeat_after_ms: int = 60_000
    retry_storm_minimum_attempts: int = 3
    limit: int = 50

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> DiagnosticsQuery:
        """Parse query parameters; raises ``ValueError(name, message)`` for a bad one."""

        def number(name: str, default: int, minimum: int) -> int:
            text = query.get(name)
            if text is None:
                return default
            problem = ValueError(name, f"{name} must be an integer of at least {minimum}")
            try:
                value = int(text)
            except ValueError:
                raise problem from None
            if value < minimum:
                raise problem
            return value

        return cls(
            operation_id=query.get("operationId") or None,
            queue=query.get("queue") or None,
            stale_queued_after_ms=number("staleQueuedAfterMs", 60_000, 0),
            stale_heartbeat_after_ms=number("staleHeartbeatAfterMs", 60_000, 0),
            retry_storm_minimum_attempts=number("retryStormMinimumAttempts", 3, 1),
            limit=min(number("limit", 50, 1), MAX_LIMIT),
        )


def _item(kind: str, record: TaskRecord, **extra: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "operationId": record.operation_id,
        "queue": record.queue,
        "activityName": record.activity_name,
        "state": record.state,
        "attempt": record.attempt,
        **extra,
    }


def diagnose(
    records: list[TaskRecord],
    sessions: list[WorkerSession],
    backlog: Mapping[str, int],
    query: DiagnosticsQuery,
    now: int,
) -> dict[str, Any]:
    """The ``{items, summary, limit}`` body."""
    by_worker = {s.worker_id: s for s in sessions}
    items: list[dict[str, Any]] = []
    for record in sorted(records, key=lambda r: r.created_at):
        if query.operation_id is not None and record.operation_id != query.operation_id:
            continue
        if query.queue is not None and record.queue != query.queue:
            continue
        waited = now - record.available_at
        if record.state == "queued" and waited > query.stale_queued_after_ms:
            items.append(_item("stuck-queued", record, queuedForMs=waited))
        if record.holds_attempt:
            session = by_worker.get(record.worker_id or "")
            silent = None if session is None else now - session.last_heartbeat
            if (
                session is None
                or session.connection is None
                or (silent is not None and silent > query.stale_heartbeat_after_ms)
            ):
                items.append(
                    _item(
                        "stale-inflight",
                        record,
                        workerId=record.worker_id,
                        workerConnected=session is not None and session.connection is not None,
                        lastHeartbeatAgeMs=silent,
                    )
                )
        if record.attempt >= query.retry_storm_minimum_attempts:
            items.append(_item("retry-storm", record, requeueCount=record.requeue_count))
    for queue, waiting in sorted(backlog.items()):
        if (query.queue is not None and queue != query.queue) or not waiting:
            continue
        connected = [s for s in sessions if s.queue == queue and s.connection is not None]
        if connected and all(s.load >= s.concurrency for s in connected):
            items.append(
                {
                    "kind": "all-workers-at-capacity",
                    "queue": queue,
                    "backlog": waiting,
                    "workers": len(connected),
                }
            )
    summary = Counter(item["kind"] for item in items)
    return {
        "items": items[: query.limit],
        "summary": dict(sorted(summary.items())),
        "limit": query.limit,
    }
