"""Results and fencing on a real socket: acknowledgements, duplicates and every rejection.

protocol/README.md §9 (RESULT-1…10) and §2.4 (CLOSE-4).  Each rejection must be
the exact correlated ``protocolError`` of RESULT-3 and must leave the socket
open, which every test checks by finishing the real attempt afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from harness import (
    RawWorker,
    Server,
    fast_config,
    record_where,
    result_frame,
    result_of,
    running_server,
    submit,
)


def ack(task: dict[str, Any], disposition: str) -> dict[str, Any]:
    return {
        "type": "taskResultAck",
        "operationId": task["operationId"],
        "attemptToken": task["attemptToken"],
        "disposition": disposition,
    }


def rejection(operation_id: str, token: str, reason: str) -> dict[str, Any]:
    """RESULT-3: correlated, with the operation and token of the rejected result."""
    return {
        "type": "protocolError",
        "code": "invalid_message",
        "message": f'taskResult for operation "{operation_id}" rejected \u2014 {reason}',
        "operationId": operation_id,
        "attemptToken": token,
    }


async def start(
    server: Server, http: aiohttp.ClientSession, worker_id: str = "w1", **body: Any
) -> tuple[RawWorker, dict[str, Any]]:
    """A registered worker holding one task submitted with ``body``."""
    worker = RawWorker(http, server.ws_url(), worker_id)
    await worker.register()
    await submit(http, server, **body)
    return worker, await worker.recv_type("task")


# -- acknowledgement and duplicates (RESULT-5, RESULT-7, RESULT-8) ---------------------------


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ({"status": "completed", "value": {"n": [1, 2.5]}}, ("completed", "completed")),
        ({"status": "completed", "value": None}, ("completed", "completed")),
        ({"status": "failed", "error": "boom", "value": None}, ("failed", "failed")),
        ({"status": "failed", "error": "", "value": None}, ("failed", "failed")),
    ],
    ids=["completed", "completed-null", "failed", "failed-empty-error"],
)
async def test_result_is_applied_then_duplicate(
    sent: dict[str, Any],
    stored: tuple[str, str],
    server: Server,
    http: aiohttp.ClientSession,
) -> None:
    """RESULT-5, RESULT-7, RESULT-8: the first result is ``applied``; the identical resend
    is ``duplicate`` and changes nothing."""
    worker, task = await start(server, http)
    frame = result_frame(task, **sent)
    await worker.send(frame)
    assert await worker.recv() == ack(task, "applied")
    record = await server.orchestrator.get(task["operationId"])
    assert (record.state, record.status, record.disposition) == ("terminal", *stored)
    await worker.send(frame)
    assert await worker.recv() == ack(task, "duplicate")
    assert await server.orchestrator.get(task["operationId"]) == record


@pytest.mark.parametrize(
    "change",
    [
        {"value": {"n": 2}},
        {"status": "failed", "error": "boom"},
        {"status": "cancelled", "error": "stop"},
    ],
    ids=["other-value", "other-status", "cancelled"],
)
async def test_conflicting_resend_is_rejected(
    change: dict[str, Any], server: Server, http: aiohttp.ClientSession
) -> None:
    """RESULT-3, RESULT-7, CLOSE-4: the same token with other content is refused with the
    ledger's text, correlated; the stored result stays; the socket stays open."""
    worker, task = await start(server, http)
    op, token = task["operationId"], task["attemptToken"]
    await worker.send(result_frame(task, value={"n": 1}))
    assert await worker.recv() == ack(task, "applied")
    before = await server.orchestrator.get(op)
    await worker.send(result_frame(task, **change))
    assert await worker.recv() == rejection(
        op,
        token,
        f'conflicting content resubmitted for operation "{op}" under attempt token "{token}"',
    )
    assert await server.orchestrator.get(op) == before
    await worker.send(result_frame(task, value={"n": 1}))
    assert await worker.recv() == ack(task, "duplicate")


# -- rejections (RESULT-1…4) --------------------------------------------------------------------


async def test_unknown_operation(server: Server, http: aiohttp.ClientSession) -> None:
    """RESULT-2, RESULT-3: no record at all."""
    worker = RawWorker(http, server.ws_url(), "w1")
    await worker.register()
    await worker.send(result_frame({"operationId": "ghost", "attemptToken": "tok-1"}))
    assert await worker.recv() == rejection("ghost", "tok-1", "unknown operation")
    assert not worker.socket.closed


async def test_result_from_a_worker_that_does_not_hold_it(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """RESULT-1, RESULT-3: W is the *sending* socket's workerId; the holder is unaffected."""
    holder, task = await start(server, http, "w-a")
    other = RawWorker(http, server.ws_url(), "w-b")
    await other.register()
    op, token = task["operationId"], task["attemptToken"]
    await other.send(result_frame(task, value="stolen"))
    assert await other.recv() == rejection(op, token, 'task not assigned to worker "w-b"')
    record = await server.orchestrator.get(op)
    assert (record.state, record.worker_id, record.attempt_token) == ("leased", "w-a", token)
    await holder.send(result_frame(task, value="mine"))
    assert await holder.recv() == ack(task, "applied")
    assert (await result_of(http, server, op))["value"] == "mine"
    assert not other.socket.closed


async def test_wrong_token_from_the_holder_is_stale(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """RESULT-1, RESULT-3: the holder, but not the current token."""
    worker, task = await start(server, http)
    op = task["operationId"]
    await worker.send(result_frame(task, attemptToken="not-the-token"))
    assert await worker.recv() == rejection(op, "not-the-token", "stale attempt token")
    await worker.send(result_frame(task))
    assert await worker.recv() == ack(task, "applied")


async def test_result_for_a_queued_task_is_stale(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """RESULT-2: no in-flight entry; the durable record is queued with no current token."""
    worker = RawWorker(http, server.ws_url(), "w1")
    await worker.register()
    submitted = await submit(http, server, activityName="other.thing")
    op = submitted["operationId"]
    await worker.send(result_frame({"operationId": op, "attemptToken": "tok-x"}))
    assert await worker.recv() == rejection(op, "tok-x", "stale attempt token")
    assert (await server.orchestrator.get(op)).state == "queued"


@pytest.mark.parametrize("echoed", [None, "rev-8", "REV-7"], ids=["missing", "other", "case"])
async def test_revision_mismatch(
    echoed: str | None, server: Server, http: aiohttp.ClientSession
) -> None:
    """RESULT-1: when the attempt has a workflowRevision the result must echo exactly it
    (missing counts as different); the right echo is then applied."""
    worker, task = await start(server, http, workflowRevision="rev-7")
    op, token = task["operationId"], task["attemptToken"]
    frame = result_frame(task)
    if echoed is None:
        del frame["workflowRevision"]
    else:
        frame["workflowRevision"] = echoed
    await worker.send(frame)
    assert await worker.recv() == rejection(op, token, "revision mismatch")
    await worker.send(result_frame(task))
    assert await worker.recv() == ack(task, "applied")


async def test_revision_is_not_required_when_the_task_has_none(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """RESULT-1, §17 item 3: the WebSocket revision check is additive."""
    worker, task = await start(server, http)
    assert "workflowRevision" not in task
    await worker.send(result_frame(task, workflowRevision="anything"))
    assert await worker.recv() == ack(task, "applied")


async def test_checks_run_worker_then_token_then_revision(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """RESULT-1 order: a foreign worker is told so even with a bad token and revision; the
    holder with a bad token and revision is told the token is stale."""
    holder, task = await start(server, http, "w-a", workflowRevision="rev-7")
    other = RawWorker(http, server.ws_url(), "w-b")
    await other.register()
    op = task["operationId"]
    bad = result_frame(task, attemptToken="bad-token", workflowRevision="rev-0")
    await other.send(bad)
    assert await other.recv() == rejection(op, "bad-token", 'task not assigned to worker "w-b"')
    await holder.send(bad)
    assert await holder.recv() == rejection(op, "bad-token", "stale attempt token")
    await holder.send(result_frame(task))
    assert await holder.recv() == ack(task, "applied")


# -- cancelled without cancellation (RESULT-6) ----------------------------------------------


async def test_cancelled_without_cancellation_is_stored_as_failed(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """RESULT-6, §17 item 4: ``cancelled`` for a task nobody cancelled is ``failed``, error
    kept, acknowledged ``applied``; an identical resend is a duplicate."""
    worker, task = await start(server, http)
    frame = result_frame(task, status="cancelled", cancelled=True, error="gave up", value=None)
    await worker.send(frame)
    assert await worker.recv() == ack(task, "applied")
    result = await result_of(http, server, task["operationId"])
    assert result == {"status": "failed", "attempt": 1, "error": "gave up", "disposition": "failed"}
    await worker.send(frame)
    assert await worker.recv() == ack(task, "duplicate")


# -- the value size limit (RESULT-9) ----------------------------------------------------------


def oversize(size: int, limit: int) -> dict[str, Any]:
    """RESULT-9: uncorrelated, non-closing."""
    return {
        "type": "protocolError",
        "code": "invalid_message",
        "message": "activity result exceeds the configured maximum serialized size: "
        f"{size} bytes > {limit} byte limit.",
    }


@pytest.mark.parametrize(
    ("fields", "size"),
    [
        ({"value": "ééééé"}, 12),  # "ééééé": 2 quotes + 5 * 2 UTF-8 bytes
        ({"value": {"a": [1, 2]}}, 11),  # {"a":[1,2]}: compact JSON, no spaces
        ({"status": "failed", "error": "x" * 20}, 22),
        ({"status": "cancelled", "error": "y" * 11}, 13),
    ],
    ids=["utf8-string", "compact-object", "failed-error", "cancelled-error"],
)
async def test_oversized_result_is_failed_and_acknowledged(
    fields: dict[str, Any], size: int, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """RESULT-9, CLOSE-4: measured as the UTF-8 length of the compact JSON of ``value`` (or
    ``error``); over the limit: notice, then ``applied``, and the task fails with the text."""
    async with running_server(fast_config(tmp_path, payload_max_bytes=10)) as server:
        worker, task = await start(server, http)
        await worker.send(result_frame(task, **fields))
        assert await worker.recv() == oversize(size, 10)
        assert await worker.recv() == ack(task, "applied")
        result = await result_of(http, server, task["operationId"])
        assert result == {
            "status": "failed",
            "attempt": 1,
            "error": oversize(size, 10)["message"],
            "disposition": "failed",
        }
        assert not worker.socket.closed
        await worker.close()


async def test_result_at_the_limit_is_kept(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """RESULT-9: a value of exactly the limit is not larger than it."""
    async with running_server(fast_config(tmp_path, payload_max_bytes=10)) as server:
        worker, task = await start(server, http)
        await worker.send(result_frame(task, value="12345678"))  # 10 bytes with quotes
        assert await worker.recv() == ack(task, "applied")
        assert (await result_of(http, server, task["operationId"]))["value"] == "12345678"
        await worker.close()


async def test_oversized_heartbeat_details_are_not_stored(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """RESULT-9: oversized heartbeat details get a non-closing uncorrelated notice and are
    not stored (the next attempt's frame has no ``lastHeartbeatDetails``)."""
    async with running_server(fast_config(tmp_path, payload_max_bytes=10)) as server:
        worker, task = await start(server, http, visibilityTimeout=150)
        await worker.send(
            {
                "type": "activityHeartbeat",
                "workerId": "w1",
                "operationId": task["operationId"],
                "attemptToken": task["attemptToken"],
                "details": "z" * 50,
            }
        )
        notice = await worker.recv()
        assert (notice["type"], notice["code"]) == ("protocolError", "invalid_message")
        assert "operationId" not in notice
        assert "attemptToken" not in notice
        again = await worker.recv_type("task")
        assert again["attempt"] == 2
        assert "lastHeartbeatDetails" not in again
        await worker.close()


async def test_commit_frees_the_slot_for_queued_work(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """RESULT-10: after the commit the slot is free and queued work is pushed to it."""
    worker = RawWorker(http, server.ws_url(), "w1")
    await worker.register(concurrency=1)
    first = await submit(http, server)
    second = await submit(http, server)
    task = await worker.recv_type("task")
    assert task["operationId"] == first["operationId"]
    await worker.send(result_frame(task))
    assert await worker.recv() == ack(task, "applied")
    follow = await worker.recv_type("task")
    assert follow["operationId"] == second["operationId"]
    await record_where(server.orchestrator, second["operationId"], lambda r: r.state == "leased")
