"""Long-poll parking: many queue-scoped polls parked on one orchestrator.

One run:

1. a fresh orchestrator with no WebSocket worker (a queue-scoped poll only gets a task no
   registered worker can take); one ``timeout=0`` poll warms the path up; baseline RSS;
2. ``polls`` requests ``GET /api/v1/tasks/default?activity=bench.noop&timeout=30000`` are
   sent, each on its own keep-alive connection (an answered poll parks again on the same
   connection, as SDK workers do), and the harness scrapes ``treadle_longpoll_parked``
   until the orchestrator holds them all; RSS again (per parked poll);
3. **idle CPU**: the orchestrator's CPU time over a window in which nothing happens but the
   polls waiting (the window is shorter than the poll timeout, so none is answered meanwhile);
   the same window is measured before parking, and both are reported;
4. **delivery**: ``samples`` tasks are submitted one at a time; each is timed from just before
   its ``POST …/tasks`` is sent to the moment a parked poll's 200 answer carrying it has been
   read (``submit_to_claim_ms``), and from the submit's 201 to that moment
   (``answer_to_claim_ms``).  An answered poll parks again at once.  Every claim is then
   completed with ``POST /api/v1/tasks/default/result``, so the ledger ends clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from typing import Any, Final

import aiohttp

from ..procs import BenchError, cpu_ticks, rss_kib
from ..stats import latency_summary
from ..taskapi import ACTIVITY, QUEUE, TaskApi, noop_body
from .common import Bench

__all__ = ["long_poll_parking"]

POLL_TIMEOUT_MS: Final = 30_000
PARK_TIMEOUT_S: Final = 60.0
DELIVERY_TIMEOUT_S: Final = 10.0


class Parked:
    """``count`` polls kept parked; each answered one records its claim and parks again."""

    def __init__(self, http: aiohttp.ClientSession, base: str, count: int) -> None:
        self.http = http
        self.url = f"{base}/api/v1/tasks/{QUEUE}?activity={ACTIVITY}&timeout={POLL_TIMEOUT_MS}"
        self.count = count
        self.claims: dict[str, dict[str, Any]] = {}
        self.arrivals: dict[str, asyncio.Future[float]] = {}
        self.answered_empty = 0
        self.tasks: list[asyncio.Task[None]] = []

    def arrival(self, operation_id: str) -> asyncio.Future[float]:
        if operation_id not in self.arrivals:
            self.arrivals[operation_id] = asyncio.get_running_loop().create_future()
        return self.arrivals[operation_id]

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._loop()) for _ in range(self.count)]

    async def _loop(self) -> None:
        while True:
            async with self.http.get(self.url) as response:
                body = await response.read()
                at = time.perf_counter()
                status = response.status
            if status == 200:
                claim = json.loads(body)
                self.claims[claim["operationId"]] = claim
                self.arrival(claim["operationId"]).set_result(at)
            elif status == 204:
                self.answered_empty += 1
            else:
                raise BenchError(f"a parked poll was answered {status}: {body[:300]!r}")

    async def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def failed(self) -> BaseException | None:
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                return task.exception()
        return None


async def _until_parked(api: TaskApi, parked: Parked, count: int) -> None:
    seen = 0.0
    try:
        async with asyncio.timeout(PARK_TIMEOUT_S):
            while (seen := await api.gauge("treadle_longpoll_parked")) < count:
                if (failure := parked.failed()) is not None:
                    raise BenchError(f"a poll failed while parking: {failure!r}")
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise BenchError(f"only {seen:.0f} of {count} polls parked") from None


async def _cpu_share(pid: int, seconds: float) -> float:
    hz = os.sysconf("SC_CLK_TCK")
    ticks, began = cpu_ticks(pid), time.perf_counter()
    await asyncio.sleep(seconds)
    return (cpu_ticks(pid) - ticks) / hz / (time.perf_counter() - began)


async def long_poll_parking(
    bench: Bench, *, polls: int, idle_s: float, samples: int
) -> dict[str, Any]:
    """One run of the long-poll parking scenario (see the module docstring)."""
    if idle_s * 1000 >= POLL_TIMEOUT_MS:
        raise BenchError(
            f"the idle window must be shorter than the poll timeout ({POLL_TIMEOUT_MS} ms)"
        )
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with (
        contextlib.AsyncExitStack() as stack,
        aiohttp.ClientSession(connector=connector, timeout=timeout) as polling,
    ):
        orchestrator = await bench.orchestrator(stack)
        api = TaskApi(bench.http, orchestrator.url)
        warm = f"{orchestrator.url}/api/v1/tasks/{QUEUE}?activity={ACTIVITY}&timeout=0"
        async with bench.http.get(warm) as response:
            if response.status != 204:
                raise BenchError(f"a timeout=0 poll of an empty queue answered {response.status}")
        await api.gauge("treadle_longpoll_parked")
        base_cpu = await _cpu_share(orchestrator.pid, idle_s)
        rss_before = rss_kib(orchestrator.pid)

        parked = Parked(polling, orchestrator.url, polls)
        stack.push_async_callback(parked.cancel)
        parked.start()
        await _until_parked(api, parked, polls)
        rss_parked = rss_kib(orchestrator.pid)
        idle_cpu = await _cpu_share(orchestrator.pid, idle_s)
        empty_while_idle = parked.answered_empty

        to_claim: list[float] = []
        after_answer: list[float] = []
        for i in range(samples):
            operation_id = f"lp-{i}"
            sent = time.perf_counter()
            await api.submit(noop_body(operation_id, i))
            answered = time.perf_counter()
            try:
                arrived = await asyncio.wait_for(parked.arrival(operation_id), DELIVERY_TIMEOUT_S)
            except TimeoutError:
                raise BenchError(f"no parked poll got {operation_id}") from None
            to_claim.append((arrived - sent) * 1000)
            after_answer.append(max(0.0, arrived - answered) * 1000)

        for claim in parked.claims.values():
            body = {
                "operationId": claim["operationId"],
                "workerId": claim["workerId"],
                "attemptToken": claim["attemptToken"],
                "status": "completed",
                "value": claim["input"],
            }
            url = f"{orchestrator.url}/api/v1/tasks/{QUEUE}/result"
            async with bench.http.post(url, json=body) as response:
                if response.status != 200:
                    raise BenchError(f"a long-poll result answered {response.status}")
        if len(parked.claims) != samples:
            raise BenchError(f"{len(parked.claims)} claims for {samples} tasks")
    return {
        "parked_polls": polls,
        "rss_before_kib": rss_before,
        "rss_parked_kib": rss_parked,
        "rss_per_parked_poll_kib": round((rss_parked - rss_before) / polls, 2),
        "baseline_cpu_percent_of_core": round(base_cpu * 100, 3),
        "idle_cpu_percent_of_core": round(idle_cpu * 100, 3),
        "idle_window_s": idle_s,
        "polls_answered_while_idle": empty_while_idle,
        "submit_to_claim_ms": latency_summary(to_claim),
        "answer_to_claim_ms": latency_summary(after_answer),
    }
