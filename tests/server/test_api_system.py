"""Operator endpoints (protocol/README.md API-8, DRAIN-1; reference §13): health, readiness,
workers, task queues, drain, diagnostics and metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from longpoll_http import FlakyStore, GatedStore

from harness import (
    PROMETHEUS,
    WAIT,
    RawWorker,
    Server,
    fast_config,
    manifest,
    metrics,
    record_where,
    submit,
)
from treadle import Orchestrator, create_app
from treadle.orchestrator import wall_clock_ms
from treadle_protocol.schema import validator

API = "/api/v1"
ERROR = validator("task-api.json", "/$defs/error")


@contextlib.asynccontextmanager
async def serving(orchestrator: Orchestrator) -> AsyncIterator[Server]:
    """Serve ``orchestrator`` on a free port without waiting for it to be ready."""
    app = create_app(orchestrator.config, orchestrator)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield Server(orchestrator, runner, runner.addresses[0][1])
    finally:
        await runner.cleanup()


class Clock:
    """A clock the test moves by hand (epoch milliseconds)."""

    def __init__(self) -> None:
        self.now = wall_clock_ms()

    def __call__(self) -> int:
        return self.now


async def get_json(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as response:
        assert response.content_type == "application/json"
        return response.status, await response.json()


async def send(http: aiohttp.ClientSession, method: str, url: str) -> tuple[int, Any]:
    async with http.request(method, url) as response:
        return response.status, await response.json()


# -- health and readiness -----------------------------------------------------------------


async def test_healthz_and_readyz_when_ready(server: Server, http: aiohttp.ClientSession) -> None:
    assert await get_json(http, f"{server.url}/healthz") == (200, {"ok": True})
    assert await get_json(http, f"{server.url}/readyz") == (200, {"ready": True})


async def test_readyz_is_503_until_recovery_finishes(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    store = GatedStore()
    orchestrator = Orchestrator(fast_config(tmp_path), store=store)
    async with serving(orchestrator) as server:
        assert await get_json(http, f"{server.url}/healthz") == (200, {"ok": True})
        assert await get_json(http, f"{server.url}/readyz") == (503, {"ready": False})
        body = {"activityName": "wf.echo"}
        async with http.post(f"{server.url}{API}/queues/default/tasks", json=body) as response:
            assert response.status == 503
        store.release.set()
        assert await asyncio.wait_for(orchestrator.wait_ready(), WAIT) is True
        assert await get_json(http, f"{server.url}/readyz") == (200, {"ready": True})
        assert (await submit(http, server))["state"] == "queued"


async def test_readyz_is_503_while_the_ledger_refuses_writes(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """A disk-full or read-only ledger: ready again after the next write succeeds."""
    store = FlakyStore()
    orchestrator = Orchestrator(fast_config(tmp_path), store=store)
    async with serving(orchestrator) as server:
        assert await asyncio.wait_for(orchestrator.wait_ready(), WAIT) is True
        first, second = await submit(http, server), await submit(http, server)
        store.broken = True
        url = f"{server.url}{API}/tasks/detail/{first['operationId']}/cancel"
        async with http.post(url, json={}) as response:
            assert response.status == 503
        expected = {"ready": False, "ledger": "the last write was refused: the disk is full"}
        assert await get_json(http, f"{server.url}/readyz") == (503, expected)
        assert await get_json(http, f"{server.url}/healthz") == (200, {"ok": True})
        store.broken = False
        url = f"{server.url}{API}/tasks/detail/{second['operationId']}/cancel"
        async with http.post(url, json={}) as response:
            assert response.status == 202
        assert await get_json(http, f"{server.url}/readyz") == (200, {"ready": True})


async def test_readyz_stays_503_when_recovery_fails(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    orchestrator = Orchestrator(fast_config(tmp_path), store=GatedStore(fail=True))
    async with serving(orchestrator) as server:
        assert await asyncio.wait_for(orchestrator.wait_ready(), WAIT) is False
        assert await get_json(http, f"{server.url}/readyz") == (503, {"ready": False})
        assert await get_json(http, f"{server.url}/healthz") == (200, {"ok": True})
        body = {"activityName": "wf.echo"}
        async with http.post(f"{server.url}{API}/queues/default/tasks", json=body) as response:
            assert response.status == 503


# -- workers and task queues ----------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["/api", ""])
async def test_workers_lists_registered_workers(
    server: Server, http: aiohttp.ClientSession, prefix: str
) -> None:
    assert await get_json(http, f"{server.url}{prefix}/v1/workers") == (200, {"workers": []})
    worker = RawWorker(http, server.ws_url(), "w-list")
    ack = await worker.register(concurrency=3)
    status, body = await get_json(http, f"{server.url}{prefix}/v1/workers")
    assert status == 200
    [described] = body["workers"]
    assert {k: described[k] for k in ("workerId", "queue", "concurrency", "inFlight")} == {
        "workerId": "w-list",
        "queue": "default",
        "concurrency": 3,
        "inFlight": 0,
    }
    assert described["draining"] is False
    assert described["connected"] is True
    assert described["sessionGeneration"] == ack["sessionGeneration"] == 1
    assert described["acceptedManifestDigest"] == ack["acceptedManifestDigest"]
    assert described["deployment"] == {
        "name": "tests",
        "buildId": "b1",
        "artifactDigest": "sha256:tests",
    }
    assert described["activities"] == ["wf.echo", "wf.fail", "wf.slow"]
    await submit(http, server)
    await worker.recv_type("task")
    _, body = await get_json(http, f"{server.url}{prefix}/v1/workers")
    assert body["workers"][0]["inFlight"] == 1
    await worker.close()


async def test_task_queues_report_backlog_workers_and_capacity(
    server: Server, http: aiohttp.ClientSession
) -> None:
    url = f"{server.url}{API}/task-queues"
    assert await get_json(http, url) == (200, {"queues": []})
    await submit(http, server, queue="q1")
    await submit(http, server, queue="q1")
    _, body = await get_json(http, url)
    assert body == {
        "queues": [{"name": "q1", "backlog": 2, "workers": 0, "inFlight": 0, "capacity": 0}]
    }
    worker = RawWorker(http, server.ws_url("q1"))
    await worker.register(concurrency=1)
    await worker.recv_type("task")
    _, body = await get_json(http, url)
    assert body == {
        "queues": [{"name": "q1", "backlog": 1, "workers": 1, "inFlight": 1, "capacity": 1}]
    }
    await worker.close()


# -- drain ----------------------------------------------------------------------------------------


async def test_drained_worker_is_skipped_until_undrained(
    server: Server, http: aiohttp.ClientSession
) -> None:
    worker = RawWorker(http, server.ws_url(), "w-drain")
    await worker.register()
    drain = f"{server.url}{API}/workers/w-drain/drain"
    assert await send(http, "POST", drain) == (200, {"workerId": "w-drain", "draining": True})
    _, body = await get_json(http, f"{server.url}{API}/workers")
    assert body["workers"][0]["draining"] is True
    submitted = await submit(http, server)
    with pytest.raises(TimeoutError):
        await worker.recv(timeout=0.2)
    record = await server.orchestrator.get(submitted["operationId"])
    assert record.state == "queued"
    assert await send(http, "DELETE", drain) == (200, {"workerId": "w-drain", "draining": False})
    task = await worker.recv_type("task")
    assert task["operationId"] == submitted["operationId"]
    await worker.close()


async def test_drain_sends_no_frame_and_in_flight_work_finishes(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """DRAIN-1: the worker stays connected, is told nothing, and its results still apply."""
    worker = RawWorker(http, server.ws_url(), "w-busy")
    await worker.register()
    submitted = await submit(http, server)
    task = await worker.recv_type("task")
    status, _ = await send(http, "POST", f"{server.url}{API}/workers/w-busy/drain")
    assert status == 200
    with pytest.raises(TimeoutError):
        await worker.recv(timeout=0.1)
    await worker.result(task, "finished anyway")
    assert (await worker.recv_type("taskResultAck"))["disposition"] == "applied"
    record = await server.orchestrator.get(submitted["operationId"])
    assert (record.state, record.value) == ("terminal", "finished anyway")
    await worker.close()


@pytest.mark.parametrize("method", ["POST", "DELETE"])
async def test_drain_unknown_worker_is_404(
    server: Server, http: aiohttp.ClientSession, method: str
) -> None:
    status, body = await send(http, method, f"{server.url}{API}/workers/ghost/drain")
    assert status == 404
    ERROR.validate(body)


async def test_drain_a_deployment(server: Server, http: aiohttp.ClientSession) -> None:
    blue = RawWorker(http, server.ws_url(), "w-blue")
    green = RawWorker(http, server.ws_url(), "w-green")
    await blue.register(manifest_doc=manifest(deployment="blue"))
    await green.register(manifest_doc=manifest(deployment="green"))
    url = f"{server.url}{API}/worker-deployments/blue/drain"
    assert await send(http, "POST", url) == (
        200,
        {"deployment": "blue", "draining": True, "workers": ["w-blue"]},
    )
    _, body = await get_json(http, f"{server.url}{API}/workers")
    assert {w["workerId"]: w["draining"] for w in body["workers"]} == {
        "w-blue": True,
        "w-green": False,
    }
    for _ in range(2):
        await submit(http, server)
        await green.recv_type("task")
    with pytest.raises(TimeoutError):
        await blue.recv(timeout=0.1)
    assert await send(http, "DELETE", url) == (
        200,
        {"deployment": "blue", "draining": False, "workers": ["w-blue"]},
    )
    await submit(http, server)  # least-loaded: blue has nothing in flight
    await blue.recv_type("task")
    await blue.close()
    await green.close()


async def test_deployment_drained_before_its_workers_register(
    server: Server, http: aiohttp.ClientSession
) -> None:
    url = f"{server.url}{API}/worker-deployments/late/drain"
    assert await send(http, "POST", url) == (
        200,
        {"deployment": "late", "draining": True, "workers": []},
    )
    worker = RawWorker(http, server.ws_url(), "w-late")
    await worker.register(manifest_doc=manifest(deployment="late"))
    _, body = await get_json(http, f"{server.url}{API}/workers")
    assert body["workers"][0]["draining"] is True
    await submit(http, server)
    with pytest.raises(TimeoutError):
        await worker.recv(timeout=0.2)
    status, _ = await send(http, "DELETE", url)
    assert status == 200
    await worker.recv_type("task")
    await worker.close()


# -- diagnostics ------------------------------------------------------------------------------


@pytest.fixture
async def clocked(tmp_path: Path) -> AsyncIterator[tuple[Server, Clock]]:
    """A server whose orchestrator runs on a hand-moved clock."""
    clock = Clock()
    orchestrator = Orchestrator(fast_config(tmp_path), clock=clock)
    async with serving(orchestrator) as server:
        assert await asyncio.wait_for(orchestrator.wait_ready(), WAIT)
        yield server, clock


async def test_diagnostics_stuck_queued(
    clocked: tuple[Server, Clock], http: aiohttp.ClientSession
) -> None:
    server, clock = clocked
    url = f"{server.url}{API}/tasks/diagnostics"
    ids = [(await submit(http, server, queue="q1"))["operationId"] for _ in range(3)]
    other = (await submit(http, server, queue="q2", activityName="wf.slow"))["operationId"]
    clock.now += 10
    assert await get_json(http, url) == (200, {"items": [], "summary": {}, "limit": 50})
    status, body = await get_json(http, f"{url}?staleQueuedAfterMs=0")
    assert status == 200
    assert body["summary"] == {"stuck-queued": 4}
    assert body["limit"] == 50
    by_id = {item["operationId"]: item for item in body["items"]}
    assert set(by_id) == {*ids, other}
    assert by_id[other] == {
        "kind": "stuck-queued",
        "operationId": other,
        "queue": "q2",
        "activityName": "wf.slow",
        "state": "queued",
        "attempt": 1,
        "queuedForMs": 10,
    }
    _, limited = await get_json(http, f"{url}?staleQueuedAfterMs=0&limit=2")
    assert (len(limited["items"]), limited["summary"], limited["limit"]) == (
        2,
        {"stuck-queued": 4},
        2,
    )
    _, capped = await get_json(http, f"{url}?staleQueuedAfterMs=0&limit=1000")
    assert (len(capped["items"]), capped["limit"]) == (4, 200)
    _, queue = await get_json(http, f"{url}?staleQueuedAfterMs=0&queue=q2")
    assert [item["operationId"] for item in queue["items"]] == [other]
    _, one = await get_json(http, f"{url}?staleQueuedAfterMs=0&operationId={ids[1]}")
    assert [item["operationId"] for item in one["items"]] == [ids[1]]
    clock.now += 60_000
    _, default = await get_json(http, f"{server.url}/v1/tasks/diagnostics")
    assert default["summary"] == {"stuck-queued": 4}


async def test_diagnostics_inflight_capacity_and_retry_storm(
    clocked: tuple[Server, Clock], http: aiohttp.ClientSession
) -> None:
    server, clock = clocked
    worker = RawWorker(http, server.ws_url(), "w-diag")
    await worker.register(concurrency=1)
    held = (await submit(http, server))["operationId"]
    await worker.recv_type("task")
    waiting = (await submit(http, server))["operationId"]
    clock.now += 5
    url = f"{server.url}{API}/tasks/diagnostics"
    _, body = await get_json(http, url)
    assert body["items"] == [
        {"kind": "all-workers-at-capacity", "queue": "default", "backlog": 1, "workers": 1}
    ]
    _, body = await get_json(http, f"{url}?staleHeartbeatAfterMs=0&retryStormMinimumAttempts=1")
    assert body["summary"] == {"all-workers-at-capacity": 1, "retry-storm": 2, "stale-inflight": 1}
    [stale] = [item for item in body["items"] if item["kind"] == "stale-inflight"]
    assert stale["operationId"] == held
    assert (stale["workerId"], stale["workerConnected"], stale["lastHeartbeatAgeMs"]) == (
        "w-diag",
        True,
        5,
    )
    storms = {item["operationId"] for item in body["items"] if item["kind"] == "retry-storm"}
    assert storms == {held, waiting}
    await worker.close()


async def test_clear_dead_letter_refuses_other_tasks(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """API-8 ``DELETE …/dead-letter/{operationId}``: 404 if unknown, 409 if not dead-lettered."""
    url = f"{server.url}{API}/tasks/diagnostics/dead-letter"
    async with http.delete(f"{url}/no-such-op") as response:
        assert (response.status, response.content_type) == (404, "application/json")
        ERROR.validate(await response.json())
    queued = await submit(http, server)
    async with http.delete(f"{url}/{queued['operationId']}") as response:
        assert response.status == 409
        ERROR.validate(await response.json())
    assert (await server.orchestrator.get(queued["operationId"])).state == "queued"


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("limit=1.5", "limit"),
        ("staleQueuedAfterMs=-1", "staleQueuedAfterMs"),
        ("staleHeartbeatAfterMs=soon", "staleHeartbeatAfterMs"),
        ("retryStormMinimumAttempts=0", "retryStormMinimumAttempts"),
    ],
)
async def test_diagnostics_bad_parameters_are_400(
    server: Server, http: aiohttp.ClientSession, query: str, name: str
) -> None:
    status, body = await get_json(http, f"{server.url}{API}/tasks/diagnostics?{query}")
    assert status == 400
    ERROR.validate(body)
    assert body["path"] == f"/{name}"


# -- metrics --------------------------------------------------------------------------------


WEFT_SERIES = (
    "weft_task_backlog",
    "weft_task_queue_latency_ms",
    "weft_task_execution_latency_ms",
    "weft_task_requeues_total",
    "weft_task_retries_total",
    "weft_task_stale_heartbeats",
    "weft_worker_capacity_saturation",
    "treadle_tasks_submitted_total",
)


@pytest.mark.parametrize("path", ["/v1/metrics", "/api/v1/metrics"])
async def test_metrics_names(server: Server, http: aiohttp.ClientSession, path: str) -> None:
    async with http.get(f"{server.url}{path}") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == PROMETHEUS
        text = await response.text()
    for name in WEFT_SERIES:
        assert re.search(rf"^# TYPE {name} (counter|gauge|histogram)$", text, re.MULTILINE), name
    samples = await metrics(http, f"{server.url}{path}")
    assert samples["treadle_tasks_submitted_total"] == 0
    assert samples["weft_task_stale_heartbeats"] == 0


async def test_metrics_follow_the_work(server: Server, http: aiohttp.ClientSession) -> None:
    url = f"{server.url}/v1/metrics"
    first = await submit(http, server)
    await submit(http, server)
    samples = await metrics(http, url)
    assert samples["treadle_tasks_submitted_total"] == 2
    assert samples['weft_task_backlog{queue="default"}'] == 2
    worker = RawWorker(http, server.ws_url())
    await worker.register(concurrency=4)
    tasks = [await worker.recv_type("task") for _ in range(2)]
    samples = await metrics(http, url)
    assert samples['weft_worker_capacity_saturation{queue="default"}'] == 0.5
    assert samples["weft_task_queue_latency_ms_count"] == 2
    assert samples["weft_task_execution_latency_ms_count"] == 0
    done = next(t for t in tasks if t["operationId"] == first["operationId"])
    await worker.result(done, "ok")
    await worker.recv_type("taskResultAck")
    samples = await metrics(http, url)
    assert samples["weft_task_execution_latency_ms_count"] == 1
    assert samples['weft_worker_capacity_saturation{queue="default"}'] == 0.25
    assert samples['treadle_tasks_terminal_total{disposition="completed"}'] == 1
    await worker.close()


async def test_metrics_count_retries_and_requeues(
    server: Server, http: aiohttp.ClientSession
) -> None:
    url = f"{server.url}/api/v1/metrics"
    worker = RawWorker(http, server.ws_url(), "w-metrics")
    await worker.register()
    policy = {"maxAttempts": 3, "initialIntervalMs": 0}
    submitted = await submit(http, server, activityName="wf.fail", retryPolicy=policy)
    task = await worker.recv_type("task")
    await worker.result(task, None, status="failed", error="try again")
    await worker.recv_type("taskResultAck")
    retried = await worker.recv_type("task")
    assert retried["attempt"] == 2
    samples = await metrics(http, url)
    assert (samples["weft_task_retries_total"], samples["weft_task_requeues_total"]) == (1, 0)
    await worker.close()  # the held attempt is requeued after the reconnect grace
    await record_where(
        server.orchestrator,
        submitted["operationId"],
        lambda r: r.state == "queued" and r.attempt == 3,
    )
    samples = await metrics(http, url)
    assert (samples["weft_task_retries_total"], samples["weft_task_requeues_total"]) == (1, 1)


async def test_backlog_gauge_reads_zero_once_the_queue_drains(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """A gauge of a known queue (it has a connected worker) reads 0; the series must not vanish."""
    url = f"{server.url}/v1/metrics"
    worker = RawWorker(http, server.ws_url())
    await worker.register()
    await submit(http, server)
    await worker.recv_type("task")
    samples = await metrics(http, url)
    assert samples['treadle_workers_connected{queue="default"}'] == 1
    assert samples.get('weft_task_backlog{queue="default"}') == 0
    await worker.close()
