"""Lost workers, cancellation, drain and shutdown over every transport that has them.

protocol/README.md §7.2 (GRACE-4), §10 (CANCEL-1…5), §11 (SHUTDOWN-1, SHUTDOWN-3,
DRAIN-1), §12 (LP-5, LP-9, SESS-5, SESS-8, SESS-9) and §13 (API-5, API-7).  A
WebSocket worker learns of a cancellation from the ``cancel`` frame, an HTTP
worker from its heartbeat answer; a session is told to stop by its polls being
refused with ``session_draining``.  Queue-scoped polls register nothing, so they
are neither drained nor waited for at shutdown.  Windows are a few hundred
milliseconds at most; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp
import pytest
from workers import (
    HTTP_TRANSPORTS,
    REGISTERED,
    TRANSPORTS,
    Transport,
    cancel,
    detail,
    drain,
    expect_refused,
    listed,
    make_worker,
    until,
)

from harness import Server, fast_config, record_where, result_of, running_server, submit

SESSION_DRAINING = (409, {"error": "Worker session is draining", "code": "session_draining"})


# -- lost workers (GRACE-4, SESS-5, SESS-8, LEASE-7) -------------------------------------------


@pytest.mark.parametrize(
    ("transport", "how"),
    [
        pytest.param("ws", "close", id="ws-close"),
        pytest.param("session", "expire", id="session-expire"),
        pytest.param("session", "delete", id="session-delete"),
        pytest.param("queue", "lease", id="queue-lease-expiry"),
    ],
)
async def test_lost_worker_task_moves_to_another(
    transport: Transport, how: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """GRACE-4, DISPATCH-4/5, SESS-5, SESS-8, LEASE-7: a worker is lost while it holds an
    attempt — its socket closes (and the grace window lapses), its session expires (no poll
    nor heartbeat for ``session_lease_ms``) or is closed (``DELETE``), or a queue-scoped
    claim's lease runs out — and the task goes to another worker as attempt 2 under a new
    token.  The lost worker's late result is refused: an ended session's calls are 410
    ``session_expired`` or, once closed, 404; a queue claim is not the holder any more."""
    config = fast_config(tmp_path, session_lease_ms=300)
    async with running_server(config) as server:
        first = await make_worker(transport, http, server, worker_id="w1").start()
        second = await make_worker(transport, http, server, worker_id="w2").start()
        visibility = 300 if how == "lease" else 30_000
        submitted = await submit(http, server, visibilityTimeout=visibility)
        op = submitted["operationId"]
        task = await first.task()  # over a WebSocket, a tie at zero load: w1 < w2
        if how in ("close", "delete"):
            await first.stop()
        moved = await second.task()
        assert (moved["operationId"], moved["attempt"]) == (op, 2)
        assert moved["attemptToken"] != task["attemptToken"]
        if transport != "ws":
            late = await first.result(task, "late")
            if how == "expire":
                assert (late.status, late.detail) == (
                    410,
                    {"error": "Worker session lease expired", "code": "session_expired"},
                )
            elif how == "delete":
                assert (late.status, late.detail) == (404, {"error": "Unknown worker session"})
            else:
                expect_refused(first, late, op, task["attemptToken"], ws="", http="worker-mismatch")
        assert (await second.result(moved, "done")).disposition == "applied"
        assert await result_of(http, server, op) == {
            "status": "completed",
            "attempt": 2,
            "value": "done",
            "disposition": "completed",
        }
        await second.stop()


# -- cancellation (CANCEL-1…5, API-5, API-7, LP-9) -----------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_cancel_queued_task(
    transport: Transport, server: Server, http: aiohttp.ClientSession
) -> None:
    """CANCEL-1, API-7: a queued task is cancelled at once and durably; it is never handed
    to a worker; a second cancel records nothing."""
    submitted = await submit(http, server)
    op = submitted["operationId"]
    assert await cancel(http, server, op, "not needed") == {"recorded": True}
    record = await server.orchestrator.get(op)
    assert (record.state, record.disposition) == ("terminal", "cancelled")
    worker = await make_worker(transport, http, server).start()
    await worker.no_task(0.3)
    result = await result_of(http, server, op)
    assert (result["disposition"], result["attempt"]) == ("cancelled", 1)
    assert await cancel(http, server, op) == {"recorded": False}
    await worker.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("reason", ["user asked", None], ids=["reason", "default-reason"])
async def test_cancel_leased_task(
    transport: Transport, reason: str | None, server: Server, http: aiohttp.ClientSession
) -> None:
    """CANCEL-1/2/4, RESULT-6, LP-8, LP-9, API-5: intent is recorded (``cancelling``)
    before the worker is told; the ``cancel`` frame, or the heartbeat answer
    ``{"ok": true, "cancelled": true, "reason": …}``, names a non-empty reason; the
    cooperative answer gives the ``cancelled`` disposition, acknowledged ``applied``, not
    uncertain."""
    worker = await make_worker(transport, http, server).start()
    submitted = await submit(http, server, workflowRevision="rev-1")
    op = submitted["operationId"]
    task = await worker.task()
    assert await cancel(http, server, op, reason) == {"recorded": True}
    text = reason or "Task cancelled"
    assert await worker.cancellation(task) == text
    assert (await server.orchestrator.get(op)).state == "cancelling"
    assert await cancel(http, server, op, "again") == {"recorded": False}
    outcome = await worker.result(task, status="cancelled", cancelled=True, error=text)
    assert outcome.disposition == "applied"
    record = await server.orchestrator.get(op)
    assert (record.disposition, record.status, record.uncertain) == (
        "cancelled",
        "cancelled",
        False,
    )
    assert await detail(http, server, op) == {
        "operationId": op,
        "state": "terminal",
        "attempt": 1,
        "queue": "default",
        "activityName": "wf.echo",
        "disposition": "cancelled",
        "status": "cancelled",
        "error": text,
    }
    await worker.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_unanswered_cancel_settles_uncertain(
    transport: Transport, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """CANCEL-5, API-5: a worker that is told but never answers; the task settles
    ``cancelled`` with ``uncertain: true`` at the (configured) cancellation deadline."""
    async with running_server(fast_config(tmp_path, cancel_settle_ms=200)) as server:
        worker = await make_worker(transport, http, server).start()
        submitted = await submit(http, server)
        op = submitted["operationId"]
        task = await worker.task()
        await server.orchestrator.cancel(op, "stop now")
        assert await worker.cancellation(task) == "stop now"
        settled = await record_where(server.orchestrator, op, lambda r: r.state == "terminal")
        assert (settled.disposition, settled.uncertain) == ("cancelled", True)
        view = await detail(http, server, op)
        assert (view["disposition"], view.get("uncertain")) == ("cancelled", True)
        await worker.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_cancel_deadline_is_the_lease_deadline(
    transport: Transport, server: Server, http: aiohttp.ClientSession
) -> None:
    """CANCEL-5, LP-9: by default the deadline is the attempt's lease deadline, which
    activity heartbeats no longer extend — they are accepted, not rejected (over HTTP each
    answer says ``cancelled: true`` again)."""
    worker = await make_worker(transport, http, server).start()
    submitted = await submit(http, server, visibilityTimeout=400)
    op = submitted["operationId"]
    task = await worker.task()
    lease_deadline = (await server.orchestrator.get(op)).lease_deadline
    assert lease_deadline is not None
    await server.orchestrator.cancel(op)
    assert await worker.cancellation(task) == "Task cancelled"
    for _ in range(3):  # within the first 150 ms of a 400 ms lease
        reply = await worker.heartbeat(task)
        if transport == "ws":
            with pytest.raises(TimeoutError):  # accepted: no rejection comes back
                await worker.notice(0.05)
        else:
            assert reply == {"ok": True, "cancelled": True, "reason": "Task cancelled"}
            await worker.no_task(0.05)
    settled = await record_where(server.orchestrator, op, lambda r: r.state == "terminal")
    assert (settled.disposition, settled.uncertain) == ("cancelled", True)
    assert settled.finished_at is not None
    assert settled.finished_at < lease_deadline + 150, "a heartbeat extended the deadline"
    await worker.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_result_before_the_cancel_is_answered_is_kept(
    transport: Transport, server: Server, http: aiohttp.ClientSession
) -> None:
    """CANCEL-5: a completed result that arrives first is committed as sent and acked."""
    worker = await make_worker(transport, http, server).start()
    submitted = await submit(http, server)
    op = submitted["operationId"]
    task = await worker.task()
    await server.orchestrator.cancel(op, "too late")
    assert await worker.cancellation(task) == "too late"
    assert (await worker.result(task, {"done": True})).disposition == "applied"
    result = await result_of(http, server, op)
    assert (result["disposition"], result["value"]) == ("completed", {"done": True})
    await worker.stop()


# -- drain (DRAIN-1, SESS-8) ---------------------------------------------------------------------


@pytest.mark.parametrize("transport", REGISTERED)
async def test_drained_worker_finishes_its_work_and_gets_no_more(
    transport: Transport, server: Server, http: aiohttp.ClientSession
) -> None:
    """DRAIN-1, SESS-8: a drained worker stays connected and is listed as draining; it is
    sent nothing new (a session's polls are refused with ``session_draining``) while its
    result for the attempt it holds still applies; undrained, it gets the queued task."""
    worker = await make_worker(transport, http, server, worker_id="w-drain").start()
    await submit(http, server)
    task = await worker.task()
    assert await drain(http, server, worker.worker_id) == {
        "workerId": worker.worker_id,
        "draining": True,
    }
    entry = await listed(http, server, worker.worker_id)
    assert (entry["draining"], entry["connected"]) == (True, True)
    queued = await submit(http, server)
    if transport == "ws":
        await worker.no_task(0.2)
    else:
        assert await worker.poll_refused() == SESSION_DRAINING
    assert (await server.orchestrator.get(queued["operationId"])).state == "queued"
    assert (await worker.result(task, "finished anyway")).disposition == "applied"
    assert (await result_of(http, server, task["operationId"]))["value"] == "finished anyway"
    assert await drain(http, server, worker.worker_id, draining=False) == {
        "workerId": worker.worker_id,
        "draining": False,
    }
    follow = await worker.task()
    assert follow["operationId"] == queued["operationId"]
    await worker.stop()


# -- shutdown (SHUTDOWN-1, SHUTDOWN-3, SESS-9) -----------------------------------------------------


@pytest.mark.parametrize("transport", REGISTERED)
async def test_stop_tells_the_worker_and_waits_for_it(
    transport: Transport, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """SHUTDOWN-1, SHUTDOWN-3, SESS-9: stopping the server tells the worker (the
    ``shutdown`` frame; a session's polls get ``session_draining``), still acknowledges the
    result it finishes during the drain, and returns once the worker is done (its socket
    closed; the session's last attempt reported)."""
    stack = contextlib.AsyncExitStack()
    server = await stack.enter_async_context(
        running_server(fast_config(tmp_path, worker_shutdown_timeout_ms=5000))
    )
    stopping: asyncio.Task[None] | None = None
    try:
        worker = await make_worker(transport, http, server).start()
        submitted = await submit(http, server)
        task = await worker.task()
        stopping = asyncio.create_task(stack.aclose())
        await worker.shutdown_notice()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(stopping), 0.2)
        assert (await worker.result(task, "drained")).disposition == "applied"
        record = await server.orchestrator.get(submitted["operationId"])
        assert (record.disposition, record.value) == ("completed", "drained")
        if transport == "ws":
            await worker.stop()
        await asyncio.wait_for(asyncio.shield(stopping), 2)
    finally:
        await (stack.aclose() if stopping is None else stopping)


@pytest.mark.parametrize("transport", REGISTERED)
async def test_stop_waits_no_longer_than_the_shutdown_timeout(
    transport: Transport, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """SHUTDOWN-1, SESS-9: a worker that never finishes its attempt holds the stop for the
    configured wait (300 ms here) only; then the server closes the socket itself (or ends
    the session) and the stop completes."""
    stack = contextlib.AsyncExitStack()
    server = await stack.enter_async_context(
        running_server(fast_config(tmp_path, worker_shutdown_timeout_ms=300))
    )
    stopping: asyncio.Task[None] | None = None
    try:
        worker = await make_worker(transport, http, server).start()
        await submit(http, server)
        await worker.task()
        loop = asyncio.get_running_loop()
        started = loop.time()
        stopping = asyncio.create_task(stack.aclose())
        await worker.shutdown_notice()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(stopping), 0.15)
        if transport == "ws":  # the worker does not close; the server must, after its wait
            assert worker.raw is not None
            closing = await worker.raw.socket.receive(timeout=5)
            ended = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert closing.type in ended, closing
        await asyncio.wait_for(asyncio.shield(stopping), 1)
        waited = loop.time() - started
        assert 0.25 < waited < 1.0, f"the stop took {waited:.2f} s"
    finally:
        await (stack.aclose() if stopping is None else stopping)


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS)
async def test_an_abandoned_poll_does_not_hold_up_the_stop(
    transport: Transport, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """LP-5, SESS-9: a poll whose client went away is never handed a task, and once the
    server has seen that (routing looks at it), it must not keep its request open until the
    poll's timeout: a stop with no attempt in flight completes at once."""
    stack = contextlib.AsyncExitStack()
    server = await stack.enter_async_context(running_server(fast_config(tmp_path)))
    try:
        worker = await make_worker(transport, http, server).start()
        poll = asyncio.create_task(worker.task(timeout=30))
        await worker.ready()
        poll.cancel()  # the client goes away
        await asyncio.gather(poll, return_exceptions=True)
        await until(lambda: not worker.routable())
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(stack.aclose(), 10)
        waited = loop.time() - started
        assert waited < 1.0, f"the stop waited {waited:.2f} s for the abandoned poll"
    finally:
        await stack.aclose()
