"""Child processes of the benchmarks: the orchestrator, Redis, workers and load generators.

Every child is a real process started with ``asyncio.create_subprocess_exec``.  Its stdout is
read line by line (the workers and load generators write one JSON event a line; Redis writes
its log there) and its stderr goes to a file in the run's work directory, shown when something
fails.  Nothing waits with a sleep for a child to be ready: the harness reads the child's
output or polls an endpoint, always with a bound, and fails loudly when the bound passes or
the child exits first.

``/proc`` readers (:func:`rss_kib`, :func:`cpu_ticks`) measure the orchestrator from outside.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import aiohttp

__all__ = [
    "REPO",
    "START_TIMEOUT",
    "BenchError",
    "Child",
    "Orchestrator",
    "build_go_worker",
    "cpu_ticks",
    "free_port",
    "raise_nofile",
    "rss_kib",
    "start_go_worker",
    "start_orchestrator",
    "start_python_worker",
    "start_redis",
    "wait_worker_listed",
]

REPO: Final = Path(__file__).resolve().parent.parent
TREADLE: Final = Path(sys.executable).parent / "treadle"
START_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 20.0
NOFILE_WANTED: Final = 65_536


class BenchError(RuntimeError):
    """The harness could not do what it set out to do (never a missed performance target)."""


def free_port() -> int:
    """A port nobody listens on right now (bound to 0, read, released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def raise_nofile() -> None:
    """Raise RLIMIT_NOFILE as far as allowed (root may raise the hard limit too).

    Called in this process and, as ``preexec_fn``, in children that hold many sockets.
    """
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = max(hard, NOFILE_WANTED) if hard != resource.RLIM_INFINITY else NOFILE_WANTED
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_ticks(pid: int) -> int:
    """utime + stime of ``pid`` (all its threads), in clock ticks (``/proc/<pid>/stat``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (``VmRSS`` of ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


class Child:
    """A child process: stdout read as lines (JSON ones kept as events), stderr to a file."""

    def __init__(self, name: str, log_dir: Path) -> None:
        self.name = name
        self.stderr_path = log_dir / f"{name}.stderr"
        self.process: asyncio.subprocess.Process | None = None
        self.events: list[dict[str, Any]] = []
        self.lines: deque[str] = deque(maxlen=30)
        self.changed = asyncio.Event()
        self.eof = False
        self._reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BenchError(f"{self.name} was not started")
        return self.process.pid

    async def start(
        self,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        many_files: bool = False,
    ) -> None:
        stderr = os.open(self.stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            self.process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env=env,
                cwd=cwd,
                preexec_fn=raise_nofile if many_files else None,
                limit=2**26,  # a latencies line holds every sample of a window
            )
        finally:
            os.close(stderr)
        assert self.process.stdout is not None
        self._reader = asyncio.create_task(self._read(self.process.stdout))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode("utf-8", errors="replace").rstrip("\n")
            self.lines.append(text[:300])
            if text.startswith("{"):
                with contextlib.suppress(ValueError):
                    event = json.loads(text)
                    if isinstance(event, dict):
                        self.events.append(event)
            self.changed.set()
        self.eof = True
        self.changed.set()

    def said(self) -> str:
        """The last lines of stdout and stderr, for an error message."""
        try:
            err = self.stderr_path.read_text(errors="replace").splitlines()[-15:]
        except OSError:
            err = []
        out = "\n  ".join(self.lines)
        return f"{self.name} stdout:\n  {out}\n{self.name} stderr:\n  " + "\n  ".join(err)

    async def until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:  # noqa: ASYNC109
        """Wait, reading output, until ``condition()``; fail on exit or after ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    self.changed.clear()
                    if condition():
                        return
                    if self.eof:
                        raise BenchError(f"{self.name} exited before {what}\n{self.said()}")
                    await self.changed.wait()
        except TimeoutError:
            raise BenchError(f"timed out ({timeout} s) waiting for {what}\n{self.said()}") from None

    async def event(self, kind: str, timeout: float, start: int = 0) -> dict[str, Any]:  # noqa: ASYNC109
        """The first event of ``kind`` at index ``start`` or later, waiting for it (bounded)."""
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            found[:] = [e for e in self.events[start:] if e.get("event") == kind][:1]
            return bool(found)

        await self.until(seen, timeout, f"{self.name} to report {kind!r}")
        return found[0]

    async def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after ``STOP_TIMEOUT``; the exit status."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        if self._reader is not None:
            await self._reader
        return self.process.returncode


class Orchestrator:
    """A running ``treadle serve`` child and its base URL."""

    def __init__(self, child: Child, port: int) -> None:
        self.child = child
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    @property
    def pid(self) -> int:
        return self.child.pid


async def _poll_ready(http: aiohttp.ClientSession, url: str, child: Child, what: str) -> None:
    """GET ``url`` until it answers 200, backing off from 5 ms; fail if ``child`` exits."""
    delay = 0.005
    try:
        async with asyncio.timeout(START_TIMEOUT):
            while True:
                if child.eof or (
                    child.process is not None and child.process.returncode is not None
                ):
                    raise BenchError(f"{child.name} exited before {what}\n{child.said()}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(url) as response:
                        if response.status == 200:
                            await response.read()
                            return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.1)
    except TimeoutError:
        raise BenchError(f"timed out waiting for {what}\n{child.said()}") from None


async def start_orchestrator(
    stack: contextlib.AsyncExitStack,
    http: aiohttp.ClientSession,
    workdir: Path,
    *,
    synchronous: str,
    name: str = "orchestrator",
) -> Orchestrator:
    """``treadle serve`` on a free port with a fresh ledger file in ``workdir``, ready."""
    port = free_port()
    db = workdir / f"{name}-{port}.db"
    child = Child(f"{name}-{port}", workdir)
    argv = [str(TREADLE), "serve", "--host", "127.0.0.1", "--port", str(port), "--db", str(db)]
    argv += ["--sqlite-synchronous", synchronous, "--log-format", "json"]
    await child.start(argv, many_files=True)
    stack.push_async_callback(child.stop)
    orchestrator = Orchestrator(child, port)
    await _poll_ready(http, f"{orchestrator.url}/api/v1/task-queues", child, f"{name} to be ready")
    return orchestrator


async def start_redis(stack: contextlib.AsyncExitStack, workdir: Path) -> int:
    """``redis-server`` on a free port, no persistence; its port once it accepts connections."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchError("redis-server is not installed: run `make bench-setup`")
    port = free_port()
    child = Child(f"redis-{port}", workdir)
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    argv += ["no", "--dir", str(workdir), "--logfile", "", "--protected-mode", "no"]
    await child.start(argv)
    stack.push_async_callback(child.stop)
    await child.until(
        lambda: any("Ready to accept connections" in line for line in child.lines),
        START_TIMEOUT,
        "redis-server to accept connections",
    )
    return port


async def build_go_worker(workdir: Path) -> Path:
    """``go build`` of ``sdk-go/examples/bench-worker`` into ``workdir``."""
    go = shutil.which("go")
    if go is None:
        raise BenchError("go is not on PATH; the Go bench worker cannot be built")
    target = workdir / "bench-worker"
    process = await asyncio.create_subprocess_exec(
        go,
        "build",
        "-o",
        str(target),
        "./examples/bench-worker",
        cwd=REPO / "sdk-go",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise BenchError(f"go build of the bench worker failed:\n{output.decode(errors='replace')}")
    return target


async def start_go_worker(
    stack: contextlib.AsyncExitStack,
    binary: Path,
    workdir: Path,
    url: str,
    worker_id: str,
    *,
    concurrency: int = 64,
    expect: int = 0,
) -> Child:
    child = Child(worker_id, workdir)
    argv = [str(binary), "-url", url, "-worker-id", worker_id]
    argv += ["-concurrency", str(concurrency), "-expect", str(expect)]
    await child.start(argv)
    stack.push_async_callback(child.stop)
    return child


async def start_python_worker(
    stack: contextlib.AsyncExitStack,
    workdir: Path,
    url: str,
    worker_id: str,
    *,
    concurrency: int = 64,
    expect: int = 0,
) -> Child:
    child = Child(worker_id, workdir)
    argv = [sys.executable, "-m", "bench.workers.python_worker", "--url", url]
    argv += ["--worker-id", worker_id, "--concurrency", str(concurrency), "--expect", str(expect)]
    await child.start(argv, cwd=REPO)
    stack.push_async_callback(child.stop)
    return child


async def wait_worker_listed(
    http: aiohttp.ClientSession, url: str, worker: Child, worker_id: str
) -> None:
    """Poll ``GET /api/v1/workers`` until ``worker_id`` is registered (bounded)."""
    delay = 0.005
    try:
        async with asyncio.timeout(START_TIMEOUT):
            while True:
                if worker.eof:
                    raise BenchError(f"{worker.name} exited before registering\n{worker.said()}")
                async with http.get(f"{url}/api/v1/workers") as response:
                    body = await response.json()
                if any(w.get("workerId") == worker_id for w in body.get("workers", [])):
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.1)
    except TimeoutError:
        raise BenchError(f"{worker_id} never registered\n{worker.said()}") from None
