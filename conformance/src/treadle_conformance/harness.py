"""Process control, an in-process orchestrator, and the waits the checks are built from.

A :class:`Stage` is one orchestrator on ``127.0.0.1`` (an in-memory ledger,
port 0) plus the worker processes started against it, with Weft's
environment contract (reference §18.2).  Every wait polls its condition
every 25 ms up to the run's timeout, as Weft's harness does, and fails with
Weft's words: ``Timed out after <T>ms waiting for <label>``, with
``: <last predicate error>`` appended when the predicate raised.  Waits on
transient states ("the worker holds a task") also accept a lease the ledger
recorded since the wait's mark, because Treadle dispatches asynchronously
where Weft's ``dispatchTask`` assigns before it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Literal

from aiohttp import web

from treadle import Orchestrator, ServerConfig, TaskRecord, create_app
from treadle.app import stop
from treadle.errors import UnknownTaskError

__all__ = [
    "ACTIVITIES",
    "HEARTBEAT_INTERVAL_MS",
    "POLL_INTERVAL_S",
    "QUEUE",
    "HarnessError",
    "Stage",
    "Transport",
    "WorkerProcess",
    "wait_for",
]

QUEUE: Final = "conformance"
ACTIVITIES: Final = ("conformance.echo", "conformance.sleep", "conformance.cancel")
HEARTBEAT_INTERVAL_MS: Final = 25
POLL_INTERVAL_S: Final = 0.025
STOP_GRACE_S: Final = 1.0
Transport = Literal["websocket", "longpoll"]
Predicate = Callable[[], bool | Awaitable[bool]]


class HarnessError(Exception):
    """A check could not go on (a timeout, a refused dispatch): Weft's thrown error."""


def _now_ms() -> float:
    return time.monotonic() * 1000


async def wait_for(predicate: Predicate, timeout_ms: int, label: str) -> None:
    """Poll ``predicate`` every 25 ms for up to ``timeout_ms`` (Weft's ``waitForCondition``)."""
    deadline = _now_ms() + timeout_ms
    last_error: Exception | None = None
    while _now_ms() <= deadline:
        try:
            outcome = predicate()
            if not isinstance(outcome, bool):
                outcome = await outcome
            if outcome:
                return
        except Exception as exc:
            last_error = exc
        await asyncio.sleep(POLL_INTERVAL_S)
    message = f"Timed out after {timeout_ms}ms waiting for {label}"
    if last_error is not None:
        message = f"{message}: {last_error}"
    raise HarnessError(message)


class WorkerProcess:
    """A worker command under test; its output is discarded unless ``show_output``."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(
        cls, command: Sequence[str], env: dict[str, str], *, show_output: bool = False
    ) -> WorkerProcess:
        sink = None if show_output else subprocess.DEVNULL
        process = await asyncio.create_subprocess_exec(
            *command, env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink
        )
        return cls(process)

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    async def stop(self) -> None:
        """SIGTERM, up to 1 s to exit, then SIGKILL (Weft's ``stopWorker``)."""
        if not self.running:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), STOP_GRACE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


class Stage:
    """An orchestrator on 127.0.0.1 and the workers the checks start against it."""

    def __init__(
        self,
        *,
        timeout_ms: int,
        transport: Transport = "websocket",
        grace_ms: int = 100,
        session_lease_ms: int = 1000,
        show_output: bool = False,
        middlewares: Sequence[Any] = (),
    ) -> None:
        self.timeout_ms = timeout_ms
        self.transport: Transport = transport
        self.show_output = show_output
        self.config = ServerConfig(
            host="127.0.0.1",
            port=0,
            db=":memory:",
            reconnect_grace_ms=grace_ms,
            worker_shutdown_timeout_ms=timeout_ms,
            session_lease_ms=session_lease_ms,
        )
        self.orchestrator = Orchestrator(self.config)
        self.app = create_app(self.config, self.orchestrator)
        for middleware in middlewares:
            self.app.middlewares.append(middleware)
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        self.port = 0
        self.workers: list[WorkerProcess] = []
        self.leases: Counter[str] = Counter()
        """Attempts the ledger leased to each worker id, ever (see module docstring)."""
        self.stream_url_override: str | None = None

    async def __aenter__(self) -> Stage:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        try:
            await site.start()
        except BaseException:
            await stop(self.runner)
            raise
        self.port = self.runner.addresses[0][1]
        await self.orchestrator.wait_ready()
        self.orchestrator.listen(self._on_write)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for worker in self.workers:
            await worker.stop()
        # A stopped worker's socket closes, but its session would wait out its lease and make
        # the orchestrator's drain wait for the attempts it holds: end it, as expiry would.
        for worker_id in self.worker_ids():
            self.orchestrator.polls.end_session(worker_id, "session_expired")
        await stop(self.runner)

    def _on_write(self, before: TaskRecord | None, after: TaskRecord) -> None:
        fresh = before is None or before.attempt_token != after.attempt_token
        if after.state == "leased" and after.worker_id is not None and fresh:
            self.leases[after.worker_id] += 1

    # -- the worker's environment ---------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stream_url(self) -> str:
        """``WEFT_WORKER_URL``: the stream path without ``/api``, as Weft's harness passes it."""
        if self.stream_url_override is not None:
            return self.stream_url_override
        return f"ws://127.0.0.1:{self.port}/v1/tasks/{QUEUE}/stream"

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "WEFT_WORKER_URL": self.stream_url,
            "WEFT_WORKER_QUEUE": QUEUE,
            "WEFT_WORKER_ACTIVITIES": ",".join(ACTIVITIES),
            "WEFT_WORKER_PROTOCOL_VERSION": "8",
            "WEFT_CONFORMANCE_HEARTBEAT_INTERVAL_MS": str(HEARTBEAT_INTERVAL_MS),
            "TREADLE_TRANSPORT": self.transport,
        }

    async def start_worker(self, command: Sequence[str]) -> WorkerProcess:
        worker = await WorkerProcess.start(
            command, self.environment(), show_output=self.show_output
        )
        self.workers.append(worker)
        return worker

    # -- what the orchestrator sees ---------------------------------------------------

    def worker(self, worker_id: str) -> dict[str, Any] | None:
        """The registered worker as ``GET /api/v1/workers`` lists it (``registry.getWorker``);
        listed through its grace window."""
        return self.orchestrator.worker(worker_id)

    def worker_ids(self) -> list[str]:
        return [worker["workerId"] for worker in self.orchestrator.workers()]

    def in_flight(self, worker_id: str) -> int:
        worker = self.worker(worker_id)
        return 0 if worker is None else int(worker["inFlight"])

    async def record(self, operation_id: str) -> TaskRecord | None:
        try:
            return await self.orchestrator.get(operation_id)
        except UnknownTaskError:
            return None

    async def submit(
        self,
        operation_id: str,
        activity: str,
        input: Any,
        *,
        failure: str | None = None,
        workflow_revision: str | None = None,
        visibility_timeout_ms: int | None = None,
    ) -> None:
        """Weft's ``dispatchTask``: ``visibilityTimeout`` is ``max(500, timeout)`` by default."""
        vt = visibility_timeout_ms or max(500, self.timeout_ms)
        try:
            await self.orchestrator.submit(
                QUEUE,
                activity,
                input,
                operation_id=operation_id,
                visibility_timeout=vt,
                workflow_revision=workflow_revision,
            )
        except Exception as exc:
            raise HarnessError(failure or f"Could not dispatch {operation_id}") from exc

    async def shutdown_worker(self, worker_id: str) -> None:
        """Weft's ``shutdownWorker(id, {timeoutMs})``: ``shutdown``, wait for the worker to go
        up to the run's timeout, then close what is still open (SHUTDOWN-1)."""
        await self.orchestrator.shutdown_worker(worker_id, self.timeout_ms)
