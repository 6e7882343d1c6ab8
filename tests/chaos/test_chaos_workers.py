"""Chaos on the worker side: killed, frozen, flooding and resending workers.

Each scenario runs an in-process orchestrator on a SQLite file and real worker processes
(``tests/server/worker_process.py``: a raw protocol v8 peer with an outbox) on loopback,
injects one fault under load, waits (bounded, on ledger writes and worker output — never
a sleep) until every task has ended, and hands everything to the ledger audit
(``ledger_audit.py``): nothing lost, nothing applied twice, no stale attempt applied, every
value the one ``wf.echo`` computes, and metrics that agree with the ledger.

* **kill -9 mid-task** — a worker holding attempts is SIGKILLed; its socket dies with it,
  the grace window lapses and its attempts go to the other worker.
* **SIGSTOP, then a late stale result** — a worker holding attempts is frozen (its socket
  stays open, it sends nothing); its leases expire and the attempts run elsewhere; once
  every one of them has moved on it is resumed, and the results it then sends for its old
  attempts must be refused as stale.
* **a flood of results for tasks it does not own** — a rogue worker sends thousands of
  results for other workers' attempts (with their real attempt tokens, as if leaked),
  for finished and unknown tasks, while honest workers run the load.
* **duplicate and conflicting resends** — every result is sent three times at once and
  then with other content; over the WebSocket and over HTTP long-poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import Counter
from pathlib import Path
from typing import Any, Final

import aiohttp
from chaos_rig import (
    FINISH_TIMEOUT,
    HOLD_TIMEOUT,
    ChaosResults,
    LedgerWatch,
    chaos_results,
    finish,
    held_by,
    judge,
    numbered,
    scrape,
    start_worker,
    stopwatch,
    submit_all,
)
from ledger_audit import Audit

from harness import RawWorker, Server, fast_config, manifest, result_frame, running_server
from treadle_protocol.jsonjs import dumps, loads

__all__ = ["chaos_results"]


# -- kill -9 -----------------------------------------------------------------------------------


async def test_worker_killed_mid_task(tmp_path: Path, chaos_results: ChaosResults) -> None:
    audit = Audit("worker kill -9 mid-task")
    config = fast_config(tmp_path, reconnect_grace_ms=200)
    async with (
        running_server(config) as server,
        aiohttp.ClientSession() as http,
        contextlib.AsyncExitStack() as stack,
    ):
        with LedgerWatch(server.orchestrator, audit) as watch:
            victim = await start_worker(
                stack, server.ws_url(), "victim", concurrency=8, work_ms=400
            )
            survivor = await start_worker(
                stack, server.ws_url(), "survivor", concurrency=8, work_ms=40
            )
            await victim.registered()
            await survivor.registered()
            await submit_all(
                http, server.url, audit, numbered("kill-", 200), visibilityTimeout=5000
            )
            await watch.until(
                lambda: len(held_by(watch, "victim")) >= 4 and len(watch.ended_ops) >= 20,
                HOLD_TIMEOUT,
                "the victim to hold attempts while tasks end",
            )
            assert await victim.kill() == -signal.SIGKILL
            held = held_by(watch, "victim")
            with stopwatch() as elapsed:
                await watch.until_all_ended(FINISH_TIMEOUT)
                recovery = elapsed()
            await finish(audit, watch, http, server.url, [victim, survivor])
            moved = [
                op
                for op, record in held.items()
                if (await server.orchestrator.get(op)).attempt > record.attempt
            ]
    await judge(
        audit,
        tmp_path / "treadle.db",
        chaos_results,
        "worker-kill-9",
        recovery,
        heldAtKill=len(held),
        rerun=len(moved),
    )
    assert moved, f"no attempt the victim held at the kill was run again: {sorted(held)}"


# -- SIGSTOP, then a stale result ----------------------------------------------------------------


async def test_worker_frozen_then_resumed_with_stale_results(
    tmp_path: Path, chaos_results: ChaosResults
) -> None:
    audit = Audit("worker SIGSTOP, resumed late with stale results")
    config = fast_config(tmp_path, reconnect_grace_ms=200)
    async with (
        running_server(config) as server,
        aiohttp.ClientSession() as http,
        contextlib.AsyncExitStack() as stack,
    ):
        with LedgerWatch(server.orchestrator, audit) as watch:
            # "w-frozen" sorts after "a-survivor": least-loaded ties go to the survivor
            frozen = await start_worker(
                stack, server.ws_url(), "w-frozen", concurrency=4, work_ms=600
            )
            await frozen.registered()
            await submit_all(http, server.url, audit, numbered("frz-", 4), visibilityTimeout=1500)
            await frozen.until_event(
                lambda events: sum(e["event"] == "task" for e in events) >= 4,
                HOLD_TIMEOUT,
                "the worker to start its four attempts",
            )
            assert frozen.process is not None
            frozen.process.send_signal(signal.SIGSTOP)
            held = {op: r.attempt_token for op, r in held_by(watch, "w-frozen").items()}
            assert held, "every attempt had finished before the freeze: nothing tested"
            with stopwatch() as elapsed:
                survivor = await start_worker(
                    stack, server.ws_url(), "a-survivor", concurrency=8, work_ms=40
                )
                await survivor.registered()
                await submit_all(
                    http, server.url, audit, numbered("frz-", 60, start=4), visibilityTimeout=1500
                )

                def moved_on() -> bool:
                    return all(
                        watch.live(op) is None and op in watch.ended_ops for op in held
                    ) and all(audit.result_at_end.get(op) != token for op, token in held.items())

                await watch.until(
                    moved_on, FINISH_TIMEOUT, "the frozen worker's attempts to end elsewhere"
                )
                recovery = elapsed()
            frozen.process.send_signal(signal.SIGCONT)
            stale = set(held.items())
            await frozen.until_event(
                lambda events: (
                    stale
                    <= {
                        (e["operationId"], e["attemptToken"])
                        for e in events
                        if e["event"] == "rejected"
                    }
                ),
                HOLD_TIMEOUT,
                "the resumed worker's stale results to be refused",
            )
            refused = [
                e for e in frozen.of("rejected") if (e["operationId"], e["attemptToken"]) in stale
            ]
            await watch.until_all_ended(FINISH_TIMEOUT)
            await finish(audit, watch, http, server.url, [frozen, survivor])
    for event in refused:
        assert event["message"] == (
            f'taskResult for operation "{event["operationId"]}" rejected \u2014 stale attempt token'
        ), event
    await judge(
        audit,
        tmp_path / "treadle.db",
        chaos_results,
        "worker-sigstop",
        recovery,
        heldAtFreeze=len(held),
        staleRefused=len(refused),
        refusedInAll=len(frozen.of("rejected")),
    )


def refused_pairs(events: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(operationId, attemptToken) of every result the worker saw refused."""
    return {(e["operationId"], e["attemptToken"]) for e in events if e["event"] == "rejected"}


# -- a flood of results for tasks the worker does not own ----------------------------------------

FLOOD_TASKS: Final = 300
FLOOD_FRAMES: Final = 5_000
"""The rogue floods at least this many frames, and until every honest task has ended."""
FLOOD_WINDOW: Final = 1_000
"""Frames the rogue may have sent ahead of the server's answers."""


def flood_frames(watch: LedgerWatch, round_: int) -> list[dict[str, Any]]:
    """One round of the rogue's frames: a result and a heartbeat under every live attempt's
    real token (leaked), results for ended tasks and for a task that does not exist."""
    frames: list[dict[str, Any]] = []
    for record in watch.orchestrator.book.live_records():
        if record.attempt_token is None:
            continue
        leaked = {"operationId": record.operation_id, "attemptToken": record.attempt_token}
        result = {"type": "taskResult", **leaked, "status": "completed", "value": {"doubled": -1}}
        frames.append({**result, "workflowRevision": "r1"})
        frames.append({"type": "activityHeartbeat", "workerId": "rogue", **leaked})
    for op in sorted(watch.ended_ops)[round_ % 7 :: 7][:40]:
        token = watch.audit.result_at_end.get(op) or f"guess-{round_}"
        guess = {"operationId": op, "attemptToken": token}  # even the token that ended it
        frames.append({"type": "taskResult", **guess, "status": "failed", "error": "rogue"})
    unknown = {"operationId": f"no-such-{round_}", "attemptToken": "t"}
    frames.append({"type": "taskResult", **unknown, "status": "completed", "value": None})
    return frames


async def test_worker_flooding_results_it_does_not_own(
    tmp_path: Path, chaos_results: ChaosResults
) -> None:
    """Every flooded result is refused with a correlated ``protocolError`` (the rogue's
    socket stays open, CLOSE-4); every flooded heartbeat is refused and renews no lease
    (the honest workers never heartbeat, so any renewal would be the rogue's); the honest
    workers' results are the ones in the ledger."""
    audit = Audit("worker flooding results for tasks it does not own")
    config = fast_config(tmp_path)
    async with (
        running_server(config) as server,
        aiohttp.ClientSession() as http,
        contextlib.AsyncExitStack() as stack,
    ):
        with LedgerWatch(server.orchestrator, audit) as watch:
            honest = [
                await start_worker(stack, server.ws_url(), f"honest-{i}", work_ms=30)
                for i in range(2)
            ]
            for worker in honest:
                await worker.registered()
            # the rogue runs no activity of the queue, so it is never handed a task
            rogue = RawWorker(http, server.ws_url(), "rogue")
            await rogue.register(manifest_doc=manifest({"rogue": ["nothing"]}))
            replies: list[dict[str, Any]] = []
            got = asyncio.Event()

            async def read_replies() -> None:
                async for message in rogue.socket:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        replies.append(loads(message.data))
                        got.set()
                got.set()

            reader = asyncio.create_task(read_replies())
            recovery: float | None = None

            async def answered(count: int) -> None:
                """Wait until the server has answered ``count`` of the rogue's frames."""
                async with asyncio.timeout(HOLD_TIMEOUT):
                    while len(replies) < count and not rogue.socket.closed:
                        got.clear()
                        await got.wait()

            await submit_all(http, server.url, audit, numbered("flood-", FLOOD_TASKS))
            sent: Counter[str] = Counter()
            round_ = 0
            with stopwatch() as elapsed:
                while not watch.all_ended() or sent.total() < FLOOD_FRAMES:
                    for frame in flood_frames(watch, round_):
                        await rogue.send(frame)
                        sent[frame["type"]] += 1
                    round_ += 1
                    await answered(sent.total() - FLOOD_WINDOW)  # at the server's pace
                    if watch.all_ended() and recovery is None:
                        recovery = elapsed()  # every honest task ended under the flood
            await answered(sent.total())
            assert not rogue.socket.closed, "the server closed the rogue's socket"
            await finish(audit, watch, http, server.url, honest)
            await rogue.close()
            await reader
    assert {r["type"] for r in replies} == {"protocolError"}, Counter(r["type"] for r in replies)
    correlated = sum("attemptToken" in r for r in replies)
    assert (correlated, len(replies) - correlated) == (
        sent["taskResult"],
        sent["activityHeartbeat"],
    )
    assert watch.renewals == 0, f"{watch.renewals} leases renewed by the rogue's heartbeats"
    await judge(
        audit,
        tmp_path / "treadle.db",
        chaos_results,
        "worker-flood",
        recovery,
        floodedResults=sent["taskResult"],
        floodedHeartbeats=sent["activityHeartbeat"],
    )


# -- duplicate and conflicting resends ----------------------------------------------------------

RESEND_TASKS: Final = 100
COPIES: Final = 3


def answer(task: dict[str, Any]) -> dict[str, Any]:
    """The right ``taskResult`` for a ``wf.echo`` task."""
    return result_frame(task, value={"doubled": task["input"]["n"] * 2})


async def resend_over_websocket(
    http: aiohttp.ClientSession, server: Server, audit: Audit
) -> Counter[str]:
    """Each result three times at once, then with other content; then all of them again
    after a reconnect (ledger fallback).  Returns the replies by kind."""
    worker = RawWorker(http, server.ws_url(), "resender")
    await worker.register(concurrency=25)
    await submit_all(http, server.url, audit, numbered("dup-ws-", RESEND_TASKS))
    tasks: dict[tuple[str, str], dict[str, Any]] = {}
    replies: dict[tuple[str, str], list[str]] = {}
    expected = RESEND_TASKS * (COPIES + 1)
    async with asyncio.timeout(FINISH_TIMEOUT):
        while sum(map(len, replies.values())) < expected:
            frame = await worker.recv()
            if frame["type"] == "task":
                key = (frame["operationId"], frame["attemptToken"])
                tasks[key] = frame
                audit.task_frame(*key, frame["attempt"])
                for _ in range(COPIES):
                    await worker.send(answer(frame))
                await worker.send(result_frame(frame, value={"doubled": -1}))
                continue
            key = (frame["operationId"], frame["attemptToken"])
            replies.setdefault(key, []).append(reply_kind(frame))
            if frame.get("disposition") == "applied":
                audit.ack_applied(*key)
    for key, kinds in replies.items():
        assert Counter(kinds) == {"applied": 1, "duplicate": COPIES - 1, "conflicting": 1}, (
            key,
            kinds,
        )
    await worker.close()
    again = RawWorker(http, server.ws_url(), "resender")
    await again.register(resume=worker.generation)
    for task in tasks.values():
        await again.send(answer(task))
        await again.send(result_frame(task, value={"doubled": -1}))
    late: Counter[str] = Counter()
    async with asyncio.timeout(FINISH_TIMEOUT):
        while late.total() < 2 * len(tasks):
            late[reply_kind(await again.recv())] += 1
    assert late == {"duplicate": len(tasks), "conflicting": len(tasks)}, late
    await again.close()
    return Counter(kind for kinds in replies.values() for kind in kinds) + late


def reply_kind(frame: dict[str, Any]) -> str:
    """``applied``/``duplicate``/``dead-lettered`` for an ack, ``conflicting`` for the
    correlated refusal of other content under the same token."""
    if frame["type"] == "taskResultAck":
        return str(frame["disposition"])
    assert frame["type"] == "protocolError", frame
    op, token = frame["operationId"], frame["attemptToken"]
    assert frame["message"] == (
        f'taskResult for operation "{op}" rejected \u2014 conflicting content resubmitted '
        f'for operation "{op}" under attempt token "{token}"'
    ), frame
    return "conflicting"


async def resend_over_longpoll(
    http: aiohttp.ClientSession, server: Server, audit: Audit
) -> Counter[str]:
    """The same over queue-scoped long-poll: three POSTs at once, then other content."""
    queue = "dup-lp"
    await submit_all(http, server.url, audit, numbered("dup-lp-", RESEND_TASKS // 2), queue=queue)
    base = f"{server.url}/api/v1/tasks/{queue}"
    answers: Counter[str] = Counter()

    async def post(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        async with http.post(f"{base}/result", data=dumps(body)) as response:
            return response.status, await response.json()

    for _ in range(RESEND_TASKS // 2):
        async with http.get(base, params={"activity": "wf.echo", "timeout": "5000"}) as response:
            assert response.status == 200, response.status
            claim = await response.json()
        audit.task_frame(claim["operationId"], claim["attemptToken"], claim["attempt"])
        body = {**answer(claim), "workerId": claim["workerId"]}
        del body["type"]
        copies = await asyncio.gather(*(post(body) for _ in range(COPIES)))
        assert sorted(copies, key=str) == sorted(
            [(200, {"ok": True, "disposition": "applied"})]
            + [(200, {"ok": True, "disposition": "duplicate"})] * (COPIES - 1),
            key=str,
        ), copies
        audit.ack_applied(claim["operationId"], claim["attemptToken"])
        status, refused = await post({**body, "value": {"doubled": -1}})
        assert (status, refused["reason"]) == (403, "conflicting-content"), refused
        answers.update(["applied"] + ["duplicate"] * (COPIES - 1) + ["conflicting"])
    return answers


async def test_duplicate_and_conflicting_resends(
    tmp_path: Path, chaos_results: ChaosResults
) -> None:
    audit = Audit("duplicate and conflicting resends")
    config = fast_config(tmp_path, reconnect_grace_ms=2000)
    async with running_server(config) as server, aiohttp.ClientSession() as http:
        with LedgerWatch(server.orchestrator, audit) as watch, stopwatch() as elapsed:
            over_ws = await resend_over_websocket(http, server, audit)
            over_lp = await resend_over_longpoll(http, server, audit)
            await watch.until_all_ended(FINISH_TIMEOUT)
            watch.metrics_claim(audit, await scrape(http, server.url))
            took = elapsed()
    await judge(
        audit,
        tmp_path / "treadle.db",
        chaos_results,
        "duplicate-resends",
        None,
        websocketReplies=dict(over_ws),
        longpollAnswers=dict(over_lp),
        seconds=round(took, 2),
    )
