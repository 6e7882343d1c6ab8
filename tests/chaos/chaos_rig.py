"""The chaos suite's rig: worker and orchestrator processes, ledger watching, submission,
waits, and the results file the reliability table is made from.

Built on ``tests/server`` (``processes.Child`` for every child process, ``harness`` for
in-process orchestrators and HTTP helpers, ``worker_process.py`` as the WebSocket worker
and ``longpoll_worker.py`` as the long-poll one).  Nothing here sleeps: every wait reads a
pipe, listens to ledger writes or uses the Task API's long wait, and every wait is bounded.

Results: when ``TREADLE_CHAOS_RESULTS`` names a directory (``make chaos`` sets it), each
scenario, fuzzer and security check writes one JSON file there through the
:func:`chaos_results` fixture; ``reliability_table.py`` turns them into
``docs/reliability.md``.  Without the variable nothing is written and the tests only assert.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest
from ledger_audit import Audit, Report, read_ledger
from processes import START_TIMEOUT, TREADLE, Child, OrchestratorChild

from harness import metrics
from treadle import Orchestrator, TaskRecord

__all__ = [
    "CHAOS",
    "CHAOS_WORKER",
    "LONGPOLL_WORKER",
    "WORKER",
    "ChaosResults",
    "EventWorker",
    "LedgerWatch",
    "ServeChild",
    "audit_metrics",
    "chaos_results",
    "scrape",
    "start_serve",
    "start_worker",
    "submit_all",
    "wait_terminal",
]

TESTS: Final = Path(__file__).resolve().parents[1]
WORKER: Final = TESTS / "server" / "worker_process.py"
LONGPOLL_WORKER: Final = TESTS / "server" / "longpoll_worker.py"
CHAOS: Final = Path(__file__).resolve().parent
CHAOS_WORKER: Final = CHAOS / "chaos_worker.py"
RESULTS_ENV: Final = "TREADLE_CHAOS_RESULTS"
REQUESTS_AT_ONCE: Final = 32
LONG_WAIT_MS: Final = 20_000
FINISH_TIMEOUT: Final = 60.0
"""Bound on a scenario's "every task has ended" wait."""
HOLD_TIMEOUT: Final = 20.0
"""Bound on the waits that set a fault up (a worker holding attempts, a refusal seen)."""


async def exit_code(child: Child, timeout: float) -> int | None:  # noqa: ASYNC109
    """The child's exit status, or ``None`` if it is still running after ``timeout`` s."""
    assert child.process is not None
    try:
        code = await asyncio.wait_for(child.process.wait(), timeout)
    except TimeoutError:
        return None
    await child._finish_reading()
    return code


# -- worker processes -----------------------------------------------------------------------


class EventWorker(Child):
    """A test worker whose event log is its stdout (``--log /dev/stdout``).

    ``worker_process.py`` writes one JSON object per event and a ``registered <gen>``
    line per ``registerAck``; ``longpoll_worker.py`` writes ``session``/``stopped``
    lines.  Every event is kept in :attr:`events`, so a test waits for what the worker
    says (a ``rejected`` result, a ``task`` taken) instead of sleeping.
    """

    def __init__(self, name: str, transcript: Path | None = None) -> None:
        super().__init__(name, transcript)
        self.events: list[dict[str, Any]] = []
        self.generations: list[int] = []
        self.said_lines: list[str] = []

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def on_line(self, line: str) -> None:
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    self.events.append(entry)
            return
        self.said_lines.append(line)
        if line.startswith("registered "):
            self.generations.append(int(line.split()[1]))

    @property
    def registrations(self) -> int:
        return len(self.generations)

    async def exit_code(self, timeout: float) -> int | None:  # noqa: ASYNC109
        return await exit_code(self, timeout)

    def of(self, kind: str) -> list[dict[str, Any]]:
        """Every event of one kind (``task``, ``ack``, ``rejected``…)."""
        return [e for e in self.events if e.get("event") == kind]

    async def registered(self, times: int = 1, timeout: float = START_TIMEOUT) -> None:  # noqa: ASYNC109
        await self.until(lambda: self.registrations >= times, timeout, f"{self.name} to register")

    async def until_event(
        self,
        predicate: Callable[[list[dict[str, Any]]], bool],
        timeout: float,  # noqa: ASYNC109
        what: str,
    ) -> None:
        await self.until(lambda: predicate(self.events), timeout, what)


async def start_worker(
    stack: contextlib.AsyncExitStack,
    url: str,
    worker_id: str,
    *,
    concurrency: int = 8,
    work_ms: float = 0,
    script: Path = WORKER,
    transcript: Path | None = None,
    extra: Iterable[str] = (),
) -> EventWorker:
    """A ``worker_process.py`` (or a script with its command line) on ``url``."""
    child = EventWorker(worker_id, transcript)
    stack.push_async_callback(child.reap)
    path = os.pathsep.join([str(TESTS / "server"), str(CHAOS)])
    argv = ["/usr/bin/env", f"PYTHONPATH={path}", sys.executable, str(script)]
    argv += ["--url", url, "--worker-id", worker_id, "--concurrency", str(concurrency)]
    argv += ["--work-ms", str(work_ms), "--log", "/dev/stdout", *extra]
    stderr = None if transcript is None else transcript.with_suffix(".stderr")
    await child.start(argv, read="stdout", stderr_file=stderr)
    return child


async def start_longpoll_worker(
    stack: contextlib.AsyncExitStack,
    url: str,
    name: str,
    *,
    concurrency: int = 4,
    heartbeat_ms: int = 1000,
    poll_ms: int = 30_000,
) -> EventWorker:
    """A ``longpoll_worker.py`` on ``url`` (behind a proxy that refuses the upgrade);
    ``session <id>`` and ``stopped`` land in :attr:`EventWorker.said_lines`."""
    child = EventWorker(name)
    stack.push_async_callback(child.reap)
    argv = [sys.executable, str(LONGPOLL_WORKER), "--url", url, "--log", "/dev/stdout"]
    argv += ["--concurrency", str(concurrency), "--heartbeat-ms", str(heartbeat_ms)]
    argv += ["--poll-ms", str(poll_ms)]
    await child.start(argv, read="stdout")
    return child


def session_of(worker: EventWorker) -> str | None:
    """The session id a long-poll worker opened, once it has said it."""
    for line in worker.said_lines:
        if line.startswith("session "):
            return line.split(" ", 1)[1]
    return None


# -- orchestrator processes -----------------------------------------------------------------


class ServeChild(OrchestratorChild):
    """``treadle serve --log-format json --log-level debug``: its log read as events, by kind.

    Keeps, per process, the dispositions of the ``task ended`` lines (for the metrics
    audit) and every line logged at error level or with a traceback (for the fuzzers:
    bad input must never produce one).
    """

    def __init__(self, name: str, ended: Counter[str], transcript: Path) -> None:
        super().__init__(name, ended, transcript)
        self.events: Counter[str] = Counter()
        self.dispositions: Counter[str] = Counter()
        self.ops_ended: list[str] = []
        self.errors: list[dict[str, Any]] = []
        self.entries: list[dict[str, Any]] = []
        """Every log entry, in order."""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def on_line(self, line: str) -> None:
        super().on_line(line)
        try:
            entry = json.loads(line)
        except ValueError:
            self.errors.append({"event": "unstructured output", "line": line})
            return
        if not isinstance(entry, dict):
            return
        event = str(entry.get("event"))
        self.events[event] += 1
        self.entries.append(entry)
        if event == "task ended":
            self.dispositions[str(entry.get("disposition"))] += 1
            self.ops_ended.append(str(entry.get("operation_id")))
        if entry.get("level") in ("error", "critical") or "exception" in entry:
            self.errors.append(entry)

    def logged(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        """The entries of ``event`` whose fields include ``fields``."""
        return [
            e
            for e in self.entries
            if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
        ]

    def errors_except(self, *expected: str) -> list[dict[str, Any]]:
        """Error lines other than the ``expected`` events."""
        return [e for e in self.errors if e.get("event") not in expected]

    async def exit_code(self, timeout: float) -> int | None:  # noqa: ASYNC109
        return await exit_code(self, timeout)


async def start_serve(
    stack: contextlib.AsyncExitStack,
    name: str,
    port: int,
    db: Path | str,
    *flags: str,
    ended: Counter[str] | None = None,
    transcript: Path | None = None,
) -> ServeChild:
    """``treadle serve`` on ``127.0.0.1:port`` and ``db``, ready (recovered)."""
    log = transcript or (Path(db).with_name("orchestrator.log") if db != ":memory:" else None)
    assert log is not None, "give a transcript path for a :memory: ledger"
    child = ServeChild(name, ended if ended is not None else Counter(), log)
    stack.push_async_callback(child.reap)
    argv = [str(TREADLE), "serve", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--db", str(db), "--log-format", "json", "--log-level", "debug", *flags]
    await child.start(argv, read="stderr")
    await child.until(
        lambda: child.listening and child.recovered, START_TIMEOUT, f"{name} to be ready"
    )
    return child


# -- an in-process orchestrator's ledger ----------------------------------------------------


class LedgerWatch:
    """Every ledger write of an in-process orchestrator: fed to the audit, and waited on."""

    def __init__(self, orchestrator: Orchestrator, audit: Audit) -> None:
        self.orchestrator = orchestrator
        self.audit = audit
        self.changed = asyncio.Event()
        self.ended: Counter[str] = Counter()
        """Terminal transitions per disposition."""
        self.ended_ops: set[str] = set()
        self.writes = 0
        self.renewals = 0
        """Leases extended by an ``activityHeartbeat`` (leased → leased, later deadline)."""
        self.leases: list[tuple[str, str, str]] = []
        """Every lease written: (operation id, attempt token, worker id)."""

    def __enter__(self) -> LedgerWatch:
        self.orchestrator.book.listen(self._write)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.orchestrator.book.unlisten(self._write)

    def _write(self, before: TaskRecord | None, after: TaskRecord) -> None:
        self.writes += 1
        self.audit.ledger_write(before, after)
        if after.state == "leased" and (before is None or before.state != "leased"):
            assert after.attempt_token is not None
            assert after.worker_id is not None
            self.leases.append((after.operation_id, after.attempt_token, after.worker_id))
        if (
            before is not None
            and before.state == after.state == "leased"
            and before.attempt_token == after.attempt_token
            and (after.lease_deadline or 0) > (before.lease_deadline or 0)
        ):
            self.renewals += 1
        if after.is_terminal and (before is None or not before.is_terminal):
            self.ended[after.disposition or after.state] += 1
            self.ended_ops.add(after.operation_id)
        self.changed.set()

    def leases_to(self, worker_id: str) -> list[tuple[str, str]]:
        """(operation id, attempt token) of every lease written for ``worker_id``."""
        return [(op, token) for op, token, worker in self.leases if worker == worker_id]

    def live(self, operation_id: str) -> TaskRecord | None:
        return self.orchestrator.book.live(operation_id)

    async def until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:  # noqa: ASYNC109
        """Wait, woken by every ledger write, until ``condition()`` holds."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    self.changed.clear()
                    if condition():
                        return
                    await self.changed.wait()
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None

    def all_ended(self, operation_ids: Iterable[str] | None = None) -> bool:
        ops = self.audit.operation_ids if operation_ids is None else operation_ids
        return all(op in self.ended_ops for op in ops)

    async def until_all_ended(self, timeout: float) -> None:  # noqa: ASYNC109
        await self.until(
            self.all_ended,
            timeout,
            f"every task to end ({len(self.ended_ops)} of {len(self.audit.tasks)} ended)",
        )

    def metrics_claim(self, audit: Audit, samples: Mapping[str, float]) -> None:
        """Hand the audit this orchestrator's scrape and what it must agree with."""
        audit.metrics(samples, created=len(audit.tasks), ended=self.ended, ops_ended=self.ended_ops)


# -- HTTP -----------------------------------------------------------------------------------


async def submit_all(
    http: aiohttp.ClientSession,
    base: str,
    audit: Audit,
    inputs: Mapping[str, Any],
    *,
    activity: str = "wf.echo",
    queue: str = "default",
    **extra: Any,
) -> None:
    """Submit ``{operationId: input}``, a bounded number at once; each 201 goes to the audit."""
    gate = asyncio.Semaphore(REQUESTS_AT_ONCE)

    async def one(op: str, value: Any) -> None:
        body = {"operationId": op, "activityName": activity, "input": value, **extra}
        url = f"{base}/api/v1/queues/{queue}/tasks"
        async with gate, http.post(url, json=body) as response:
            assert response.status == 201, (op, response.status, await response.text())
        audit.submitted(op, activity, value)

    async with asyncio.TaskGroup() as group:
        for op, value in inputs.items():
            group.create_task(one(op, value))


def numbered(prefix: str, count: int, start: int = 0) -> dict[str, Any]:
    """``{prefix<i>: {"n": i}}`` — the inputs ``wf.echo`` doubles."""
    return {f"{prefix}{i}": {"n": i} for i in range(start, start + count)}


async def wait_terminal(
    http: aiohttp.ClientSession,
    base: str,
    operation_ids: Iterable[str],
    timeout: float,  # noqa: ASYNC109
) -> None:
    """Wait (Task API long waits, bounded) until every task is terminal.

    No long wait asks for more than the time left, so none outlives the bound on the
    server either (an orchestrator stop waits for the HTTP requests in progress).
    """
    gate = asyncio.Semaphore(REQUESTS_AT_ONCE)
    pending: set[str] = set(operation_ids)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout

    async def one(op: str) -> None:
        async with gate:
            while True:
                left_ms = int((deadline - loop.time()) * 1000)
                wait = str(max(0, min(LONG_WAIT_MS, left_ms)))
                url = f"{base}/api/v1/tasks/detail/{op}/result"
                async with http.get(url, params={"timeout": wait}) as response:
                    assert response.status in (200, 204), (op, response.status)
                    if response.status == 200:
                        pending.discard(op)
                        return

    try:
        async with asyncio.timeout_at(deadline + 1), asyncio.TaskGroup() as group:
            for op in list(pending):
                group.create_task(one(op))
    except TimeoutError:
        some = sorted(pending)[:5]
        raise AssertionError(f"{len(pending)} tasks not ended after {timeout} s: {some}") from None


async def scrape(http: aiohttp.ClientSession, base: str) -> dict[str, float]:
    """The orchestrator's Prometheus samples."""
    return await metrics(http, f"{base}/v1/metrics")


async def audit_metrics(
    audit: Audit, http: aiohttp.ClientSession, base: str, serve: ServeChild, *, created: int
) -> None:
    """Hand the audit this orchestrator's metrics and the ``task ended`` lines it logged;
    ``created`` is how many tasks this process itself accepted."""
    audit.metrics(
        await scrape(http, base),
        created=created,
        ended=serve.dispositions,
        ops_ended=serve.ops_ended,
    )


async def workers_listed(http: aiohttp.ClientSession, base: str) -> dict[str, dict[str, Any]]:
    """``GET /api/v1/workers`` by worker id."""
    async with http.get(f"{base}/api/v1/workers") as response:
        assert response.status == 200
        body = await response.json()
    return {w["workerId"]: w for w in body["workers"]}


@contextlib.asynccontextmanager
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session with no connection limit (tests open many requests at once)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        yield http


# -- the end of a scenario ----------------------------------------------------------------


async def finish(
    audit: Audit,
    watch: LedgerWatch,
    http: aiohttp.ClientSession,
    base: str,
    workers: list[EventWorker],
) -> None:
    """Every task ended: take the metrics, stop the workers (drained, exit 0), feed the
    audit what they saw."""
    watch.metrics_claim(audit, await scrape(http, base))
    for worker in workers:
        if worker.process is not None and worker.process.returncode is None:
            assert await worker.stop() == 0, worker.said()
    for worker in workers:
        audit.worker_events(worker.events)


async def judge(
    audit: Audit,
    db: Path,
    results: ChaosResults,
    scenario_id: str,
    recovery_s: float | None,
    **notes: Any,
) -> Report:
    report = audit.check(await read_ledger(db, audit.operation_ids))
    results.scenario(scenario_id, report, recovery_s=recovery_s, notes=notes)
    report.assert_clean()
    return report


def held_by(watch: LedgerWatch, worker_id: str) -> dict[str, TaskRecord]:
    """The attempts the ledger says ``worker_id`` holds right now."""
    return {
        r.operation_id: r
        for r in watch.orchestrator.book.live_records()
        if r.holds_attempt and r.worker_id == worker_id
    }


# -- results --------------------------------------------------------------------------------


class ChaosResults:
    """Writes one JSON result per test into ``$TREADLE_CHAOS_RESULTS`` (if set)."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request
        self._began = time.monotonic()
        directory = os.environ.get(RESULTS_ENV)
        self.directory = Path(directory) if directory else None
        marker = request.node.get_closest_marker("xfail")
        self.known_bug: str | None = None if marker is None else str(marker.kwargs.get("reason"))

    def _write(self, entry: dict[str, Any]) -> None:
        entry |= {
            "test": self._request.node.nodeid,
            "durationS": round(time.monotonic() - self._began, 2),
            "knownBug": self.known_bug,
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{entry['id']}-{uuid.uuid4().hex[:8]}.json"
        (self.directory / name).write_text(json.dumps(entry, indent=1, sort_keys=True) + "\n")

    def scenario(
        self,
        scenario_id: str,
        report: Report,
        *,
        recovery_s: float | None,
        notes: Mapping[str, Any] | None = None,
    ) -> None:
        """A chaos scenario's audit (written before it is asserted, so a known bug shows)."""
        self._write(
            {
                "kind": "scenario",
                "id": scenario_id,
                "submitted": report.submitted,
                "completed": report.completed,
                "failed": report.failed,
                "lost": report.lost,
                "doubleApplied": report.double_applied,
                "staleApplied": report.stale_applied,
                "wrong": report.wrong,
                "metricsChecked": report.metrics_checked,
                "problems": report.problems[:20],
                "recoveryS": None if recovery_s is None else round(recovery_s, 3),
                "notes": dict(notes or {}),
            }
        )

    def fuzz(self, fuzz_id: str, *, examples: int, notes: Mapping[str, Any] | None = None) -> None:
        """A fuzzer's run: how many inputs it sent (a failure fails the test instead)."""
        self._write(
            {"kind": "fuzz", "id": fuzz_id, "examples": examples, "notes": dict(notes or {})}
        )

    def security(self, check_id: str, *, checks: int) -> None:
        """A security check: how many cases it asserted."""
        self._write({"kind": "security", "id": check_id, "checks": checks})


@pytest.fixture
def chaos_results(request: pytest.FixtureRequest) -> ChaosResults:
    """Where a test records its figures for ``docs/reliability.md``."""
    return ChaosResults(request)


@contextlib.contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """``with stopwatch() as elapsed: … elapsed()`` — seconds on the monotonic clock."""
    began = time.monotonic()
    yield lambda: time.monotonic() - began
