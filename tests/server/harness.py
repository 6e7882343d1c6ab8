"""Test harness: a real orchestrator on a free port, and a raw WebSocket worker.

``RawWorker`` speaks protocol v8 by hand (no SDK), so the functional tests
check the server against the reference, not against our own client.  Every
wait is bounded: ``recv`` raises ``TimeoutError`` after ``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from treadle import Orchestrator, ServerConfig, TaskRecord, create_app
from treadle.app import stop
from treadle_protocol.jsonjs import dumps, loads

WAIT = 10.0
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


def manifest(
    activities: dict[str, list[str]] | None = None,
    *,
    deployment: str = "tests",
    build_id: str = "b1",
    artifact: str = "sha256:tests",
) -> dict[str, Any]:
    """A valid manifest advertising ``{workflow: [activity, …]}`` (default ``wf.echo``)."""
    activities = activities or {"wf": ["echo", "slow", "fail"]}
    return {
        "manifestVersion": 1,
        "protocolVersion": 8,
        "sdkVersion": "0.0.0-test",
        "runtime": {"name": "cpython", "version": "3.11"},
        "deployment": {"name": deployment, "buildId": build_id, "artifactDigest": artifact},
        "workflows": {
            workflow: {
                "workflowVersion": "1",
                "workflowRevision": "r1",
                "contractHash": "c1",
                "activities": {
                    name: {"contractHash": "c", "implementationRevision": "i"} for name in names
                },
            }
            for workflow, names in activities.items()
        },
        "capabilities": {},
    }


class Server:
    """A running orchestrator and its HTTP base URL."""

    def __init__(self, orchestrator: Orchestrator, runner: web.AppRunner, port: int) -> None:
        self.orchestrator = orchestrator
        self.runner = runner
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def ws_url(self, queue: str = "default", prefix: str = "/api") -> str:
        return f"ws://127.0.0.1:{self.port}{prefix}/v1/tasks/{queue}/stream"


@contextlib.asynccontextmanager
async def running_server(config: ServerConfig) -> AsyncIterator[Server]:
    """Start ``config`` on 127.0.0.1 and a free port; stop it (draining) on exit."""
    config = replace(config, host="127.0.0.1", port=0)
    orchestrator = Orchestrator(config)
    app = create_app(config, orchestrator)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    assert await asyncio.wait_for(orchestrator.wait_ready(), WAIT)
    try:
        yield Server(orchestrator, runner, port)
    finally:
        await stop(runner)


def fast_config(tmp_path: Path, **overrides: Any) -> ServerConfig:
    """Fast settings for tests: short grace and shutdown wait, a file ledger in ``tmp_path``."""
    fields: dict[str, Any] = {
        "db": str(tmp_path / "treadle.db"),
        "reconnect_grace_ms": 100,
        "worker_shutdown_timeout_ms": 2000,
        "expiry_scan_interval_ms": 10,
        "sqlite_synchronous": "normal",
    }
    fields.update(overrides)
    return ServerConfig(**fields)


def result_frame(task: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A ``taskResult`` for ``task`` (echoing its revision), completed with ``null`` unless
    ``fields`` say otherwise; a field given as ``None`` is left out."""
    frame: dict[str, Any] = {
        "type": "taskResult",
        "operationId": task["operationId"],
        "attemptToken": task["attemptToken"],
        "status": "completed",
        "value": None,
    }
    if "workflowRevision" in task:
        frame["workflowRevision"] = task["workflowRevision"]
    frame.update(fields)
    return {key: value for key, value in frame.items() if value is not None or key == "value"}


async def until_closed(
    worker: RawWorker,
    timeout: float = WAIT,  # noqa: ASYNC109
) -> tuple[list[dict[str, Any]], int | None, str]:
    """Every text frame the server sends until it closes, then the close code and reason."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            message = await worker.socket.receive()
            if message.type == aiohttp.WSMsgType.TEXT:
                frames.append(loads(message.data))
                continue
            assert message.type == aiohttp.WSMsgType.CLOSE, message
            return frames, message.data, str(message.extra or "")


class RawWorker:
    """One worker socket, driven frame by frame."""

    def __init__(self, http: aiohttp.ClientSession, url: str, worker_id: str = "w1") -> None:
        self.http = http
        self.url = url
        self.worker_id = worker_id
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.generation: int | None = None

    async def connect(self, **kwargs: Any) -> RawWorker:
        self.ws = await self.http.ws_connect(self.url, autoping=True, max_msg_size=0, **kwargs)
        return self

    @property
    def socket(self) -> aiohttp.ClientWebSocketResponse:
        assert self.ws is not None, "connect() first"
        return self.ws

    async def send(self, message: dict[str, Any]) -> None:
        await self.socket.send_str(dumps(message).decode("utf-8"))

    async def send_text(self, text: str) -> None:
        await self.socket.send_str(text)

    async def recv(self, timeout: float = WAIT) -> dict[str, Any]:  # noqa: ASYNC109
        message = await self.socket.receive(timeout=timeout)
        if message.type != aiohttp.WSMsgType.TEXT:
            raise AssertionError(f"expected a text frame, got {message.type!r} {message.data!r}")
        value = loads(message.data)
        assert isinstance(value, dict)
        return value

    async def recv_type(self, kind: str, timeout: float = WAIT) -> dict[str, Any]:  # noqa: ASYNC109
        """The next frame, which must be of type ``kind``."""
        frame = await self.recv(timeout)
        assert frame["type"] == kind, frame
        return frame

    async def closed(self, timeout: float = WAIT) -> tuple[int | None, str]:  # noqa: ASYNC109
        """Wait for the server's close; (code, reason)."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.socket.receive()
                if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING):
                    break
                if message.type == aiohttp.WSMsgType.CLOSED:
                    break
                if message.type == aiohttp.WSMsgType.TEXT:
                    continue
        return self.socket.close_code, str(message.extra or "")

    def register_message(
        self,
        *,
        concurrency: float | None = None,
        resume: int | None = None,
        manifest_doc: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        frame: dict[str, Any] = {
            "type": "register",
            "protocolVersion": 8,
            "workerId": self.worker_id,
            "manifest": manifest_doc or manifest(),
        }
        if concurrency is not None:
            frame["concurrency"] = concurrency
        if resume is not None:
            frame["resumeSessionGeneration"] = resume
        return frame

    async def register(self, **kwargs: Any) -> dict[str, Any]:
        """Connect if needed, register, and return the ``registerAck``."""
        if self.ws is None:
            await self.connect()
        await self.send(self.register_message(**kwargs))
        ack = await self.recv_type("registerAck")
        self.generation = ack["sessionGeneration"]
        return ack

    async def result(self, task: dict[str, Any], value: Any = None, **extra: Any) -> None:
        """Send a completed ``taskResult`` for ``task`` (see :func:`result_frame`)."""
        await self.send(result_frame(task, value=value, **extra))

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


async def record_where(
    orchestrator: Orchestrator,
    operation_id: str,
    predicate: Callable[[TaskRecord], bool],
    timeout: float = WAIT,  # noqa: ASYNC109
) -> TaskRecord:
    """Wait (bounded) until the task's ledger record satisfies ``predicate``; return it.

    Event-driven: it checks the current record, then listens to ledger writes.
    """
    changed = asyncio.Event()

    def listener(before: TaskRecord | None, after: TaskRecord) -> None:
        changed.set()

    orchestrator.book.listen(listener)
    try:
        async with asyncio.timeout(timeout):
            while True:
                changed.clear()
                record = await orchestrator.book.get(operation_id)
                if record is not None and predicate(record):
                    return record
                await changed.wait()
    finally:
        orchestrator.book.unlisten(listener)


async def submit(
    http: aiohttp.ClientSession, server: Server, queue: str = "default", **body: Any
) -> dict[str, Any]:
    body.setdefault("activityName", "wf.echo")
    async with http.post(f"{server.url}/api/v1/queues/{queue}/tasks", json=body) as response:
        assert response.status in (200, 201), await response.text()
        payload = await response.json()
        assert isinstance(payload, dict)
        return payload


async def result_of(
    http: aiohttp.ClientSession, server: Server, operation_id: str, timeout_ms: int = 10_000
) -> dict[str, Any]:
    url = f"{server.url}/api/v1/tasks/detail/{operation_id}/result?timeout={timeout_ms}"
    async with http.get(url) as response:
        assert response.status == 200, (response.status, await response.text())
        payload = await response.json()
        assert isinstance(payload, dict)
        return payload


async def metrics(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """Scrape ``url``: every sample as ``name{labels}`` → value."""
    async with http.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == PROMETHEUS
        text = await response.text()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for HTTP and WebSocket requests."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    """A running orchestrator with :func:`fast_config` settings and a file ledger."""
    async with running_server(fast_config(tmp_path)) as running:
        yield running
