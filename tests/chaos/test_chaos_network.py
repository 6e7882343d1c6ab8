"""Chaos on the network between a worker and the orchestrator.

A :class:`~netfault.FaultyLink` sits between one worker process and an in-process
orchestrator (SQLite file) and breaks the connection in one of the ways networks do,
under load; another worker connected directly keeps the queue moving where the scenario
needs one.  After every task has ended the ledger audit runs (``ledger_audit.py``).

* **socket drop with proven resume** — the link is cut three times; the worker reconnects
  inside the grace window with ``resumeSessionGeneration`` (RESUME-1): same generation,
  its attempts kept under their tokens, its outbox resent and applied.
* **socket drop without proven resume** — the same with a worker that never sends the
  proof (RESUME-2): its attempts are taken back with new tokens before the ``registerAck``,
  and its resent results for the old ones are refused as stale.
* **half-open connection** — the link goes silent in both directions without a FIN and the
  worker process dies behind it: the orchestrator still sees an open socket.  Its attempts
  must come back through lease expiry and end elsewhere, and the orchestrator must still
  stop within its shutdown wait.
* **slow reader** — the link stops carrying the orchestrator's frames to the worker (the
  worker's own frames still flow) while the orchestrator keeps writing task frames of
  64 KiB; once every task has ended elsewhere the worker reads them all, late, runs them,
  and its results must be refused as stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest
from chaos_rig import (
    CHAOS_WORKER,
    FINISH_TIMEOUT,
    HOLD_TIMEOUT,
    ChaosResults,
    LedgerWatch,
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
from ledger_audit import Audit
from netfault import FaultyLink
from processes import free_port
from workers import until

from harness import RawWorker, fast_config, result_frame, running_server

__all__ = ["chaos_results"]

DROPS: Final = 3
STOP_BOUND_S: Final = 5.0
"""A stop must end within this: the worker shutdown wait (1 s here) and a margin."""
PAD: Final = "p" * 65_536
"""Padding that makes task frames big enough to fill socket buffers."""
BIG_PAD: Final = "p" * 600_000
"""Padding that keeps a task under the 1 MiB body cap and fills buffers in a few frames."""


def stale_message(event: dict[str, Any]) -> str:
    op = event["operationId"]
    return f'taskResult for operation "{op}" rejected \u2014 stale attempt token'


# -- socket drops ---------------------------------------------------------------------------


@pytest.mark.parametrize("proven", [True, False], ids=["proven-resume", "unproven-resume"])
async def test_socket_drop(tmp_path: Path, chaos_results: ChaosResults, proven: bool) -> None:
    kind = "with" if proven else "without"
    audit = Audit(f"socket drop {kind} proven resume")
    config = fast_config(tmp_path, reconnect_grace_ms=3000)
    extra = () if proven else ("--no-resume-proof",)
    async with (
        running_server(config) as server,
        FaultyLink(server.port) as link,
        aiohttp.ClientSession() as http,
        contextlib.AsyncExitStack() as stack,
    ):
        with LedgerWatch(server.orchestrator, audit) as watch:
            worker = await start_worker(
                stack,
                link.ws_url(),
                "dropped",
                concurrency=8,
                work_ms=150,
                script=CHAOS_WORKER,
                extra=extra,
            )
            await worker.registered()
            await submit_all(
                http, server.url, audit, numbered("drop-", 200), visibilityTimeout=2000
            )
            held_at_drop: dict[str, int] = {}
            recoveries = []
            for drop in range(1, DROPS + 1):
                await watch.until(
                    lambda: len(held_by(watch, "dropped")) >= 4,
                    HOLD_TIMEOUT,
                    "the worker to hold attempts",
                )
                for op, record in held_by(watch, "dropped").items():
                    held_at_drop.setdefault(op, record.attempt)
                with stopwatch() as elapsed:
                    assert link.sever() >= 1
                    await worker.registered(drop + 1)
                    recoveries.append(elapsed())
            await watch.until_all_ended(FINISH_TIMEOUT)
            await finish(audit, watch, http, server.url, [worker])
            finals = {op: (await server.orchestrator.get(op)).attempt for op in held_at_drop}
    kept = sum(finals[op] == attempt for op, attempt in held_at_drop.items())
    stale = list(worker.of("rejected"))
    notes = {
        "drops": DROPS,
        "generations": worker.generations,
        "heldAtDrops": len(held_at_drop),
        "keptTheirAttempt": kept,
        "staleRefused": len(stale),
    }
    await judge(
        audit,
        tmp_path / "treadle.db",
        chaos_results,
        f"socket-drop-{kind}-proof",
        max(recoveries),
        **notes,
    )
    for event in stale:
        assert event["message"] == stale_message(event), event
    if proven:
        assert worker.generations == [1] * (DROPS + 1), worker.generations  # GEN-3
        assert kept, "no attempt survived a drop under its token"
    else:
        assert worker.generations == list(range(1, DROPS + 2)), worker.generations  # GEN-2
        assert kept < len(held_at_drop), "every attempt held at a drop kept its token"


# -- a half-open connection -----------------------------------------------------------------------


async def test_half_open_connection(tmp_path: Path, chaos_results: ChaosResults) -> None:
    """Small frames: the orchestrator's writes to the vanished peer fit in the buffers."""
    audit = Audit("half-open connection (peer vanishes without FIN)")
    config = fast_config(tmp_path, reconnect_grace_ms=200, worker_shutdown_timeout_ms=1000)
    async with (
        contextlib.AsyncExitStack() as orchestrator_stack,
        aiohttp.ClientSession() as http,
        contextlib.AsyncExitStack() as stack,
    ):
        server = await orchestrator_stack.enter_async_context(running_server(config))
        link = await stack.enter_async_context(FaultyLink(server.port))
        with LedgerWatch(server.orchestrator, audit) as watch:
            vanishing = await start_worker(
                stack, link.ws_url(), "w-vanishing", concurrency=4, work_ms=300
            )
            survivor = await start_worker(
                stack, server.ws_url(), "a-survivor", concurrency=8, work_ms=30
            )
            await vanishing.registered()
            await survivor.registered()
            await submit_all(
                http, server.url, audit, numbered("half-", 150), visibilityTimeout=1500
            )
            await watch.until(
                lambda: len(held_by(watch, "w-vanishing")) >= 2 and len(watch.ended_ops) >= 10,
                HOLD_TIMEOUT,
                "the vanishing worker to hold attempts",
            )
            assert link.blackhole() == 1
            assert await vanishing.kill() == -signal.SIGKILL
            leases_before = len(watch.leases_to("w-vanishing"))
            with stopwatch() as elapsed:
                await watch.until_all_ended(FINISH_TIMEOUT)
                recovery = elapsed()
            await finish(audit, watch, http, server.url, [survivor])
            leased_after = len(watch.leases_to("w-vanishing")) - leases_before
            listed = await workers_listed(http, server.url)
        # stop while the half-open socket is still open: within the shutdown wait, plus margin
        with stopwatch() as stopping:
            async with asyncio.timeout(STOP_BOUND_S):
                await orchestrator_stack.aclose()
            stop_s = stopping()
    await judge(
        audit,
        tmp_path / "treadle.db",
        chaos_results,
        "half-open",
        recovery,
        leasedToTheVanishedPeer=leased_after,
        vanishedPeerStillConnected=listed.get("w-vanishing", {}).get("connected", False),
        stopS=round(stop_s, 2),
    )


async def test_half_open_connection_with_full_send_buffers(
    tmp_path: Path, chaos_results: ChaosResults
) -> None:
    """The same with 64 KiB task frames: what the orchestrator writes to the vanished peer
    fills the socket buffers, so its sends block.  Every task must still end elsewhere, and
    SIGTERM must still stop the orchestrator within its shutdown wait (1 s) plus margin."""
    audit = Audit("half-open connection, send buffers full")
    port, db = free_port(), tmp_path / "treadle.db"
    async with contextlib.AsyncExitStack() as stack, aiohttp.ClientSession() as http:
        serve = await start_serve(
            stack,
            "orchestrator",
            port,
            db,
            "--reconnect-grace-ms=200",
            "--worker-shutdown-timeout-ms=1000",
            "--sqlite-synchronous=normal",
        )
        base = f"http://127.0.0.1:{port}"
        link = await stack.enter_async_context(FaultyLink(port, receive_buffer=4096))
        vanishing = await start_worker(
            stack, link.ws_url(), "w-vanishing", concurrency=16, work_ms=300
        )
        await vanishing.registered()
        inputs = {f"full-{i}": {"n": i, "pad": BIG_PAD} for i in range(24)}
        await submit_all(http, base, audit, inputs, visibilityTimeout=1000)
        await vanishing.until_event(
            lambda events: sum(e["event"] == "task" for e in events) >= 2,
            HOLD_TIMEOUT,
            "the vanishing worker to take attempts",
        )
        assert link.blackhole() == 1
        assert await vanishing.kill() == -signal.SIGKILL
        # the only worker is the vanished one: its attempts expire and come back to it, in
        # 600 kB frames that can no longer leave; then a worker that reads arrives

        def taken_back() -> list[dict[str, Any]]:
            return serve.logged("attempt taken back", worker_id="w-vanishing")

        await serve.until(
            lambda: len(taken_back()) >= 24, HOLD_TIMEOUT, "a second round of expired attempts"
        )
        with stopwatch() as elapsed:
            survivor = await start_worker(
                stack, f"ws://127.0.0.1:{port}/api/v1/tasks/default/stream", "a-survivor"
            )
            await survivor.registered()
            await wait_terminal(http, base, audit.operation_ids, FINISH_TIMEOUT)
            recovery = elapsed()
        await audit_metrics(audit, http, base, serve, created=len(inputs))
        assert await survivor.stop() == 0, survivor.said()
        for worker in (vanishing, survivor):
            audit.worker_events(worker.events)
        assert serve.process is not None
        serve.process.send_signal(signal.SIGTERM)
        code = await serve.exit_code(STOP_BOUND_S)
        for op in serve.ops_ended:
            audit.ended(op)
    report = await judge(
        audit,
        db,
        chaos_results,
        "half-open-full-buffers",
        recovery,
        exitedWithin=STOP_BOUND_S if code is not None else None,
    )
    assert code == 0, f"SIGTERM: still running after {STOP_BOUND_S} s\n{serve.said()}"
    assert report.clean


async def test_a_peer_that_stops_reading_is_dropped_after_the_send_timeout(
    tmp_path: Path, chaos_results: ChaosResults
) -> None:
    """``--worker-send-timeout-ms``: once the buffers towards a worker that stopped reading
    are full, a send that cannot finish in time drops the socket, so its attempts go to
    a worker that reads (without it they would wait for their leases, and be offered to
    the same dead socket again)."""
    audit = Audit("peer stops reading: dropped after the send timeout")
    config = fast_config(tmp_path, worker_send_timeout_ms=300, reconnect_grace_ms=0)
    async with (
        running_server(config) as server,
        FaultyLink(server.port, receive_buffer=4096) as link,
        aiohttp.ClientSession() as http,
    ):
        with LedgerWatch(server.orchestrator, audit) as watch:
            stuck = RawWorker(http, link.ws_url(), "w-stuck")
            await stuck.register(concurrency=8)
            link.hold_downstream()
            inputs = {f"unread-{i}": {"n": i, "pad": BIG_PAD} for i in range(8)}
            await submit_all(http, server.url, audit, inputs, visibilityTimeout=60_000)
            with stopwatch() as elapsed:
                await until(lambda: server.orchestrator.worker("w-stuck") is None, HOLD_TIMEOUT)
                dropped_after = elapsed()
            reader = RawWorker(http, server.ws_url(), "w-reader")
            await reader.register(concurrency=8)
            for _ in inputs:
                task = await reader.recv_type("task", timeout=HOLD_TIMEOUT)
                await reader.send(result_frame(task, value={"doubled": task["input"]["n"] * 2}))
            await watch.until_all_ended(FINISH_TIMEOUT)
            recovery = elapsed()
            await reader.close()
    await judge(
        audit,
        tmp_path / "treadle.db",
        chaos_results,
        "send-timeout",
        recovery,
        droppedAfterS=round(dropped_after, 2),
    )
    assert dropped_after < 30, "dropped by the lease, not by the send timeout"


async def test_slow_reader(tmp_path: Path, chaos_results: ChaosResults) -> None:
    audit = Audit("slow worker that reads frames late")
    config = fast_config(tmp_path, reconnect_grace_ms=200)
    async with (
        running_server(config) as server,
        FaultyLink(server.port) as link,
        aiohttp.ClientSession() as http,
        contextlib.AsyncExitStack() as stack,
    ):
        with LedgerWatch(server.orchestrator, audit) as watch:
            slow = await start_worker(stack, link.ws_url(), "w-slow", concurrency=4, work_ms=20)
            survivor = await start_worker(
                stack, server.ws_url(), "a-survivor", concurrency=8, work_ms=20
            )
            await slow.registered()
            await survivor.registered()
            inputs = {f"slow-{i}": {"n": i, "pad": PAD} for i in range(80)}
            await submit_all(http, server.url, audit, inputs, visibilityTimeout=1500)
            await slow.until_event(
                lambda events: sum(e["event"] == "task" for e in events) >= 2,
                HOLD_TIMEOUT,
                "the slow worker to take attempts",
            )
            link.hold_downstream()
            taken_before = len(slow.of("task"))
            with stopwatch() as elapsed:
                await watch.until_all_ended(FINISH_TIMEOUT)
                recovery = elapsed()
            held_bytes = link.down_bytes
            link.release_downstream()
            await slow.until_event(
                lambda events: answered(events) and len(slow.of("task")) > taken_before,
                HOLD_TIMEOUT,
                "the slow worker to read its late frames and have every result answered",
            )
            await finish(audit, watch, http, server.url, [slow, survivor])
    late = slow.of("task")[taken_before:]
    refused = {(e["operationId"], e["attemptToken"]): e for e in slow.of("rejected")}
    late_refused = [
        refused[(e["operationId"], e["attemptToken"])]
        for e in late
        if (e["operationId"], e["attemptToken"]) in refused
    ]
    await judge(
        audit,
        tmp_path / "treadle.db",
        chaos_results,
        "slow-reader",
        recovery,
        lateTaskFrames=len(late),
        lateRefusedAsStale=len(late_refused),
        bytesCarriedBeforeRelease=held_bytes,
    )
    assert late_refused, "no late task frame's result was refused"
    for event in late_refused:
        assert event["message"] == stale_message(event), event


def answered(events: list[dict[str, Any]]) -> bool:
    """Every task the worker took has had its result acknowledged or refused."""
    taken = {(e["operationId"], e["attemptToken"]) for e in events if e["event"] == "task"}
    done = {
        (e["operationId"], e["attemptToken"]) for e in events if e["event"] in ("ack", "rejected")
    }
    return taken <= done
