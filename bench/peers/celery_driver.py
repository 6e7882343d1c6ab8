"""Celery, the second peer: run in Celery's own environment (``bench/peers/celery/.venv``).

Celery 5.7 needs redis-py >= 6.4 and arq needs < 6, so this file runs under that venv's
Python, imports nothing from the harness, and talks to it through arguments and stdout (one
JSON object a line).  Broker and result backend are the harness's Redis (databases 0 and 1).

``celery_driver.py worker --redis-port P [--expect N]``
    A Celery worker with the prefork pool and two processes (one per core, issue 8's
    reference), Celery's defaults otherwise (prefetch multiplier 4, early acks), gossip,
    mingle and heartbeats off.  The task ``bench.noop`` returns its argument.  A
    ``task_postrun`` handler, which Celery calls after the result is stored in the backend,
    counts tasks in a counter shared by the pool processes (made before they fork) and writes
    ``{"event": "first", …}`` and ``{"event": "reached", …}`` to fd 1 (the worker redirects
    ``sys.stdout`` to its logger), as Treadle's bench workers do.
``celery_driver.py enqueue --redis-port P --tasks N``
    ``apply_async`` of N tasks with ids ``bd-<i>``; prints ``{"enqueued": N, "seconds": s}``.
``celery_driver.py check --redis-port P --tasks N``
    Reads back a few burn-down results; prints ``{"checked": k}`` or exits 1.
``celery_driver.py roundtrip --redis-port P --samples S --warmup W``
    Sequential ``delay(i).get()`` against a running worker; prints ``{"samples_ms": [...]}``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import sys
import time
from typing import Any

from celery import Celery  # type: ignore[import-not-found]  # only in Celery's own venv
from celery.result import AsyncResult  # type: ignore[import-not-found]
from celery.signals import task_postrun  # type: ignore[import-not-found]

__all__ = ["main"]

CHECKED_RESULTS = 20
RESULT_TIMEOUT_S = 10.0
FIRST_RESULT_TIMEOUT_S = 60.0


def emit(event: dict[str, Any]) -> None:
    """One JSON line on fd 1, bypassing the worker's redirection of ``sys.stdout``."""
    os.write(1, (json.dumps(event, separators=(",", ":")) + "\n").encode())


def noop(value: Any) -> Any:
    return value


def make_app(port: int) -> Any:
    app = Celery(
        "bench",
        broker=f"redis://127.0.0.1:{port}/0",
        backend=f"redis://127.0.0.1:{port}/1",
    )
    app.conf.update(
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        result_expires=3600,
    )
    app.task(name="bench.noop")(noop)
    return app


class Counter:
    """Tasks finished across the pool processes: shared memory made before the fork."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.count = multiprocessing.Value("q", 0)
        self.first = multiprocessing.Value("q", 0)

    def postrun(self, **_: Any) -> None:
        now = time.time_ns()
        with self.count.get_lock():
            self.count.value += 1
            count = self.count.value
            first = self.first.value == 0
            if first:
                self.first.value = now
        if first:
            emit({"event": "first", "ns": now})
        if self.expect and count == self.expect:
            emit({"event": "reached", "count": count, "ns": time.time_ns()})


def run_worker(port: int, expect: int) -> None:
    app = make_app(port)
    counter = Counter(expect)
    task_postrun.connect(counter.postrun, weak=False)
    app.worker_main(
        argv=[
            "worker",
            "--pool=prefork",
            "--concurrency=2",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )


def enqueue(port: int, tasks: int) -> None:
    app = make_app(port)
    task = app.tasks["bench.noop"]
    began = time.perf_counter()
    for i in range(tasks):
        task.apply_async(args=(i,), task_id=f"bd-{i}")
    print(json.dumps({"enqueued": tasks, "seconds": time.perf_counter() - began}))


def check(port: int, tasks: int) -> None:
    app = make_app(port)
    picks = {0, tasks - 1} | set(random.sample(range(tasks), min(tasks, CHECKED_RESULTS)))
    for i in sorted(picks):
        value = AsyncResult(f"bd-{i}", app=app).get(timeout=RESULT_TIMEOUT_S)
        if value != i:
            print(json.dumps({"error": f"task bd-{i} returned {value!r}"}))
            sys.exit(1)
    print(json.dumps({"checked": len(picks)}))


def roundtrip(port: int, samples: int, warmup: int) -> None:
    app = make_app(port)
    task = app.tasks["bench.noop"]
    times: list[float] = []
    for i in range(max(warmup, 1) + samples):
        began = time.perf_counter()
        value = task.delay(i).get(timeout=FIRST_RESULT_TIMEOUT_S if i == 0 else RESULT_TIMEOUT_S)
        elapsed = time.perf_counter() - began
        if value != i:
            print(json.dumps({"error": f"round trip {i} returned {value!r}"}))
            sys.exit(1)
        if i >= max(warmup, 1):
            times.append(elapsed * 1000)
    print(json.dumps({"samples_ms": times}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Celery peer of Treadle's benchmarks")
    parser.add_argument("mode", choices=("worker", "enqueue", "check", "roundtrip"))
    parser.add_argument("--redis-port", type=int, required=True)
    parser.add_argument("--expect", type=int, default=0)
    parser.add_argument("--tasks", type=int, default=0)
    parser.add_argument("--samples", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args(argv)
    if args.mode == "worker":
        run_worker(args.redis_port, args.expect)
    elif args.mode == "enqueue":
        enqueue(args.redis_port, args.tasks)
    elif args.mode == "check":
        check(args.redis_port, args.tasks)
    else:
        roundtrip(args.redis_port, args.samples, args.warmup)


if __name__ == "__main__":
    main()
