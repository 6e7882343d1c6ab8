"""Dispatch and leases over every transport: routing, capacity, the task, heartbeats, expiry.

protocol/README.md §8 (DISPATCH-1…6, LEASE-1…8), §9.2 (RESULT-5, RESULT-10),
§12 (LP-3, LP-4, LP-9, SESS-4) and §13 (API-3).  Each test drives a
:class:`workers.TestWorker` and runs over the WebSocket, worker sessions and
queue-scoped polls, or over the registered transports (``ws``, ``session``)
where it is about capacity or routing among registered workers.  Short
visibility timeouts (100 to 300 ms) and the 10 ms expiry scan keep every lease
test well under a second.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import aiohttp
import pytest
from workers import REGISTERED, TRANSPORTS, Transport, expect_refused, listed, make_worker

from harness import WAIT, Server, record_where, result_of, submit

TRANSPORT_NAME = {"ws": "websocket", "session": "long-poll"}
"""The ``transport`` of a worker in ``GET /api/v1/workers``."""


def rejected_heartbeat(operation_id: str, reason: str) -> dict[str, Any]:
    """LEASE-6 over a WebSocket: uncorrelated (no operationId/attemptToken keys)."""
    return {
        "type": "protocolError",
        "code": "invalid_message",
        "message": f'activityHeartbeat for operation "{operation_id}" rejected \u2014 {reason}',
    }


async def cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# -- routing and capacity -----------------------------------------------------------------


@pytest.mark.parametrize("transport", REGISTERED)
async def test_least_loaded_with_ties_by_worker_id(
    transport: Transport, server: Server, http: aiohttp.ClientSession
) -> None:
    """DISPATCH-2: fewest attempts first; a tie goes to the lowest workerId — over a
    WebSocket the worker registered neither first nor last; sessions get theirs from the
    server, so the order is whatever their ids sort to.  Every worker is waiting for work
    (a session has a poll parked) each time a task is submitted."""
    workers = [
        await make_worker(transport, http, server, worker_id=worker_id).start(concurrency=5)
        for worker_id in ("w-b", "w-a", "w-c")
    ]
    ordered = sorted(workers, key=lambda w: w.worker_id)
    polls = {worker: asyncio.create_task(worker.task()) for worker in workers}
    try:
        for round_ in range(3):
            for expected in ordered:
                for worker in workers:
                    if worker in polls:
                        await worker.ready()
                submitted = await submit(http, server)
                done, _ = await asyncio.wait(
                    polls.values(), timeout=WAIT, return_when=asyncio.FIRST_COMPLETED
                )
                assert done == {polls[expected]}, f"expected {expected.worker_id} to get it"
                task = polls.pop(expected).result()
                assert (task["operationId"], task["attempt"]) == (submitted["operationId"], 1)
                if round_ < 2:
                    polls[expected] = asyncio.create_task(expected.task())
    finally:
        await cancel_all(list(polls.values()))
    for worker in workers:
        await worker.no_task(0.05)
    for worker in workers:
        await worker.stop()


@pytest.mark.parametrize("transport", REGISTERED)
async def test_never_above_concurrency_and_freed_slot_gets_queued_work(
    transport: Transport, server: Server, http: aiohttp.ClientSession
) -> None:
    """REG-13, DISPATCH-1/2, RESULT-10: work queued before the worker came is handed to it,
    never more than its concurrency (a session's poll at capacity is answered "no task"),
    and the next task follows a freed slot.  ``GET /api/v1/workers`` shows the load."""
    operations = [(await submit(http, server))["operationId"] for _ in range(3)]
    worker = await make_worker(transport, http, server).start(concurrency=2)
    first = [await worker.task() for _ in range(2)]
    await worker.no_task()
    entry = await listed(http, server, worker.worker_id)
    assert (entry["transport"], entry["concurrency"], entry["inFlight"]) == (
        TRANSPORT_NAME[transport],
        2,
        2,
    )
    assert (await worker.result(first[0])).disposition == "applied"
    third = await worker.task()
    received = {t["operationId"] for t in [*first, third]}
    assert received == set(operations)
    assert third["attempt"] == 1
    await worker.stop()


@pytest.mark.parametrize("transport", REGISTERED)
async def test_commit_frees_the_slot_for_queued_work(
    transport: Transport, server: Server, http: aiohttp.ClientSession
) -> None:
    """RESULT-10: after the commit the slot is free and queued work goes to it."""
    worker = await make_worker(transport, http, server).start(concurrency=1)
    first = await submit(http, server)
    second = await submit(http, server)
    task = await worker.task()
    assert task["operationId"] == first["operationId"]
    await worker.no_task(0.1)
    assert (await worker.result(task)).disposition == "applied"
    follow = await worker.task()
    assert follow["operationId"] == second["operationId"]
    await record_where(server.orchestrator, second["operationId"], lambda r: r.state == "leased")
    await worker.stop()


@pytest.mark.parametrize("transport", REGISTERED)
async def test_queue_polls_get_only_what_registered_workers_cannot_take(
    transport: Transport, server: Server, http: aiohttp.ClientSession
) -> None:
    """§12.1: a parked queue-scoped poll, even the longest-waiting one, comes after every
    registered worker that can take the task; it gets the task once they are full."""
    poller = await make_worker("queue", http, server, worker_id="poller").start()
    worker = await make_worker(transport, http, server).start(concurrency=1)
    parked = asyncio.create_task(poller.task())
    waiting = asyncio.create_task(worker.task())
    try:
        await poller.ready()
        await worker.ready()
        first = await submit(http, server)
        assert (await waiting)["operationId"] == first["operationId"]
        second = await submit(http, server)  # the registered worker is full now
        claim = await parked
        assert claim["operationId"] == second["operationId"]
        assert re.fullmatch(r"longpoll-[0-9a-f]{8}", claim["workerId"]), claim
    finally:
        await cancel_all([parked, waiting])
    await worker.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_only_workers_that_run_the_activity_get_it(
    transport: Transport, server: Server, http: aiohttp.ClientSession
) -> None:
    """DISPATCH-1, REG-13, LP-1: routing names are ``workflow.activity`` (from the manifest,
    or the poll's ``activity`` list); a worker waiting first, with the lower id, for
    other activities is not handed it."""
    other = await make_worker(transport, http, server, worker_id="w-a").start(
        {"billing": ["charge"]}, deployment="billing"
    )
    worker = await make_worker(transport, http, server, worker_id="w-b").start()
    waiting = asyncio.create_task(other.no_task(0.3))
    await other.ready()
    submitted = await submit(http, server, activityName="wf.slow")
    await waiting
    assert (await worker.task())["operationId"] == submitted["operationId"]
    for each in (other, worker):
        await each.stop()


# -- the task ----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_task_carries_what_the_task_has(
    transport: Transport, server: Server, http: aiohttp.ClientSession
) -> None:
    """DISPATCH-4/5/6, LP-4: input ``null`` when absent, attempt, a UUID token, revision,
    headers and visibilityTimeout; nothing the task does not have.  The WebSocket frame is
    in Treadle's key order; an HTTP claim adds its ``workerId`` (the session's id, or a
    fresh ``longpoll-`` + 8 hex digits)."""
    worker = await make_worker(transport, http, server).start()
    submitted = await submit(
        http,
        server,
        workflowRevision="rev-7",
        headers={"traceparent": "00-abc-01", "x-tenant": "t1"},
        visibilityTimeout=250,
    )
    task = await worker.task()
    expected = {
        "operationId": submitted["operationId"],
        "activityName": "wf.echo",
        "input": None,
        "attempt": 1,
        "attemptToken": task["attemptToken"],
        "workflowRevision": "rev-7",
        "headers": {"traceparent": "00-abc-01", "x-tenant": "t1"},
        "visibilityTimeout": 250,
    }
    assert uuid.UUID(task["attemptToken"]).version == 4
    if transport == "ws":
        assert task == {"type": "task", **expected}
        assert list(task) == ["type", *expected]
    else:
        assert task == {**expected, "workerId": task["workerId"]}
        if transport == "session":
            assert task["workerId"] == worker.worker_id
        else:
            assert re.fullmatch(r"longpoll-[0-9a-f]{8}", task["workerId"]), task
    await worker.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("sent", "carried"),
    [(None, 30_000), (5, 10), (10, 10), (250, 250), (3_600_000, 3_600_000), (1e9, 3_600_000)],
)
async def test_visibility_timeout_is_clamped(
    transport: Transport,
    sent: float | None,
    carried: int,
    server: Server,
    http: aiohttp.ClientSession,
) -> None:
    """LEASE-1, API-3, LP-3: default 30 000, clamped to [10, 3 600 000], in every task."""
    worker = await make_worker(transport, http, server).start()
    body: dict[str, Any] = {} if sent is None else {"visibilityTimeout": sent}
    await submit(http, server, **body)
    assert (await worker.task())["visibilityTimeout"] == carried
    await worker.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_lost_attempts_requeue_without_limit_under_fresh_tokens(
    transport: Transport, server: Server, http: aiohttp.ClientSession
) -> None:
    """DISPATCH-4/5, LEASE-7, API-3, LP-3: with no retry policy an expired lease is requeued
    again and again, attempt + 1 each time, each under a new random UUID token (and, for
    queue-scoped polls, a new per-claim workerId)."""
    worker = await make_worker(transport, http, server).start()
    submitted = await submit(http, server, visibilityTimeout=100)
    tasks = [await worker.task() for _ in range(4)]
    assert {t["operationId"] for t in tasks} == {submitted["operationId"]}
    assert [t["attempt"] for t in tasks] == [1, 2, 3, 4]
    tokens = [t["attemptToken"] for t in tasks]
    assert len(set(tokens)) == 4
    assert all(uuid.UUID(token).version == 4 for token in tokens)
    if transport == "queue":
        assert len({t["workerId"] for t in tasks}) == 4
    await worker.stop()


# -- leases and heartbeats ------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_activity_heartbeat_renews_the_lease(
    transport: Transport, server: Server, http: aiohttp.ClientSession
) -> None:
    """LEASE-2/3, LP-9: an activity heartbeat moves the lease to now + vt (an HTTP answer
    says where to); heartbeating every 60 ms keeps a 300 ms lease alive well past its first
    deadline; stopping lets it expire."""
    worker = await make_worker(transport, http, server).start()
    submitted = await submit(http, server, visibilityTimeout=300)
    op = submitted["operationId"]
    task = await worker.task()
    leased = await server.orchestrator.get(op)
    assert leased.lease_deadline is not None
    assert leased.attempt_deadline == leased.lease_deadline + 5 * 300
    await worker.no_task(0.06)
    reply = await worker.heartbeat(task)
    renewed = await record_where(
        server.orchestrator, op, lambda r: r.generation > leased.generation
    )
    assert (renewed.state, renewed.attempt_token) == ("leased", task["attemptToken"])
    assert renewed.lease_deadline is not None
    assert renewed.lease_deadline >= leased.lease_deadline + 50
    assert renewed.attempt_deadline == leased.attempt_deadline
    if transport != "ws":
        assert reply == {"ok": True, "cancelled": False, "leaseDeadline": renewed.lease_deadline}
    for _ in range(10):  # 600 ms: twice the lease
        await worker.no_task(0.06)
        await worker.heartbeat(task)
    still = await server.orchestrator.get(op)
    assert (still.state, still.attempt, still.attempt_token) == ("leased", 1, task["attemptToken"])
    again = await worker.task()
    assert (again["attempt"], again["operationId"]) == (2, op)
    await worker.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_attempt_deadline_is_absolute(
    transport: Transport, server: Server, http: aiohttp.ClientSession
) -> None:
    """LEASE-2, LEASE-3: heartbeats never carry a lease past claim + 6 x vt (no HTTP answer
    names a later deadline); the attempt is taken back there even while it keeps
    heartbeating."""
    worker = await make_worker(transport, http, server).start()
    submitted = await submit(http, server, visibilityTimeout=150)
    task = await worker.task()
    leased = await server.orchestrator.get(submitted["operationId"])
    assert leased.attempt_deadline is not None
    again: dict[str, Any] | None = None
    for _ in range(60):  # 40 ms apart: each heartbeat would keep a 150 ms lease alive
        reply = await worker.heartbeat(task, expect=None)
        if reply is not None and "leaseDeadline" in reply:
            assert reply["leaseDeadline"] <= leased.attempt_deadline, reply
        try:
            again = await worker.task(0.04)
            break
        except TimeoutError:
            continue
    assert again is not None, "heartbeats kept the attempt past its attempt deadline"
    assert again["attempt"] == 2
    ended = server.orchestrator.clock()
    assert ended >= leased.attempt_deadline, "taken back before the attempt deadline"
    await worker.stop()


@pytest.mark.parametrize("transport", REGISTERED)
async def test_session_heartbeat_renews_nothing(
    transport: Transport, server: Server, http: aiohttp.ClientSession
) -> None:
    """LEASE-4, LEASE-7, RESULT-3/4, SESS-4, CLOSE-4: with only session heartbeats (a bare
    ``heartbeat`` frame, a session heartbeat call) the lease expires at its deadline, not
    the attempt deadline; the attempt is redispatched under a new token; the old token's
    late result and heartbeat are refused; the worker carries on."""
    worker = await make_worker(transport, http, server).start()
    submitted = await submit(http, server, visibilityTimeout=300)
    op = submitted["operationId"]
    first = await worker.task()
    loop = asyncio.get_running_loop()
    started = loop.time()
    second: dict[str, Any] | None = None
    for _ in range(40):
        await worker.ping()
        try:
            second = await worker.task(0.05)
            break
        except TimeoutError:
            continue
    assert second is not None, "the lease never expired"
    assert loop.time() - started < 4 * 0.3, "renewed by heartbeat: expired only at the end"
    assert (second["operationId"], second["attempt"]) == (op, 2)
    assert second["attemptToken"] != first["attemptToken"]
    late = await worker.result(first, "late")
    expect_refused(
        worker,
        late,
        op,
        first["attemptToken"],
        ws="stale attempt token",
        http="attempt-token-mismatch",
    )
    reply = await worker.heartbeat(first, expect=403)
    if transport == "ws":
        assert await worker.notice() == rejected_heartbeat(op, "stale attempt token")
    else:
        assert reply == {"error": "Forbidden"}
    assert (await worker.result(second, "fresh")).disposition == "applied"
    assert (await result_of(http, server, op))["value"] == "fresh"
    await worker.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("details", [{"step": 3, "of": [1, 2]}, None, "half"])
async def test_last_heartbeat_details_come_back_on_redispatch(
    transport: Transport, details: Any, server: Server, http: aiohttp.ClientSession
) -> None:
    """LEASE-3, HB-3, DISPATCH-6, PARSE-11, LP-4: details are stored (``null`` too) and a
    later heartbeat without details keeps them; the next attempt carries them."""
    worker = await make_worker(transport, http, server).start()
    submitted = await submit(http, server, visibilityTimeout=200)
    op = submitted["operationId"]
    task = await worker.task()
    assert "lastHeartbeatDetails" not in task
    await worker.heartbeat(task, details)
    stored = await record_where(
        server.orchestrator, op, lambda r: r.last_heartbeat_details == details
    )
    await worker.heartbeat(task)
    await record_where(server.orchestrator, op, lambda r: r.generation > stored.generation)
    again = await worker.task()
    assert again["attempt"] == 2
    assert "lastHeartbeatDetails" in again
    assert again["lastHeartbeatDetails"] == details
    await worker.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_rejected_activity_heartbeats_change_nothing(
    transport: Transport, server: Server, http: aiohttp.ClientSession
) -> None:
    """LEASE-5, LEASE-6, LP-9, CLOSE-4: a heartbeat for an unknown operation, with a wrong
    token, or from a worker that does not hold the attempt is refused — over a WebSocket
    with an uncorrelated non-closing ``protocolError`` (``stale attempt token``, or
    ``task not assigned to worker "W"`` with W the *sender*: the frame's workerId is not
    trusted), over HTTP with 403 ``{"error": "Forbidden"}`` (a session's body workerId is
    not trusted either) — and none touches the lease; the holder then finishes."""
    holder = await make_worker(transport, http, server, worker_id="w-a").start()
    other = await make_worker(transport, http, server, worker_id="w-b").start()
    submitted = await submit(http, server)
    op = submitted["operationId"]
    task = await holder.task()
    as_holder = task.get("workerId", holder.worker_id)
    before = await server.orchestrator.get(op)

    refused = [
        await holder.heartbeat({"operationId": "nope", "attemptToken": "t"}, expect=403),
        await holder.heartbeat(
            {**task, "attemptToken": str(uuid.uuid4())}, worker_id=as_holder, expect=403
        ),
    ]
    if transport == "queue":  # no identity but the claim: another worker names another
        refused.append(await other.heartbeat(task, expect=403))
    else:  # the sender's identity is its socket or session, whatever the body says
        refused.append(await other.heartbeat(task, worker_id=as_holder, expect=403))
    if transport == "ws":
        assert await holder.notice() == rejected_heartbeat("nope", "stale attempt token")
        assert await holder.notice() == rejected_heartbeat(op, "stale attempt token")
        assert await other.notice() == rejected_heartbeat(op, 'task not assigned to worker "w-b"')
    else:
        assert refused == [{"error": "Forbidden"}] * 3

    after = await server.orchestrator.get(op)
    assert after.lease_deadline == before.lease_deadline
    assert holder.connected
    assert other.connected
    assert (await holder.result(task)).disposition == "applied"
    for each in (holder, other):
        await each.stop()


# -- retries ------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_lease_expiry_past_max_attempts_is_retry_exhausted(
    transport: Transport, server: Server, http: aiohttp.ClientSession
) -> None:
    """LEASE-7, API-3, API-5: lost attempts count against ``maxAttempts``; past it the task
    ends ``retryExhausted`` with Weft's text and is never handed out again."""
    worker = await make_worker(transport, http, server).start()
    submitted = await submit(
        http,
        server,
        visibilityTimeout=100,
        retryPolicy={"maxAttempts": 2, "initialIntervalMs": 0},
    )
    op = submitted["operationId"]
    assert (await worker.task())["attempt"] == 1
    assert (await worker.task())["attempt"] == 2
    ended = await record_where(server.orchestrator, op, lambda r: r.state == "terminal")
    assert ended.disposition == "retryExhausted"
    assert ended.error == 'Activity "wf.echo" exhausted all 2 retry attempts'
    result = await result_of(http, server, op)
    assert result["disposition"] == "retryExhausted"
    assert result["error"] == 'Activity "wf.echo" exhausted all 2 retry attempts'
    assert result["attempt"] == 2
    await worker.no_task(0.2)
    await worker.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_failed_result_is_retried_under_a_policy(
    transport: Transport, server: Server, http: aiohttp.ClientSession
) -> None:
    """RESULT-5, API-3, LEASE-7: a failed result with attempts left is acknowledged and
    requeued after the policy's backoff as attempt + 1 under a new token; the last allowed
    attempt's failure is terminal ``failed`` with the worker's error."""
    worker = await make_worker(transport, http, server).start()
    submitted = await submit(http, server, retryPolicy={"maxAttempts": 2, "initialIntervalMs": 300})
    op = submitted["operationId"]
    first = await worker.task()
    outcome = await worker.result(first, status="failed", error="flaky")
    assert outcome.disposition == "applied"
    queued = await server.orchestrator.get(op)
    assert (queued.state, queued.attempt) == ("queued", 2)
    await worker.no_task(0.2)  # the 300 ms backoff
    second = await worker.task()
    assert (second["operationId"], second["attempt"]) == (op, 2)
    assert second["attemptToken"] != first["attemptToken"]
    outcome = await worker.result(second, status="failed", error="flaky again")
    assert outcome.disposition == "applied"
    result = await result_of(http, server, op)
    assert result == {
        "status": "failed",
        "attempt": 2,
        "error": "flaky again",
        "disposition": "failed",
    }
    await worker.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "policy",
    [None, {"maxAttempts": 5, "initialIntervalMs": 0, "nonRetryableErrors": ["Fatal"]}],
    ids=["no-policy", "non-retryable"],
)
async def test_failed_result_is_terminal(
    transport: Transport,
    policy: dict[str, Any] | None,
    server: Server,
    http: aiohttp.ClientSession,
) -> None:
    """API-3, RESULT-5: without a policy (Weft's behaviour), or for an error the policy
    names as non-retryable, a failed result ends the task."""
    worker = await make_worker(transport, http, server).start()
    body: dict[str, Any] = {} if policy is None else {"retryPolicy": policy}
    submitted = await submit(http, server, **body)
    task = await worker.task()
    assert (await worker.result(task, status="failed", error="Fatal")).disposition == "applied"
    result = await result_of(http, server, submitted["operationId"])
    assert result == {"status": "failed", "attempt": 1, "error": "Fatal", "disposition": "failed"}
    await worker.no_task(0.2)
    await worker.stop()
