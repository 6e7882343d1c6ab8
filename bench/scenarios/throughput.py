"""Burn-down and sequential round trip, for Treadle with either SDK's worker.

**Burn-down.**  A fresh orchestrator; every task is submitted first (batches of 1,000 when the
server has batch submission, else single submits 64 at a time); then one worker process is
started (concurrency 64).  The worker prints the Unix time of its first ``bench.noop`` call
and, when its count reaches the total, of that call; the harness then scrapes
``treadle_tasks_terminal_total`` until every task has ended in the ledger (result committed)
and takes the end time there.  ``tasks_per_s`` = tasks / (end - first call);
``tasks_per_s_from_spawn`` uses the worker process's spawn instead (start-up and registration
included).  A few results are read back and checked.

**Round trip.**  A fresh orchestrator and a registered worker; ``warmup`` round trips, then
``samples`` sequential ones, each timed from before ``POST …/tasks`` is sent to when the body
of ``GET …/result?timeout=…`` has been read (two HTTP requests on kept-alive connections).
"""

from __future__ import annotations

import contextlib
import random
import time
from typing import Any, Final

from ..procs import BenchError
from ..stats import latency_summary
from ..taskapi import TaskApi, noop_body
from .common import Bench, Sdk

__all__ = ["CHECKED_RESULTS", "treadle_burndown", "treadle_roundtrip"]

CHECKED_RESULTS: Final = 20
WORKER_EVENT_TIMEOUT: Final = 60.0


def burndown_timeout(tasks: int) -> float:
    """Generous: 60 s plus 10 ms a task (100 tasks/s would still finish)."""
    return 60.0 + tasks / 100


async def check_results(api: TaskApi, prefix: str, tasks: int) -> None:
    """Read back a few results (the first, the last, some in between): each is its input."""
    picks = {0, tasks - 1} | set(random.sample(range(tasks), min(tasks, CHECKED_RESULTS)))
    for i in sorted(picks):
        answer = await api.result(f"{prefix}-{i}", timeout_ms=1_000)
        if answer.get("status") != "completed" or answer.get("value") != i:
            raise BenchError(f"task {prefix}-{i} ended wrongly: {answer}")


async def treadle_burndown(bench: Bench, sdk: Sdk, tasks: int) -> dict[str, Any]:
    """One burn-down run of ``tasks`` no-op tasks with one ``sdk`` worker."""
    async with contextlib.AsyncExitStack() as stack:
        orchestrator = await bench.orchestrator(stack)
        api = TaskApi(bench.http, orchestrator.url)
        bodies = [noop_body(f"bd-{i}", i) for i in range(tasks)]
        began = time.perf_counter()
        await api.submit_all(bodies)
        enqueue_s = time.perf_counter() - began
        if api.batch_supported is False:
            bench.note(
                "The orchestrator has no batch submission yet (POST …/tasks/batch answered "
                "404/405): burn-down tasks were enqueued one request each, 64 at a time."
            )
        spawned_ns = time.time_ns()
        worker = await bench.worker(
            stack,
            sdk,
            orchestrator.url,
            f"bench-{sdk}-burndown",
            expect=tasks,
            wait_registered=False,
        )
        timeout = burndown_timeout(tasks)
        first = await worker.event("first", WORKER_EVENT_TIMEOUT)
        reached = await worker.event("reached", timeout)
        await api.until_terminal(tasks, timeout)
        ended_ns = time.time_ns()
        await check_results(api, "bd", tasks)
    busy_s = (ended_ns - int(first["ns"])) / 1e9
    return {
        "tasks": tasks,
        "enqueue_s": round(enqueue_s, 3),
        "enqueue_tasks_per_s": round(tasks / enqueue_s, 1),
        "enqueue_batched": bool(api.batch_supported),
        "seconds": round(busy_s, 3),
        "tasks_per_s": round(tasks / busy_s, 1),
        "tasks_per_s_from_spawn": round(tasks / ((ended_ns - spawned_ns) / 1e9), 1),
        "worker_saw_last_ms_before_ledger": round((ended_ns - int(reached["ns"])) / 1e6, 3),
    }


async def treadle_roundtrip(bench: Bench, sdk: Sdk, samples: int, warmup: int) -> dict[str, Any]:
    """One run of ``samples`` sequential submit → result round trips through the Task API."""
    async with contextlib.AsyncExitStack() as stack:
        orchestrator = await bench.orchestrator(stack)
        api = TaskApi(bench.http, orchestrator.url)
        await bench.worker(stack, sdk, orchestrator.url, f"bench-{sdk}-roundtrip")
        times_ms: list[float] = []
        for i in range(warmup + samples):
            operation_id = f"rt-{i}"
            began = time.perf_counter()
            await api.submit(noop_body(operation_id, i))
            answer = await api.result(operation_id)
            elapsed = time.perf_counter() - began
            if answer.get("status") != "completed" or answer.get("value") != i:
                raise BenchError(f"round trip {operation_id} ended wrongly: {answer}")
            if i >= warmup:
                times_ms.append(elapsed * 1000)
    return latency_summary(times_ms)
