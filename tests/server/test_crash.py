"""Durability: a ``kill -9`` mid-run loses and doubles nothing; bursts respect concurrency.

The crash test runs the real ``treadle serve`` as a child process on a SQLite file
and a separate worker process (``worker_process.py``, a raw protocol peer with an
outbox), kills the orchestrator with SIGKILL once a few hundred of 2,000 tasks have
ended, restarts it on the same database and port, and checks that every task ended
exactly once with the right value: through the Task API, through the worker's
acknowledgements, through the orchestrator's logs, and in the ledger file itself.

The burst test submits 1,000 tasks at once to three worker processes of small
concurrency and checks, on both sides of the socket, that no worker ever held more
attempts than its concurrency.

There are no sleeps: every wait reads a pipe (the orchestrator's JSON log lines, the
worker's ``registered`` lines), listens to ledger writes, or uses the Task API's long
wait, and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from processes import (
    free_port,
    read_events,
    start_orchestrator,
    start_worker,
)

from harness import fast_config, running_server
from treadle import SQLiteStore, TaskRecord

TASKS = 2_000
CRASH_AFTER = 300
"""Tasks ended (per the orchestrator's log) before the orchestrator is killed."""
WORKER_CONCURRENCY = 50
PROGRESS_TIMEOUT = 30.0
FINISH_TIMEOUT = 60.0
REQUESTS_AT_ONCE = 64
VISIBILITY_TIMEOUT_MS = 5_000
"""The crash tasks' lease.  A ``task`` frame written to the socket just before the kill
can die with it (the kernel resets a connection closed with unread input), while its
lease is already durable; the worker never saw the attempt, so it is only requeued when
the lease expires (LEASE-7).  5 s instead of the default 30 s keeps that wait short and
still far longer than an attempt of ``wf.echo`` takes."""
LONG_WAIT_MS = 20_000

BURST = 1_000
BURST_WORKERS = {"burst-3": 3, "burst-5": 5, "burst-7": 7}
BURST_WORK_MS = 40


async def submit_all(
    http: aiohttp.ClientSession, base: str, prefix: str, count: int, **extra: Any
) -> None:
    """POST ``count`` tasks ``<prefix><i>`` with input ``{"n": i}``, a bounded number at once."""
    gate = asyncio.Semaphore(REQUESTS_AT_ONCE)

    async def one(i: int) -> None:
        body = {"operationId": f"{prefix}{i}", "activityName": "wf.echo", "input": {"n": i}}
        body.update(extra)
        async with gate, http.post(f"{base}/api/v1/queues/default/tasks", json=body) as response:
            assert response.status == 201, (i, response.status, await response.text())

    async with asyncio.TaskGroup() as group:
        for i in range(count):
            group.create_task(one(i))


async def final_details(http: aiohttp.ClientSession, base: str) -> dict[str, dict[str, Any]]:
    """Wait (long wait, bounded) until every task is terminal; then each one's detail."""
    gate = asyncio.Semaphore(REQUESTS_AT_ONCE)
    details: dict[str, dict[str, Any]] = {}

    async def one(operation_id: str) -> None:
        url = f"{base}/api/v1/tasks/detail/{operation_id}"
        async with gate:
            while True:
                params = {"timeout": str(LONG_WAIT_MS)}
                async with http.get(f"{url}/result", params=params) as response:
                    assert response.status in (200, 204), (operation_id, response.status)
                    if response.status == 200:
                        break
            async with http.get(url) as response:
                assert response.status == 200, (operation_id, response.status)
                details[operation_id] = await response.json()

    async with asyncio.timeout(FINISH_TIMEOUT), asyncio.TaskGroup() as group:
        for i in range(TASKS):
            group.create_task(one(f"op-{i}"))
    return details


async def read_ledger(db: Path) -> tuple[dict[str, TaskRecord | None], list[TaskRecord]]:
    """Every task's record and the live records, from the SQLite file opened read-only."""
    store = await asyncio.to_thread(SQLiteStore, f"file:{db}?mode=ro")
    try:
        ids = [f"op-{i}" for i in range(TASKS)]
        records = await asyncio.gather(*(store.get(op) for op in ids))
        live = await store.load_live()
    finally:
        await store.close()
    return dict(zip(ids, records, strict=True)), live


@pytest.mark.timeout(120)
async def test_kill_9_mid_run_loses_and_doubles_nothing(tmp_path: Path) -> None:
    db = tmp_path / "treadle.db"
    worker_log = tmp_path / "worker.jsonl"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ended: Counter[str] = Counter()
    loop = asyncio.get_running_loop()

    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())
        first = await start_orchestrator(stack, "orchestrator (first run)", port, db, ended)
        began = loop.time()
        await submit_all(http, base, "op-", TASKS, visibilityTimeout=VISIBILITY_TIMEOUT_MS)
        submitted = loop.time()
        worker = await start_worker(
            stack,
            f"ws://127.0.0.1:{port}/api/v1/tasks/default/stream",
            "crash-worker",
            WORKER_CONCURRENCY,
            worker_log,
        )
        await first.until(
            lambda: first.ended_here >= CRASH_AFTER, PROGRESS_TIMEOUT, f"{CRASH_AFTER} tasks"
        )

        assert await first.kill() == -signal.SIGKILL
        ended_before_crash = first.ended_here
        assert ended_before_crash < TASKS, "every task had ended before the kill: nothing tested"
        killed = loop.time()

        second = await start_orchestrator(stack, "orchestrator (restarted)", port, db, ended)
        await worker.registered(2)
        details = await final_details(http, base)
        finished = loop.time()

        # A graceful stop sends `shutdown`: the worker drains its outbox (the last acks
        # arrive) and closes; then the worker itself is stopped.
        assert await second.stop() == 0, second.said()
        assert await worker.stop() == 0, worker.said()

    wrong = {
        op: detail
        for op, detail in details.items()
        if detail.get("state") != "terminal"
        or detail.get("disposition") != "completed"
        or detail.get("status") != "completed"
        or detail.get("value") != {"doubled": 2 * int(op.removeprefix("op-"))}
    }
    assert not wrong, f"{len(wrong)} tasks ended wrongly, e.g. {list(wrong.items())[:5]}"
    ended_twice = {op: n for op, n in ended.items() if n > 1}
    assert not ended_twice, f"tasks that ended more than once: {ended_twice}"

    records, live = await read_ledger(db)
    assert not live, f"live records left in the ledger: {[r.operation_id for r in live][:10]}"
    bad_records = {
        op: record
        for op, record in records.items()
        if record is None
        or record.state != "terminal"
        or record.disposition != "completed"
        or record.value != {"doubled": 2 * int(op.removeprefix("op-"))}
        or record.result_token is None
    }
    assert not bad_records, f"{len(bad_records)} bad ledger records: {list(bad_records)[:10]}"

    events = read_events(worker_log)
    acks = [e for e in events if e["event"] == "ack"]
    applied = Counter(e["operationId"] for e in acks if e["disposition"] == "applied")
    applied_twice = {op: n for op, n in applied.items() if n > 1}
    assert not applied_twice, f"results applied more than once: {applied_twice}"
    stray = [
        e
        for e in acks
        if e["disposition"] == "applied"
        and (record := records.get(e["operationId"])) is not None
        and e["attemptToken"] != record.result_token
    ]
    assert not stray, f"applied acks for attempts that are not the ledger's result: {stray[:5]}"
    acked = {(e["operationId"], e["attemptToken"]) for e in acks}
    unacked = [
        op
        for op, record in records.items()
        if record is not None and (op, record.result_token) not in acked
    ]
    assert not unacked, f"results the worker never saw acknowledged: {unacked[:10]}"
    dispositions = Counter(e["disposition"] for e in acks)
    assert set(dispositions) <= {"applied", "duplicate"}, dispositions

    rejected = [e for e in events if e["event"] == "rejected"]
    tasks = [e for e in events if e["event"] == "task"]
    most = max(e["inFlight"] for e in tasks)
    assert most <= WORKER_CONCURRENCY, f"the worker held {most} attempts at once"
    summary = {
        "submit_s": round(submitted - began, 2),
        "crash_after_s": round(killed - submitted, 2),
        "restart_to_done_s": round(finished - killed, 2),
        "total_s": round(finished - began, 2),
        "ended_before_crash": ended_before_crash,
        "acks": dict(dispositions),
        "rejected": len(rejected),
        "rejections": Counter(str(e.get("message", "")).split("\u2014")[-1] for e in rejected),
        "task_frames": len(tasks),
        "attempt_gt_1": sum(1 for d in details.values() if d.get("attempt", 1) > 1),
        "registrations": worker.registrations,
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary, indent=1))


@pytest.mark.timeout(120)
async def test_burst_never_exceeds_worker_concurrency(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with running_server(fast_config(tmp_path)) as server:
        orchestrator = server.orchestrator
        peak: Counter[str] = Counter()
        over: list[str] = []
        ended = 0
        all_ended = asyncio.Event()

        def audit(before: TaskRecord | None, after: TaskRecord) -> None:
            nonlocal ended
            for session in orchestrator.registry:
                held = len(session.in_flight)
                peak[session.worker_id] = max(peak[session.worker_id], held)
                if held > session.concurrency or session.load > session.concurrency:
                    over.append(
                        f"{session.worker_id}: {held} held + {session.reserved} reserved "
                        f"> {session.concurrency} after writing {after.operation_id}"
                    )
            if after.is_terminal and (before is None or not before.is_terminal):
                ended += 1
                if ended == BURST:
                    all_ended.set()

        orchestrator.book.listen(audit)
        try:
            async with contextlib.AsyncExitStack() as stack:
                workers = [
                    await start_worker(
                        stack,
                        server.ws_url(),
                        worker_id,
                        concurrency,
                        tmp_path / f"{worker_id}.jsonl",
                        "--work-ms",
                        str(BURST_WORK_MS),
                    )
                    for worker_id, concurrency in BURST_WORKERS.items()
                ]
                for worker in workers:
                    await worker.registered()
                await submit_all(http, server.url, "burst-", BURST)
                try:
                    await asyncio.wait_for(all_ended.wait(), FINISH_TIMEOUT)
                except TimeoutError:
                    raise AssertionError(f"only {ended} of {BURST} tasks ended") from None
                for worker in workers:
                    assert await worker.stop() == 0, worker.said()
        finally:
            orchestrator.book.unlisten(audit)

        assert not over, f"a worker held more than its concurrency: {over[:5]}"
        wrong = []
        for i in range(BURST):
            record = await orchestrator.get(f"burst-{i}")
            if record.disposition != "completed" or record.value != {"doubled": 2 * i}:
                wrong.append(record.wire_detail())
        assert not wrong, f"{len(wrong)} tasks ended wrongly, e.g. {wrong[:5]}"

    assert dict(peak) == BURST_WORKERS, f"server-side peaks {dict(peak)} (limits {BURST_WORKERS})"
    for worker_id, concurrency in BURST_WORKERS.items():
        events = read_events(tmp_path / f"{worker_id}.jsonl")
        tasks = [e for e in events if e["event"] == "task"]
        worker_peak = max(e["inFlight"] for e in tasks)
        assert worker_peak == concurrency, f"{worker_id} had up to {worker_peak} at once"
        acks = Counter(e["disposition"] for e in events if e["event"] == "ack")
        assert acks == {"applied": len(tasks)}, (worker_id, acks, len(tasks))
        assert not [e for e in events if e["event"] == "rejected"], worker_id
