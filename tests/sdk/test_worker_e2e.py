"""The Python SDK through real failures: a cut socket, a killed orchestrator, SIGTERM.

* **Cut socket.**  A TCP relay between worker and orchestrator aborts the
  connection while an attempt runs; the worker reconnects by itself, proves its
  session (RESUME-1), keeps the attempt and completes it as attempt 1.
* **kill -9.**  ``treadle serve`` runs as a child process; the example
  conformance worker runs as another.  The orchestrator is killed with SIGKILL
  mid-run and restarted on the same port and SQLite file: every task completes
  with its own input, and none ends twice (per the orchestrator's own log).  Over WebSocket and
  over worker sessions.
* **SIGTERM.**  The worker process gets SIGTERM while a task runs: it drains,
  the task completes on its first attempt, and the process exits 0 (SDK-11).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest
from processes import SdkWorkerChild, free_port, start_orchestrator
from relay import TcpRelay

from harness import fast_config, record_where, result_of, running_server, submit
from treadle_sdk import Worker

EXAMPLE: Final = Path(__file__).parents[2] / "sdk-python" / "examples" / "conformance_worker.py"
STARTED = asyncio.Event()
RELEASE = asyncio.Event()


async def start_example(
    stack: contextlib.AsyncExitStack, url: str, transport: str, **env: str
) -> SdkWorkerChild:
    child = SdkWorkerChild(f"example worker ({transport})")
    stack.push_async_callback(child.reap)
    variables = {"WEFT_WORKER_URL": url, "WEFT_WORKER_QUEUE": "conformance"}
    variables |= {"TREADLE_TRANSPORT": transport, "TREADLE_WORKER_ID": "e2e-worker", **env}
    argv = ["/usr/bin/env", *(f"{k}={v}" for k, v in variables.items())]
    await child.start([*argv, sys.executable, str(EXAMPLE)], read="stderr")
    await child.registered()
    return child


async def held(value: Any) -> str:
    STARTED.set()
    await RELEASE.wait()
    return "held"


async def test_a_cut_socket_resumes_the_session_and_keeps_the_attempt(tmp_path: Path) -> None:
    STARTED.clear()
    RELEASE.clear()
    config = fast_config(tmp_path, reconnect_grace_ms=5000)
    async with (
        running_server(config) as server,
        TcpRelay(server.port) as relay,
        aiohttp.ClientSession() as http,
        Worker(
            relay.url,
            workflows={"wf": {"held": held}},
            transport="websocket",
            worker_id="dropped",
            reconnect_base=0.05,
            reconnect_cap=0.2,
        ) as worker,
    ):
        op = await submit(http, server, activityName="wf.held")
        await asyncio.wait_for(STARTED.wait(), 10)
        generation = worker.session.generation
        assert relay.sever() >= 2
        async with asyncio.timeout(10):
            while not (relay.accepted >= 2 and worker.registered):
                await worker.changed.wait()
        assert worker.session.generation == generation  # GEN-3: a proven resume
        RELEASE.set()
        result = await result_of(http, server, op["operationId"])
    assert (result["status"], result["value"], result["attempt"]) == ("completed", "held", 1)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", ["websocket", "longpoll"])
async def test_the_orchestrator_is_killed_and_restarted_and_nothing_is_lost(
    tmp_path: Path, transport: str
) -> None:
    port, db, ended = free_port(), tmp_path / "treadle.db", Counter[str]()
    url = f"http://127.0.0.1:{port}"
    total = 30
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())
        first = await start_orchestrator(stack, "orchestrator (first run)", port, db, ended)
        worker = await start_example(stack, url, transport)
        ops = []
        for n in range(total):
            body = {"activityName": "conformance.sleep", "input": {"milliseconds": 150, "n": n}}
            async with http.post(f"{url}/api/v1/queues/conformance/tasks", json=body) as answer:
                assert answer.status == 201
                ops.append((await answer.json())["operationId"])
        await first.until(lambda: first.ended_here >= 5, 30, "five tasks to end")
        await first.kill()
        assert first.ended_here < total, "every task ended before the kill: nothing tested"
        second = await start_orchestrator(stack, "orchestrator (restarted)", port, db, ended)
        for n, op in enumerate(ops):
            async with http.get(f"{url}/api/v1/tasks/detail/{op}/result?timeout=60000") as answer:
                assert answer.status == 200, second.said()
                result = await answer.json()
            assert (result["status"], result["value"]["n"]) == ("completed", n)
        assert worker.registrations >= 2
    # A "task ended" line written just before SIGKILL may never reach the pipe, so the log
    # can miss an ending; it must never show one twice (the results above show none missing).
    twice = {op: n for op, n in ended.items() if n > 1}
    assert not twice, f"tasks that ended more than once: {twice}"


async def test_sigterm_drains_the_running_task(tmp_path: Path) -> None:
    async with (
        running_server(fast_config(tmp_path)) as server,
        aiohttp.ClientSession() as http,
        contextlib.AsyncExitStack() as stack,
    ):
        worker = await start_example(
            stack, server.url, "websocket", TREADLE_SHUTDOWN_TIMEOUT_S="20"
        )
        op = await submit(
            http,
            server,
            queue="conformance",
            activityName="conformance.sleep",
            input={"milliseconds": 2500},
            visibilityTimeout=3000,
        )
        leased = await record_where(
            server.orchestrator, op["operationId"], lambda r: r.state == "leased"
        )
        # A renewed lease proves the worker is running it (it heartbeats every 1 s).
        await record_where(
            server.orchestrator,
            op["operationId"],
            lambda r: (r.lease_deadline or 0) > (leased.lease_deadline or 0),
        )
        assert await worker.stop() == 0
        assert "draining (received SIGTERM)" in worker.said()
        result = await result_of(http, server, op["operationId"])
    assert (result["status"], result["attempt"]) == ("completed", 1)
