"""Disconnect, grace and resume — what only a WebSocket session has — on real sockets.

protocol/README.md §7 (GEN-*, GRACE-*, RESUME-*).  Losing a worker, cancellation,
drain and shutdown run over every transport in ``test_transports_lifecycle.py``.
Grace windows are a few hundred milliseconds at most; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from harness import RawWorker, fast_config, result_frame, result_of, running_server, submit


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


# -- liveness: ping a silent socket (--worker-ping-interval-ms) ------------------------------


async def test_a_silent_socket_that_answers_pings_stays(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """Pings come only after silence, and a pong is all a worker needs to stay."""
    async with running_server(fast_config(tmp_path, worker_ping_interval_ms=100)) as server:
        worker = RawWorker(http, server.ws_url(), "w-quiet")
        worker.ws = await http.ws_connect(server.ws_url(), autoping=False)
        await worker.register()
        for _ in range(3):
            message = await worker.socket.receive(timeout=5)
            assert message.type == aiohttp.WSMsgType.PING, message
            await worker.socket.pong(message.data)
        listed = server.orchestrator.worker("w-quiet")
        assert listed is not None
        assert listed["connected"] is True
        await worker.close()


async def test_a_silent_socket_that_never_answers_is_dropped(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """A peer gone without a FIN (here: one that reads pings but never answers) loses
    its session, and its attempt moves to another worker."""
    config = fast_config(tmp_path, worker_ping_interval_ms=100, reconnect_grace_ms=0)
    async with running_server(config) as server:
        gone = RawWorker(http, server.ws_url(), "w-gone")
        gone.ws = await http.ws_connect(server.ws_url(), autoping=False)
        await gone.register()
        submitted = await submit(http, server)
        assert (await gone.recv_type("task"))["operationId"] == submitted["operationId"]
        code, _ = await gone.closed(timeout=5)
        assert code is not None
        other = RawWorker(http, server.ws_url(), "w-other")
        await other.register()
        task = await other.recv_type("task")
        assert (task["operationId"], task["attempt"]) == (submitted["operationId"], 2)
        await other.send(result_frame(task, value="ok"))
        assert (await result_of(http, server, submitted["operationId"]))["value"] == "ok"
        await other.close()
