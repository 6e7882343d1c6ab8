"""arq, the first peer: the same no-op task, counts and measurements as Treadle's.

As a program (``python -m bench.peers.arq_peer --redis-port P [--expect N]``) this is the arq
worker: ``max_jobs`` 64 and ``poll_delay`` 1 ms, the tuned settings of issue 8's reference
figures, run by ``arq.worker.run_worker`` as arq's own CLI does.  It writes the same stdout
events as Treadle's bench workers: ``first`` on the first job, and ``reached`` from arq's
``after_job_end`` hook, which runs once the job's result is recorded in Redis, when the count
reaches ``--expect``.

As a module the harness uses :func:`arq_burndown` and :func:`arq_roundtrip`, which mirror
:mod:`bench.scenarios.throughput`: enqueue everything then start the worker; or sequential
``enqueue_job`` → ``job.result(poll_delay=1 ms)`` round trips against a warm worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from typing import Any, Final

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.jobs import Job
from arq.worker import func, run_worker

from ..procs import REPO, BenchError, Child
from ..scenarios.common import Bench
from ..scenarios.throughput import CHECKED_RESULTS, WORKER_EVENT_TIMEOUT, burndown_timeout
from ..stats import latency_summary

__all__ = ["MAX_JOBS", "POLL_DELAY_S", "arq_burndown", "arq_roundtrip", "main"]

MAX_JOBS: Final = 64
POLL_DELAY_S: Final = 0.001
ENQUEUE_AT_ONCE: Final = 64
RESULT_TIMEOUT_S: Final = 10.0


class Reporter:
    """The worker side: counts jobs whose result is recorded; writes the event lines."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.count = 0
        self.started = False

    @staticmethod
    def emit(event: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    async def noop(self, ctx: dict[str, Any], value: Any) -> Any:
        if not self.started:
            self.started = True
            self.emit({"event": "first", "ns": time.time_ns()})
        return value

    async def after_job_end(self, ctx: dict[str, Any]) -> None:
        self.count += 1
        if self.expect and self.count == self.expect:
            self.emit({"event": "reached", "count": self.count, "ns": time.time_ns()})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="arq worker for Treadle's benchmarks")
    parser.add_argument("--redis-port", type=int, required=True)
    parser.add_argument("--expect", type=int, default=0)
    args = parser.parse_args(argv)
    reporter = Reporter(args.expect)

    class WorkerSettings:
        functions: Final = [func(reporter.noop, name="noop")]
        redis_settings: Final = RedisSettings(host="127.0.0.1", port=args.redis_port)
        max_jobs: Final = MAX_JOBS
        poll_delay: Final = POLL_DELAY_S
        after_job_end: Final = reporter.after_job_end
        keep_result: Final = 3600
        handle_signals: Final = True

    run_worker(WorkerSettings)  # type: ignore[arg-type]  # arq's settings type is a Protocol of Any


async def _pool(bench: Bench) -> ArqRedis:
    port = await bench.redis()
    redis = await create_pool(RedisSettings(host="127.0.0.1", port=port))
    await redis.flushall()
    return redis


async def _start_worker(
    stack: contextlib.AsyncExitStack, bench: Bench, name: str, expect: int
) -> Child:
    port = await bench.redis()
    child = Child(name, bench.workdir)
    argv = [sys.executable, "-m", "bench.peers.arq_peer", "--redis-port", str(port)]
    argv += ["--expect", str(expect)]
    await child.start(argv, cwd=REPO)
    stack.push_async_callback(child.stop)
    return child


async def arq_burndown(bench: Bench, tasks: int) -> dict[str, Any]:
    """One burn-down run: enqueue ``tasks`` jobs, then start the arq worker."""
    redis = await _pool(bench)
    try:
        jobs = iter(range(tasks))

        async def lane() -> None:
            for i in jobs:
                if await redis.enqueue_job("noop", i, _job_id=f"bd-{i}") is None:
                    raise BenchError(f"arq refused job bd-{i} (already enqueued?)")

        began = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for _ in range(ENQUEUE_AT_ONCE):
                group.create_task(lane())
        enqueue_s = time.perf_counter() - began
        async with contextlib.AsyncExitStack() as stack:
            spawned_ns = time.time_ns()
            worker = await _start_worker(stack, bench, "arq-burndown", tasks)
            first = await worker.event("first", WORKER_EVENT_TIMEOUT)
            reached = await worker.event("reached", burndown_timeout(tasks))
        ended_ns = int(reached["ns"])
        picks = {0, tasks - 1} | set(random.sample(range(tasks), min(tasks, CHECKED_RESULTS)))
        for i in sorted(picks):
            value = await Job(f"bd-{i}", redis).result(timeout=RESULT_TIMEOUT_S)
            if value != i:
                raise BenchError(f"arq job bd-{i} returned {value!r}")
    finally:
        await redis.aclose()
    busy_s = (ended_ns - int(first["ns"])) / 1e9
    return {
        "tasks": tasks,
        "enqueue_s": round(enqueue_s, 3),
        "enqueue_tasks_per_s": round(tasks / enqueue_s, 1),
        "seconds": round(busy_s, 3),
        "tasks_per_s": round(tasks / busy_s, 1),
        "tasks_per_s_from_spawn": round(tasks / ((ended_ns - spawned_ns) / 1e9), 1),
    }


async def arq_roundtrip(bench: Bench, samples: int, warmup: int) -> dict[str, Any]:
    """One run of sequential enqueue → result round trips against a warm arq worker."""
    warmup = max(warmup, 1)  # the first round trip waits for the worker to start
    redis = await _pool(bench)
    try:
        async with contextlib.AsyncExitStack() as stack:
            await _start_worker(stack, bench, "arq-roundtrip", 0)
            times_ms: list[float] = []
            for i in range(warmup + samples):
                began = time.perf_counter()
                job = await redis.enqueue_job("noop", i)
                if job is None:
                    raise BenchError("arq refused a round-trip job")
                # the first waits for the worker to come up; later ones are warm
                limit = WORKER_EVENT_TIMEOUT if i == 0 else RESULT_TIMEOUT_S
                value = await job.result(timeout=limit, poll_delay=POLL_DELAY_S)
                elapsed = time.perf_counter() - began
                if value != i:
                    raise BenchError(f"arq round trip {i} returned {value!r}")
                if i >= warmup:
                    times_ms.append(elapsed * 1000)
    finally:
        await redis.aclose()
    return latency_summary(times_ms)


if __name__ == "__main__":
    main()
