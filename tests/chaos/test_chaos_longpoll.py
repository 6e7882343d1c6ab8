"""Chaos over HTTP long-poll: a worker session that expires while it holds attempts.

The orchestrator runs in-process behind a proxy that refuses WebSocket upgrades
(``tests/server/proxy.py``), so ``longpoll_worker.py`` processes fall back to worker
sessions (§12.2).  One of them is frozen with SIGSTOP while two of its polls are parked;
two tasks are then handed to those polls — the claims sit unread in its socket.  It never
polls or heartbeats again, so its session expires after the session lease (SESS-5) and
both attempts are requeued at once (SESS-8) to another session.  When it is resumed it
reads the old claims, runs them, and posts their results to its session, which must
refuse them with 410 ``session_expired``; its polls learn the same and it stops.  Sent again
through the queue-scoped endpoint (as an SDK does, SDK-12) they get 403
``attempt-token-mismatch``.  Then the ledger audit runs: the tasks ended once, under the
other session's tokens.
"""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path
from typing import Final

import aiohttp
from chaos_rig import (
    FINISH_TIMEOUT,
    HOLD_TIMEOUT,
    ChaosResults,
    LedgerWatch,
    chaos_results,
    finish,
    judge,
    session_of,
    start_longpoll_worker,
    stopwatch,
    submit_all,
)
from ledger_audit import Audit, echoed
from proxy import UpgradeRefusingProxy

from harness import fast_config, running_server

__all__ = ["chaos_results"]

SESSION_LEASE_MS: Final = 1000


async def test_longpoll_session_expires_mid_task(
    tmp_path: Path, chaos_results: ChaosResults
) -> None:
    audit = Audit("long-poll session expiry mid-task", expect=echoed)
    config = fast_config(tmp_path, session_lease_ms=SESSION_LEASE_MS)
    async with (
        running_server(config) as server,
        UpgradeRefusingProxy(server.url) as proxy,
        aiohttp.ClientSession() as http,
        contextlib.AsyncExitStack() as stack,
    ):
        url = f"http://127.0.0.1:{proxy.port}"
        with LedgerWatch(server.orchestrator, audit) as watch:
            frozen = await start_longpoll_worker(
                stack, url, "frozen", concurrency=2, heartbeat_ms=200, poll_ms=5000
            )
            await frozen.until(lambda: session_of(frozen) is not None, HOLD_TIMEOUT, "a session")
            session_id = session_of(frozen)
            assert session_id is not None
            session = server.orchestrator.registry.get(session_id)
            assert session is not None
            assert session.connection is not None
            await frozen.until(
                lambda: session.connection is not None and session.connection.demand == 2,
                HOLD_TIMEOUT,
                "both polls to be parked",
            )
            assert frozen.process is not None
            frozen.process.send_signal(signal.SIGSTOP)
            inputs = {f"lp-{i}": {"n": i, "text": "é∑" * i} for i in range(2)}
            await submit_all(http, server.url, audit, inputs)
            await watch.until(
                lambda: all(
                    (r := watch.live(op)) is not None and r.worker_id == session_id for op in inputs
                ),
                HOLD_TIMEOUT,
                "both tasks to be claimed by the frozen session's polls",
            )
            claimed = {op: watch.live(op) for op in inputs}
            with stopwatch() as elapsed:
                survivor = await start_longpoll_worker(stack, url, "survivor", concurrency=4)
                more = {f"lp-{i}": {"n": i} for i in range(2, 40)}
                await submit_all(http, server.url, audit, more)
                await watch.until_all_ended(FINISH_TIMEOUT)
                recovery = elapsed()
            expired = server.orchestrator.registry.get(session_id) is None
            frozen.process.send_signal(signal.SIGCONT)
            assert await frozen.exit_code(HOLD_TIMEOUT) == 0, frozen.said()
            # SDK-12: a worker whose session is gone delivers through the queue endpoint
            fallback = {}
            for event in frozen.of("rejected"):
                op = event["operationId"]
                body = {
                    "operationId": op,
                    "workerId": session_id,
                    "attemptToken": event["attemptToken"],
                    "status": "completed",
                    "value": inputs[op],
                }
                result_url = f"{server.url}/api/v1/tasks/default/result"
                async with http.post(result_url, json=body) as response:
                    fallback[op] = (response.status, (await response.json()).get("reason"))
            await finish(audit, watch, http, server.url, [frozen, survivor])
    refused = {e["operationId"]: e for e in frozen.of("rejected")}
    ended = list(frozen.of("sessionEnded"))
    await judge(
        audit,
        tmp_path / "treadle.db",
        chaos_results,
        "longpoll-session-expiry",
        recovery,
        sessionLeaseMs=SESSION_LEASE_MS,
        staleRefused=len(refused),
        queueEndpointAnswers=sorted(set(fallback.values())),
        sessionEnded=[e.get("status") for e in ended],
    )
    assert expired, "the frozen session was still registered"
    assert set(refused) == set(inputs), refused
    for op, event in refused.items():
        record = claimed[op]
        assert record is not None
        assert event["attemptToken"] == record.attempt_token
        assert (event["status"], event["body"]["code"]) == (410, "session_expired"), event
    assert {e.get("status") for e in ended} == {410}, ended
    assert set(fallback.values()) == {(403, "attempt-token-mismatch")}, fallback
