"""The orchestrator's HTTP API as the benchmarks use it: submit (batched when the server can),
await results, scrape metrics.

Batch submission (``POST /api/v1/queues/{queue}/tasks/batch``, up to 1,000 tasks in one
request and one transaction) is used when the server has it; a 404 or 405 on the first batch
means it does not, and the rest is submitted one task a request, ``SINGLE_SUBMITS_AT_ONCE``
requests at a time.  :attr:`TaskApi.batch_supported` records which path was taken.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any, Final

import aiohttp

from .procs import BenchError
from .stats import parse_prometheus

__all__ = ["ACTIVITY", "BATCH_SIZE", "DISPATCH_HISTOGRAM", "QUEUE", "TaskApi", "noop_body"]

QUEUE: Final = "default"
ACTIVITY: Final = "bench.noop"
BATCH_SIZE: Final = 1_000
SINGLE_SUBMITS_AT_ONCE: Final = 64
DISPATCH_HISTOGRAM: Final = "treadle_dispatch_latency_ms"


def noop_body(operation_id: str, value: Any) -> dict[str, Any]:
    return {"operationId": operation_id, "activityName": ACTIVITY, "input": value}


class TaskApi:
    """One orchestrator's Task API over a shared client session."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url
        self.batch_supported: bool | None = None
        """``None`` until a batch was tried; then whether the server has batch submission."""

    async def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        async with self.http.post(f"{self.url}/api/v1/queues/{QUEUE}/tasks", json=body) as reply:
            answer = await reply.read()
            if reply.status not in (200, 201):
                raise BenchError(f"submit answered {reply.status}: {answer[:300]!r}")
        return _object(answer)

    async def submit_all(self, bodies: Sequence[dict[str, Any]]) -> None:
        """Submit every body: batches of ``BATCH_SIZE`` if the server has them, else singly."""
        start = 0
        if self.batch_supported is not False and bodies:
            while start < len(bodies):
                chunk = bodies[start : start + BATCH_SIZE]
                if not await self._batch(chunk):
                    break
                start += len(chunk)
        if start >= len(bodies):
            return
        rest = iter(bodies[start:])

        async def lane() -> None:
            for body in rest:
                await self.submit(body)

        async with asyncio.TaskGroup() as group:
            for _ in range(SINGLE_SUBMITS_AT_ONCE):
                group.create_task(lane())

    async def _batch(self, chunk: Sequence[dict[str, Any]]) -> bool:
        """Submit one batch; ``False`` if the server has no batch endpoint."""
        url = f"{self.url}/api/v1/queues/{QUEUE}/tasks/batch"
        async with self.http.post(url, json={"tasks": list(chunk)}) as reply:
            answer = await reply.read()
            if reply.status in (404, 405) and self.batch_supported is None:
                self.batch_supported = False
                return False
            if reply.status not in (200, 201):
                raise BenchError(f"batch submit answered {reply.status}: {answer[:300]!r}")
        tasks = _object(answer).get("tasks")
        if not isinstance(tasks, list) or len(tasks) != len(chunk):
            raise BenchError(f"batch submit answered {len(chunk)} tasks with {answer[:300]!r}")
        self.batch_supported = True
        return True

    async def result(self, operation_id: str, timeout_ms: int = 10_000) -> dict[str, Any]:
        """The task's result body, waiting up to ``timeout_ms`` on the server."""
        url = f"{self.url}/api/v1/tasks/detail/{operation_id}/result?timeout={timeout_ms}"
        async with self.http.get(url) as reply:
            answer = await reply.read()
            if reply.status != 200:
                raise BenchError(f"result of {operation_id} answered {reply.status}: {answer!r}")
        return _object(answer)

    async def metrics(self) -> list[tuple[str, dict[str, str], float]]:
        async with self.http.get(f"{self.url}/v1/metrics") as reply:
            text = await reply.text()
            if reply.status != 200:
                raise BenchError(f"metrics answered {reply.status}")
        return parse_prometheus(text)

    async def terminal_total(self) -> float:
        """``treadle_tasks_terminal_total`` over every disposition."""
        samples = await self.metrics()
        return sum(v for name, _, v in samples if name == "treadle_tasks_terminal_total")

    async def gauge(self, name: str) -> float:
        samples = await self.metrics()
        return sum(v for n, _, v in samples if n == name)

    async def dispatch_buckets(self) -> dict[float, float] | None:
        """The cumulative buckets of ``treadle_dispatch_latency_ms``, or ``None`` if the server
        does not have that histogram."""
        buckets: dict[float, float] = {}
        for name, labels, value in await self.metrics():
            if name == f"{DISPATCH_HISTOGRAM}_bucket" and "le" in labels:
                bound = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + value
        return buckets or None

    async def until_terminal(self, count: int, timeout: float) -> None:  # noqa: ASYNC109
        """Scrape until ``count`` tasks have ended (bounded); each scrape is one round trip."""
        seen = 0.0
        try:
            async with asyncio.timeout(timeout):
                # the server pushes nothing here: scrape, 2 ms apart (only in the last moments)
                while (seen := await self.terminal_total()) < count:  # noqa: ASYNC110
                    await asyncio.sleep(0.002)
        except TimeoutError:
            raise BenchError(f"only {seen:.0f} of {count} tasks ended within {timeout} s") from None


def _object(raw: bytes) -> dict[str, Any]:
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise BenchError(f"expected a JSON object, got {raw[:200]!r}")
    return value
