"""End to end: a real ``treadle serve`` and a real Go worker process (``sdk-go``).

The Go SDK's conformance worker (``sdk-go/examples/conformance-worker``) is built once per
session and run as a child process with Weft's environment contract, against an orchestrator
child process on a free port and a SQLite file:

* echo tasks submitted over the Task API complete with their input as value;
* a cancellation reaches a running activity, which ends with the ``cancelled`` disposition
  and the caller's reason;
* the orchestrator is killed (SIGKILL) mid-run and restarted on the same port and ledger: the
  worker reconnects by itself and every task completes, none lost and none ended twice;
* SIGTERM to the worker drains it: an in-flight task still completes and the worker exits 0;
* behind a proxy that refuses WebSocket upgrades, the worker falls back to long-poll worker
  sessions and tasks still complete;
* a Go worker and a Python SDK worker serve one queue at once, both taking tasks.

There are no sleeps: every wait reads the worker's JSON log lines (its ``registered`` and
``attempt started`` events), the orchestrator's log, or uses the Task API's long wait, and
every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest
from processes import (
    START_TIMEOUT,
    Child,
    OrchestratorChild,
    SdkWorkerChild,
    free_port,
    start_orchestrator,
)
from proxy import UpgradeRefusingProxy

from harness import fast_config, record_where, running_server

pytestmark = pytest.mark.timeout(240)

SDK_GO: Final = Path(__file__).resolve().parents[2] / "sdk-go"
PY_EXAMPLE: Final = SDK_GO.parent / "sdk-python" / "examples" / "conformance_worker.py"
BUILD_TIMEOUT: Final = 300.0
QUEUE: Final = "conformance"
ACTIVITIES: Final = "conformance.echo,conformance.sleep,conformance.cancel"
RESULT_WAIT_MS: Final = 20_000
FINISH_TIMEOUT: Final = 60.0


@pytest.fixture(scope="session")
def go_worker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The conformance worker binary, built once per session (the first build may be slow)."""
    go = shutil.which("go")
    if go is None:
        pytest.fail("go is not on PATH: the Go SDK's end-to-end tests need the Go toolchain")
    binary = tmp_path_factory.mktemp("go-worker") / "conformance-worker"
    try:
        subprocess.run(
            [go, "build", "-o", str(binary), "./examples/conformance-worker"],
            cwd=SDK_GO,
            check=True,
            capture_output=True,
            timeout=BUILD_TIMEOUT,
        )
    except subprocess.CalledProcessError as failure:
        pytest.fail(f"go build failed:\n{failure.stderr.decode(errors='replace')}")
    return binary


class GoWorker(Child):
    """The Go worker; its stderr carries one JSON log line per event."""

    def __init__(self, name: str, transcript: Path) -> None:
        super().__init__(name, transcript)
        self.registrations = 0
        self.sessions = 0
        self.started: list[str] = []
        self.draining = False

    def on_line(self, line: str) -> None:
        try:
            entry = json.loads(line)
        except ValueError:
            return
        if not isinstance(entry, dict):
            return
        message = entry.get("msg")
        if message == "registered":
            self.registrations += 1
        elif message == "worker session opened":
            self.sessions += 1
        elif message == "attempt started":
            self.started.append(str(entry.get("operation_id")))
        elif message == "draining":
            self.draining = True

    async def registered(self, times: int = 1) -> None:
        await self.until(lambda: self.registrations >= times, START_TIMEOUT, f"{times} registerAck")

    async def running(self, operation_id: str) -> None:
        await self.until(
            lambda: operation_id in self.started, START_TIMEOUT, f"{operation_id} to start"
        )


async def start_go_worker(
    stack: contextlib.AsyncExitStack,
    binary: Path,
    url: str,
    log_dir: Path,
    name: str = "go-worker",
    **env: str,
) -> GoWorker:
    """The Go worker with Weft's environment contract, pointed at ``url``."""
    child = GoWorker(name, log_dir / f"{name}.log")
    stack.push_async_callback(child.reap)
    contract = {
        "WEFT_WORKER_URL": url,
        "WEFT_WORKER_QUEUE": QUEUE,
        "WEFT_WORKER_ACTIVITIES": ACTIVITIES,
        "WEFT_WORKER_PROTOCOL_VERSION": "8",
        "WEFT_CONFORMANCE_HEARTBEAT_INTERVAL_MS": "200",
        "TREADLE_WORKER_ID": name,
        "TREADLE_LOG_LEVEL": "debug",
        **env,
    }
    argv = ["env", *(f"{key}={value}" for key, value in contract.items()), str(binary)]
    await child.start(argv, read="stderr")
    return child


async def submit(
    http: aiohttp.ClientSession, base: str, operation_id: str, activity: str, task_input: Any
) -> None:
    body = {"operationId": operation_id, "activityName": activity, "input": task_input}
    body["visibilityTimeout"] = 3_000
    async with http.post(f"{base}/api/v1/queues/{QUEUE}/tasks", json=body) as response:
        assert response.status == 201, (response.status, await response.text())


async def result(http: aiohttp.ClientSession, base: str, operation_id: str) -> dict[str, Any]:
    """The task's result, waiting (long wait, bounded) until it is terminal."""
    url = f"{base}/api/v1/tasks/detail/{operation_id}/result"
    async with asyncio.timeout(FINISH_TIMEOUT):
        while True:
            async with http.get(url, params={"timeout": str(RESULT_WAIT_MS)}) as response:
                assert response.status in (200, 204), (operation_id, response.status)
                if response.status == 200:
                    payload = await response.json()
                    assert isinstance(payload, dict)
                    return payload


async def results(http: aiohttp.ClientSession, base: str, ids: list[str]) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*(result(http, base, op) for op in ids)))


@dataclass
class Stage:
    """An orchestrator process on a free port, an HTTP client, and the stack that stops both."""

    stack: contextlib.AsyncExitStack
    http: aiohttp.ClientSession
    port: int
    db: Path
    ended: Counter[str]
    orchestrator: OrchestratorChild

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def staged(tmp_path: Path, name: str = "orchestrator") -> AsyncIterator[Stage]:
    port, db, ended = free_port(), tmp_path / "treadle.db", Counter[str]()
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())
        orchestrator = await start_orchestrator(stack, name, port, db, ended)
        yield Stage(stack, http, port, db, ended, orchestrator)


async def test_echo_tasks_complete(go_worker: Path, tmp_path: Path) -> None:
    async with staged(tmp_path) as stage:
        stack, http, base = stage.stack, stage.http, stage.base
        url = f"ws://127.0.0.1:{stage.port}/v1/tasks/{QUEUE}/stream"  # as Weft's harness passes it
        worker = await start_go_worker(stack, go_worker, url, tmp_path)
        await worker.registered()
        ids = [f"echo-{i}" for i in range(20)]
        for i, op in enumerate(ids):
            await submit(http, base, op, "conformance.echo", {"n": i})
        for i, answer in enumerate(await results(http, base, ids)):
            assert answer["status"] == "completed", answer
            assert answer["value"] == {"n": i}
        assert await worker.stop() == 0, worker.said()


async def test_cancellation_reaches_the_running_activity(go_worker: Path, tmp_path: Path) -> None:
    async with staged(tmp_path) as stage:
        stack, http, base = stage.stack, stage.http, stage.base
        worker = await start_go_worker(stack, go_worker, base, tmp_path)
        await worker.registered()
        await submit(http, base, "cancel-1", "conformance.cancel", {"milliseconds": 30_000})
        await worker.running("cancel-1")
        cancel_url = f"{base}/api/v1/tasks/detail/cancel-1/cancel"
        async with http.post(cancel_url, json={"reason": "e2e says stop"}) as response:
            assert response.status == 202
            assert (await response.json())["recorded"] is True
        answer = await result(http, base, "cancel-1")
        assert answer["disposition"] == "cancelled", answer
        assert answer["status"] == "cancelled"
        assert answer["error"] == "e2e says stop"
        assert await worker.stop() == 0, worker.said()


async def test_worker_survives_an_orchestrator_restart(go_worker: Path, tmp_path: Path) -> None:
    async with staged(tmp_path, "orchestrator (first run)") as stage:
        stack, http, base, ended = stage.stack, stage.http, stage.base, stage.ended
        first = stage.orchestrator
        worker = await start_go_worker(stack, go_worker, base, tmp_path)
        await worker.registered()
        ids = [f"sleep-{i}" for i in range(30)]
        for i, op in enumerate(ids):
            await submit(http, base, op, "conformance.sleep", {"milliseconds": 150, "n": i})
        await worker.until(lambda: len(worker.started) >= 12, START_TIMEOUT, "12 attempts")
        await first.kill()

        await start_orchestrator(stack, "orchestrator (restarted)", stage.port, stage.db, ended)
        await worker.registered(2)
        answers = await results(http, base, ids)
        for i, answer in enumerate(answers):
            assert answer["status"] == "completed", answer
            assert answer["value"] == {"milliseconds": 150, "n": i}
        assert all(ended[op] <= 1 for op in ids), ended
        assert await worker.stop() == 0, worker.said()


async def test_sigterm_drains_in_flight_work(go_worker: Path, tmp_path: Path) -> None:
    async with staged(tmp_path) as stage:
        stack, http, base = stage.stack, stage.http, stage.base
        worker = await start_go_worker(stack, go_worker, base, tmp_path)
        await worker.registered()
        await submit(http, base, "drain-1", "conformance.sleep", {"milliseconds": 1_000})
        await worker.running("drain-1")
        assert await worker.stop() == 0, worker.said()  # SIGTERM, then a clean drain
        assert worker.draining
        answer = await result(http, base, "drain-1")
        assert answer["status"] == "completed", answer
        assert answer["attempt"] == 1
        assert answer["value"] == {"milliseconds": 1_000}


async def test_long_poll_fallback_when_upgrades_are_refused(
    go_worker: Path, tmp_path: Path
) -> None:
    async with staged(tmp_path) as stage:
        stack, http, base = stage.stack, stage.http, stage.base
        proxy = await stack.enter_async_context(UpgradeRefusingProxy(base))
        worker = await start_go_worker(stack, go_worker, proxy.url, tmp_path)
        await worker.until(lambda: worker.sessions >= 1, START_TIMEOUT, "a worker session")
        assert proxy.refused_upgrades >= 1
        assert worker.registrations == 0
        ids = [f"lp-{i}" for i in range(10)]
        for i, op in enumerate(ids):
            await submit(http, base, op, "conformance.echo", {"n": i})
        for i, answer in enumerate(await results(http, base, ids)):
            assert answer["status"] == "completed", answer
            assert answer["value"] == {"n": i}
        async with http.get(f"{base}/api/v1/workers") as response:
            workers = (await response.json())["workers"]
        assert [w["transport"] for w in workers] == ["long-poll"], workers
        assert await worker.stop() == 0, worker.said()


async def test_a_go_worker_and_a_python_worker_serve_one_queue(
    go_worker: Path, tmp_path: Path
) -> None:
    async with (
        running_server(fast_config(tmp_path)) as server,
        aiohttp.ClientSession() as http,
        contextlib.AsyncExitStack() as stack,
    ):
        url = f"ws://127.0.0.1:{server.port}/v1/tasks/{QUEUE}/stream"
        go = await start_go_worker(stack, go_worker, url, tmp_path, TREADLE_CONCURRENCY="3")
        python = SdkWorkerChild("python-worker")
        stack.push_async_callback(python.reap)
        env = {"WEFT_WORKER_URL": url, "TREADLE_WORKER_ID": "python-worker"}
        argv = ["env", *(f"{k}={v}" for k, v in env.items()), sys.executable, str(PY_EXAMPLE)]
        await python.start(argv, read="stderr")
        await go.registered()
        await python.registered()
        ids = [f"mixed-{i}" for i in range(6)]
        for i, op in enumerate(ids):  # 6 tasks, 3 slots each: both must take some
            await submit(http, server.url, op, "conformance.sleep", {"milliseconds": 1500, "n": i})
        holders = set()
        for op in ids:
            record = await record_where(server.orchestrator, op, lambda r: r.worker_id is not None)
            holders.add(record.worker_id)
        assert holders == {"go-worker", "python-worker"}
        for i, answer in enumerate(await results(http, server.url, ids)):
            assert (answer["status"], answer["value"]["n"]) == ("completed", i)
