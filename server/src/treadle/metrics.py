"""Prometheus metrics, with Weft's metric names (dots become underscores).

Weft's names (reference §13) are kept so dashboards carry over:
``weft_task_backlog``, ``weft_task_queue_latency_ms``,
``weft_task_execution_latency_ms``, ``weft_task_retries_total``,
``weft_task_requeues_total``, ``weft_task_stale_heartbeats`` and
``weft_worker_capacity_saturation``.  Treadle adds ``treadle_*`` series for
submissions, results, terminal outcomes, registrations, connected workers and
the sub-millisecond dispatch latency (``treadle_dispatch_latency_ms``).

Each :class:`Metrics` owns its own ``CollectorRegistry`` (two orchestrators
in one process, as in tests, never share counters).  Gauges that describe
current state are computed when scraped, from a snapshot callback, so they
can never drift from the registry and backlog they describe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .ledger import TaskRecord

__all__ = ["CONTENT_TYPE", "Metrics", "Snapshot"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_DISPATCH_BUCKETS_MS = (0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 25, 50, 100, 250, 1000)
_LATENCY_BUCKETS_MS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000)


@dataclass(slots=True)
class Snapshot:
    """Current state, per queue, for the scrape-time gauges."""

    backlog: Mapping[str, int] = field(default_factory=dict)
    in_flight: Mapping[str, int] = field(default_factory=dict)
    capacity: Mapping[str, int] = field(default_factory=dict)
    workers: Mapping[str, int] = field(default_factory=dict)
    stale_heartbeats: int = 0
    parked_polls: int = 0


class _StateCollector(Collector):
    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap = self._snapshot()
        backlog = GaugeMetricFamily(
            "weft_task_backlog", "Queued tasks waiting for a worker.", labels=["queue"]
        )
        for queue in sorted(set(snap.backlog) | set(snap.workers)):  # known queues read 0
            backlog.add_metric([queue], snap.backlog.get(queue, 0))
        yield backlog
        saturation = GaugeMetricFamily(
            "weft_worker_capacity_saturation",
            "Attempts in flight divided by connected worker concurrency.",
            labels=["queue"],
        )
        workers = GaugeMetricFamily(
            "treadle_workers_connected", "Registered worker sessions.", labels=["queue"]
        )
        for queue in sorted(snap.workers):
            capacity = snap.capacity.get(queue, 0)
            ratio = snap.in_flight.get(queue, 0) / capacity if capacity else 0.0
            saturation.add_metric([queue], ratio)
            workers.add_metric([queue], snap.workers[queue])
        yield saturation
        yield workers
        yield GaugeMetricFamily(
            "weft_task_stale_heartbeats",
            "Workers whose last session heartbeat is more than 60 s old.",
            value=snap.stale_heartbeats,
        )
        yield GaugeMetricFamily(
            "treadle_longpoll_parked",
            "Queue-scoped long-poll requests waiting for a task.",
            value=snap.parked_polls,
        )


class Metrics:
    """The orchestrator's counters and histograms, and the scrape."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.queue_latency = Histogram(
            "weft_task_queue_latency_ms",
            "Milliseconds from becoming available to being dispatched.",
            buckets=_LATENCY_BUCKETS_MS,
            registry=r,
        )
        self.execution_latency = Histogram(
            "weft_task_execution_latency_ms",
            "Milliseconds from dispatch to an applied result.",
            buckets=_LATENCY_BUCKETS_MS,
            registry=r,
        )
        self.dispatch_latency = Histogram(
            "treadle_dispatch_latency_ms",
            "Milliseconds from a task being ready in memory (durable, indexed) "
            "to its task frame being written to the worker.",
            buckets=_DISPATCH_BUCKETS_MS,
            registry=r,
        )
        self.retries = Counter(
            "weft_task_retries", "Failed results retried under a retry policy.", registry=r
        )
        self.requeues = Counter(
            "weft_task_requeues",
            "Attempts taken back (lease expiry, lost worker, recovery).",
            registry=r,
        )
        self.submitted = Counter("treadle_tasks_submitted", "Tasks accepted.", registry=r)
        self.results = Counter(
            "treadle_task_results",
            "Task results by acknowledgement disposition or rejection.",
            ["outcome"],
            registry=r,
        )
        self.terminal = Counter(
            "treadle_tasks_terminal",
            "Tasks that ended, by disposition.",
            ["disposition"],
            registry=r,
        )
        self.registrations = Counter(
            "treadle_worker_registrations",
            "Worker registrations by outcome (a registerError code, or accepted).",
            ["outcome"],
            registry=r,
        )
        r.register(_StateCollector(snapshot))

    def dispatched(self, record: TaskRecord, now: int) -> None:
        self.queue_latency.observe(max(0, now - record.available_at))

    def requeued(self, record: TaskRecord) -> None:
        if record.state == "queued":
            self.requeues.inc()

    def ended(self, record: TaskRecord) -> None:
        self.terminal.labels(record.disposition or record.state).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
