"""Dispatch and lease logic through the Orchestrator with an injected clock (no sockets).

Workers here are in-memory connections that record what they are sent; time
moves only when a test advances the clock, and lease expiry runs when the
test calls ``expire_due``.  So every deadline is exact, and nothing sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from harness import manifest
from treadle import Orchestrator, RetryPolicy, ServerConfig

T0 = 1_700_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


class MemoryConnection:
    """A worker connection that queues what the server sends."""

    def __init__(self) -> None:
        self.frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closed = False
        self.close_code: int | None = None

    demand = None

    async def send(self, message: Mapping[str, Any]) -> bool:
        if self.closed:
            return False
        self.frames.put_nowait(dict(message))
        return True

    async def close(self, code: int, reason: str) -> None:
        self.closed, self.close_code = True, code

    async def wait_closed(self) -> None:
        return None

    async def next(self, kind: str) -> dict[str, Any]:
        frame = await asyncio.wait_for(self.frames.get(), 5)
        assert frame["type"] == kind, frame
        return frame


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def orch(clock: Clock) -> AsyncIterator[Orchestrator]:
    config = ServerConfig(db=":memory:", reconnect_grace_ms=0, worker_shutdown_timeout_ms=0)
    async with Orchestrator(config, clock=clock) as orchestrator:
        yield orchestrator


async def connect(orch: Orchestrator, worker_id: str, concurrency: int = 1) -> MemoryConnection:
    connection = MemoryConnection()
    message: Any = {
        "type": "register",
        "protocolVersion": 8,
        "workerId": worker_id,
        "manifest": manifest(),
        "concurrency": concurrency,
    }
    session = await orch.gateway.register(connection, message, "default")
    assert session is not None
    await connection.next("registerAck")
    return connection


async def test_lease_expires_exactly_at_its_deadline(orch: Orchestrator, clock: Clock) -> None:
    worker = await connect(orch, "w1")
    handle = await orch.submit("default", "wf.echo", {"n": 1}, visibility_timeout=1000)
    first = await worker.next("task")
    clock.now = T0 + 999
    await orch.dispatcher.expire_due()
    assert (await orch.get(handle.operation_id)).state == "leased"
    clock.now = T0 + 1000
    await orch.dispatcher.expire_due()
    record = await orch.get(handle.operation_id)
    assert record.attempt == 2
    second = await worker.next("task")  # the slot was freed; the same worker gets attempt 2
    assert second["attempt"] == 2
    assert second["attemptToken"] != first["attemptToken"]


async def test_heartbeats_renew_but_never_past_the_attempt_deadline(
    orch: Orchestrator, clock: Clock
) -> None:
    worker = await connect(orch, "w1")
    handle = await orch.submit("default", "wf.echo", visibility_timeout=1000)
    task = await worker.next("task")
    beat = {"operationId": task["operationId"], "attemptToken": task["attemptToken"]}
    for step in range(1, 12):  # heartbeat every 500 ms for 5.5 s
        clock.now = T0 + step * 500
        await orch.gateway.activity_heartbeat(worker, beat)
        await orch.dispatcher.expire_due()
    record = await orch.get(handle.operation_id)
    assert record.lease_deadline == T0 + 6000  # capped at 6 x vt, not now + vt
    clock.now = T0 + 6000
    await orch.gateway.activity_heartbeat(worker, beat)
    await orch.dispatcher.expire_due()
    assert (await orch.get(handle.operation_id)).attempt == 2


async def test_a_bare_heartbeat_renews_nothing(orch: Orchestrator, clock: Clock) -> None:
    worker = await connect(orch, "w1")
    handle = await orch.submit("default", "wf.echo", visibility_timeout=1000)
    await worker.next("task")
    clock.now = T0 + 900
    orch.gateway.heartbeat(worker)
    clock.now = T0 + 1000
    await orch.dispatcher.expire_due()
    assert (await orch.get(handle.operation_id)).attempt == 2


async def test_backoff_delays_the_next_attempt(orch: Orchestrator, clock: Clock) -> None:
    worker = await connect(orch, "w1")
    policy = RetryPolicy(max_attempts=3, initial_interval_ms=500)
    handle = await orch.submit("default", "wf.echo", visibility_timeout=100, retry_policy=policy)
    await worker.next("task")
    clock.now = T0 + 100
    await orch.dispatcher.expire_due()
    record = await orch.get(handle.operation_id)
    assert (record.state, record.attempt, record.available_at) == ("queued", 2, T0 + 600)
    clock.now = T0 + 599
    await orch.dispatcher.expire_due()
    assert worker.frames.empty()
    clock.now = T0 + 600
    await orch.dispatcher.expire_due()
    assert (await worker.next("task"))["attempt"] == 2
    clock.now = T0 + 700  # lease of attempt 2 ends; attempt 3 would be after 1000 ms
    await orch.dispatcher.expire_due()
    clock.now = T0 + 1700
    await orch.dispatcher.expire_due()
    await worker.next("task")
    clock.now = T0 + 1800  # attempt 3 expires: no fourth
    await orch.dispatcher.expire_due()
    record = await orch.get(handle.operation_id)
    assert (record.state, record.disposition, record.error) == (
        "terminal",
        "retryExhausted",
        'Activity "wf.echo" exhausted all 3 retry attempts',
    )


async def test_least_loaded_dispatch_never_exceeds_concurrency(orch: Orchestrator) -> None:
    a = await connect(orch, "a", concurrency=2)
    b = await connect(orch, "b", concurrency=1)
    for n in range(5):
        await orch.submit("default", "wf.echo", n, operation_id=f"op-{n}")
    await orch.dispatcher.idle()
    got_a = [await a.next("task") for _ in range(2)]
    got_b = [await b.next("task")]
    assert a.frames.empty()
    assert b.frames.empty()
    assert len(orch.backlog) == 2
    # b finishes: its slot frees and the oldest queued task goes to it
    done = got_b[0]
    await orch.gateway.task_result(
        b,
        {
            "operationId": done["operationId"],
            "attemptToken": done["attemptToken"],
            "status": "completed",
            "value": None,
        },
    )
    assert (await b.next("taskResultAck"))["disposition"] == "applied"
    assert (await b.next("task"))["operationId"] == "op-3"
    # least-loaded, ties by id: a, b, a — then b again once it freed its slot
    assert [t["operationId"] for t in got_a] == ["op-0", "op-2"]
    assert done["operationId"] == "op-1"


async def test_cancelling_settles_uncertain_at_the_lease_deadline(
    orch: Orchestrator, clock: Clock
) -> None:
    worker = await connect(orch, "w1")
    handle = await orch.submit("default", "wf.echo", visibility_timeout=1000)
    task = await worker.next("task")
    clock.now = T0 + 200
    assert await handle.cancel("no longer needed")
    cancel = await worker.next("cancel")
    assert cancel == {
        "type": "cancel",
        "operationId": task["operationId"],
        "attemptToken": task["attemptToken"],
        "reason": "no longer needed",
    }
    beat = {"operationId": task["operationId"], "attemptToken": task["attemptToken"]}
    clock.now = T0 + 900
    await orch.gateway.activity_heartbeat(worker, beat)  # accepted, extends nothing
    clock.now = T0 + 1000
    await orch.dispatcher.expire_due()
    record = await orch.get(handle.operation_id)
    assert (record.state, record.disposition, record.uncertain) == ("terminal", "cancelled", True)
    assert not await handle.cancel()
