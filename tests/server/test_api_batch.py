"""Batch submission (API-9): many tasks in one request and one transaction.

Over HTTP against a real orchestrator, and through the embedded
:meth:`Orchestrator.submit_requests`; every body is checked against
``task-api.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from test_api_tasks import API, ERROR, call

from harness import RawWorker, Server, fast_config, record_where, result_of
from treadle import Orchestrator
from treadle.errors import TaskExistsError
from treadle.submission import parse_submission
from treadle_protocol.schema import validator

BATCH_REQUEST = validator("task-api.json", "/$defs/batchSubmitRequest")
BATCH_RESPONSE = validator("task-api.json", "/$defs/batchSubmitResponse")


def batch_url(server: Server, queue: str = "default") -> str:
    return f"{server.url}{API}/queues/{queue}/tasks/batch"


def tasks(*ids: str, activity: str = "wf.echo") -> list[dict[str, Any]]:
    return [{"activityName": activity, "input": {"id": i}, "operationId": i} for i in ids]


async def test_a_batch_is_created_in_order_and_dispatched(
    server: Server, http: aiohttp.ClientSession
) -> None:
    body = {"tasks": [*tasks("b-1", "b-2"), {"activityName": "wf.echo", "input": 3}]}
    BATCH_REQUEST.validate(body)
    reply = await call(http, "POST", batch_url(server), body=body)
    assert reply.status == 201
    BATCH_RESPONSE.validate(reply.body)
    entries = reply.body["tasks"]
    assert [e["operationId"] for e in entries[:2]] == ["b-1", "b-2"]
    assert all(e["state"] == "queued" and e["created"] for e in entries)
    worker = RawWorker(http, server.ws_url())
    await worker.register(concurrency=3)
    seen = {}
    for _ in range(3):
        task = await worker.recv_type("task")
        seen[task["operationId"]] = task["input"]
        await worker.result(task, task["input"])
    assert seen == {"b-1": {"id": "b-1"}, "b-2": {"id": "b-2"}, entries[2]["operationId"]: 3}
    for entry in entries:
        assert (await result_of(http, server, entry["operationId"]))["status"] == "completed"


async def test_resubmitting_a_batch_is_idempotent(
    server: Server, http: aiohttp.ClientSession
) -> None:
    first = await call(http, "POST", batch_url(server), body={"tasks": tasks("i-1", "i-2")})
    assert first.status == 201
    again = await call(http, "POST", batch_url(server), body={"tasks": tasks("i-1", "i-2")})
    assert again.status == 200
    BATCH_RESPONSE.validate(again.body)
    assert [e["created"] for e in again.body["tasks"]] == [False, False]
    mixed = await call(http, "POST", batch_url(server), body={"tasks": tasks("i-2", "i-3")})
    assert mixed.status == 201
    assert [e["created"] for e in mixed.body["tasks"]] == [False, True]


async def test_a_conflict_refuses_the_whole_batch(
    server: Server, http: aiohttp.ClientSession
) -> None:
    await call(http, "POST", batch_url(server), body={"tasks": tasks("c-taken")})
    body = {"tasks": [*tasks("c-new"), {**tasks("c-taken")[0], "input": "different"}]}
    reply = await call(http, "POST", batch_url(server), body=body)
    assert reply.status == 409
    ERROR.validate(reply.body)
    assert reply.body["path"] == "/tasks/1/operationId"
    assert "c-taken" in reply.body["error"]
    missing = await call(http, "GET", f"{server.url}{API}/tasks/detail/c-new")
    assert missing.status == 404  # all or nothing


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        ([], "", "request body must be a JSON object"),
        ({"tasks": []}, "/tasks", "tasks must be an array of 1 to 1000 submissions"),
        ({"tasks": {}}, "/tasks", "tasks must be an array of 1 to 1000 submissions"),
        ({"tasks": [{"activityName": "x.y"}] * 1001}, "/tasks", None),
        ({"tasks": [{"activityName": "x.y"}], "extra": 1}, "/extra", "extra is not a known field"),
        (
            {"tasks": [{"activityName": "x.y"}, {"activityName": "nodot"}]},
            "/tasks/1/activityName",
            "activityName must be a qualified name, workflowType.activityName",
        ),
        ({"tasks": [{"activityName": "x.y", "bogus": 1}]}, "/tasks/0/bogus", None),
        ({"tasks": [5]}, "/tasks/0", "request body must be a JSON object"),
    ],
)
async def test_a_bad_submission_refuses_the_batch_with_its_path(
    server: Server, http: aiohttp.ClientSession, body: Any, path: str, message: str | None
) -> None:
    reply = await call(http, "POST", batch_url(server), body=body)
    assert reply.status == 400, reply
    ERROR.validate(reply.body)
    assert reply.body["path"] == path
    if message is not None:
        assert reply.body["error"] == message
    queues = await call(http, "GET", f"{server.url}{API}/task-queues")
    assert all(q["backlog"] == 0 for q in queues.body["queues"])


async def test_a_bad_queue_is_the_queue_error(server: Server, http: aiohttp.ClientSession) -> None:
    reply = await call(http, "POST", batch_url(server, "bad.queue"), body={"tasks": tasks("q")})
    assert reply.status == 400
    assert reply.body["path"] == "/queue"


async def test_the_embedded_orchestrator_takes_a_batch(tmp_path: Path) -> None:
    async with Orchestrator(fast_config(tmp_path)) as orch:
        requests = [parse_submission("default", body) for body in tasks("e-1", "e-2")]
        first = await orch.submit_requests(requests)
        assert [(s.record.operation_id, s.created) for s in first] == [
            ("e-1", True),
            ("e-2", True),
        ]
        again = await orch.submit_requests(requests)
        assert [s.created for s in again] == [False, False]
        conflicting = parse_submission("default", {**tasks("e-2")[0], "priority": 9})
        with pytest.raises(TaskExistsError) as caught:
            await orch.submit_requests([parse_submission("default", tasks("e-3")[0]), conflicting])
        assert caught.value.index == 1
        with pytest.raises(KeyError):
            await orch.get("e-3")
        assert len(orch.backlog) == 2


async def test_dispatch_latency_is_observed_per_delivered_task(
    server: Server, http: aiohttp.ClientSession
) -> None:
    worker = RawWorker(http, server.ws_url())
    await worker.register(concurrency=4)
    await call(http, "POST", batch_url(server), body={"tasks": tasks("l-1", "l-2", "l-3")})
    for _ in range(3):
        await worker.result(await worker.recv_type("task"), None)
    await record_where(server.orchestrator, "l-3", lambda r: r.state == "terminal")
    reply = await http.get(f"{server.url}/v1/metrics")
    text = await reply.text()
    assert "treadle_dispatch_latency_ms_count 3.0" in text
    assert 'treadle_dispatch_latency_ms_bucket{le="0.1"}' in text
