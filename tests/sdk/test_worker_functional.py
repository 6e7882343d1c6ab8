"""``Worker`` against a real orchestrator on real sockets, over every transport.

Each behaviour runs three ways: ``websocket``; ``longpoll`` (worker sessions,
§12.2); and ``auto`` behind a proxy that refuses the WebSocket upgrade, where the
worker must fall back to sessions by itself (SDK-4).  The orchestrator runs in
this process so the tests can read its ledger; everything between the two goes
over TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from proxy import UpgradeRefusingProxy

from harness import Server, fast_config, record_where, result_of, running_server, submit
from treadle import ApiKey
from treadle_sdk import (
    ActivityContext,
    ActivityError,
    AuthenticationError,
    RegistrationError,
    Transport,
    Worker,
    current,
)

TRANSPORTS = ["websocket", "longpoll", "auto-fallback"]
STARTED: dict[str, asyncio.Event] = {}
RELEASE: dict[str, asyncio.Event] = {}


async def echo(value: Any) -> Any:
    return value


def add(value: dict[str, int], ctx: ActivityContext) -> int:
    assert current() is ctx
    return value["a"] + value["b"]


async def explode(value: Any) -> Any:
    raise ValueError("boom")


def refuse(value: Any) -> Any:
    raise ActivityError("not today")


async def wait_forever(value: Any) -> Any:
    await asyncio.Event().wait()


def spin_until_cancelled(value: Any, ctx: ActivityContext) -> str:
    while not ctx.wait_cancelled(0.05):  # a plain function polling its cancel event
        pass
    ctx.raise_if_cancelled()
    return "not reached"


async def save_then_wait(value: Any, ctx: ActivityContext) -> Any:
    if ctx.attempt == 1:
        ctx.heartbeat({"step": 7})
        await asyncio.Event().wait()
    return ctx.last_heartbeat_details


async def held(value: str) -> str:
    STARTED[value].set()
    await RELEASE[value].wait()
    return value


WORKFLOWS: dict[str, dict[str, Callable[..., Any]]] = {
    "wf": {
        "echo": echo,
        "add": add,
        "explode": explode,
        "refuse": refuse,
        "wait_forever": wait_forever,
        "spin": spin_until_cancelled,
        "save_then_wait": save_then_wait,
        "held": held,
    }
}


@contextlib.asynccontextmanager
async def reach(server: Server, transport: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """The URL and settings a worker uses to reach ``server`` over ``transport``."""
    if transport == "auto-fallback":
        async with UpgradeRefusingProxy(server.url) as proxy:
            yield proxy.url, {"transport": "auto"}
        assert proxy.refused_upgrades, "the worker never tried the WebSocket"
    else:
        yield server.url, {"transport": transport}


@contextlib.asynccontextmanager
async def serving(server: Server, transport: str, **settings: Any) -> AsyncIterator[Worker]:
    async with reach(server, transport) as (url, extra):
        settings.setdefault("worker_id", "sdk-worker")
        async with Worker(url, workflows=WORKFLOWS, **extra, **settings) as worker:
            yield worker


async def run_task(
    http: aiohttp.ClientSession, server: Server, activity: str, value: Any = None, **fields: Any
) -> dict[str, Any]:
    op = await submit(http, server, activityName=f"wf.{activity}", input=value, **fields)
    return await result_of(http, server, op["operationId"])


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_async_and_plain_activities_complete(
    server: Server, http: aiohttp.ClientSession, transport: str
) -> None:
    async with serving(server, transport):
        echoed = await run_task(http, server, "echo", {"x": [1, "two", None]})
        added = await run_task(http, server, "add", {"a": 2, "b": 3})
    assert (echoed["status"], echoed["value"], echoed["attempt"]) == (
        "completed",
        {"x": [1, "two", None]},
        1,
    )
    assert (added["status"], added["value"]) == ("completed", 5)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_failures_carry_the_error_text(
    server: Server, http: aiohttp.ClientSession, transport: str
) -> None:
    async with serving(server, transport):
        exploded = await run_task(http, server, "explode")
        refused = await run_task(http, server, "refuse")
    assert (exploded["disposition"], exploded["error"]) == ("failed", "ValueError: boom")  # SDK-8
    assert (refused["disposition"], refused["error"]) == ("failed", "not today")


@pytest.mark.parametrize("activity", ["wait_forever", "spin"])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_cancel_reaches_a_running_activity(
    server: Server, http: aiohttp.ClientSession, transport: str, activity: str
) -> None:
    async with serving(server, transport):
        # A 3 s lease: long-poll workers learn of a cancel from their heartbeat, every 1 s.
        op = await submit(http, server, activityName=f"wf.{activity}", visibilityTimeout=3000)
        await record_where(server.orchestrator, op["operationId"], lambda r: r.state == "leased")
        assert await server.orchestrator.cancel(op["operationId"], "operator said stop")
        result = await result_of(http, server, op["operationId"])
    assert (result["disposition"], result["error"]) == ("cancelled", "operator said stop")


@pytest.mark.parametrize("transport", ["websocket", "longpoll"])
async def test_a_task_longer_than_three_leases_completes_on_its_first_attempt(
    server: Server, http: aiohttp.ClientSession, transport: str
) -> None:
    key, vt = f"long-{transport}", 2000  # a 2 s lease; automatic heartbeats every 1 s (HB-2)
    STARTED[key], RELEASE[key] = asyncio.Event(), asyncio.Event()
    async with serving(server, transport):
        op = await submit(http, server, activityName="wf.held", input=key, visibilityTimeout=vt)
        await asyncio.wait_for(STARTED[key].wait(), 10)
        first = await record_where(
            server.orchestrator, op["operationId"], lambda r: r.lease_deadline is not None
        )
        # Hold the activity until the heartbeats have carried its lease 3 leases past the first
        # one (the attempt deadline is 6 leases), then let it finish.
        await record_where(
            server.orchestrator,
            op["operationId"],
            lambda r: (r.lease_deadline or 0) - (first.lease_deadline or 0) >= 3 * vt,
            timeout=30,
        )
        RELEASE[key].set()
        result = await result_of(http, server, op["operationId"])
    assert (result["status"], result["attempt"]) == ("completed", 1)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_heartbeat_details_reach_the_next_attempt_and_a_drain_abandons_without_a_result(
    server: Server, http: aiohttp.ClientSession, transport: str
) -> None:
    op = await submit(http, server, activityName="wf.save_then_wait", visibilityTimeout=60_000)
    async with serving(server, transport, shutdown_timeout=0.2):
        await record_where(
            server.orchestrator,
            op["operationId"],
            lambda r: r.last_heartbeat_details == {"step": 7},
        )
    # The first worker drained, abandoning attempt 1 without a result (SDK-11): the task is
    # requeued, not failed, and the next worker gets the saved details.
    async with serving(server, transport, worker_id="sdk-worker-2"):
        result = await result_of(http, server, op["operationId"])
    assert (result["status"], result["value"], result["attempt"]) == ("completed", {"step": 7}, 2)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_stop_drains_running_work(
    server: Server, http: aiohttp.ClientSession, transport: str
) -> None:
    STARTED["drain"], RELEASE["drain"] = asyncio.Event(), asyncio.Event()
    async with serving(server, transport) as worker:
        op = await submit(http, server, activityName="wf.held", input="drain")
        await asyncio.wait_for(STARTED["drain"].wait(), 10)
        worker.stop()
        assert worker.session.draining
        RELEASE["drain"].set()
    record = await record_where(
        server.orchestrator, op["operationId"], lambda r: r.state == "terminal"
    )
    assert (record.status, record.attempt) == ("completed", 1)


@pytest.mark.parametrize("transport", ["websocket", "longpoll"])
async def test_a_refused_registration_stops_with_a_typed_error(
    server: Server, transport: str
) -> None:
    async with serving(server, transport, worker_id="first", artifact_digest="sha256:aaa"):
        worker = Worker(
            server.url,
            workflows=WORKFLOWS,
            transport=cast(Transport, transport),
            worker_id="second",
            artifact_digest="sha256:bbb",
        )
        with pytest.raises(RegistrationError) as refused:
            await asyncio.wait_for(worker.run(handle_signals=False), 10)
    assert refused.value.code == "deployment_conflict"  # SDK-6: not retried


@pytest.mark.parametrize("transport", ["websocket", "longpoll", "auto"])
async def test_api_keys(tmp_path: Path, http: aiohttp.ClientSession, transport: str) -> None:
    keys = (ApiKey("worker-key-0123456789", frozenset({"workers:write"})),)
    async with running_server(fast_config(tmp_path, api_keys=keys)) as server:
        mode = cast(Transport, transport)
        anonymous = Worker(server.url, workflows=WORKFLOWS, transport=mode)
        with pytest.raises(AuthenticationError):
            await asyncio.wait_for(anonymous.run(handle_signals=False), 10)
        keyed = Worker(
            server.url, workflows=WORKFLOWS, transport=mode, api_key="worker-key-0123456789"
        )
        async with keyed:
            assert keyed.registered


class _Registered(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("registered as threaded"):
            self.seen.set()


async def test_run_sync_in_a_thread_stops_from_another_thread(
    server: Server, http: aiohttp.ClientSession
) -> None:
    worker = Worker(server.url, workflows=WORKFLOWS, worker_id="threaded")
    handler = _Registered()
    logging.getLogger("treadle_sdk").addHandler(handler)
    logging.getLogger("treadle_sdk").setLevel(logging.INFO)
    try:
        running = asyncio.create_task(asyncio.to_thread(worker.run_sync))
        assert await asyncio.to_thread(handler.seen.wait, 10)
        assert (await run_task(http, server, "add", {"a": 1, "b": 1}))["value"] == 2
        worker.stop()
        await asyncio.wait_for(running, 10)
    finally:
        logging.getLogger("treadle_sdk").removeHandler(handler)
