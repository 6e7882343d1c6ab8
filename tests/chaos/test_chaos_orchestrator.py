"""Chaos on the orchestrator side: killed, stopped under load, drained, out of disk.

These run the real ``treadle serve`` as a child process (JSON log on a pipe) on a SQLite
file, and ``worker_process.py`` workers, except the worker-drain scenario, which drains a
worker through the in-process orchestrator's API so it can check routing exactly.

* **kill -9 under load, and restart** — SIGKILL while workers hold attempts and a client
  is still submitting; the client retries each submission (idempotent by operation id)
  until the restarted orchestrator answers; workers reconnect and resend their outboxes.
* **drain during load** — (1) a worker is drained while it runs attempts: it finishes them
  and is given nothing new while the others carry the load; (2) the orchestrator gets
  SIGTERM under load: it sends ``shutdown``, lets the workers finish and deliver, exits 0,
  and the restarted orchestrator runs the rest.
* **disk full** — the orchestrator's file-size limit is cut to one byte mid-run
  (``RLIMIT_FSIZE``: every write to the ledger fails, as on a full disk).  A submission is
  refused with 503 and a clear error and leaves nothing behind; every task accepted before
  is still there after the orchestrator is restarted with space, and ends exactly once.
  Without a restart, freeing the space must be enough (a known bug, below).
* **read-only ledger** — the orchestrator is started on the same file opened read-only
  (``file:…?mode=ro``): it reads and serves what it has, refuses new work with 503 and a
  clear error, and a later read-write start runs everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import signal
from collections import Counter
from pathlib import Path
from typing import Any, Final

import aiohttp
from chaos_rig import (
    CHAOS_WORKER,
    FINISH_TIMEOUT,
    HOLD_TIMEOUT,
    ChaosResults,
    EventWorker,
    LedgerWatch,
    ServeChild,
    audit_metrics,
    chaos_results,
    finish,
    held_by,
    judge,
    numbered,
    start_serve,
    start_worker,
    stopwatch,
    submit_all,
    wait_terminal,
    workers_listed,
)
from ledger_audit import Audit, read_ledger
from processes import free_port

from harness import RawWorker, fast_config, running_server

__all__ = ["chaos_results"]

STOP_BOUND_S: Final = 15.0
"""A SIGTERM'd orchestrator must exit within its shutdown wait (5 s here) and a margin."""
FAST: Final = ("--sqlite-synchronous=normal", "--reconnect-grace-ms=2000")
LEDGER_UNAVAILABLE: Final = "The task ledger is unavailable: "
RESULT_WAIT_STOP_BOUND_S: Final = 4.0
"""SIGTERM with a result wait pending: the shutdown wait (1 s) and a margin."""
LATE_SOCKET_STOP_BOUND_S: Final = 4.0
"""SIGTERM with a socket opened during the drain: the shutdown wait (1 s) and a margin."""
HEALTH_CHECKS: Final = 100
MAX_CLAIM_FAILURES_PER_S: Final = 50.0
SPACE_FREED_BOUND_S: Final = 5.0
"""After the space is back, every task must end within this (leases are 1.5 s)."""


def stream_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/api/v1/tasks/default/stream"


async def start_workers(
    stack: contextlib.AsyncExitStack, port: int, count: int, **options: Any
) -> list[EventWorker]:
    workers = [
        await start_worker(stack, stream_url(port), f"worker-{i}", **options) for i in range(count)
    ]
    for worker in workers:
        await worker.registered()
    return workers


async def stop_and_feed(audit: Audit, workers: list[EventWorker]) -> None:
    """SIGTERM the workers (each must exit 0) and give the audit their event logs."""
    for worker in workers:
        if worker.process is not None and worker.process.returncode is None:
            assert await worker.stop() == 0, worker.said()
        audit.worker_events(worker.events)


def ended_in_logs(audit: Audit, ended: Counter[str]) -> None:
    """Terminal transitions per the orchestrators' logs (every run on the ledger).

    A line written just before a SIGKILL may never reach the pipe, so a log can miss an
    ending; it can never show one twice unless the task ended twice.
    """
    for op, times in ended.items():
        for _ in range(times):
            audit.ended(op)


async def sigterm(serve: ServeChild, bound: float = STOP_BOUND_S) -> int | None:
    assert serve.process is not None
    serve.process.send_signal(signal.SIGTERM)
    return await serve.exit_code(bound)


def limit_file_size(pid: int, limit: int) -> None:
    """``RLIMIT_FSIZE`` of a running child: writes past ``limit`` bytes fail with EFBIG
    (CPython ignores SIGXFSZ), so every write to the ledger fails as on a full disk."""
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))


# -- kill -9 under load -----------------------------------------------------------------------


async def test_orchestrator_killed_under_load_and_restarted(
    tmp_path: Path, chaos_results: ChaosResults
) -> None:
    audit = Audit("orchestrator kill -9 under load, restart")
    port, db, ended = free_port(), tmp_path / "treadle.db", Counter[str]()
    base = f"http://127.0.0.1:{port}"
    restarted = asyncio.Event()
    retried = created_after_restart = 0

    async def submit_through_the_crash(http: aiohttp.ClientSession, count: int) -> None:
        """Keep submitting across the crash: retry each until 201 or 200 (API-2)."""
        nonlocal retried, created_after_restart
        for i in range(count):
            op, value = f"late-{i}", {"n": 10_000 + i}
            body = {"operationId": op, "activityName": "wf.echo", "input": value}
            while True:
                try:
                    url = f"{base}/api/v1/queues/default/tasks"
                    async with http.post(url, json=body) as response:
                        if response.status in (200, 201):
                            audit.submitted(op, "wf.echo", value)
                            if response.status == 201 and restarted.is_set():
                                created_after_restart += 1  # by the second process
                            break
                        assert response.status == 503, (response.status, await response.text())
                except aiohttp.ClientError:
                    pass
                retried += 1
                await restarted.wait()

    async with contextlib.AsyncExitStack() as stack, aiohttp.ClientSession() as http:
        first = await start_serve(stack, "orchestrator (first run)", port, db, ended=ended)
        workers = await start_workers(stack, port, 2, concurrency=20, work_ms=20)
        await submit_all(http, base, audit, numbered("kill-", 400), visibilityTimeout=3000)
        late = asyncio.create_task(submit_through_the_crash(http, 100))
        await first.until(lambda: first.ended_here >= 100, HOLD_TIMEOUT, "100 tasks to end")
        assert await first.kill() == -signal.SIGKILL
        assert first.ended_here < 400, "every task had ended before the kill: nothing tested"
        with stopwatch() as elapsed:
            second = await start_serve(stack, "orchestrator (restarted)", port, db, ended=ended)
            restarted.set()
            await late
            for worker in workers:
                await worker.registered(2)
            await wait_terminal(http, base, audit.operation_ids, FINISH_TIMEOUT)
            recovery = elapsed()
        await audit_metrics(audit, http, base, second, created=created_after_restart)
        await stop_and_feed(audit, workers)
        assert await sigterm(second) == 0, second.said()
    ended_in_logs(audit, ended)
    await judge(
        audit,
        db,
        chaos_results,
        "orchestrator-kill-9",
        recovery,
        endedBeforeKill=first.ended_here,
        submissionsRetried=retried,
    )


# -- drain during load ------------------------------------------------------------------------


async def test_worker_drained_during_load(tmp_path: Path, chaos_results: ChaosResults) -> None:
    """DRAIN-1: a drained worker finishes what it holds and is handed nothing new — no lease
    is written for it after the drain but those of claims already under way then."""
    audit = Audit("worker drained during load")
    config = fast_config(tmp_path)
    async with (
        running_server(config) as server,
        aiohttp.ClientSession() as http,
        contextlib.AsyncExitStack() as stack,
    ):
        with LedgerWatch(server.orchestrator, audit) as watch:
            workers = [
                await start_worker(stack, server.ws_url(), name, concurrency=8, work_ms=60)
                for name in ("w-drained", "w-1", "w-2")
            ]
            for worker in workers:
                await worker.registered()
            await submit_all(http, server.url, audit, numbered("drain-", 300))
            await watch.until(
                lambda: len(watch.ended_ops) >= 50 and bool(held_by(watch, "w-drained")),
                HOLD_TIMEOUT,
                "50 tasks to end while the worker to drain holds attempts",
            )
            session = server.orchestrator.registry.get("w-drained")
            assert session is not None
            assert server.orchestrator.drain_worker("w-drained")
            under_way, leased_before = session.reserved, len(watch.leases_to("w-drained"))
            held_at_drain = len(held_by(watch, "w-drained"))
            with stopwatch() as elapsed:
                await watch.until(
                    lambda: not held_by(watch, "w-drained"),
                    HOLD_TIMEOUT,
                    "the drained worker to finish what it held",
                )
                finished_in = elapsed()
            await watch.until_all_ended(FINISH_TIMEOUT)
            leased_after = len(watch.leases_to("w-drained")) - leased_before
            listed = await workers_listed(http, server.url)
            await finish(audit, watch, http, server.url, workers)
    await judge(
        audit,
        tmp_path / "treadle.db",
        chaos_results,
        "drain-worker",
        finished_in,
        heldAtDrain=held_at_drain,
        claimsUnderWay=under_way,
        leasedAfterDrain=leased_after,
    )
    assert leased_after <= under_way, (leased_after, under_way)
    assert listed["w-drained"]["draining"] is True
    assert listed["w-drained"]["connected"] is True  # DRAIN-1: it stays connected


async def test_orchestrator_sigterm_during_load(
    tmp_path: Path, chaos_results: ChaosResults
) -> None:
    """SHUTDOWN-1, SHUTDOWN-3: a stop under load drains the workers (their running
    attempts finish and are acknowledged), exits 0 within the shutdown wait, and the
    restarted orchestrator runs the rest.

    The workers end their run on ``shutdown``, as the SDKs do (SDK-11), and new worker
    processes come with the restarted orchestrator: a worker that reconnects *during*
    the stop can hold it up (a known bug with its own test, below)."""
    audit = Audit("orchestrator SIGTERM (drain) during load, restart")
    port, db, ended = free_port(), tmp_path / "treadle.db", Counter[str]()
    base = f"http://127.0.0.1:{port}"
    flags = (*FAST, "--worker-shutdown-timeout-ms=5000")
    options: dict[str, Any] = {
        "concurrency": 10,
        "work_ms": 150,
        "script": CHAOS_WORKER,
        "extra": ("--exit-on-shutdown",),
    }
    async with contextlib.AsyncExitStack() as stack, aiohttp.ClientSession() as http:
        first = await start_serve(stack, "orchestrator (first run)", port, db, *flags, ended=ended)
        drained = await start_workers(stack, port, 2, **options)
        await submit_all(http, base, audit, numbered("term-", 300))
        await first.until(lambda: first.ended_here >= 60, HOLD_TIMEOUT, "60 tasks to end")
        with stopwatch() as elapsed:
            assert await sigterm(first) == 0, first.said()
            stop_s = elapsed()
            for worker in drained:
                assert await worker.exit_code(STOP_BOUND_S) == 0, worker.said()
            second = await start_serve(
                stack, "orchestrator (restarted)", port, db, *flags, ended=ended
            )
            fresh = await start_workers(stack, port, 2, **options)
            await wait_terminal(http, base, audit.operation_ids, FINISH_TIMEOUT)
            recovery = elapsed()
        await audit_metrics(audit, http, base, second, created=0)
        await stop_and_feed(audit, [*drained, *fresh])
        assert await sigterm(second) == 0, second.said()
    ended_in_logs(audit, ended)
    late = first.logged("workers did not finish in time; closing them")
    taken_back = second.logged("attempt taken back")
    await judge(
        audit,
        db,
        chaos_results,
        "drain-orchestrator",
        recovery,
        endedBeforeStop=first.ended_here,
        stopS=round(stop_s, 2),
        takenBackAfterRestart=len(taken_back),
    )
    assert not late, late
    assert not taken_back, f"attempts lost in the drain were taken back: {taken_back[:3]}"
    shutdowns = sum(len(w.of("shutdown")) for w in drained)
    assert shutdowns == len(drained), shutdowns


async def test_orchestrator_sigterm_with_a_socket_opened_during_the_drain(
    tmp_path: Path,
) -> None:
    """A worker (re)connecting during a stop — a rolling deploy, a reconnect loop — must
    not hold the process past its shutdown wait."""
    port = free_port()
    async with contextlib.AsyncExitStack() as stack, aiohttp.ClientSession() as http:
        serve = await start_serve(
            stack,
            "orchestrator",
            port,
            tmp_path / "treadle.db",
            *FAST,
            "--worker-shutdown-timeout-ms=1000",
        )
        holding = RawWorker(http, stream_url(port), "slow-to-drain")
        await holding.register()  # it will not close on `shutdown`: the stop waits 1 s
        assert serve.process is not None
        serve.process.send_signal(signal.SIGTERM)
        await serve.until(
            lambda: bool(serve.logged("waiting for workers to finish")),
            HOLD_TIMEOUT,
            "the drain to begin",
        )
        late = await http.ws_connect(stream_url(port))  # upgraded, never registers
        code = await serve.exit_code(LATE_SOCKET_STOP_BOUND_S)
        await serve.reap()  # gone, if it was not: the sockets close at once
        await late.close()
        await holding.close()
        assert code == 0, f"still running {LATE_SOCKET_STOP_BOUND_S} s after SIGTERM"


# -- disk full ------------------------------------------------------------------------------------


async def fill_the_disk(
    serve: ServeChild, http: aiohttp.ClientSession, base: str
) -> tuple[int, dict[str, Any]]:
    """Cut the orchestrator's file-size limit to one byte, then submit: the answer."""
    limit_file_size(serve.pid, 1)
    return await submit_refused(http, base)


async def run_into_a_full_disk(
    stack: contextlib.AsyncExitStack,
    http: aiohttp.ClientSession,
    audit: Audit,
    db: Path,
    ended: Counter[str],
    *,
    name: str,
    prefix: str,
) -> tuple[ServeChild, int, list[EventWorker], int, dict[str, Any]]:
    """The disk-full scenarios' first act: an orchestrator and one worker (concurrency 8)
    run 150 tasks until 20 have ended, then the disk fills.  Returns the orchestrator, its
    port, the workers and the answer to the submission the full disk refused."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve = await start_serve(stack, name, port, db, *FAST, ended=ended)
    workers = await start_workers(stack, port, 1, concurrency=8, work_ms=100)
    await submit_all(http, base, audit, numbered(prefix, 150), visibilityTimeout=1500)
    await serve.until(lambda: serve.ended_here >= 20, HOLD_TIMEOUT, "20 tasks to end")
    status, refusal = await fill_the_disk(serve, http, base)
    return serve, port, workers, status, refusal


async def submit_refused(http: aiohttp.ClientSession, base: str) -> tuple[int, dict[str, Any]]:
    """Submit the task the broken ledger must refuse (``refused``): the answer."""
    body = {"operationId": "refused", "activityName": "wf.echo", "input": {"n": -1}}
    async with http.post(f"{base}/api/v1/queues/default/tasks", json=body) as response:
        return response.status, await response.json()


async def test_disk_full_then_restart(tmp_path: Path, chaos_results: ChaosResults) -> None:
    audit = Audit("disk full, then restart with space")
    db, ended = tmp_path / "treadle.db", Counter[str]()
    async with contextlib.AsyncExitStack() as stack, aiohttp.ClientSession() as http:
        first, port, workers, status, refusal = await run_into_a_full_disk(
            stack, http, audit, db, ended, name="orchestrator (first run)", prefix="full-"
        )
        base = f"http://127.0.0.1:{port}"
        await first.until(
            lambda: bool(first.logged("result not committed; the worker will resend")),
            HOLD_TIMEOUT,
            "a result to meet the full disk",
        )
        assert await first.kill() == -signal.SIGKILL
        with stopwatch() as elapsed:
            second = await start_serve(
                stack, "orchestrator (restarted with space)", port, db, *FAST, ended=ended
            )
            await wait_terminal(http, base, audit.operation_ids, FINISH_TIMEOUT)
            recovery = elapsed()
        await audit_metrics(audit, http, base, second, created=0)
        await stop_and_feed(audit, workers)
        assert await sigterm(second) == 0, second.said()
    ended_in_logs(audit, ended)
    refused_record = (await read_ledger(db, ["refused"]))["refused"]
    await judge(
        audit,
        db,
        chaos_results,
        "disk-full",
        recovery,
        refusedStatus=status,
        refusedError=refusal.get("error"),
        endedBeforeTheDiskFilled=first.ended_here,
    )
    assert status == 503, refusal
    assert str(refusal["error"]).startswith(LEDGER_UNAVAILABLE), refusal
    assert refused_record is None, "a refused submission left a record"


async def test_disk_full_then_space_freed_without_restart(
    tmp_path: Path, chaos_results: ChaosResults
) -> None:
    """Once space is back, the same orchestrator must finish every accepted task."""
    audit = Audit("disk full, then space freed (no restart)")
    db, ended = tmp_path / "treadle.db", Counter[str]()
    async with contextlib.AsyncExitStack() as stack, aiohttp.ClientSession() as http:
        serve, port, workers, status, _ = await run_into_a_full_disk(
            stack, http, audit, db, ended, name="orchestrator", prefix="space-"
        )
        base = f"http://127.0.0.1:{port}"
        await serve.until(
            lambda: bool(serve.logged("take back failed; will retry")),
            HOLD_TIMEOUT,
            "a lease to expire while the disk is full",
        )
        limit_file_size(serve.pid, resource.RLIM_INFINITY)
        recovery: float | None
        note: str | None
        with stopwatch() as elapsed:
            try:
                await wait_terminal(http, base, audit.operation_ids, SPACE_FREED_BOUND_S)
            except AssertionError as stuck:
                recovery, note = None, str(stuck)
            else:
                recovery, note = elapsed(), None
        if recovery is not None:
            await audit_metrics(audit, http, base, serve, created=len(audit.tasks))
        await stop_and_feed(audit, workers)
        assert await sigterm(serve) == 0, serve.said()
    ended_in_logs(audit, ended)
    await judge(audit, db, chaos_results, "disk-full-no-restart", recovery, stuck=note)
    assert status == 503


async def test_orchestrator_sigterm_with_a_client_waiting_for_a_result(tmp_path: Path) -> None:
    """A client waiting for a result must not hold the stop past the shutdown wait: it
    should get its 204 (still running) at once, as parked long-poll requests do."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    sent = asyncio.Event()

    async def headers_sent(*_: object) -> None:
        sent.set()

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(headers_sent)
    async with (
        contextlib.AsyncExitStack() as stack,
        aiohttp.ClientSession() as http,
        aiohttp.ClientSession(trace_configs=[trace]) as waiting,
    ):
        serve = await start_serve(
            stack,
            "orchestrator",
            port,
            tmp_path / "treadle.db",
            *FAST,
            "--worker-shutdown-timeout-ms=1000",
        )
        body = {"operationId": "waited-on", "activityName": "wf.echo", "input": {"n": 1}}
        async with http.post(f"{base}/api/v1/queues/default/tasks", json=body) as response:
            assert response.status == 201
        url = f"{base}/api/v1/tasks/detail/waited-on/result?timeout=60000"
        waiter = asyncio.create_task(waiting.get(url))
        await asyncio.wait_for(sent.wait(), HOLD_TIMEOUT)
        async with http.get(f"{base}/healthz") as response:  # the wait is parked by now
            assert response.status == 200
        code = await sigterm(serve, RESULT_WAIT_STOP_BOUND_S)
        if code is None:
            waiter.cancel()
        (answer,) = await asyncio.gather(waiter, return_exceptions=True)
        if isinstance(answer, aiohttp.ClientResponse):
            answer.release()
        assert code == 0, f"still running {RESULT_WAIT_STOP_BOUND_S} s after SIGTERM"
        assert isinstance(answer, aiohttp.ClientResponse), answer
        assert answer.status == 204


# -- read-only ledger ---------------------------------------------------------------------------


def read_only(db: Path) -> str:
    return f"file:{db}?mode=ro"


async def prepare_ledger(
    stack: contextlib.AsyncExitStack,
    http: aiohttp.ClientSession,
    audit: Audit,
    port: int,
    db: Path,
    ended: Counter[str],
    *,
    run: int,
) -> None:
    """A read-write run: ``run`` of the submitted tasks end, the rest stay queued; then a
    clean stop (the worker drains, nothing is left leased)."""
    base = f"http://127.0.0.1:{port}"
    serve = await start_serve(stack, "orchestrator (read-write)", port, db, *FAST, ended=ended)
    await submit_all(http, base, audit, numbered("ro-", 100))
    if run:
        workers = await start_workers(stack, port, 1, concurrency=2, work_ms=20)
        await serve.until(lambda: serve.ended_here >= run, HOLD_TIMEOUT, f"{run} tasks to end")
        assert await sigterm(serve) == 0, serve.said()
        await stop_and_feed(audit, workers)
    else:
        assert await sigterm(serve) == 0, serve.said()


async def test_read_only_ledger(tmp_path: Path, chaos_results: ChaosResults) -> None:
    audit = Audit("read-only ledger")
    port, db, ended = free_port(), tmp_path / "treadle.db", Counter[str]()
    base = f"http://127.0.0.1:{port}"
    async with contextlib.AsyncExitStack() as stack, aiohttp.ClientSession() as http:
        await prepare_ledger(stack, http, audit, port, db, ended, run=30)
        frozen = await start_serve(
            stack,
            "orchestrator (read-only)",
            port,
            read_only(db),
            *FAST,
            ended=ended,
            transcript=tmp_path / "read-only.log",
        )
        status, refusal = await submit_refused(http, base)
        details = {}
        for op in ("ro-0", "ro-99"):
            async with http.get(f"{base}/api/v1/tasks/detail/{op}") as response:
                assert response.status == 200
                details[op] = await response.json()
        async with http.get(f"{base}/readyz") as response:
            ready = response.status
        assert await sigterm(frozen) == 0, frozen.said()
        with stopwatch() as elapsed:
            last = await start_serve(
                stack, "orchestrator (read-write again)", port, db, *FAST, ended=ended
            )
            workers = await start_workers(stack, port, 1, concurrency=8, work_ms=10)
            await wait_terminal(http, base, audit.operation_ids, FINISH_TIMEOUT)
            recovery = elapsed()
        await audit_metrics(audit, http, base, last, created=0)
        await stop_and_feed(audit, workers)
        assert await sigterm(last) == 0, last.said()
    ended_in_logs(audit, ended)
    refused_record = (await read_ledger(db, ["refused"]))["refused"]
    await judge(
        audit,
        db,
        chaos_results,
        "read-only-ledger",
        recovery,
        refusedStatus=status,
        refusedError=refusal.get("error"),
        readyzWhileReadOnly=ready,
    )
    assert status == 503, refusal
    assert str(refusal["error"]).startswith(LEDGER_UNAVAILABLE), refusal
    assert "readonly" in str(refusal["error"]), refusal
    assert refused_record is None
    assert details["ro-0"]["state"] == "terminal", details  # reads still work
    assert details["ro-99"]["state"] == "queued", details


async def test_read_only_ledger_with_a_worker_waiting(tmp_path: Path) -> None:
    """With a worker connected, every queued task is a claim that cannot be written.  The
    dispatcher must back off (here: at most 50 claim failures a second in all) rather
    than spin, and the orchestrator must keep answering."""
    audit = Audit("read-only ledger, a worker waiting")
    port, db, ended = free_port(), tmp_path / "treadle.db", Counter[str]()
    base = f"http://127.0.0.1:{port}"
    async with contextlib.AsyncExitStack() as stack, aiohttp.ClientSession() as http:
        await prepare_ledger(stack, http, audit, port, db, ended, run=0)
        frozen = await start_serve(
            stack,
            "orchestrator (read-only)",
            port,
            read_only(db),
            *FAST,
            ended=ended,
            transcript=tmp_path / "read-only.log",
        )
        await start_workers(stack, port, 1, concurrency=4)

        def failures() -> int:
            return len(frozen.logged("claim failed; task stays queued"))

        # the first match claims one task per free slot at once (4), before any has failed;
        # what must not happen is what follows: measured from there
        await frozen.until(lambda: failures() >= 4, HOLD_TIMEOUT, "the first claims to fail")
        before = failures()
        with stopwatch() as elapsed:
            for _ in range(HEALTH_CHECKS):
                async with http.get(f"{base}/healthz") as response:
                    assert response.status == 200
            window = elapsed()
        rate = (failures() - before) / window
        assert await sigterm(frozen) == 0, frozen.said()
    assert rate <= MAX_CLAIM_FAILURES_PER_S, f"{rate:.0f} failed claims a second"
