"""Dispatch and leases on a real socket: routing, capacity, task frames, heartbeats, expiry.

protocol/README.md §8 (DISPATCH-1…6, LEASE-1…8), §9.2 (RESULT-5, RESULT-10),
§13 (API-3) and §5.1 (REG-13).  Short visibility timeouts (100 to 300 ms) and the
10 ms expiry scan of ``fast_config`` keep every lease test well under a second.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import pytest

from harness import RawWorker, Server, manifest, record_where, result_of, submit

QUIET = 0.3
"""How long to wait for a frame that must not come."""


async def nothing_for(worker: RawWorker, seconds: float = QUIET) -> None:
    """Assert the worker receives no frame for ``seconds``."""
    try:
        frame = await worker.recv(timeout=seconds)
    except TimeoutError:
        return
    pytest.fail(f"unexpected frame {frame}")


def activity_heartbeat(task: dict[str, Any], worker_id: str = "w1", **extra: Any) -> dict[str, Any]:
    return {
        "type": "activityHeartbeat",
        "workerId": worker_id,
        "operationId": task["operationId"],
        "attemptToken": task["attemptToken"],
        **extra,
    }


def rejected_heartbeat(operation_id: str, reason: str) -> dict[str, Any]:
    """LEASE-6: uncorrelated (no operationId/attemptToken keys)."""
    return {
        "type": "protocolError",
        "code": "invalid_message",
        "message": f'activityHeartbeat for operation "{operation_id}" rejected \u2014 {reason}',
    }


async def applied(worker: RawWorker, task: dict[str, Any], value: Any = None) -> None:
    """Complete ``task`` and expect the ``applied`` acknowledgement."""
    await worker.result(task, value)
    assert await worker.recv() == {
        "type": "taskResultAck",
        "operationId": task["operationId"],
        "attemptToken": task["attemptToken"],
        "disposition": "applied",
    }


# -- routing and capacity -----------------------------------------------------------------


async def test_least_loaded_with_ties_by_worker_id(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """DISPATCH-2: fewest attempts first; a tie goes to the lowest workerId — here the
    worker registered neither first nor last."""
    workers = {}
    for worker_id in ("w-b", "w-a", "w-c"):
        workers[worker_id] = RawWorker(http, server.ws_url(), worker_id)
        await workers[worker_id].register(concurrency=5)
    for expected in ("w-a", "w-b", "w-c", "w-a", "w-b", "w-c"):
        submitted = await submit(http, server)
        task = await workers[expected].recv_type("task")
        assert task["operationId"] == submitted["operationId"]
    for worker in workers.values():
        await nothing_for(worker, 0.05)


async def test_never_above_concurrency_and_freed_slot_gets_queued_work(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """REG-13, DISPATCH-1/2, RESULT-10: queued work is pushed on registration, never more
    than the effective concurrency, and the next task follows a freed slot."""
    operations = [(await submit(http, server))["operationId"] for _ in range(3)]
    worker = RawWorker(http, server.ws_url(), "w1")
    await worker.register(concurrency=2)
    first = [await worker.recv_type("task") for _ in range(2)]
    await nothing_for(worker)
    await applied(worker, first[0])
    third = await worker.recv_type("task")
    received = {t["operationId"] for t in [*first, third]}
    assert received == set(operations)
    assert third["attempt"] == 1


async def test_clamped_concurrency_is_enforced(server: Server, http: aiohttp.ClientSession) -> None:
    """REG-7, DISPATCH-2: ``concurrency: 0`` is one slot, and one slot is one attempt."""
    for _ in range(2):
        await submit(http, server)
    worker = RawWorker(http, server.ws_url(), "w1")
    assert (await worker.register(concurrency=0))["concurrency"] == 1
    await worker.recv_type("task")
    await nothing_for(worker)


async def test_only_workers_that_run_the_activity_get_it(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """DISPATCH-1, REG-13: routing names are ``workflow.activity`` from the manifest."""
    other = RawWorker(http, server.ws_url(), "w-a")
    await other.register(manifest_doc=manifest({"billing": ["charge"]}, deployment="billing"))
    worker = RawWorker(http, server.ws_url(), "w-b")
    await worker.register()
    submitted = await submit(http, server, activityName="wf.slow")
    assert (await worker.recv_type("task"))["operationId"] == submitted["operationId"]
    await nothing_for(other, 0.1)


# -- the task frame ---------------------------------------------------------------------------


async def test_task_frame_carries_what_the_task_has(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """DISPATCH-5/6: input ``null`` when absent, attempt, token, revision, headers and
    visibilityTimeout, in Treadle's key order; nothing the task does not have."""
    worker = RawWorker(http, server.ws_url(), "w1")
    await worker.register()
    submitted = await submit(
        http,
        server,
        workflowRevision="rev-7",
        headers={"traceparent": "00-abc-01", "x-tenant": "t1"},
        visibilityTimeout=250,
    )
    task = await worker.recv_type("task")
    assert task == {
        "type": "task",
        "operationId": submitted["operationId"],
        "activityName": "wf.echo",
        "input": None,
        "attempt": 1,
        "attemptToken": task["attemptToken"],
        "workflowRevision": "rev-7",
        "headers": {"traceparent": "00-abc-01", "x-tenant": "t1"},
        "visibilityTimeout": 250,
    }
    assert list(task) == [
        "type",
        "operationId",
        "activityName",
        "input",
        "attempt",
        "attemptToken",
        "workflowRevision",
        "headers",
        "visibilityTimeout",
    ]


@pytest.mark.parametrize(
    ("sent", "carried"),
    [(None, 30_000), (5, 10), (10, 10), (250, 250), (3_600_000, 3_600_000), (1e9, 3_600_000)],
)
async def test_visibility_timeout_is_clamped(
    sent: float | None, carried: int, server: Server, http: aiohttp.ClientSession
) -> None:
    """LEASE-1, API-3: default 30 000, clamped to [10, 3 600 000], in every task frame."""
    worker = RawWorker(http, server.ws_url(), "w1")
    await worker.register()
    body: dict[str, Any] = {} if sent is None else {"visibilityTimeout": sent}
    await submit(http, server, **body)
    assert (await worker.recv_type("task"))["visibilityTimeout"] == carried


async def test_lost_attempts_requeue_without_limit_under_fresh_tokens(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """DISPATCH-4/5, LEASE-7, API-3: with no retry policy an expired lease is requeued
    again and again, attempt + 1 each time, each under a new random UUID token."""
    worker = RawWorker(http, server.ws_url(), "w1")
    await worker.register()
    submitted = await submit(http, server, visibilityTimeout=100)
    tasks = [await worker.recv_type("task") for _ in range(4)]
    assert {t["operationId"] for t in tasks} == {submitted["operationId"]}
    assert [t["attempt"] for t in tasks] == [1, 2, 3, 4]
    tokens = [t["attemptToken"] for t in tasks]
    assert len(set(tokens)) == 4
    assert all(uuid.UUID(token).version == 4 for token in tokens)


# -- leases and heartbeats ------------------------------------------------------------------


async def test_activity_heartbeat_renews_the_lease(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """LEASE-2/3: an activity heartbeat moves the lease to now + vt; heartbeating every
    60 ms keeps a 300 ms lease alive well past its first deadline; stopping lets it expire."""
    worker = RawWorker(http, server.ws_url(), "w1")
    await worker.register()
    submitted = await submit(http, server, visibilityTimeout=300)
    op = submitted["operationId"]
    task = await worker.recv_type("task")
    leased = await server.orchestrator.get(op)
    assert leased.lease_deadline is not None
    assert leased.attempt_deadline == leased.lease_deadline + 5 * 300
    await nothing_for(worker, 0.06)
    await worker.send(activity_heartbeat(task))
    renewed = await record_where(
        server.orchestrator, op, lambda r: r.generation > leased.generation
    )
    assert (renewed.state, renewed.attempt_token) == ("leased", task["attemptToken"])
    assert renewed.lease_deadline is not None
    assert renewed.lease_deadline >= leased.lease_deadline + 50
    assert renewed.attempt_deadline == leased.attempt_deadline
    for _ in range(10):  # 600 ms: twice the lease
        await nothing_for(worker, 0.06)
        await worker.send(activity_heartbeat(task))
    still = await server.orchestrator.get(op)
    assert (still.state, still.attempt, still.attempt_token) == ("leased", 1, task["attemptToken"])
    again = await worker.recv_type("task")
    assert (again["attempt"], again["operationId"]) == (2, op)


async def test_attempt_deadline_is_absolute(server: Server, http: aiohttp.ClientSession) -> None:
    """LEASE-2, LEASE-3: heartbeats never carry a lease past now + 6 x vt from the claim;
    the attempt is taken back there even while it keeps heartbeating."""
    worker = RawWorker(http, server.ws_url(), "w1")
    await worker.register()
    submitted = await submit(http, server, visibilityTimeout=150)
    task = await worker.recv_type("task")
    leased = await server.orchestrator.get(submitted["operationId"])
    again: dict[str, Any] | None = None
    for _ in range(60):  # 40 ms apart: each heartbeat would keep a 150 ms lease alive
        await worker.send(activity_heartbeat(task))
        try:
            again = await worker.recv(timeout=0.04)
            break
        except TimeoutError:
            continue
    assert again is not None, "heartbeats kept the attempt past its attempt deadline"
    assert (again["type"], again["attempt"]) == ("task", 2)
    ended = server.orchestrator.clock()
    assert leased.attempt_deadline is not None
    assert ended >= leased.attempt_deadline, "taken back before the attempt deadline"


async def test_bare_heartbeat_renews_nothing(server: Server, http: aiohttp.ClientSession) -> None:
    """LEASE-4, LEASE-7, RESULT-3/4, CLOSE-4: with only session heartbeats the lease expires
    at its deadline (not the attempt deadline); the attempt is redispatched under a new
    token; the old token's late result is a correlated stale rejection; the socket stays."""
    worker = RawWorker(http, server.ws_url(), "w1")
    await worker.register()
    submitted = await submit(http, server, visibilityTimeout=300)
    op = submitted["operationId"]
    first = await worker.recv_type("task")
    loop = asyncio.get_running_loop()
    started = loop.time()
    second: dict[str, Any] | None = None
    for _ in range(40):
        await worker.send({"type": "heartbeat", "workerId": "w1"})
        try:
            second = await worker.recv(timeout=0.05)
            break
        except TimeoutError:
            continue
    assert second is not None, "the lease never expired"
    assert loop.time() - started < 4 * 0.3, "renewed by heartbeat: expired only at the end"
    assert second["type"] == "task"
    assert (second["operationId"], second["attempt"]) == (op, 2)
    assert second["attemptToken"] != first["attemptToken"]
    await worker.result(first, "late")
    assert await worker.recv() == {
        "type": "protocolError",
        "code": "invalid_message",
        "message": f'taskResult for operation "{op}" rejected \u2014 stale attempt token',
        "operationId": op,
        "attemptToken": first["attemptToken"],
    }
    await worker.send(activity_heartbeat(first))
    assert await worker.recv() == rejected_heartbeat(op, "stale attempt token")
    await applied(worker, second, "fresh")
    assert (await result_of(http, server, op))["value"] == "fresh"


@pytest.mark.parametrize("details", [{"step": 3, "of": [1, 2]}, None, "half"])
async def test_last_heartbeat_details_come_back_on_redispatch(
    details: Any, server: Server, http: aiohttp.ClientSession
) -> None:
    """LEASE-3, HB-3, DISPATCH-6, PARSE-11: details are stored (``null`` too) and a later
    heartbeat without details keeps them; the next attempt's frame carries them."""
    worker = RawWorker(http, server.ws_url(), "w1")
    await worker.register()
    submitted = await submit(http, server, visibilityTimeout=200)
    op = submitted["operationId"]
    task = await worker.recv_type("task")
    assert "lastHeartbeatDetails" not in task
    await worker.send(activity_heartbeat(task, details=details))
    stored = await record_where(
        server.orchestrator, op, lambda r: r.last_heartbeat_details == details
    )
    await worker.send(activity_heartbeat(task))
    await record_where(server.orchestrator, op, lambda r: r.generation > stored.generation)
    again = await worker.recv_type("task")
    assert again["attempt"] == 2
    assert "lastHeartbeatDetails" in again
    assert again["lastHeartbeatDetails"] == details


async def test_rejected_activity_heartbeats_do_not_close(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """LEASE-5, LEASE-6, CLOSE-4: unknown operation and wrong token are ``stale attempt
    token``; another worker's attempt is ``task not assigned to worker "W"`` with W the
    sender's id; all uncorrelated, none closes the socket or touches the lease."""
    holder = RawWorker(http, server.ws_url(), "w-a")
    await holder.register()
    other = RawWorker(http, server.ws_url(), "w-b")
    await other.register()
    submitted = await submit(http, server)
    op = submitted["operationId"]
    task = await holder.recv_type("task")
    before = await server.orchestrator.get(op)

    await holder.send(activity_heartbeat({"operationId": "nope", "attemptToken": "t"}, "w-a"))
    assert await holder.recv() == rejected_heartbeat("nope", "stale attempt token")
    await holder.send(activity_heartbeat({**task, "attemptToken": str(uuid.uuid4())}, "w-a"))
    assert await holder.recv() == rejected_heartbeat(op, "stale attempt token")
    # the workerId in the frame is not trusted: the socket's identity is (PARSE-6)
    await other.send(activity_heartbeat(task, "w-a"))
    assert await other.recv() == rejected_heartbeat(op, 'task not assigned to worker "w-b"')

    after = await server.orchestrator.get(op)
    assert after.lease_deadline == before.lease_deadline
    assert not holder.socket.closed
    assert not other.socket.closed
    await applied(holder, task)


# -- retries ------------------------------------------------------------------------------------


async def test_lease_expiry_past_max_attempts_is_retry_exhausted(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """LEASE-7, API-3, API-5: lost attempts count against ``maxAttempts``; past it the task
    ends ``retryExhausted`` with Weft's text."""
    worker = RawWorker(http, server.ws_url(), "w1")
    await worker.register()
    submitted = await submit(
        http,
        server,
        visibilityTimeout=100,
        retryPolicy={"maxAttempts": 2, "initialIntervalMs": 0},
    )
    op = submitted["operationId"]
    assert (await worker.recv_type("task"))["attempt"] == 1
    assert (await worker.recv_type("task"))["attempt"] == 2
    ended = await record_where(server.orchestrator, op, lambda r: r.state == "terminal")
    assert ended.disposition == "retryExhausted"
    assert ended.error == 'Activity "wf.echo" exhausted all 2 retry attempts'
    result = await result_of(http, server, op)
    assert result["disposition"] == "retryExhausted"
    assert result["error"] == 'Activity "wf.echo" exhausted all 2 retry attempts'
    assert result["attempt"] == 2
    await nothing_for(worker, 0.2)


async def test_failed_result_is_retried_under_a_policy(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """RESULT-5, API-3, LEASE-7: a failed result with attempts left is acknowledged and
    requeued after the policy's backoff as attempt + 1 under a new token; the last allowed
    attempt's failure is terminal ``failed`` with the worker's error."""
    worker = RawWorker(http, server.ws_url(), "w1")
    await worker.register()
    submitted = await submit(http, server, retryPolicy={"maxAttempts": 2, "initialIntervalMs": 300})
    op = submitted["operationId"]
    first = await worker.recv_type("task")
    await worker.result(first, status="failed", error="flaky")
    assert (await worker.recv_type("taskResultAck"))["disposition"] == "applied"
    queued = await server.orchestrator.get(op)
    assert (queued.state, queued.attempt) == ("queued", 2)
    await nothing_for(worker, 0.2)  # the 300 ms backoff
    second = await worker.recv_type("task")
    assert (second["operationId"], second["attempt"]) == (op, 2)
    assert second["attemptToken"] != first["attemptToken"]
    await worker.result(second, status="failed", error="flaky again")
    assert (await worker.recv_type("taskResultAck"))["disposition"] == "applied"
    result = await result_of(http, server, op)
    assert result == {
        "status": "failed",
        "attempt": 2,
        "error": "flaky again",
        "disposition": "failed",
    }


@pytest.mark.parametrize(
    "policy",
    [None, {"maxAttempts": 5, "initialIntervalMs": 0, "nonRetryableErrors": ["Fatal"]}],
    ids=["no-policy", "non-retryable"],
)
async def test_failed_result_is_terminal(
    policy: dict[str, Any] | None, server: Server, http: aiohttp.ClientSession
) -> None:
    """API-3, RESULT-5: without a policy (Weft's behaviour), or for an error the policy
    names as non-retryable, a failed result ends the task."""
    worker = RawWorker(http, server.ws_url(), "w1")
    await worker.register()
    body: dict[str, Any] = {} if policy is None else {"retryPolicy": policy}
    submitted = await submit(http, server, **body)
    task = await worker.recv_type("task")
    await worker.result(task, status="failed", error="Fatal")
    assert (await worker.recv_type("taskResultAck"))["disposition"] == "applied"
    result = await result_of(http, server, submitted["operationId"])
    assert result == {"status": "failed", "attempt": 1, "error": "Fatal", "disposition": "failed"}
    await nothing_for(worker, 0.2)
