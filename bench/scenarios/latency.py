"""Dispatch latency at a fixed offered load, measured open-loop.

**Open loop.**  Every submission's send time is fixed before the window starts: task ``i`` is
due at ``start + i / rate``.  The generator sleeps until a task is due and starts its request
without waiting for earlier ones (a slow answer never delays the next send), so a stall shows
up as latency instead of as fewer samples — coordinated omission cannot hide the tail.  Every
latency is measured **from the scheduled time**, so the generator's own lag counts against the
system too; it is also reported alone (``generator_lag_ms``: scheduled → the request's
coroutine running) so a reader can tell a lagging generator from a slow server.  The event
loop wakes with about 1 ms resolution, so sends come in small bursts of the tasks due in the
same millisecond.

Per window it reports:

* ``submit_ms``: scheduled → the 201 answer of ``POST …/tasks`` read (the task is durable);
* ``end_to_end_ms``: scheduled → the worker's ``bench.noop`` starting, from the worker's own
  clock (the task's input carries the scheduled Unix time; both processes read the same
  system clock);
* ``dispatch_ms``: the orchestrator's ``treadle_dispatch_latency_ms`` histogram (task durable
  in the ledger → task frame written to the worker socket), the difference of two scrapes
  around the window: the share within 2 ms and p50/p99 interpolated inside buckets.  ``None``
  when the server does not export the histogram.

The offered rate is ``fraction`` (0.5) x the capacity of this same workload, measured just
before by :func:`pipeline_capacity` (or ``--rate``): tasks submitted one request each, as in
the open loop, from 64 lanes that each send the next task as soon as the last is answered
(closed loop, saturating), with the Go worker running them; capacity = tasks / (first send ->
the last task ended in the ledger).  The burn-down figure is not used: its tasks are enqueued
in batches beforehand, so it leaves out the cost of a submission, which every open-loop task
pays.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import Any, Final

from ..procs import BenchError, Child
from ..stats import fraction_within, histogram_quantile, latency_summary
from ..taskapi import DISPATCH_HISTOGRAM, TaskApi, noop_body
from .common import Bench

__all__ = [
    "DISPATCH_TARGET_MS",
    "dispatch_latency",
    "measure_window",
    "open_loop",
    "pipeline_capacity",
]

DISPATCH_TARGET_MS: Final = 2.0
MAX_IN_FLIGHT: Final = 1_024
"""Requests open at once; later sends wait for a slot (and that wait counts as latency)."""
START_AHEAD_S: Final = 0.05
DRAIN_TIMEOUT_S: Final = 60.0
WARMUP_S: Final = 0.5
CAPACITY_LANES: Final = 64


async def open_loop(api: TaskApi, rate: float, seconds: float, prefix: str) -> dict[str, Any]:
    """Submit ``rate x seconds`` tasks on a fixed schedule; the client-side latencies."""
    count = max(1, int(rate * seconds))
    lags: list[float] = [0.0] * count
    submits: list[float] = [0.0] * count
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)
    perf_ref, unix_ref = time.perf_counter(), time.time_ns()
    start = perf_ref + START_AHEAD_S

    async def send(i: int, due: float) -> None:
        lags[i] = time.perf_counter() - due
        scheduled_unix = unix_ref + int((due - perf_ref) * 1e9)
        async with gate:
            await api.submit(noop_body(f"{prefix}-{i}", {"t": scheduled_unix, "n": count}))
        submits[i] = time.perf_counter() - due

    async with asyncio.TaskGroup() as group:
        for i in range(count):
            due = start + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            group.create_task(send(i, due))
        sent_by = time.perf_counter()
    return {
        "rate_per_s": round(rate, 1),
        "tasks": count,
        "seconds": round(count / rate, 3),
        "achieved_send_rate_per_s": round(count / max(sent_by - start, 1e-9), 1),
        "generator_lag_ms": latency_summary([x * 1000 for x in lags]),
        "submit_ms": latency_summary([x * 1000 for x in submits]),
    }


def _bucket_diff(
    before: dict[float, float] | None, after: dict[float, float] | None
) -> dict[float, float] | None:
    if after is None:
        return None
    before = before or {}
    return {bound: count - before.get(bound, 0.0) for bound, count in after.items()}


def dispatch_figures(buckets: dict[float, float] | None) -> dict[str, Any] | None:
    """p50/p99 and the share within the 2 ms target, from a window's bucket counts."""
    if buckets is None:
        return None
    total = max(buckets.values(), default=0.0)
    p50, p99 = histogram_quantile(0.5, buckets), histogram_quantile(0.99, buckets)
    within = fraction_within(DISPATCH_TARGET_MS, buckets)
    finite = [b for b in buckets if not math.isinf(b)]

    def shown(value: float | None) -> float | None:  # above every bucket: not a number to show
        return None if value is None or math.isinf(value) else round(value, 3)

    return {
        "count": int(total),
        "p50": shown(p50),
        "p99": shown(p99),
        "p99_above_last_bucket": p99 is not None and math.isinf(p99),
        "last_bucket_ms": max(finite, default=None),
        "within_2ms": None if within is None else round(within, 5),
        "buckets": {
            ("+Inf" if b == float("inf") else str(b)): c for b, c in sorted(buckets.items())
        },
    }


async def measure_window(
    bench: Bench, api: TaskApi, worker: Child, rate: float, seconds: float, prefix: str
) -> dict[str, Any]:
    """One open-loop window with the worker's end-to-end samples and the server's histogram."""
    before = await api.dispatch_buckets()
    mark = len(worker.events)
    figures = await open_loop(api, rate, seconds, prefix)
    # an overloaded server drains its backlog after the window: allow it 20 tasks/s
    drain = DRAIN_TIMEOUT_S + figures["tasks"] / 20
    report = await worker.event("latencies", drain, start=mark)
    after = await api.dispatch_buckets()
    samples = report.get("us")
    if not isinstance(samples, list) or len(samples) != figures["tasks"]:
        raise BenchError(f"the worker reported {len(samples or [])} of {figures['tasks']} samples")
    figures["end_to_end_ms"] = latency_summary([float(us) / 1000 for us in samples])
    figures["dispatch_ms"] = dispatch_figures(_bucket_diff(before, after))
    if figures["dispatch_ms"] is None:
        bench.note(
            f"The orchestrator does not export {DISPATCH_HISTOGRAM} yet: dispatch latency "
            "(durable → frame written) is not measured; end-to-end latency (scheduled submit → "
            "activity start on the worker) is reported instead."
        )
    return figures


async def dispatch_latency(bench: Bench, rate: float, seconds: float) -> dict[str, Any]:
    """One run: a fresh orchestrator, the Go worker (concurrency 64), a short warm-up window,
    then the measured window at ``rate``."""
    async with contextlib.AsyncExitStack() as stack:
        orchestrator = await bench.orchestrator(stack)
        api = TaskApi(bench.http, orchestrator.url)
        worker = await bench.worker(stack, "go", orchestrator.url, "bench-go-latency")
        await measure_window(bench, api, worker, rate, min(WARMUP_S, seconds), "warm")
        return await measure_window(bench, api, worker, rate, seconds, "lat")


async def pipeline_capacity(bench: Bench, tasks: int) -> dict[str, Any]:
    """Tasks/s of single submissions run by the Go worker, saturated by 64 closed-loop lanes."""
    async with contextlib.AsyncExitStack() as stack:
        orchestrator = await bench.orchestrator(stack)
        api = TaskApi(bench.http, orchestrator.url)
        await bench.worker(stack, "go", orchestrator.url, "bench-go-capacity")
        numbers = iter(range(tasks))

        async def lane() -> None:
            for i in numbers:
                await api.submit(noop_body(f"cap-{i}", i))

        began = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for _ in range(CAPACITY_LANES):
                group.create_task(lane())
        submitted = time.perf_counter() - began
        await api.until_terminal(tasks, DRAIN_TIMEOUT_S + tasks / 20)
        elapsed = time.perf_counter() - began
    return {
        "tasks": tasks,
        "lanes": CAPACITY_LANES,
        "tasks_per_s": round(tasks / elapsed, 1),
        "submits_per_s": round(tasks / submitted, 1),
    }
