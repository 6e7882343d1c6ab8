"""HTTP long-poll in the field: a network that refuses WebSockets, 1,000 parked polls, a drain.

* **Restricted network.**  An :class:`~proxy.UpgradeRefusingProxy` in front of the
  orchestrator answers every WebSocket upgrade 403 and forwards everything else.  A
  separate worker process (``longpoll_worker.py``) tries the upgrade, is refused,
  falls back to a worker session (§12.2) through the proxy, and runs 200 tasks
  submitted through the proxy: every result is right and every task ended once.
* **1,000 parked polls.**  ``treadle serve`` runs as a child process so its CPU time
  and RSS can be read from ``/proc``.  A thousand queue-scoped polls are parked;
  over an idle window the server must use well under 5 % of a core and under
  50 KiB of RSS per parked poll, and a task submitted must reach a parked poll
  within 50 ms (p99).  The figures are printed (``pytest -s``) and written to the
  JSON file ``$TREADLE_LONGPOLL_FIGURES`` names, if set.
* **Drain over long-poll.**  SIGTERM while a session holds an attempt: its parked
  polls are answered 204, new polls get 409 ``session_draining``, new sessions and
  queue-scoped polls 503, the result is still taken and applied (and is there after
  a restart on the same ledger), and the server exits 0 well within its shutdown
  timeout.  Sessions holding nothing do not delay the exit.

There are no sleeps: every wait is bounded and reads a pipe, a response, a ledger
write or a client trace event (a poll's request written); the parked-poll gauge
(``/api/v1/metrics``) is read once every poll has been written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Final

import aiohttp
from processes import (
    START_TIMEOUT,
    STOP_TIMEOUT,
    TREADLE,
    Child,
    OrchestratorChild,
    free_port,
    read_events,
)
from proxy import UpgradeRefusingProxy

from harness import Server, fast_config, manifest, metrics, result_of, running_server, submit
from treadle import TaskRecord

WORKER: Final = Path(__file__).with_name("longpoll_worker.py")
TOKEN_HEADER: Final = "Weft-Worker-Session-Token"
ECHO: Final = "wf.echo"

PROXY_TASKS: Final = 200
PROXY_WORKER_CONCURRENCY: Final = 8
FINISH_TIMEOUT: Final = 30.0
REQUESTS_AT_ONCE: Final = 32

PARKED: Final = 1_000
POLL_TIMEOUT_MS: Final = 60_000
PARK_TIMEOUT: Final = 20.0
IDLE_WINDOW_S: Final = 2.0
LATENCY_SAMPLES: Final = 50
DELIVERY_TIMEOUT: Final = 5.0
MAX_IDLE_CPU: Final = 0.05
MAX_RSS_PER_POLL_KIB: Final = 50.0
MAX_P99_MS: Final = 50.0
RELEASE_TIMEOUT: Final = 10.0

SHUTDOWN_TIMEOUT_MS: Final = 10_000
"""``--worker-shutdown-timeout-ms`` of the drain test: the exit must come well before it."""
DRAIN_WAIT: Final = 10.0
IDLE_EXIT_S: Final = 2.0
"""A server whose sessions hold nothing stops at once (well under the shutdown timeout)."""


# -- child processes ------------------------------------------------------------------------


class ServerChild(OrchestratorChild):
    """``treadle serve --log-format json``; remembers every log event it has read."""

    def __init__(self, name: str, transcript: Path) -> None:
        super().__init__(name, Counter(), transcript)
        self.events: Counter[str] = Counter()

    def on_line(self, line: str) -> None:
        super().on_line(line)
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict):
                self.events[str(entry.get("event"))] += 1

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def exit_code(self, timeout: float) -> int:  # noqa: ASYNC109
        """The exit status, waiting at most ``timeout`` seconds for it."""
        assert self.process is not None
        try:
            return await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"{self.name} still running\n{self.said()}") from None


async def start_server(
    stack: contextlib.AsyncExitStack, tmp_path: Path, name: str, port: int, *extra: str
) -> ServerChild:
    """``treadle serve`` on ``port`` and ``tmp_path/treadle.db``, ready (recovered)."""
    child = ServerChild(name, tmp_path / "orchestrator.log")
    stack.push_async_callback(child.reap)
    argv = [str(TREADLE), "serve", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--db", str(tmp_path / "treadle.db"), "--log-format", "json"]
    argv += ["--sqlite-synchronous", "normal", *extra]
    await child.start(argv, read="stderr")
    await child.until(
        lambda: child.listening and child.recovered, START_TIMEOUT, f"{name} to be ready"
    )
    return child


class WorkerChild(Child):
    """``longpoll_worker.py``: its stdout says when the upgrade was refused and the
    session opened."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.refused: list[int] = []
        self.session_id: str | None = None

    def on_line(self, line: str) -> None:
        kind, _, rest = line.partition(" ")
        if kind == "websocket-refused":
            self.refused.append(int(rest))
        elif kind == "session":
            self.session_id = rest


# -- HTTP helpers -----------------------------------------------------------------------------


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    body: Any = None,
    token: str | None = None,
) -> tuple[int, Any]:
    """One request; the status and the JSON body (``None`` when there is none)."""
    headers = {TOKEN_HEADER: token} if token is not None else {}
    async with http.request(method, url, json=body, headers=headers) as response:
        raw = await response.read()
        return response.status, json.loads(raw) if raw.strip() else None


async def listed_worker(http: aiohttp.ClientSession, base: str, worker_id: str) -> Any:
    """The ``GET /api/v1/workers`` entry of ``worker_id``, or ``None``."""
    status, body = await call(http, "GET", f"{base}/api/v1/workers")
    assert status == 200, (status, body)
    return next((w for w in body["workers"] if w["workerId"] == worker_id), None)


def echo_input(i: int) -> dict[str, Any]:
    """A varied input, so a wrong or mixed-up echo shows."""
    return {"n": i, "text": "é∑" * (i % 4) + str(i), "list": [i, None, i % 2 == 0], "half": i / 2}


# -- restricted network -----------------------------------------------------------------------


async def test_worker_behind_a_proxy_that_refuses_websockets(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    worker_log = tmp_path / "worker.jsonl"
    ended: Counter[str] = Counter()
    all_ended = asyncio.Event()

    def count(before: TaskRecord | None, after: TaskRecord) -> None:
        if after.is_terminal and (before is None or not before.is_terminal):
            ended[after.operation_id] += 1
            if len(ended) == PROXY_TASKS:
                all_ended.set()

    async with (
        running_server(fast_config(tmp_path)) as server,
        UpgradeRefusingProxy(server.url) as proxy,
    ):
        orchestrator = server.orchestrator
        via_proxy = Server(orchestrator, server.runner, proxy.port)
        orchestrator.book.listen(count)
        try:
            async with contextlib.AsyncExitStack() as stack:
                worker = WorkerChild("long-poll worker")
                stack.push_async_callback(worker.reap)
                argv = [sys.executable, str(WORKER), "--url", proxy.url, "--log", str(worker_log)]
                argv += ["--concurrency", str(PROXY_WORKER_CONCURRENCY), "--heartbeat-ms", "500"]
                await worker.start(
                    argv, read="stdout", stderr_file=worker_log.with_suffix(".stderr")
                )
                await worker.until(
                    lambda: worker.session_id is not None, START_TIMEOUT, "a worker session"
                )
                session_id = worker.session_id
                assert session_id is not None

                # It tried the WebSocket first, through the proxy, and was refused there.
                assert worker.refused == [403]
                assert proxy.refused_upgrades == 1
                listed = await listed_worker(http, proxy.url, session_id)
                assert listed is not None
                assert listed["transport"] == "long-poll"
                assert listed["queue"] == "default"
                assert listed["concurrency"] == PROXY_WORKER_CONCURRENCY
                assert listed["connected"] is True

                gate = asyncio.Semaphore(REQUESTS_AT_ONCE)

                async def submit_one(i: int) -> None:
                    async with gate:
                        await submit(http, via_proxy, operationId=f"net-{i}", input=echo_input(i))

                async with asyncio.TaskGroup() as group:
                    for i in range(PROXY_TASKS):
                        group.create_task(submit_one(i))
                try:
                    await asyncio.wait_for(all_ended.wait(), FINISH_TIMEOUT)
                except TimeoutError:
                    raise AssertionError(
                        f"only {len(ended)} of {PROXY_TASKS} tasks ended\n{worker.said()}"
                    ) from None

                async def result(i: int) -> dict[str, Any]:
                    async with gate:
                        return await result_of(http, via_proxy, f"net-{i}")

                results = await asyncio.gather(*(result(i) for i in range(PROXY_TASKS)))
                assert await worker.stop() == 0, worker.said()
        finally:
            orchestrator.book.unlisten(count)

        wrong = [
            (i, got)
            for i, got in enumerate(results)
            if got.get("disposition") != "completed"
            or got.get("status") != "completed"
            or got.get("value") != echo_input(i)
        ]
        assert not wrong, f"{len(wrong)} wrong results, e.g. {wrong[:3]}"
        records = [await orchestrator.get(f"net-{i}") for i in range(PROXY_TASKS)]
        assert [r.attempt for r in records] == [1] * PROXY_TASKS
        assert all(r.value == echo_input(i) for i, r in enumerate(records))
        twice = {op: n for op, n in ended.items() if n != 1}
        assert not twice, f"tasks that ended more than once: {twice}"
        # The worker closed its session on SIGTERM: no longer listed.
        assert await listed_worker(http, proxy.url, session_id) is None

    events = read_events(worker_log)
    kinds = [e["event"] for e in events]
    assert kinds.index("websocketRefused") < kinds.index("session")
    claims = Counter(e["operationId"] for e in events if e["event"] == "task")
    assert claims == Counter({f"net-{i}": 1 for i in range(PROXY_TASKS)})
    acks = [e for e in events if e["event"] == "ack"]
    assert Counter(e["disposition"] for e in acks) == {"applied": PROXY_TASKS}
    assert len({e["operationId"] for e in acks}) == PROXY_TASKS
    problems = [e for e in events if e["event"] in ("rejected", "undelivered", "pollError")]
    assert not problems, problems[:5]
    heartbeats = [e["status"] for e in events if e["event"] == "heartbeat"]
    assert heartbeats
    assert set(heartbeats) == {200}
    assert [e["status"] for e in events if e["event"] == "closed"] == [200]
    assert kinds[-1] == "stopped"
    # Everything the worker did went through the proxy.
    session_path = f"/api/v1/worker-sessions/{session_id}"
    assert proxy.forwarded["POST", "/api/v1/worker-sessions"] == 1
    assert proxy.forwarded["GET", f"{session_path}/tasks"] >= PROXY_TASKS
    assert proxy.forwarded["POST", f"{session_path}/results"] == PROXY_TASKS
    assert proxy.forwarded["POST", f"{session_path}/heartbeat"] == len(heartbeats)
    assert proxy.forwarded["DELETE", session_path] == 1


# -- 1,000 parked polls -----------------------------------------------------------------------


def cpu_ticks(pid: int) -> int:
    """utime + stime of ``pid`` (every thread), in clock ticks (``/proc/<pid>/stat``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (``VmRSS`` of ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def percentile(samples: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def summary_ms(samples: list[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(samples, 50), 3),
        "p99": round(percentile(samples, 99), 3),
        "max": round(max(samples), 3),
    }


class ParkedPolls:
    """``count`` queue-scoped polls kept parked: each one that is answered with a task
    records when, and parks again.  The client session must use :attr:`trace`."""

    def __init__(self, base: str, count: int) -> None:
        self.url = f"{base}/api/v1/tasks/default?activity={ECHO}&timeout={POLL_TIMEOUT_MS}"
        self.count = count
        self.claims: dict[str, dict[str, Any]] = {}
        self._arrivals: dict[str, asyncio.Future[float]] = {}
        self.releasing = False
        """Set before the server is stopped: a poll answered 204 then ends instead of parking."""
        self.tasks: list[asyncio.Task[str]] = []
        self.sent = 0
        """Poll requests written to the server so far."""
        self._sent_changed = asyncio.Event()
        self.trace = aiohttp.TraceConfig()
        self.trace.on_request_headers_sent.append(self._headers_sent)

    async def _headers_sent(
        self,
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestHeadersSentParams,
    ) -> None:
        if str(params.url) == self.url:
            self.sent += 1
            self._sent_changed.set()

    def start(self, http: aiohttp.ClientSession) -> None:
        self.tasks = [asyncio.create_task(self._loop(http)) for _ in range(self.count)]

    async def until_sent(self, count: int) -> None:
        """Wait (bounded) until ``count`` poll requests have been written in all."""
        try:
            async with asyncio.timeout(PARK_TIMEOUT):
                while self.sent < count:
                    self._sent_changed.clear()
                    await self._sent_changed.wait()
        except TimeoutError:
            raise AssertionError(f"only {self.sent} of {count} polls sent") from None

    def arrival(self, operation_id: str) -> asyncio.Future[float]:
        """When (``time.perf_counter()``) a poll got ``operation_id``."""
        future = self._arrivals.get(operation_id)
        if future is None:
            future = self._arrivals[operation_id] = asyncio.get_running_loop().create_future()
        return future

    async def _loop(self, http: aiohttp.ClientSession) -> str:
        """Poll until the answer is not a task (while running: not a 204); how it ended."""
        while True:
            try:
                async with http.get(self.url) as response:
                    body = await response.read()
                    at = time.perf_counter()
                    status = response.status
            except aiohttp.ClientError as exc:
                return type(exc).__name__
            if status == 200:
                claim = json.loads(body)
                self.claims[claim["operationId"]] = claim
                self.arrival(claim["operationId"]).set_result(at)
                continue
            if status == 204 and not self.releasing:
                continue
            return str(status)

    async def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def parked_gauge(http: aiohttp.ClientSession, base: str) -> float:
    return (await metrics(http, f"{base}/api/v1/metrics"))["treadle_longpoll_parked"]


async def until_parked(http: aiohttp.ClientSession, base: str, count: int) -> None:
    """Scrape until the server reports ``count`` parked polls (bounded).  Called once the
    polls have been written (:meth:`ParkedPolls.until_sent`), so a scrape or two does."""
    parked = 0.0
    try:
        async with asyncio.timeout(PARK_TIMEOUT):
            while (parked := await parked_gauge(http, base)) < count:
                pass
    except TimeoutError:
        raise AssertionError(f"only {parked} of {count} polls parked") from None


def report(figures: dict[str, Any]) -> None:
    print("\nlong-poll figures:", json.dumps(figures, indent=1))  # noqa: T201
    target = os.environ.get("TREADLE_LONGPOLL_FIGURES")
    if target:
        Path(target).write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")


async def test_a_thousand_parked_polls_cost_little_and_answer_fast(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    clock_hz = os.sysconf("SC_CLK_TCK")
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=START_TIMEOUT)
    polls = ParkedPolls(base, PARKED)
    async with (
        aiohttp.ClientSession(
            connector=connector, timeout=timeout, trace_configs=[polls.trace]
        ) as http,
        contextlib.AsyncExitStack() as stack,
    ):
        server = await start_server(stack, tmp_path, "orchestrator", port)
        stack.push_async_callback(polls.cancel)  # only matters if the test fails early
        # Warm up the code paths a poll and a scrape use before the baseline is read.
        status, _ = await call(
            http, "GET", f"{base}/api/v1/tasks/default?activity={ECHO}&timeout=0"
        )
        assert status == 204
        assert await parked_gauge(http, base) == 0
        rss_before = rss_kib(server.pid)

        polls.start(http)
        await polls.until_sent(PARKED)
        await until_parked(http, base, PARKED)
        rss_parked = rss_kib(server.pid)

        # Idle: nothing to do but hold the polls.  The window is a wait for any poll to
        # come back, which none may.
        ticks_before, began = cpu_ticks(server.pid), time.perf_counter()
        done, _ = await asyncio.wait(
            polls.tasks, timeout=IDLE_WINDOW_S, return_when=asyncio.FIRST_COMPLETED
        )
        ticks_after, window = cpu_ticks(server.pid), time.perf_counter() - began
        assert not done, f"a parked poll ended while idle: {[t.result() for t in done]}"
        idle_cpu = (ticks_after - ticks_before) / clock_hz / window

        # One task at a time: from the submit response to the poll that gets it.
        after_response: list[float] = []
        end_to_end: list[float] = []
        for i in range(LATENCY_SAMPLES):
            operation_id = f"lat-{i}"
            sent = time.perf_counter()
            status, body = await call(
                http,
                "POST",
                f"{base}/api/v1/queues/default/tasks",
                {"operationId": operation_id, "activityName": ECHO, "input": {"n": i}},
            )
            answered = time.perf_counter()
            assert status == 201, (status, body)
            arrived = await asyncio.wait_for(polls.arrival(operation_id), DELIVERY_TIMEOUT)
            after_response.append(max(0.0, arrived - answered) * 1000)
            end_to_end.append((arrived - sent) * 1000)
        await polls.until_sent(PARKED + LATENCY_SAMPLES)  # every answered poll parks again
        await until_parked(http, base, PARKED)

        # The claims are real: each one's result is applied.
        async def finish(claim: dict[str, Any]) -> tuple[int, Any]:
            body = {
                "operationId": claim["operationId"],
                "workerId": claim["workerId"],
                "attemptToken": claim["attemptToken"],
                "status": "completed",
                "value": claim["input"],
            }
            return await call(http, "POST", f"{base}/api/v1/tasks/default/result", body)

        answers = await asyncio.gather(*(finish(c) for c in polls.claims.values()))
        assert len(answers) == LATENCY_SAMPLES
        assert all(a == (200, {"ok": True, "disposition": "applied"}) for a in answers), answers

        # Stopping the server answers every parked poll, and it exits promptly.
        polls.releasing = True
        stopped_at = time.perf_counter()
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        done, pending = await asyncio.wait(polls.tasks, timeout=RELEASE_TIMEOUT)
        released_s = time.perf_counter() - stopped_at
        assert not pending, f"{len(pending)} polls still parked {RELEASE_TIMEOUT} s after SIGTERM"
        assert Counter(t.result() for t in done) == {"204": PARKED}
        assert await server.exit_code(STOP_TIMEOUT) == 0, server.said()
        exit_s = time.perf_counter() - stopped_at

    figures = {
        "parked_polls": PARKED,
        "idle_window_s": round(window, 3),
        "idle_cpu_ticks": ticks_after - ticks_before,
        "idle_cpu_percent_of_one_core": round(idle_cpu * 100, 2),
        "rss_before_kib": rss_before,
        "rss_parked_kib": rss_parked,
        "rss_per_parked_poll_kib": round((rss_parked - rss_before) / PARKED, 2),
        "latency_submit_response_to_claim_ms": summary_ms(after_response),
        "latency_submit_sent_to_claim_ms": summary_ms(end_to_end),
        "latency_samples": LATENCY_SAMPLES,
        "release_all_polls_after_sigterm_s": round(released_s, 3),
        "server_exit_after_sigterm_s": round(exit_s, 3),
    }
    report(figures)
    assert idle_cpu < MAX_IDLE_CPU, figures
    assert (rss_parked - rss_before) / PARKED < MAX_RSS_PER_POLL_KIB, figures
    assert percentile(after_response, 99) < MAX_P99_MS, figures


# -- drain over long-poll ---------------------------------------------------------------------


class Session:
    """A worker session driven by hand over raw HTTP."""

    def __init__(self, http: aiohttp.ClientSession, port: int) -> None:
        self.http = http
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.id = ""
        self.token = ""

    async def open(self) -> Session:
        body = {"manifest": manifest(), "queue": "default", "concurrency": 2}
        status, opened = await call(self.http, "POST", f"{self.base}/api/v1/worker-sessions", body)
        assert status == 200, (status, opened)
        self.id, self.token = opened["sessionId"], opened["sessionToken"]
        return self

    def _path(self, suffix: str = "") -> str:
        return f"/api/v1/worker-sessions/{self.id}{suffix}"

    async def poll(self) -> tuple[int, Any]:
        url = self.base + self._path(f"/tasks?timeout={POLL_TIMEOUT_MS}")
        return await call(self.http, "GET", url, token=self.token)

    async def park(self) -> asyncio.Task[tuple[int, Any]]:
        """Send a poll and return once its bytes are written, before anything else is sent
        (see :func:`parked`); the task reads the answer."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        request = (
            f"GET {self._path(f'/tasks?timeout={POLL_TIMEOUT_MS}')} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{self.port}\r\n{TOKEN_HEADER}: {self.token}\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(request.encode("ascii"))
        await writer.drain()

        async def answer() -> tuple[int, Any]:
            try:
                raw = await reader.read()  # to EOF: the server closes after answering
            finally:
                writer.close()
                await writer.wait_closed()
            head, _, body = raw.partition(b"\r\n\r\n")
            return int(head.split()[1]), json.loads(body) if body.strip() else None

        return asyncio.create_task(answer())

    async def result(self, claim: dict[str, Any], value: Any) -> tuple[int, Any]:
        body = {
            "operationId": claim["operationId"],
            "attemptToken": claim["attemptToken"],
            "status": "completed",
            "value": value,
        }
        if "workflowRevision" in claim:
            body["workflowRevision"] = claim["workflowRevision"]
        url = self.base + self._path("/results")
        return await call(self.http, "POST", url, body, token=self.token)

    async def heartbeat(self, body: dict[str, Any]) -> tuple[int, Any]:
        return await call(self.http, "POST", self.base + self._path("/heartbeat"), body, self.token)


async def parked(http: aiohttp.ClientSession, base: str) -> None:
    """Return once the session polls sent with :meth:`Session.park` are parked.

    No endpoint shows a session's parked polls, so this is a barrier: a request on
    a new connection (``http`` never reuses one), made after the polls' bytes were
    written.  The server accepts connections in order and reads them in order, and a
    session poll parks without yielding once its handler runs, so by the time this
    request is answered every earlier poll is parked.
    """
    status, _ = await call(http, "GET", f"{base}/healthz")
    assert status == 200


async def answered(poll: asyncio.Task[tuple[int, Any]]) -> tuple[int, Any]:
    return await asyncio.wait_for(poll, DRAIN_WAIT)


async def test_sigterm_drains_a_long_poll_session(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    draining = {"error": "Worker session is draining", "code": "session_draining"}
    shutdown_arg = ("--worker-shutdown-timeout-ms", str(SHUTDOWN_TIMEOUT_MS))
    polls: list[asyncio.Task[tuple[int, Any]]] = []

    async def park(session: Session) -> asyncio.Task[tuple[int, Any]]:
        poll = await session.park()
        polls.append(poll)
        return poll

    async def cancel_polls() -> None:  # only matters if the test fails early
        for poll in polls:
            poll.cancel()
        await asyncio.gather(*polls, return_exceptions=True)

    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        contextlib.AsyncExitStack() as stack,
    ):
        stack.push_async_callback(cancel_polls)
        server = await start_server(stack, tmp_path, "orchestrator", port, *shutdown_arg)
        busy = await Session(http, port).open()
        first = await park(busy)
        await submit_task(http, base, "drain-1", {"n": 1})
        status, claim = await answered(first)
        assert status == 200, (status, claim)
        assert claim["operationId"] == "drain-1"
        assert claim["workerId"] == busy.id
        idle = await Session(http, port).open()
        busy_parked, idle_parked = await park(busy), await park(idle)
        await parked(http, base)

        signalled = time.perf_counter()
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        # Parked polls are answered "no task"; new ones are refused; the server stays up.
        assert await answered(busy_parked) == (204, None)
        assert await answered(idle_parked) == (204, None)
        assert await busy.poll() == (409, draining)
        assert await idle.poll() == (409, draining)
        status, body = await call(http, "GET", f"{base}/api/v1/tasks/default?activity={ECHO}")
        assert status == 503, (status, body)
        status, body = await call(
            http, "POST", f"{base}/api/v1/worker-sessions", {"manifest": manifest()}
        )
        assert status == 503, (status, body)
        assert server.process.returncode is None, "the server left before the result came"

        # The attempt still runs: its heartbeat renews the lease, its result is applied.
        status, body = await busy.heartbeat(
            {"operationId": "drain-1", "attemptToken": claim["attemptToken"]}
        )
        assert status == 200, (status, body)
        assert body["ok"] is True
        assert body["cancelled"] is False
        assert await busy.result(claim, {"echo": 1}) == (
            200,
            {"ok": True, "disposition": "applied"},
        )

        assert await server.exit_code(SHUTDOWN_TIMEOUT_MS / 1000) == 0, server.said()
        drained_in = time.perf_counter() - signalled
        assert drained_in < SHUTDOWN_TIMEOUT_MS / 1000 / 2, drained_in
        assert server.events["workers did not finish in time; closing them"] == 0

        # The result is in the ledger file: a restart on it reads it back.
        again = await start_server(stack, tmp_path, "orchestrator (restarted)", port, *shutdown_arg)
        status, detail = await call(http, "GET", f"{base}/api/v1/tasks/detail/drain-1")
        assert status == 200, (status, detail)
        assert detail["state"] == "terminal"
        assert detail["disposition"] == "completed"
        assert detail["value"] == {"echo": 1}
        assert detail["attempt"] == 1

        # Sessions that hold nothing, one of them polling, do not hold the exit up.
        lone = await Session(http, port).open()
        await Session(http, port).open()
        lone_parked = await park(lone)
        await parked(http, base)
        signalled = time.perf_counter()
        assert again.process is not None
        again.process.send_signal(signal.SIGTERM)
        assert await answered(lone_parked) == (204, None)
        assert await again.exit_code(SHUTDOWN_TIMEOUT_MS / 1000) == 0, again.said()
        idle_exit = time.perf_counter() - signalled
        assert idle_exit < IDLE_EXIT_S, f"a server with idle sessions took {idle_exit:.2f} s"
    print(f"\ndrain: exit {drained_in:.3f} s after SIGTERM; idle exit {idle_exit:.3f} s")  # noqa: T201


async def submit_task(
    http: aiohttp.ClientSession, base: str, operation_id: str, value: Any
) -> None:
    body = {"operationId": operation_id, "activityName": ECHO, "input": value}
    status, answer = await call(http, "POST", f"{base}/api/v1/queues/default/tasks", body)
    assert status == 201, (status, answer)
