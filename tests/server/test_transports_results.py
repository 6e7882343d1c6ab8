"""Results and fencing over every transport: acknowledgements, duplicates and every rejection.

protocol/README.md §9 (RESULT-1…10), §2.4 (CLOSE-4) and §12 (LP-6…LP-8).  A
refusal is the correlated ``protocolError`` of RESULT-3 over a WebSocket, with
its exact text, and the 403 body ``{"error": "Forbidden", operationId,
attemptToken, reason}`` of LP-6 over HTTP (:func:`workers.expect_refused`).
A refusal changes nothing, which each test checks by finishing the real
attempt afterwards (over a WebSocket, on the same open socket).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from workers import TRANSPORTS, TestWorker, Transport, expect_refused, make_worker

from harness import Server, fast_config, result_of, running_server, submit

pytestmark = pytest.mark.parametrize("transport", TRANSPORTS)


async def holding(
    transport: Transport,
    server: Server,
    http: aiohttp.ClientSession,
    worker_id: str = "w1",
    **body: Any,
) -> tuple[TestWorker, dict[str, Any]]:
    """A worker holding one task submitted with ``body``."""
    worker = await make_worker(transport, http, server, worker_id=worker_id).start()
    await submit(http, server, **body)
    return worker, await worker.task()


def oversize(size: int, limit: int, kind: str = "activity result") -> str:
    return (
        f"{kind} exceeds the configured maximum serialized size: {size} bytes > {limit} byte limit."
    )


# -- acknowledgement and duplicates (RESULT-5, RESULT-7, RESULT-8) ---------------------------


async def test_task_is_delivered_completed_and_acknowledged(
    transport: Transport, server: Server, http: aiohttp.ClientSession
) -> None:
    """RESULT-5, RESULT-8: the task reaches the worker with its input; the result is
    acknowledged ``applied`` (over a WebSocket, a ``taskResultAck`` naming the attempt;
    over HTTP, ``{"ok": true, "disposition": …}``) and is the task's result."""
    worker = await make_worker(transport, http, server).start()
    op = (await submit(http, server, input={"n": 1}))["operationId"]
    task = await worker.task()
    assert (task["operationId"], task["input"], task["attempt"]) == (op, {"n": 1}, 1)
    first = await worker.result(task, {"n": 2})
    if transport == "ws":
        assert first.detail == {
            "type": "taskResultAck",
            "operationId": op,
            "attemptToken": task["attemptToken"],
            "disposition": "applied",
        }
    else:
        assert first.detail == {"ok": True, "disposition": "applied"}
    again = await worker.result(task, {"n": 2})
    assert again.disposition == "duplicate"
    assert await result_of(http, server, op) == {
        "status": "completed",
        "attempt": 1,
        "value": {"n": 2},
        "disposition": "completed",
    }
    await worker.stop()


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
    transport: Transport,
    sent: dict[str, Any],
    stored: tuple[str, str],
    server: Server,
    http: aiohttp.ClientSession,
) -> None:
    """RESULT-5, RESULT-7, RESULT-8: the first result is ``applied``; the identical resend
    is ``duplicate`` and changes nothing."""
    worker, task = await holding(transport, server, http)
    assert (await worker.result(task, **sent)).disposition == "applied"
    record = await server.orchestrator.get(task["operationId"])
    assert (record.state, record.status, record.disposition) == ("terminal", *stored)
    assert (await worker.result(task, **sent)).disposition == "duplicate"
    assert await server.orchestrator.get(task["operationId"]) == record
    await worker.stop()


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
    transport: Transport, change: dict[str, Any], server: Server, http: aiohttp.ClientSession
) -> None:
    """RESULT-3, RESULT-7, LP-6, CLOSE-4: the same token with other content is refused
    (over a WebSocket with the ledger's text), correlated; the stored result stays."""
    worker, task = await holding(transport, server, http)
    op, token = task["operationId"], task["attemptToken"]
    assert (await worker.result(task, {"n": 1})).disposition == "applied"
    before = await server.orchestrator.get(op)
    refused = await worker.result(task, **change)
    text = f'conflicting content resubmitted for operation "{op}" under attempt token "{token}"'
    expect_refused(worker, refused, op, token, ws=text, http="conflicting-content")
    assert await server.orchestrator.get(op) == before
    assert (await worker.result(task, {"n": 1})).disposition == "duplicate"
    await worker.stop()


# -- rejections (RESULT-1…4, LP-6, LP-7) --------------------------------------------------------


async def test_unknown_operation(
    transport: Transport, server: Server, http: aiohttp.ClientSession
) -> None:
    """RESULT-2, RESULT-3, LP-6: no record at all."""
    worker = await make_worker(transport, http, server).start()
    ghost = {"operationId": "ghost", "attemptToken": "tok-1"}
    refused = await worker.result(ghost)
    expect_refused(
        worker, refused, "ghost", "tok-1", ws="unknown operation", http="unknown-operation"
    )
    assert worker.connected
    await worker.stop()


async def test_result_from_a_worker_that_does_not_hold_it(
    transport: Transport, server: Server, http: aiohttp.ClientSession
) -> None:
    """RESULT-1, RESULT-3, LP-6: W is the *sending* worker's id (a queue-scoped worker that
    was not handed the task names no claim of it); the holder is unaffected."""
    holder, task = await holding(transport, server, http, "w-a")
    other = await make_worker(transport, http, server, worker_id="w-b").start()
    op, token = task["operationId"], task["attemptToken"]
    refused = await other.result(task, "stolen")
    expect_refused(
        other, refused, op, token, ws='task not assigned to worker "w-b"', http="worker-mismatch"
    )
    record = await server.orchestrator.get(op)
    holder_id = task.get("workerId", holder.worker_id)
    assert (record.state, record.worker_id, record.attempt_token) == ("leased", holder_id, token)
    assert (await holder.result(task, "mine")).disposition == "applied"
    assert (await result_of(http, server, op))["value"] == "mine"
    assert other.connected
    for each in (holder, other):
        await each.stop()


async def test_result_from_a_worker_on_another_queue(
    transport: Transport, server: Server, http: aiohttp.ClientSession
) -> None:
    """RESULT-1, LP-6: a worker of another queue does not hold the task.  Over HTTP the
    queue is checked first (``queue-mismatch``: the URL's, or the session's, queue is not
    the task's), even when the body names the holder's workerId."""
    holder, task = await holding(transport, server, http, "w-a")
    other = await make_worker(transport, http, server, queue="other", worker_id="w-b").start()
    op, token = task["operationId"], task["attemptToken"]
    refused = await other.result(task, "stolen", worker_id=task.get("workerId", "w-b"))
    expect_refused(
        other, refused, op, token, ws='task not assigned to worker "w-b"', http="queue-mismatch"
    )
    assert (await holder.result(task, "mine")).disposition == "applied"
    for each in (holder, other):
        await each.stop()


async def test_wrong_token_from_the_holder(
    transport: Transport, server: Server, http: aiohttp.ClientSession
) -> None:
    """RESULT-1, RESULT-3, LP-6: the holder, but not the current token of its live attempt."""
    worker, task = await holding(transport, server, http)
    op = task["operationId"]
    refused = await worker.result(task, attemptToken="not-the-token")
    expect_refused(
        worker,
        refused,
        op,
        "not-the-token",
        ws="stale attempt token",
        http="attempt-token-mismatch",
    )
    assert (await worker.result(task)).disposition == "applied"
    await worker.stop()


async def test_result_for_a_queued_task_is_stale(
    transport: Transport, server: Server, http: aiohttp.ClientSession
) -> None:
    """RESULT-2, LP-6: the record is queued, no live attempt and no current token."""
    worker = await make_worker(transport, http, server).start()
    submitted = await submit(http, server, activityName="other.thing")
    op = submitted["operationId"]
    refused = await worker.result({"operationId": op, "attemptToken": "tok-x"})
    expect_refused(worker, refused, op, "tok-x", ws="stale attempt token", http="stale-attempt")
    assert (await server.orchestrator.get(op)).state == "queued"
    await worker.stop()


async def test_result_for_a_task_resolved_under_another_token(
    transport: Transport, server: Server, http: aiohttp.ClientSession
) -> None:
    """RESULT-2, RESULT-4, LP-6: attempt 1 expires, attempt 2 (a new token) resolves the
    task; attempt 1's late result is refused — over a WebSocket as stale, over HTTP as
    ``attempt-token-mismatch`` (not the token that resolved the record)."""
    worker, first = await holding(transport, server, http, visibilityTimeout=100)
    op = first["operationId"]
    second = await worker.task()
    assert (second["operationId"], second["attempt"]) == (op, 2)
    assert (await worker.result(second, "fresh")).disposition == "applied"
    late = await worker.result(first, "late")
    expect_refused(
        worker,
        late,
        op,
        first["attemptToken"],
        ws="stale attempt token",
        http="attempt-token-mismatch",
    )
    assert (await result_of(http, server, op))["value"] == "fresh"
    await worker.stop()


@pytest.mark.parametrize("echoed", [None, "rev-8", "REV-7"], ids=["missing", "other", "case"])
async def test_revision_mismatch(
    transport: Transport, echoed: str | None, server: Server, http: aiohttp.ClientSession
) -> None:
    """RESULT-1, LP-7: when the attempt has a workflowRevision the result must echo exactly
    it (missing counts as different); the right echo is then applied."""
    worker, task = await holding(transport, server, http, workflowRevision="rev-7")
    op, token = task["operationId"], task["attemptToken"]
    assert task["workflowRevision"] == "rev-7"
    refused = await worker.result(task, workflowRevision=echoed)  # None: left out
    expect_refused(worker, refused, op, token, ws="revision mismatch", http="revision-mismatch")
    assert (await worker.result(task)).disposition == "applied"
    await worker.stop()


async def test_revision_is_not_required_when_the_task_has_none(
    transport: Transport, server: Server, http: aiohttp.ClientSession
) -> None:
    """RESULT-1, LP-7, §17 item 3: the check applies only when the record has a revision."""
    worker, task = await holding(transport, server, http)
    assert "workflowRevision" not in task
    assert (await worker.result(task, workflowRevision="anything")).disposition == "applied"
    await worker.stop()


async def test_checks_run_worker_then_token_then_revision(
    transport: Transport, server: Server, http: aiohttp.ClientSession
) -> None:
    """RESULT-1 / LP-6 order: a foreign worker is told so even with a bad token and
    revision; the holder with a bad token and revision is told the token is wrong."""
    holder, task = await holding(transport, server, http, "w-a", workflowRevision="rev-7")
    other = await make_worker(transport, http, server, worker_id="w-b").start()
    op = task["operationId"]
    bad = {"attemptToken": "bad-token", "workflowRevision": "rev-0"}
    refused = await other.result(task, **bad)
    expect_refused(
        other,
        refused,
        op,
        "bad-token",
        ws='task not assigned to worker "w-b"',
        http="worker-mismatch",
    )
    refused = await holder.result(task, **bad)
    expect_refused(
        holder, refused, op, "bad-token", ws="stale attempt token", http="attempt-token-mismatch"
    )
    assert (await holder.result(task)).disposition == "applied"
    for each in (holder, other):
        await each.stop()


# -- cancelled without cancellation (RESULT-6, LP-8) --------------------------------------------


async def test_cancelled_without_cancellation_is_stored_as_failed(
    transport: Transport, server: Server, http: aiohttp.ClientSession
) -> None:
    """RESULT-6, LP-8, §17 item 4: ``cancelled`` for a task nobody cancelled is ``failed``,
    error kept, acknowledged ``applied``; an identical resend is a duplicate."""
    worker, task = await holding(transport, server, http)
    fields = {"status": "cancelled", "cancelled": True, "error": "gave up"}
    assert (await worker.result(task, **fields)).disposition == "applied"
    result = await result_of(http, server, task["operationId"])
    assert result == {"status": "failed", "attempt": 1, "error": "gave up", "disposition": "failed"}
    assert (await worker.result(task, **fields)).disposition == "duplicate"
    await worker.stop()


# -- the value size limit (RESULT-9) ----------------------------------------------------------


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
    transport: Transport,
    fields: dict[str, Any],
    size: int,
    tmp_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    """RESULT-9, CLOSE-4, §12.1: measured as the UTF-8 length of the compact JSON of
    ``value`` (or ``error``).  Over the limit, over a WebSocket: an uncorrelated notice, then
    ``applied``; over HTTP: 413 ``payloadTooLarge`` (``PayloadSizeExceededError``,
    ``activity result``).  Either way the task fails with the text."""
    async with running_server(fast_config(tmp_path, payload_max_bytes=10)) as server:
        worker, task = await holding(transport, server, http)
        outcome = await worker.result(task, **fields)
        text = oversize(size, 10)
        if transport == "ws":
            assert outcome.notices == [
                {"type": "protocolError", "code": "invalid_message", "message": text}
            ]
            assert outcome.disposition == "applied"
        else:
            assert (outcome.status, outcome.detail) == (
                413,
                {
                    "error": text,
                    "code": "PayloadSizeExceededError",
                    "maxBytes": 10,
                    "serializedBytes": size,
                    "payloadKind": "activity result",
                },
            )
        result = await result_of(http, server, task["operationId"])
        assert result == {"status": "failed", "attempt": 1, "error": text, "disposition": "failed"}
        assert worker.connected
        await worker.stop()


async def test_result_at_the_limit_is_kept(
    transport: Transport, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """RESULT-9: a value of exactly the limit is not larger than it."""
    async with running_server(fast_config(tmp_path, payload_max_bytes=10)) as server:
        worker, task = await holding(transport, server, http)
        outcome = await worker.result(task, "12345678")  # 10 bytes with quotes
        assert (outcome.disposition, outcome.notices) == ("applied", [])
        assert (await result_of(http, server, task["operationId"]))["value"] == "12345678"
        await worker.stop()


async def test_oversized_heartbeat_details_are_not_stored(
    transport: Transport, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """RESULT-9, LP-9: oversized heartbeat details get a non-closing uncorrelated notice
    (WebSocket) or 413 ``heartbeat details`` (HTTP) and are not stored: the next attempt
    has no ``lastHeartbeatDetails``."""
    async with running_server(fast_config(tmp_path, payload_max_bytes=10)) as server:
        worker, task = await holding(transport, server, http, visibilityTimeout=150)
        reply = await worker.heartbeat(task, "z" * 50, expect=413)
        text = oversize(52, 10, "heartbeat details")
        if transport == "ws":
            notice = await worker.notice()
            assert notice == {"type": "protocolError", "code": "invalid_message", "message": text}
        else:
            assert reply == {
                "error": text,
                "code": "PayloadSizeExceededError",
                "maxBytes": 10,
                "serializedBytes": 52,
                "payloadKind": "heartbeat details",
            }
        again = await worker.task()
        assert again["attempt"] == 2
        assert "lastHeartbeatDetails" not in again
        await worker.stop()
