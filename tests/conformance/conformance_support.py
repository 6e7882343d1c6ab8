"""Helpers for the conformance runner's tests: fixture commands, and runs side by side.

A conformance run spends most of its time waiting on the worker (timeouts a
broken fixture must reach, sleeps the checks prescribe, the SIGTERM grace), so
the tests start the runs of a module together on one event loop, at most
:data:`PARALLEL` at a time, and then assert each report.  The runs share
nothing but the loop: each has its own orchestrators on their own ports and its
own worker processes, and the runner's own work is small next to theirs (most
of a run's CPU time is its workers starting up).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from collections.abc import Awaitable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

from treadle_conformance import Check, RunOptions, format_report
from treadle_conformance import run as run_conformance
from treadle_conformance.harness import Transport
from treadle_conformance.runner import Profile

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "conformance" / "fixtures"
SDK_PYTHON_WORKER = ROOT / "sdk-python" / "examples" / "conformance_worker.py"
SDK_GO = ROOT / "sdk-go"
UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
WEFT_PASSES = [
    "PASS register: registered worker {id}",
    "PASS task completion: echo task resolved",
    "PASS heartbeat: heartbeat observed while worker was connected",
    "PASS cancellation: cancelled task resolved with the cancelled disposition",
    "PASS reconnect: in-flight task completed after reconnect",
    "PASS revision echo: workflowRevision echoed and accepted",
    "PASS graceful shutdown: worker disconnected after shutdown",
]
PARALLEL: Final = int(os.environ.get("TREADLE_CONFORMANCE_TEST_PARALLEL", "4"))
"""How many runs at once: each is mostly waiting, but the machine has 2 cores."""
RUN_LIMIT_S: Final = 240.0
BUILD_LIMIT_S: Final = 300.0


def fixture(name: str, *env: str) -> tuple[str, ...]:
    """The command that runs ``conformance/fixtures/<name>.py`` (``env`` as ``KEY=value``)."""
    prefix = ("env", *env) if env else ()
    return (*prefix, sys.executable, str(FIXTURES / f"{name}.py"))


@dataclass(frozen=True)
class Run:
    """One ``treadle conformance`` invocation."""

    command: tuple[str, ...]
    timeout_ms: int = 5000
    profile: Profile = "full"
    transport: Transport = "websocket"


class RunFailed(Exception):
    """No report: the run did not end in time, or the Go example did not build."""


async def run_report(run: Run) -> list[Check]:
    """The checks of one run (in this process, as ``treadle conformance`` makes them)."""
    options = RunOptions(
        command=run.command,
        timeout_ms=run.timeout_ms,
        profile=run.profile,
        transport=run.transport,
    )
    try:
        return await asyncio.wait_for(run_conformance(options), RUN_LIMIT_S)
    except TimeoutError:
        raise RunFailed(f"{run} did not end within {RUN_LIMIT_S} s") from None


Outcome = list[Check] | BaseException


async def run_all(
    runs: Mapping[str, Run | Awaitable[Run]], parallel: int = PARALLEL
) -> dict[str, Outcome]:
    """Every run's checks (or why it has none), at most ``parallel`` runs at a time, started
    in the order given (put the longest first).  A run given as an awaitable (one waiting for
    a build) is awaited when its turn comes."""
    limit = asyncio.Semaphore(parallel)

    async def one(pending: Run | Awaitable[Run]) -> list[Check]:
        async with limit:
            run = pending if isinstance(pending, Run) else await pending
            return await run_report(run)

    outcomes = await asyncio.gather(*(one(run) for run in runs.values()), return_exceptions=True)
    return dict(zip(runs, outcomes, strict=True))


def checks_of(outcomes: Mapping[str, Outcome], key: str) -> list[Check]:
    """The checks of run ``key``; re-raises what kept it from reporting."""
    outcome = outcomes[key]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def text_of(outcomes: Mapping[str, Outcome], key: str) -> str:
    """Run ``key``'s text report."""
    return format_report(checks_of(outcomes, key), as_json=False)


def failures(checks: list[Check]) -> dict[str, str]:
    return {c.name: c.message for c in checks if not c.ok}


async def build_go_worker(binary: Path) -> Path:
    """``go build`` the Go SDK's conformance worker to ``binary``, at a lower priority (fails,
    never skips, without ``go``)."""
    process = await asyncio.create_subprocess_exec(
        "nice",  # the runs it overlaps are timed; the build is not
        "go",
        "build",
        "-o",
        str(binary),
        "./examples/conformance-worker",
        cwd=SDK_GO,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), BUILD_LIMIT_S)
    if process.returncode != 0:
        raise RunFailed(f"go build failed:\n{out.decode(errors='replace')}")
    return binary


async def warm_bytecode() -> None:
    """Compile what the Python workers import into the shared cache, once, before the runs
    start together: a first wave of workers compiling aiohttp side by side on a busy machine
    can take longer to register than a run's timeout."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        f"import sys; sys.path.insert(0, {str(FIXTURES)!r}); import rawsession, treadle_sdk",
        stdin=asyncio.subprocess.DEVNULL,
    )
    await asyncio.wait_for(process.wait(), RUN_LIMIT_S)


@contextlib.contextmanager
def shared_bytecode(cache: Path) -> Iterator[None]:
    """Let the Python workers started meanwhile share compiled bytecode in ``cache``.

    Where ``PYTHONDONTWRITEBYTECODE`` is set and the environment holds no ``.pyc`` files,
    every worker process compiles every module it imports (aiohttp alone is half a second
    of CPU); the ~150 worker processes of these tests would otherwise spend more CPU on
    that than on anything else.  The cache lives outside the source tree.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
        patch.setenv("PYTHONPYCACHEPREFIX", str(cache))
        yield


def masked(text: str) -> str:
    """The report with UUIDs replaced by ``<uuid>``."""
    return re.sub(UUID, "<uuid>", text)
