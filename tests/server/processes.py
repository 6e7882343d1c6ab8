"""Child processes for end-to-end tests: a real ``treadle serve`` and worker processes.

``Child`` runs a process with its stdout read line by line (JSON log lines or the
worker's event lines) so a test can wait, bounded, for what the process says
instead of sleeping; stopping sends SIGTERM, then SIGKILL after ``STOP_TIMEOUT``.
Used by the crash, burst and long-poll network tests and the SDKs' end-to-end tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "GRACE_MS",
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "TREADLE",
    "WORKER",
    "Child",
    "OrchestratorChild",
    "SdkWorkerChild",
    "WorkerChild",
    "free_port",
    "open_for_child",
    "read_events",
    "start_orchestrator",
    "start_worker",
]

TREADLE = Path(sys.executable).parent / "treadle"
WORKER = Path(__file__).with_name("worker_process.py")
GRACE_MS = 2_000
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0


def free_port() -> int:
    """A port nobody listens on right now (bound to 0, read, released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def read_events(path: Path) -> list[dict[str, Any]]:
    """The worker's JSON-lines event log."""
    with path.open(encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]


def open_for_child(path: Path) -> int:
    """A file descriptor a child process writes its stderr to."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


class Child:
    """A child process whose output lines are read as they come, never left to fill a pipe."""

    def __init__(self, name: str, transcript: Path | None = None) -> None:
        self.name = name
        self.transcript = transcript
        """Where every line read is also kept, for a look after a failure."""
        self.process: asyncio.subprocess.Process | None = None
        self.recent: deque[str] = deque(maxlen=40)
        self.changed = asyncio.Event()
        self.eof = False
        self._reader: asyncio.Task[None] | None = None

    async def start(self, argv: list[str], *, read: str, stderr_file: Path | None = None) -> None:
        """Run ``argv``, reading its ``read`` stream ("stdout" or "stderr") line by line."""
        other = open_for_child(stderr_file) if stderr_file is not None else None
        try:
            self.process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if read == "stdout" else asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE
                if read == "stderr"
                else (other if other is not None else asyncio.subprocess.DEVNULL),
            )
        finally:
            if other is not None:
                os.close(other)
        stream = self.process.stdout if read == "stdout" else self.process.stderr
        assert stream is not None
        self._reader = asyncio.create_task(self._read(stream))

    def on_line(self, line: str) -> None:
        """Called for every line read."""

    async def _read(self, stream: asyncio.StreamReader) -> None:
        with contextlib.ExitStack() as files:
            copy = None
            if self.transcript is not None:
                copy = files.enter_context(self.transcript.open("ab"))
            while line := await stream.readline():
                if copy is not None:
                    copy.write(line)
                text = line.decode("utf-8", errors="replace").rstrip("\n")
                self.recent.append(text)
                self.on_line(text)
                self.changed.set()
        self.eof = True
        self.changed.set()

    def said(self) -> str:
        return f"{self.name} said (last lines):\n" + "\n".join(self.recent)

    async def until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:  # noqa: ASYNC109
        """Wait, reading output, until ``condition()`` holds; fail on exit or after ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    self.changed.clear()
                    if condition():
                        return
                    if self.eof:
                        raise AssertionError(f"{self.name} exited before {what}\n{self.said()}")
                    await self.changed.wait()
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}\n{self.said()}") from None

    async def _finish_reading(self) -> None:
        if self._reader is not None:
            await self._reader

    async def kill(self) -> int:
        """SIGKILL and reap."""
        assert self.process is not None
        self.process.kill()
        code = await self.process.wait()
        await self._finish_reading()
        return code

    async def stop(self) -> int | None:
        """SIGTERM; the exit status, or ``None`` if it did not exit within the bound."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            return None
        await self._finish_reading()
        return code

    async def reap(self) -> None:
        """Kill if still running, wait for the exit and the end of its output (finally blocks)."""
        if self.process is None:
            return
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        await self.process.wait()
        await self._finish_reading()


class OrchestratorChild(Child):
    """``treadle serve --log-format json``, its stderr log read as events."""

    def __init__(self, name: str, ended: Counter[str], transcript: Path) -> None:
        super().__init__(name, transcript)
        self.ended = ended
        """``task ended`` lines per operation id, shared by every run on one ledger."""
        self.ended_here = 0
        self.listening = False
        self.recovered = False

    def on_line(self, line: str) -> None:
        try:
            entry = json.loads(line)
        except ValueError:
            return
        if not isinstance(entry, dict):
            return
        event = entry.get("event")
        if event == "treadle listening":
            self.listening = True
        elif event == "ledger recovered":
            self.recovered = True
        elif event == "task ended":
            self.ended[str(entry.get("operation_id"))] += 1
            self.ended_here += 1


class WorkerChild(Child):
    """``worker_process.py``: stdout carries one ``registered <generation>`` line per ack."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.registrations = 0

    def on_line(self, line: str) -> None:
        if line.startswith("registered "):
            self.registrations += 1

    async def registered(self, times: int = 1) -> None:
        """Wait until the worker has had ``times`` ``registerAck`` frames in all."""
        await self.until(
            lambda: self.registrations >= times, START_TIMEOUT, f"{self.name} to register"
        )


class SdkWorkerChild(Child):
    """A Python SDK worker process (``treadle_sdk`` logging to stderr): counts registrations."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.registrations = 0

    def on_line(self, line: str) -> None:
        if "registered as" in line:  # the SDK's log line on every registerAck
            self.registrations += 1

    async def registered(self, times: int = 1) -> None:
        """Wait until the worker has registered ``times`` times in all."""
        await self.until(
            lambda: self.registrations >= times, START_TIMEOUT, f"{self.name} to register"
        )


async def start_orchestrator(
    stack: contextlib.AsyncExitStack, name: str, port: int, db: Path, ended: Counter[str]
) -> OrchestratorChild:
    child = OrchestratorChild(name, ended, db.with_name("orchestrator.log"))
    stack.push_async_callback(child.reap)
    argv = [str(TREADLE), "serve", "--host", "127.0.0.1", "--port", str(port), "--db", str(db)]
    argv += ["--log-format", "json", "--log-level", "debug", "--reconnect-grace-ms", str(GRACE_MS)]
    await child.start(argv, read="stderr")
    await child.until(
        lambda: child.listening and child.recovered, START_TIMEOUT, f"{name} to be ready"
    )
    return child


async def start_worker(
    stack: contextlib.AsyncExitStack,
    url: str,
    worker_id: str,
    concurrency: int,
    log: Path,
    *extra: str,
) -> WorkerChild:
    child = WorkerChild(worker_id)
    stack.push_async_callback(child.reap)
    argv = [sys.executable, str(WORKER), "--url", url, "--worker-id", worker_id]
    argv += ["--concurrency", str(concurrency), "--log", str(log), *extra]
    await child.start(argv, read="stdout", stderr_file=log.with_suffix(".stderr"))
    return child
