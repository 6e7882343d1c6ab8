"""What every scenario shares: the run's work directory, HTTP session, built workers, Redis.

:class:`Bench` is made once per harness invocation (:func:`open_bench`); a scenario takes it
and starts its own orchestrator, workers and peers inside an ``AsyncExitStack`` per run, so
no run inherits another's ledger or sockets.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import aiohttp

from ..procs import (
    Child,
    Orchestrator,
    build_go_worker,
    start_go_worker,
    start_orchestrator,
    start_python_worker,
    start_redis,
    wait_worker_listed,
)

__all__ = ["SDKS", "Bench", "Sdk", "open_bench"]

Sdk = Literal["go", "python"]
SDKS: Final[tuple[Sdk, ...]] = ("go", "python")


@dataclass
class Bench:
    """The harness's shared state for one invocation."""

    http: aiohttp.ClientSession
    workdir: Path
    synchronous: str
    """``--sqlite-synchronous`` for every orchestrator: ``full`` (the default, durable) or
    ``normal``."""
    stack: contextlib.AsyncExitStack
    go_binary: Path | None = None
    redis_port: int | None = None
    notes: list[str] = field(default_factory=list)
    """Things a reader of the results must know (fallbacks taken, figures unavailable)."""

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    async def go_worker_binary(self) -> Path:
        if self.go_binary is None:
            self.go_binary = await build_go_worker(self.workdir)
        return self.go_binary

    async def redis(self) -> int:
        """The invocation's Redis port, starting the server on first use."""
        if self.redis_port is None:
            self.redis_port = await start_redis(self.stack, self.workdir)
        return self.redis_port

    async def orchestrator(self, stack: contextlib.AsyncExitStack) -> Orchestrator:
        return await start_orchestrator(
            stack, self.http, self.workdir, synchronous=self.synchronous
        )

    async def worker(
        self,
        stack: contextlib.AsyncExitStack,
        sdk: Sdk,
        url: str,
        worker_id: str,
        *,
        expect: int = 0,
        concurrency: int = 64,
        wait_registered: bool = True,
    ) -> Child:
        """A bench worker of ``sdk``; registered (listed by the orchestrator) unless told not
        to wait."""
        if sdk == "go":
            binary = await self.go_worker_binary()
            child = await start_go_worker(
                stack, binary, self.workdir, url, worker_id, concurrency=concurrency, expect=expect
            )
        else:
            child = await start_python_worker(
                stack, self.workdir, url, worker_id, concurrency=concurrency, expect=expect
            )
        if wait_registered:
            await wait_worker_listed(self.http, url, child, worker_id)
        return child


@contextlib.asynccontextmanager
async def open_bench(synchronous: str, keep: Path | None = None) -> AsyncIterator[Bench]:
    """A :class:`Bench` with a fresh work directory (removed afterwards unless ``keep``)."""
    workdir = Path(tempfile.mkdtemp(prefix="treadle-bench-")) if keep is None else keep
    workdir.mkdir(parents=True, exist_ok=True)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    try:
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout) as http,
            contextlib.AsyncExitStack() as stack,
        ):
            yield Bench(http=http, workdir=workdir, synchronous=synchronous, stack=stack)
    finally:
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
