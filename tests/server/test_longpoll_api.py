"""Queue-scoped HTTP long-poll over real HTTP (protocol/README.md §12.1, LP-1…LP-10, HTTP-2;
reference §16A): every status code and JSON body of the poll, result and heartbeat routes,
and the start-up recovery gate (LP-2).

Every body is checked by value and against ``longpoll-queue.json`` (helpers in
``longpoll_http``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from longpoll_http import (
    API,
    APPLIED,
    BAD_REQUEST,
    CLAIM_FIELDS,
    DUPLICATE,
    FORBIDDEN,
    HEARTBEAT_FORBIDDEN,
    HEARTBEAT_REQUEST,
    HEARTBEAT_RESPONSE,
    LIMIT,
    LONGPOLL_ID,
    MIB,
    OMIT,
    RESOLVED,
    RESULT_REQUEST,
    RESULT_RESPONSE,
    TOO_LARGE,
    Clock,
    FlakyStore,
    GatedStore,
    assert_body_too_large,
    assert_no_task,
    assert_reply,
    call,
    claim,
    heartbeat_body,
    oversize,
    padded_body,
    poll,
    refused,
    result_body,
    send_heartbeat,
    send_result,
    serving,
)
from yarl import URL

from harness import WAIT, Server, fast_config, record_where, result_of, running_server, submit
from treadle.ledger import NO_DETAILS


@pytest.fixture
async def limited(tmp_path: Path) -> AsyncIterator[Server]:
    """A server with ``payload_max_bytes`` = 64 (RESULT-9)."""
    async with running_server(fast_config(tmp_path, payload_max_bytes=LIMIT)) as running:
        yield running


# -- poll: LP-1 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["/api", ""])
@pytest.mark.parametrize("wait", [None, "0", "5000"])
async def test_poll_without_activity_is_400(
    server: Server, http: aiohttp.ClientSession, prefix: str, wait: str | None
) -> None:
    await submit(http, server)
    reply = await poll(http, server, activities=(), wait=wait, prefix=prefix)
    expected = {"error": 'At least one "activity" query parameter is required'}
    assert_reply(reply, 400, expected, BAD_REQUEST)


async def test_timeout_zero_answers_204_at_once(
    server: Server, http: aiohttp.ClientSession
) -> None:
    submitted = await submit(http, server, activityName="wf.slow")
    reply = await asyncio.wait_for(poll(http, server, wait="0"), WAIT)
    assert_no_task(reply)
    detail = await call(http, "GET", f"{server.url}{API}/tasks/detail/{submitted['operationId']}")
    assert detail.body["state"] == "queued"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(None, 30_000, id="default"),
        pytest.param("70000", 60_000, id="clamped-high"),
        pytest.param("Infinity", 60_000, id="infinity"),
        pytest.param("1e3", 1000, id="exponent"),
        pytest.param("abc", 0, id="not-a-number"),
        pytest.param("", 0, id="empty"),
        pytest.param("-5", 0, id="negative"),
        pytest.param("0", 0, id="zero"),
    ],
)
async def test_poll_timeout_is_read_and_clamped(
    server: Server,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    raw: str | None,
    expected: float,
) -> None:
    """LP-1: default 30 000, ``min(max(0, t), 60000)``, not a number reads as 0."""
    polls = server.orchestrator.polls
    original = polls.poll_queue
    seen: asyncio.Queue[float] = asyncio.Queue()

    async def recording(
        queue: str, activities: list[str], timeout_ms: float, alive: Callable[[], bool]
    ) -> Any:
        seen.put_nowait(timeout_ms)
        return await original(queue, activities, timeout_ms, alive)

    monkeypatch.setattr(polls, "poll_queue", recording)
    pending = asyncio.create_task(poll(http, server, wait=raw))
    assert await asyncio.wait_for(seen.get(), WAIT) == expected
    if expected == 0:
        assert_no_task(await asyncio.wait_for(pending, WAIT))
        return
    submitted = await submit(http, server)  # the parked poll is woken by the task
    reply = await asyncio.wait_for(pending, WAIT)
    assert reply.status == 200, reply
    assert reply.body["operationId"] == submitted["operationId"]


# -- poll: LP-3, LP-4 ------------------------------------------------------------------------------


async def test_claim_body_and_lease(server: Server, http: aiohttp.ClientSession) -> None:
    submitted = await submit(
        http,
        server,
        input={"n": [1, 2.5, None]},
        visibilityTimeout=5000,
        headers={"trace": "abc"},
        workflowRevision="rev-1",
    )
    operation_id = submitted["operationId"]
    task = await claim(http, server)
    token, worker_id = task["attemptToken"], task["workerId"]
    assert task == {
        "operationId": operation_id,
        "activityName": "wf.echo",
        "input": {"n": [1, 2.5, None]},
        "attempt": 1,
        "attemptToken": token,
        "visibilityTimeout": 5000,
        "workerId": worker_id,
        "headers": {"trace": "abc"},
        "workflowRevision": "rev-1",
    }  # and no bookkeeping fields (LP-4)
    assert LONGPOLL_ID.fullmatch(worker_id), worker_id
    assert str(uuid.UUID(token)) == token
    record = await server.orchestrator.book.get(operation_id)
    assert record is not None
    assert record.state == "leased"
    assert (record.worker_id, record.attempt_token) == (worker_id, token)
    assert record.lease_deadline is not None
    assert record.attempt_deadline == record.lease_deadline + 5 * 5000  # 6 x vt from the claim


async def test_claim_of_a_plain_task(server: Server, http: aiohttp.ClientSession) -> None:
    submitted = await submit(http, server)
    task = await claim(http, server)
    assert set(task) - {"headers"} == CLAIM_FIELDS
    assert (task["operationId"], task["input"], task["attempt"]) == (
        submitted["operationId"],
        None,
        1,
    )
    assert task["visibilityTimeout"] == 30_000


async def test_claim_always_carries_headers(server: Server, http: aiohttp.ClientSession) -> None:
    """LP-4 lists ``headers`` with the fields every claim has; only ``workflowExecutionToken``,
    ``workflowRevision`` and ``lastHeartbeatDetails`` are "when present"."""
    await submit(http, server)
    task = await claim(http, server)
    assert task.get("headers") == {}, task


async def test_every_claim_has_its_own_worker_id(
    server: Server, http: aiohttp.ClientSession
) -> None:
    await submit(http, server)
    await submit(http, server)
    first, second = await claim(http, server), await claim(http, server)
    assert first["operationId"] != second["operationId"]
    assert first["workerId"] != second["workerId"]
    assert first["attemptToken"] != second["attemptToken"]
    for task in (first, second):
        assert LONGPOLL_ID.fullmatch(task["workerId"])


async def test_next_attempt_carries_last_heartbeat_details(
    server: Server, http: aiohttp.ClientSession
) -> None:
    policy = {"maxAttempts": 2, "initialIntervalMs": 0}
    submitted = await submit(http, server, retryPolicy=policy)
    first = await claim(http, server)
    assert "lastHeartbeatDetails" not in first
    renewed = await send_heartbeat(http, server, first, details={"step": 3})
    assert renewed.status == 200, renewed
    failed = await send_result(http, server, first, status="failed", value=OMIT, error="flaky")
    assert_reply(failed, 200, APPLIED, RESULT_RESPONSE)  # retried (API-3)
    second = await claim(http, server)
    assert second["operationId"] == submitted["operationId"]
    assert second["attempt"] == 2
    assert second["lastHeartbeatDetails"] == {"step": 3}
    assert second["attemptToken"] != first["attemptToken"]
    assert second["workerId"] != first["workerId"]


async def test_only_matching_activities_and_queue_are_claimed(
    server: Server, http: aiohttp.ClientSession
) -> None:
    submitted = await submit(http, server, activityName="wf.slow")
    assert_no_task(await poll(http, server, activities=("wf.echo",)))
    assert_no_task(await poll(http, server, queue="other", activities=("wf.slow",)))
    assert_no_task(await poll(http, server, activities=("slow", "other.slow")))
    task = await claim(http, server, activities=("wf.echo", "wf.slow"))
    assert (task["operationId"], task["activityName"]) == (submitted["operationId"], "wf.slow")


async def test_a_parked_poll_gets_a_task_submitted_later(
    server: Server, http: aiohttp.ClientSession
) -> None:
    pending = asyncio.create_task(poll(http, server, wait="10000"))
    done, _ = await asyncio.wait({pending}, timeout=0.1)
    assert not done, "the poll must wait for a task"
    submitted = await submit(http, server, input="late")
    reply = await asyncio.wait_for(pending, WAIT)
    assert reply.status == 200, reply
    assert (reply.body["operationId"], reply.body["input"]) == (submitted["operationId"], "late")


# -- poll: routing (LP-10, WS-1, WS-2) -------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["/api", ""])
async def test_diagnostics_and_task_detail_are_not_shadowed(
    server: Server, http: aiohttp.ClientSession, prefix: str
) -> None:
    on_diagnostics = await submit(http, server, queue="diagnostics")
    on_detail = await submit(http, server)
    base = f"{server.url}{prefix}/v1/tasks"
    query = {"activity": "wf.echo", "timeout": "0"}
    diagnostics = await call(http, "GET", URL(f"{base}/diagnostics").with_query(query))
    assert diagnostics.status == 200, diagnostics
    assert set(diagnostics.body) == {"items", "summary", "limit"}
    operation_id = on_detail["operationId"]
    detail = await call(http, "GET", URL(f"{base}/detail/{operation_id}").with_query(query))
    assert detail.status == 200, detail
    assert (detail.body["operationId"], detail.body["state"]) == (operation_id, "queued")
    for submitted in (on_diagnostics, on_detail):
        record = await server.orchestrator.book.get(submitted["operationId"])
        assert record is not None
        assert record.state == "queued"  # nothing was claimed


@pytest.mark.parametrize("prefix", ["/api", ""])
async def test_poll_result_and_heartbeat_with_and_without_the_api_prefix(
    server: Server, http: aiohttp.ClientSession, prefix: str
) -> None:
    submitted = await submit(http, server)
    task = await claim(http, server, prefix=prefix)
    assert task["operationId"] == submitted["operationId"]
    beat = await send_heartbeat(http, server, task, prefix=prefix)
    assert beat.status == 200, beat
    done = await send_result(http, server, task, prefix=prefix, value="bare")
    assert_reply(done, 200, APPLIED, RESULT_RESPONSE)
    assert (await result_of(http, server, task["operationId"]))["value"] == "bare"


@pytest.mark.parametrize("queue", ["%5F", "a%2Db", "%64efault"])
async def test_a_percent_encoded_queue_is_404(
    server: Server, http: aiohttp.ClientSession, queue: str
) -> None:
    """WS-2: the queue is matched on the raw path, so ``%5F`` is not ``_``."""
    await submit(http, server, queue="_")
    await submit(http, server)
    base = f"{server.url}{API}/tasks/{queue}"
    polled = await call(http, "GET", URL(f"{base}?activity=wf.echo&timeout=0", encoded=True))
    assert_reply(polled, 404, {"error": "Not Found"})
    body = {"operationId": "op", "attemptToken": "t", "status": "completed"}
    for tail in ("/result", "/heartbeat"):
        reply = await call(http, "POST", URL(base + tail, encoded=True), body=body)
        assert_reply(reply, 404, {"error": "Not Found"})
    assert server.orchestrator.backlog.counts() == {"_": 1, "default": 1}


@pytest.mark.parametrize("queue", ["a.b", "a%20b", "caf%C3%A9"])
async def test_a_queue_outside_the_pattern_is_404(
    server: Server, http: aiohttp.ClientSession, queue: str
) -> None:
    url = URL(f"{server.url}{API}/tasks/{queue}?activity=wf.echo&timeout=0", encoded=True)
    assert (await call(http, "GET", url)).status == 404


# -- result: 400 -----------------------------------------------------------------------------------


MISSING = "Missing required fields: operationId, status"
BAD_STATUS = 'status must be "completed", "failed", or "cancelled"'
BAD_TOKEN = "attemptToken must be a non-empty string"
RESULT_400 = {  # id: (raw body, error text)
    "invalid-json": (b"{", "Invalid JSON body"),
    "trailing-garbage": (b'{"operationId":"op"} x', "Invalid JSON body"),
    "empty": (b"", "Invalid JSON body"),
    "null": (b"null", "Invalid JSON body"),
    "array": (b"[]", MISSING),
    "string": (b'"op"', MISSING),
    "no-operation": (b'{"status":"completed","attemptToken":"t"}', MISSING),
    "no-status": (b'{"operationId":"op","attemptToken":"t"}', MISSING),
    "operation-number": (b'{"operationId":5,"status":"completed","attemptToken":"t"}', MISSING),
    "status-null": (b'{"operationId":"op","status":null,"attemptToken":"t"}', MISSING),
    "bad-status": (b'{"operationId":"op","status":"done","attemptToken":"t"}', BAD_STATUS),
    "status-case": (b'{"operationId":"op","status":"Completed"}', BAD_STATUS),
    "no-token": (b'{"operationId":"op","status":"completed"}', BAD_TOKEN),
    "empty-token": (b'{"operationId":"op","status":"failed","attemptToken":""}', BAD_TOKEN),
    "number-token": (b'{"operationId":"op","status":"cancelled","attemptToken":5}', BAD_TOKEN),
}


@pytest.mark.parametrize(("raw", "error"), list(RESULT_400.values()), ids=list(RESULT_400))
async def test_result_400_bodies(
    server: Server, http: aiohttp.ClientSession, raw: bytes, error: str
) -> None:
    url = f"{server.url}{API}/tasks/default/result"
    assert_reply(await call(http, "POST", url, data=raw), 400, {"error": error}, BAD_REQUEST)


async def test_result_400_comes_before_fencing(server: Server, http: aiohttp.ClientSession) -> None:
    await submit(http, server)
    task = await claim(http, server)
    reply = await send_result(http, server, task, queue="other", attemptToken="")
    assert_reply(reply, 400, {"error": BAD_TOKEN}, BAD_REQUEST)
    record = await server.orchestrator.book.get(task["operationId"])
    assert record is not None
    assert record.state == "leased"


# -- result: 200 (LP-8, RESULT-5…RESULT-7) ---------------------------------------------------------


async def test_result_applied_then_duplicate_then_conflict(
    server: Server, http: aiohttp.ClientSession
) -> None:
    await submit(http, server)
    task = await claim(http, server)
    body = result_body(task, value={"out": [1, 2]})
    RESULT_REQUEST.validate(body)
    url = f"{server.url}{API}/tasks/default/result"
    assert_reply(await call(http, "POST", url, body=body), 200, APPLIED, RESULT_RESPONSE)
    assert_reply(await call(http, "POST", url, body=body), 200, DUPLICATE, RESULT_RESPONSE)
    other = await send_result(http, server, task, value={"out": [3]})
    assert_reply(other, 403, refused(task, "conflicting-content"), FORBIDDEN)
    result = await result_of(http, server, task["operationId"])
    assert result == {
        "status": "completed",
        "value": {"out": [1, 2]},
        "attempt": 1,
        "disposition": "completed",
    }


async def test_failed_result(server: Server, http: aiohttp.ClientSession) -> None:
    await submit(http, server, activityName="wf.fail")
    task = await claim(http, server, activities=("wf.fail",))
    reply = await send_result(http, server, task, status="failed", value=OMIT, error="Boom")
    assert_reply(reply, 200, APPLIED, RESULT_RESPONSE)
    result = await result_of(http, server, task["operationId"])
    assert result == {"status": "failed", "error": "Boom", "attempt": 1, "disposition": "failed"}


async def test_cancelled_result_of_a_cancelling_attempt(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """LP-8: the ``cancelled`` disposition when the record is ``cancelling`` under that token."""
    await submit(http, server)
    task = await claim(http, server)
    base = f"{server.url}{API}/tasks/detail/{task['operationId']}"
    cancel = await call(http, "POST", f"{base}/cancel", body={"reason": "enough"})
    assert (cancel.status, cancel.body) == (202, {"recorded": True})
    reply = await send_result(
        http, server, task, status="cancelled", value=OMIT, cancelled=True, error="enough"
    )
    assert_reply(reply, 200, APPLIED, RESULT_RESPONSE)
    result = await result_of(http, server, task["operationId"])
    assert result == {
        "status": "cancelled",
        "error": "enough",
        "attempt": 1,
        "disposition": "cancelled",
    }


async def test_cancelled_result_without_a_cancel_is_stored_failed(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """RESULT-6: otherwise it is stored as ``failed``, keeping the error text."""
    await submit(http, server)
    task = await claim(http, server)
    reply = await send_result(http, server, task, status="cancelled", value=OMIT, error="gave up")
    assert_reply(reply, 200, APPLIED, RESULT_RESPONSE)
    result = await result_of(http, server, task["operationId"])
    assert (result["status"], result["disposition"], result["error"]) == (
        "failed",
        "failed",
        "gave up",
    )


# -- result: 403 (LP-6, LP-7) ----------------------------------------------------------------------


async def assert_still_leased(server: Server, task: dict[str, Any]) -> None:
    record = await server.orchestrator.book.get(task["operationId"])
    assert record is not None
    assert (record.state, record.attempt_token) == ("leased", task["attemptToken"])


async def test_result_for_an_unknown_operation(server: Server, http: aiohttp.ClientSession) -> None:
    ghost = {"operationId": "no-such-op", "workerId": "longpoll-00000000", "attemptToken": "t"}
    reply = await send_result(http, server, ghost, queue="any")
    assert_reply(reply, 403, refused(ghost, "unknown-operation"), FORBIDDEN)


async def test_result_from_another_worker(server: Server, http: aiohttp.ClientSession) -> None:
    await submit(http, server)
    task = await claim(http, server)
    reply = await send_result(http, server, task, workerId="longpoll-00000000")
    assert_reply(reply, 403, refused(task, "worker-mismatch"), FORBIDDEN)
    # a live attempt needs the workerId it was given
    reply = await send_result(http, server, task, workerId=OMIT)
    assert_reply(reply, 403, refused(task, "worker-mismatch"), FORBIDDEN)
    await assert_still_leased(server, task)
    assert_reply(await send_result(http, server, task), 200, APPLIED, RESULT_RESPONSE)


async def test_result_with_another_token(server: Server, http: aiohttp.ClientSession) -> None:
    await submit(http, server)
    task = await claim(http, server)
    other = str(uuid.uuid4())
    reply = await send_result(http, server, task, attemptToken=other)
    assert_reply(reply, 403, refused(task, "attempt-token-mismatch", other), FORBIDDEN)
    await assert_still_leased(server, task)


async def test_result_on_another_queue(server: Server, http: aiohttp.ClientSession) -> None:
    await submit(http, server)
    task = await claim(http, server)
    reply = await send_result(http, server, task, queue="other")
    assert_reply(reply, 403, refused(task, "queue-mismatch"), FORBIDDEN)
    # the queue is checked first
    reply = await send_result(http, server, task, queue="other", workerId="longpoll-00000000")
    assert_reply(reply, 403, refused(task, "queue-mismatch"), FORBIDDEN)
    await assert_still_leased(server, task)


async def test_result_revision_is_strict(server: Server, http: aiohttp.ClientSession) -> None:
    """LP-7: a missing echo of a present revision is a mismatch."""
    await submit(http, server, workflowRevision="rev-1")
    task = await claim(http, server)
    for echo in (OMIT, "rev-2", None):
        reply = await send_result(http, server, task, workflowRevision=echo)
        assert_reply(reply, 403, refused(task, "revision-mismatch"), FORBIDDEN)
    await assert_still_leased(server, task)
    reply = await send_result(http, server, task, workflowRevision="rev-1")
    assert_reply(reply, 200, APPLIED, RESULT_RESPONSE)


async def test_result_fencing_order(server: Server, http: aiohttp.ClientSession) -> None:
    """Holder before token, token before revision."""
    await submit(http, server, workflowRevision="rev-1")
    task = await claim(http, server)
    other = str(uuid.uuid4())
    reply = await send_result(
        http, server, task, workerId="longpoll-00000000", attemptToken=other, workflowRevision="x"
    )
    assert_reply(reply, 403, refused(task, "worker-mismatch", other), FORBIDDEN)
    reply = await send_result(http, server, task, attemptToken=other, workflowRevision="x")
    assert_reply(reply, 403, refused(task, "attempt-token-mismatch", other), FORBIDDEN)


async def test_result_and_heartbeat_after_the_lease_expired_are_stale(
    server: Server, http: aiohttp.ClientSession
) -> None:
    submitted = await submit(http, server, visibilityTimeout=50)
    task = await claim(http, server)
    await record_where(
        server.orchestrator,
        submitted["operationId"],
        lambda r: r.state == "queued" and r.attempt == 2,
    )
    reply = await send_result(http, server, task)
    assert_reply(reply, 403, refused(task, "stale-attempt"), FORBIDDEN)
    beat = await send_heartbeat(http, server, task)
    assert_reply(beat, 403, HEARTBEAT_FORBIDDEN, FORBIDDEN)


async def test_result_of_a_retried_attempt_is_stale(
    server: Server, http: aiohttp.ClientSession
) -> None:
    policy = {"maxAttempts": 3, "initialIntervalMs": 0}
    submitted = await submit(http, server, retryPolicy=policy)
    first = await claim(http, server)
    failed: dict[str, Any] = {"status": "failed", "value": OMIT, "error": "flaky"}
    assert_reply(await send_result(http, server, first, **failed), 200, APPLIED)
    await record_where(server.orchestrator, submitted["operationId"], lambda r: r.attempt == 2)
    reply = await send_result(http, server, first, **failed)  # the task is queued again
    assert_reply(reply, 403, refused(first, "stale-attempt"), FORBIDDEN)


async def test_result_of_a_task_resolved_under_another_token(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """LP-6: for a resolved record, ``attempt-token-mismatch`` when the token is not the one
    that resolved it."""
    policy = {"maxAttempts": 3, "initialIntervalMs": 0}
    await submit(http, server, retryPolicy=policy)
    first = await claim(http, server)
    failed: dict[str, Any] = {"status": "failed", "value": OMIT, "error": "flaky"}
    assert_reply(await send_result(http, server, first, **failed), 200, APPLIED)
    second = await claim(http, server)
    assert_reply(await send_result(http, server, second, value=2), 200, APPLIED)
    reply = await send_result(http, server, first, value=1)
    assert_reply(reply, 403, refused(first, "attempt-token-mismatch"), FORBIDDEN)
    beat = await send_heartbeat(http, server, first)
    assert_reply(beat, 403, HEARTBEAT_FORBIDDEN, FORBIDDEN)


async def test_result_the_ledger_cannot_store_is_503(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """LP-11: 503, so the worker keeps the result and sends it again."""
    store = FlakyStore()
    async with serving(fast_config(tmp_path), store=store) as server:
        await submit(http, server)
        task = await claim(http, server)
        store.broken = True
        reply = await send_result(http, server, task, value="kept")
        expected = {"error": "The task ledger is unavailable; send the result again"}
        assert_reply(reply, 503, expected)
        store.broken = False
        assert_reply(await send_result(http, server, task, value="kept"), 200, APPLIED)
        assert (await result_of(http, server, task["operationId"]))["value"] == "kept"


# -- result: 413 (HTTP-2, RESULT-9) ----------------------------------------------------------------


@pytest.mark.parametrize("tail", ["result", "heartbeat"])
async def test_request_body_over_one_mib_is_413(
    server: Server, http: aiohttp.ClientSession, tail: str
) -> None:
    url = f"{server.url}{API}/tasks/default/{tail}"
    exact = await call(http, "POST", url, data=padded_body(MIB))
    assert exact.status == 400, exact  # read and judged, not refused for its size
    reply = await call(http, "POST", url, data=padded_body(MIB + 1))
    assert_body_too_large(reply, MIB + 1)


async def test_result_value_over_the_limit_is_413_and_fails_the_task(
    limited: Server, http: aiohttp.ClientSession
) -> None:
    await submit(http, limited)
    task = await claim(http, limited)
    value = "x" * 100  # 102 bytes of JSON
    reply = await send_result(http, limited, task, value=value)
    expected = oversize("activity result", 102)
    assert_reply(reply, 413, expected, TOO_LARGE)
    result = await result_of(http, limited, task["operationId"])
    assert result == {
        "status": "failed",
        "error": expected["error"],
        "attempt": 1,
        "disposition": "failed",
    }


async def test_result_error_over_the_limit_is_413(
    limited: Server, http: aiohttp.ClientSession
) -> None:
    await submit(http, limited)
    task = await claim(http, limited)
    reply = await send_result(http, limited, task, status="failed", value=OMIT, error="e" * 63)
    expected = oversize("activity result", 65)
    assert_reply(reply, 413, expected, TOO_LARGE)
    result = await result_of(http, limited, task["operationId"])
    assert (result["status"], result["error"]) == ("failed", expected["error"])


async def test_result_value_at_the_limit_is_applied(
    limited: Server, http: aiohttp.ClientSession
) -> None:
    await submit(http, limited)
    task = await claim(http, limited)
    value = "x" * (LIMIT - 2)  # exactly 64 bytes of JSON
    assert_reply(await send_result(http, limited, task, value=value), 200, APPLIED)
    assert (await result_of(http, limited, task["operationId"]))["value"] == value


# -- heartbeat: LP-9 -------------------------------------------------------------------------------


NO_OPERATION = "Missing required field: operationId"
HEARTBEAT_400 = {  # id: (raw body, error text)
    "invalid-json": (b"{", "Invalid JSON body"),
    "empty": (b"", "Invalid JSON body"),
    "null": (b"null", "Invalid JSON body"),
    "no-operation": (b'{"attemptToken":"t"}', NO_OPERATION),
    "empty-operation": (b'{"operationId":"","attemptToken":"t"}', NO_OPERATION),
    "operation-number": (b'{"operationId":1,"attemptToken":"t"}', NO_OPERATION),
    "object": (b"{}", NO_OPERATION),
    "no-token": (b'{"operationId":"op"}', BAD_TOKEN),
    "empty-token": (b'{"operationId":"op","attemptToken":""}', BAD_TOKEN),
    "number-token": (b'{"operationId":"op","attemptToken":7}', BAD_TOKEN),
}  # fmt: skip


@pytest.mark.parametrize(("raw", "error"), list(HEARTBEAT_400.values()), ids=list(HEARTBEAT_400))
async def test_heartbeat_400_bodies(
    server: Server, http: aiohttp.ClientSession, raw: bytes, error: str
) -> None:
    url = f"{server.url}{API}/tasks/default/heartbeat"
    assert_reply(await call(http, "POST", url, data=raw), 400, {"error": error}, BAD_REQUEST)


async def test_heartbeat_renews_the_lease(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    clock = Clock()
    async with serving(fast_config(tmp_path), clock=clock) as server:
        submitted = await submit(http, server, visibilityTimeout=10_000)
        operation_id = submitted["operationId"]
        claimed_at = clock.now
        task = await claim(http, server)
        clock.now += 3000
        body = heartbeat_body(task, details={"progress": 0.5})
        HEARTBEAT_REQUEST.validate(body)
        url = f"{server.url}{API}/tasks/default/heartbeat"
        reply = await call(http, "POST", url, body=body)
        renewed = {"ok": True, "cancelled": False, "leaseDeadline": claimed_at + 13_000}
        assert_reply(reply, 200, renewed, HEARTBEAT_RESPONSE)
        record = await server.orchestrator.book.get(operation_id)
        assert record is not None
        assert record.lease_deadline == claimed_at + 13_000
        assert record.attempt_deadline == claimed_at + 60_000  # never extended
        assert record.last_heartbeat_details == {"progress": 0.5}
        clock.now += 1000
        again = await send_heartbeat(http, server, task)  # no details: the stored ones stay
        assert again.body == {**renewed, "leaseDeadline": claimed_at + 14_000}
        record = await server.orchestrator.book.get(operation_id)
        assert record is not None
        assert record.last_heartbeat_details == {"progress": 0.5}


async def test_heartbeat_fencing_failures_are_403(
    server: Server, http: aiohttp.ClientSession
) -> None:
    await submit(http, server)
    task = await claim(http, server)
    before = await server.orchestrator.book.get(task["operationId"])
    ghost = {**task, "operationId": "no-such-op"}
    for reply in (
        await send_heartbeat(http, server, ghost),
        await send_heartbeat(http, server, task, workerId="longpoll-00000000"),
        await send_heartbeat(http, server, task, workerId=OMIT),
        await send_heartbeat(http, server, task, attemptToken=str(uuid.uuid4())),
        await send_heartbeat(http, server, task, queue="other"),
    ):
        assert_reply(reply, 403, HEARTBEAT_FORBIDDEN, FORBIDDEN)
    assert await server.orchestrator.book.get(task["operationId"]) == before  # not renewed


@pytest.mark.parametrize("reason", ["operator said stop", None])
async def test_heartbeat_tells_of_a_cancellation(
    server: Server, http: aiohttp.ClientSession, reason: str | None
) -> None:
    await submit(http, server)
    task = await claim(http, server)
    base = f"{server.url}{API}/tasks/detail/{task['operationId']}"
    cancel_body = {} if reason is None else {"reason": reason}
    assert (await call(http, "POST", f"{base}/cancel", body=cancel_body)).status == 202
    before = await record_where(
        server.orchestrator, task["operationId"], lambda r: r.state == "cancelling"
    )
    reply = await send_heartbeat(http, server, task, details={"at": 1})
    expected = {"ok": True, "cancelled": True, "reason": reason or "Task cancelled"}
    assert_reply(reply, 200, expected, HEARTBEAT_RESPONSE)
    after = await server.orchestrator.book.get(task["operationId"])
    assert after == before  # CANCEL-5: a cancelling attempt's lease is not renewed
    reply = await send_result(http, server, task, status="cancelled", value=OMIT, error="stopped")
    assert_reply(reply, 200, APPLIED)
    assert_reply(await send_heartbeat(http, server, task), 200, RESOLVED, HEARTBEAT_RESPONSE)


async def test_heartbeat_after_the_result_is_a_no_op(
    server: Server, http: aiohttp.ClientSession
) -> None:
    await submit(http, server)
    task = await claim(http, server)
    assert_reply(await send_result(http, server, task, value=1), 200, APPLIED)
    reply = await send_heartbeat(http, server, task, details={"late": True})
    assert_reply(reply, 200, RESOLVED, HEARTBEAT_RESPONSE)
    record = await server.orchestrator.book.get(task["operationId"])
    assert record is not None
    assert record.last_heartbeat_details is NO_DETAILS
    other = await send_heartbeat(http, server, task, attemptToken=str(uuid.uuid4()))
    assert_reply(other, 403, HEARTBEAT_FORBIDDEN, FORBIDDEN)


async def test_heartbeat_details_over_the_limit_are_413_and_renew_nothing(
    limited: Server, http: aiohttp.ClientSession
) -> None:
    await submit(http, limited)
    task = await claim(http, limited)
    before = await limited.orchestrator.book.get(task["operationId"])
    reply = await send_heartbeat(http, limited, task, details="d" * 100)
    assert_reply(reply, 413, oversize("heartbeat details", 102), TOO_LARGE)
    assert await limited.orchestrator.book.get(task["operationId"]) == before
    small = await send_heartbeat(http, limited, task, details="ok")
    assert small.status == 200, small
    assert small.body["cancelled"] is False
    record = await limited.orchestrator.book.get(task["operationId"])
    assert record is not None
    assert record.last_heartbeat_details == "ok"


# -- start-up recovery (LP-2) ----------------------------------------------------------------------


async def test_long_poll_waits_for_recovery(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    store = GatedStore()
    async with serving(fast_config(tmp_path), store=store, ready=False) as server:
        pending = asyncio.create_task(poll(http, server, wait="0"))
        done, _ = await asyncio.wait({pending}, timeout=0.2)
        assert not done, "a poll is answered only once recovery has finished"
        store.release.set()
        assert_no_task(await asyncio.wait_for(pending, WAIT))


async def test_long_poll_is_503_when_recovery_failed(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with serving(fast_config(tmp_path), store=GatedStore(fail=True), ready=False) as server:
        assert await asyncio.wait_for(server.orchestrator.wait_ready(), WAIT) is False
        task = {"operationId": "op", "workerId": "longpoll-00000000", "attemptToken": "t"}
        for reply in (
            await poll(http, server, wait="0"),
            await send_result(http, server, task),
            await send_heartbeat(http, server, task),
            await call(http, "POST", f"{server.url}{API}/worker-sessions", body={}),
        ):
            assert reply.status == 503, reply
            assert reply.content_type == "application/json"
            assert "the disk is on fire" in reply.body["error"], reply.body
