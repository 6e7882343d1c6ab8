"""Disconnect, grace and resume; cancellation; shutdown — on real sockets.

protocol/README.md §7 (GEN-*, GRACE-*, RESUME-*), §10 (CANCEL-1…5), §11
(SHUTDOWN-1, SHUTDOWN-3) and §13 (API-5, API-7).  Grace windows are a few
hundred milliseconds at most; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from harness import (
    RawWorker,
    Server,
    fast_config,
    record_where,
    result_of,
    running_server,
    submit,
)


async def nothing_for(worker: RawWorker, seconds: float) -> None:
    """Assert the worker receives no frame for ``seconds``."""
    try:
        frame = await worker.recv(timeout=seconds)
    except TimeoutError:
        return
    pytest.fail(f"unexpected frame {frame}")


def stale(task: dict[str, Any]) -> dict[str, Any]:
    """RESULT-3: the correlated rejection of a result under a superseded token."""
    op = task["operationId"]
    return {
        "type": "protocolError",
        "code": "invalid_message",
        "message": f'taskResult for operation "{op}" rejected \u2014 stale attempt token',
        "operationId": op,
        "attemptToken": task["attemptToken"],
    }


def ack(task: dict[str, Any], disposition: str = "applied") -> dict[str, Any]:
    return {
        "type": "taskResultAck",
        "operationId": task["operationId"],
        "attemptToken": task["attemptToken"],
        "disposition": disposition,
    }


async def drop(worker: RawWorker, how: str) -> None:
    """Lose the worker: a clean close, or the TCP connection cut with no close frame."""
    if how == "close":
        await worker.close()
        return
    sock = worker.socket.get_extra_info("socket")
    sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(aiohttp.ClientError, ConnectionError):
        await worker.socket.receive(timeout=5)  # the client sees the connection end


async def cancel(
    http: aiohttp.ClientSession, server: Server, op: str, reason: str | None = None
) -> dict[str, Any]:
    """``POST …/cancel`` (202 ``cancelResponse``)."""
    body = {} if reason is None else {"reason": reason}
    url = f"{server.url}/api/v1/tasks/detail/{op}/cancel"
    async with http.post(url, json=body) as response:
        assert response.status == 202, await response.text()
        payload = await response.json()
        assert isinstance(payload, dict)
        return payload


async def detail(http: aiohttp.ClientSession, server: Server, op: str) -> dict[str, Any]:
    async with http.get(f"{server.url}/api/v1/tasks/detail/{op}") as response:
        assert response.status == 200, await response.text()
        payload = await response.json()
        assert isinstance(payload, dict)
        return payload


# -- disconnect and grace (GRACE-2…4, RESUME-3, GEN-5) ---------------------------------------


@pytest.mark.parametrize("how", ["close", "cut"])
async def test_lost_worker_task_moves_after_grace(
    how: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """GRACE-2/3/4, DISPATCH-4/5, RESULT-1/2/4, RESUME-3, GEN-5: the attempt waits out the
    grace window, then goes to another worker as attempt 2 under a new token.  The first
    worker, back after the window, is a fresh session (generation 1, its resume proof
    ignored); while in the window it gets no new work (DISPATCH-1) even with free slots
    and the lower id.  Its late result for the old token is refused: while w2 holds it
    the in-flight entry answers first (RESULT-1: not assigned to "w1"), and once w2's
    result is in, the record answers ``stale attempt token`` (RESULT-2, RESUME-3)."""
    async with running_server(fast_config(tmp_path, reconnect_grace_ms=300)) as server:
        first = RawWorker(http, server.ws_url(), "w1")
        await first.register(concurrency=2)
        second = RawWorker(http, server.ws_url(), "w2")
        await second.register(concurrency=3)
        submitted = await submit(http, server)
        op = submitted["operationId"]
        task = await first.recv_type("task")  # tie at zero load: w1 < w2
        await submit(http, server)
        await second.recv_type("task")  # one attempt each now
        await drop(first, how)
        fresh = await submit(http, server)  # a tie that w1 would win, but it is in its window
        assert (await second.recv_type("task"))["operationId"] == fresh["operationId"]
        await nothing_for(second, 0.1)  # inside the window the attempt is kept
        held = await server.orchestrator.get(op)
        assert (held.state, held.attempt_token, held.worker_id) == (
            "leased",
            task["attemptToken"],
            "w1",
        )
        moved = await second.recv_type("task")
        assert (moved["operationId"], moved["attempt"]) == (op, 2)
        assert moved["attemptToken"] != task["attemptToken"]

        back = RawWorker(http, server.ws_url(), "w1")
        assert (await back.register(resume=first.generation))["sessionGeneration"] == 1
        await back.result(task, "late")
        assert await back.recv() == {
            **stale(task),
            "message": f'taskResult for operation "{op}" rejected \u2014 '
            'task not assigned to worker "w1"',
        }
        await second.result(moved, "done")
        assert await second.recv() == ack(moved)
        await back.result(task, "late")
        assert await back.recv() == stale(task)
        assert await result_of(http, server, op) == {
            "status": "completed",
            "attempt": 2,
            "value": "done",
            "disposition": "completed",
        }
        for worker in (back, second):
            await worker.close()


async def test_proven_resume_keeps_the_attempt(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """RESUME-1, GEN-3, GRACE-3: back inside the window with the last generation, the worker
    keeps its attempt — same token, no requeue even after the window would have lapsed —
    and its result is applied to attempt 1."""
    async with running_server(fast_config(tmp_path, reconnect_grace_ms=200)) as server:
        first = RawWorker(http, server.ws_url(), "w1")
        await first.register()
        submitted = await submit(http, server)
        op = submitted["operationId"]
        task = await first.recv_type("task")
        before = await server.orchestrator.get(op)
        await first.close()
        back = RawWorker(http, server.ws_url(), "w1")
        reply = await back.register(resume=first.generation)
        assert reply["sessionGeneration"] == first.generation
        await nothing_for(back, 0.4)  # twice the grace window: nothing is requeued
        kept = await server.orchestrator.get(op)
        assert kept == before
        await back.result(task, "resumed")
        assert await back.recv() == ack(task)
        result = await result_of(http, server, op)
        assert (result["attempt"], result["value"]) == (1, "resumed")
        await back.close()


@pytest.mark.parametrize("resume", [None, 99], ids=["missing", "wrong"])
async def test_unproven_resume_requeues_before_the_ack(
    resume: int | None, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """RESUME-2, GEN-2, GRACE-4: without the right proof the old attempt is forfeited —
    finished before ``registerAck`` — and the new session (generation + 1) gets attempt 2
    under a new token; the old token is stale."""
    async with running_server(fast_config(tmp_path, reconnect_grace_ms=5000)) as server:
        first = RawWorker(http, server.ws_url(), "w1")
        await first.register()
        submitted = await submit(http, server)
        op = submitted["operationId"]
        task = await first.recv_type("task")
        await first.close()
        back = RawWorker(http, server.ws_url(), "w1")
        reply = await back.register(resume=resume)
        assert reply["sessionGeneration"] == 2
        forfeited = await server.orchestrator.get(op)  # no waiting: done before the ack
        assert forfeited.attempt == 2
        assert forfeited.attempt_token != task["attemptToken"]
        again = await back.recv_type("task")
        assert (again["operationId"], again["attempt"]) == (op, 2)
        assert again["attemptToken"] != task["attemptToken"]
        await back.result(task, "old")
        assert await back.recv() == stale(task)
        await back.result(again, "new")
        assert await back.recv() == ack(again)
        await back.close()


# -- cancellation (CANCEL-1…5, API-7) ---------------------------------------------------------


async def test_cancel_queued_task(server: Server, http: aiohttp.ClientSession) -> None:
    """CANCEL-1, API-7: a queued task is cancelled at once and durably; no frame is ever
    sent for it; a second cancel records nothing."""
    submitted = await submit(http, server)
    op = submitted["operationId"]
    assert await cancel(http, server, op, "not needed") == {"recorded": True}
    record = await server.orchestrator.get(op)
    assert (record.state, record.disposition) == ("terminal", "cancelled")
    worker = RawWorker(http, server.ws_url(), "w1")
    await worker.register()
    await nothing_for(worker, 0.3)
    result = await result_of(http, server, op)
    assert (result["disposition"], result["attempt"]) == ("cancelled", 1)
    assert await cancel(http, server, op) == {"recorded": False}


@pytest.mark.parametrize("reason", ["user asked", None], ids=["reason", "default-reason"])
async def test_cancel_leased_task(
    reason: str | None, server: Server, http: aiohttp.ClientSession
) -> None:
    """CANCEL-1/2/4, RESULT-6, API-5: intent is recorded (``cancelling``) before the frame;
    the frame names the attempt and a non-empty reason; the cooperative answer gives the
    ``cancelled`` disposition, acknowledged ``applied``, not uncertain."""
    worker = RawWorker(http, server.ws_url(), "w1")
    await worker.register()
    submitted = await submit(http, server, workflowRevision="rev-1")
    op = submitted["operationId"]
    task = await worker.recv_type("task")
    assert await cancel(http, server, op, reason) == {"recorded": True}
    text = reason or "Task cancelled"
    assert await worker.recv() == {
        "type": "cancel",
        "operationId": op,
        "attemptToken": task["attemptToken"],
        "reason": text,
    }
    assert (await server.orchestrator.get(op)).state == "cancelling"
    assert await cancel(http, server, op, "again") == {"recorded": False}
    await worker.result(task, status="cancelled", cancelled=True, error=text)
    assert await worker.recv() == ack(task)
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


async def test_unanswered_cancel_settles_uncertain(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """CANCEL-5, API-5: a worker that never answers; the task settles ``cancelled`` with
    ``uncertain: true`` at the (configured) cancellation deadline."""
    async with running_server(fast_config(tmp_path, cancel_settle_ms=50)) as server:
        worker = RawWorker(http, server.ws_url(), "w1")
        await worker.register()
        submitted = await submit(http, server)
        op = submitted["operationId"]
        await worker.recv_type("task")
        await server.orchestrator.cancel(op, "stop now")
        assert (await worker.recv_type("cancel"))["reason"] == "stop now"
        settled = await record_where(server.orchestrator, op, lambda r: r.state == "terminal")
        assert (settled.disposition, settled.uncertain) == ("cancelled", True)
        view = await detail(http, server, op)
        assert (view["disposition"], view.get("uncertain")) == ("cancelled", True)
        await worker.close()


async def test_cancel_deadline_is_the_lease_deadline(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """CANCEL-5: by default the deadline is the attempt's lease deadline, which activity
    heartbeats no longer extend (they are accepted, not rejected)."""
    worker = RawWorker(http, server.ws_url(), "w1")
    await worker.register()
    submitted = await submit(http, server, visibilityTimeout=400)
    op = submitted["operationId"]
    task = await worker.recv_type("task")
    lease_deadline = (await server.orchestrator.get(op)).lease_deadline
    assert lease_deadline is not None
    await server.orchestrator.cancel(op)
    assert (await worker.recv_type("cancel"))["reason"] == "Task cancelled"
    heartbeat = {
        "type": "activityHeartbeat",
        "workerId": "w1",
        "operationId": op,
        "attemptToken": task["attemptToken"],
    }
    for _ in range(3):  # within the first 150 ms of a 400 ms lease
        await worker.send(heartbeat)
        await nothing_for(worker, 0.05)  # accepted: no rejection comes back
    settled = await record_where(server.orchestrator, op, lambda r: r.state == "terminal")
    assert (settled.disposition, settled.uncertain) == ("cancelled", True)
    assert settled.finished_at is not None
    assert settled.finished_at < lease_deadline + 150, "a heartbeat extended the deadline"


async def test_result_before_the_cancel_is_answered_is_kept(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """CANCEL-5: a completed result that arrives first is committed as sent and acked."""
    worker = RawWorker(http, server.ws_url(), "w1")
    await worker.register()
    submitted = await submit(http, server)
    op = submitted["operationId"]
    task = await worker.recv_type("task")
    await server.orchestrator.cancel(op, "too late")
    await worker.recv_type("cancel")
    await worker.result(task, {"done": True})
    assert await worker.recv() == ack(task)
    result = await result_of(http, server, op)
    assert (result["disposition"], result["value"]) == ("completed", {"done": True})


# -- shutdown (SHUTDOWN-1, SHUTDOWN-3) -------------------------------------------------------


async def test_stop_sends_shutdown_and_waits_for_the_worker(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """SHUTDOWN-1, SHUTDOWN-3: stopping the server sends ``{"type":"shutdown"}``, still
    acknowledges results finished during the drain, and returns once the worker closes."""
    stack = contextlib.AsyncExitStack()
    server = await stack.enter_async_context(
        running_server(fast_config(tmp_path, worker_shutdown_timeout_ms=5000))
    )
    stopping: asyncio.Task[None] | None = None
    try:
        worker = RawWorker(http, server.ws_url(), "w1")
        await worker.register()
        submitted = await submit(http, server)
        task = await worker.recv_type("task")
        stopping = asyncio.create_task(stack.aclose())
        assert await worker.recv() == {"type": "shutdown"}
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(stopping), 0.2)
        await worker.result(task, "drained")
        assert await worker.recv() == ack(task)
        record = await server.orchestrator.get(submitted["operationId"])
        assert record.disposition == "completed"
        await worker.close()
        await asyncio.wait_for(asyncio.shield(stopping), 2)
    finally:
        await (stack.aclose() if stopping is None else stopping)


async def test_stop_waits_no_longer_than_the_shutdown_timeout(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """SHUTDOWN-1: a worker that never closes holds the stop for the configured wait
    (300 ms here) only; then the server closes the socket itself and the stop completes."""
    stack = contextlib.AsyncExitStack()
    server = await stack.enter_async_context(
        running_server(fast_config(tmp_path, worker_shutdown_timeout_ms=300))
    )
    stopping: asyncio.Task[None] | None = None
    try:
        worker = RawWorker(http, server.ws_url(), "w1")
        await worker.register()
        loop = asyncio.get_running_loop()
        started = loop.time()
        stopping = asyncio.create_task(stack.aclose())
        assert await worker.recv() == {"type": "shutdown"}
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(stopping), 0.15)
        # the worker does not close; the server must, once its wait is over
        closing = await worker.socket.receive(timeout=5)
        waited = loop.time() - started
        ended = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert closing.type in ended, closing
        assert 0.25 < waited < 1.0, f"the socket ended ({closing.type.name}) after {waited:.2f} s"
        await asyncio.wait_for(asyncio.shield(stopping), 1)
    finally:
        await (stack.aclose() if stopping is None else stopping)
