"""The Task API over HTTP (protocol/README.md §13, API-1…API-8, HTTP-1, HTTP-2).

Submit, read, await and cancel tasks against a real orchestrator; every body
is checked against ``task-api.json`` as well as by value.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from yarl import URL

from harness import RawWorker, Server, record_where, result_of, submit
from treadle_protocol.schema import validator

API = "/api/v1"
MIB = 1024 * 1024


def _schema(name: str) -> Any:
    return validator("task-api.json", f"/$defs/{name}")


SUBMIT_REQUEST = _schema("submitRequest")
SUBMIT_RESPONSE = _schema("submitResponse")
TASK_DETAIL = _schema("taskDetail")
TASK_RESULT = _schema("taskResult")
CANCEL_RESPONSE = _schema("cancelResponse")
ERROR = _schema("error")
TOO_LARGE = validator("longpoll-queue.json", "/$defs/payloadTooLarge")


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any
    content_type: str


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str | URL,
    *,
    body: Any = None,
    data: bytes | None = None,
) -> Reply:
    """One request; ``body`` is sent as JSON, ``data`` as raw bytes.  Empty reply → ``None``."""
    kwargs: dict[str, Any] = {}
    if data is not None:
        kwargs["data"] = io.BytesIO(data)  # large raw bytes would warn
        kwargs["headers"] = {"Content-Type": "application/json"}
    elif body is not None:
        kwargs["json"] = body
    async with http.request(method, url, **kwargs) as response:
        raw = await response.read()
        return Reply(response.status, json.loads(raw) if raw else None, response.content_type)


def assert_error(reply: Reply, status: int, path: str, message: str | None = None) -> None:
    """An API-4 error body: ``{error, path}`` with the given status and path."""
    assert reply.status == status, reply
    assert reply.content_type == "application/json"
    ERROR.validate(reply.body)
    assert reply.body["path"] == path, reply.body
    assert reply.body["error"], reply.body
    if message is not None:
        assert reply.body["error"] == message


async def complete(
    http: aiohttp.ClientSession, server: Server, value: Any, **body: Any
) -> tuple[str, RawWorker]:
    """Submit one task, run it on a fresh worker, finish it with ``value``."""
    worker = RawWorker(http, server.ws_url())
    await worker.register()
    submitted = await submit(http, server, **body)
    task = await worker.recv_type("task")
    await worker.result(task, value)
    assert (await worker.recv_type("taskResultAck"))["disposition"] == "applied"
    return submitted["operationId"], worker


# -- submit ---------------------------------------------------------------------------------


async def test_submit_without_operation_id_gets_a_uuid(
    server: Server, http: aiohttp.ClientSession
) -> None:
    body = {"activityName": "wf.echo", "input": {"n": 1}}
    reply = await call(http, "POST", f"{server.url}{API}/queues/default/tasks", body=body)
    assert reply.status == 201
    assert reply.content_type == "application/json"
    SUBMIT_RESPONSE.validate(reply.body)
    assert set(reply.body) == {"operationId", "state"}
    assert reply.body["state"] == "queued"
    assert str(uuid.UUID(reply.body["operationId"])) == reply.body["operationId"]
    again = await submit(http, server)
    assert again["operationId"] != reply.body["operationId"]


async def test_submit_every_field(server: Server, http: aiohttp.ClientSession) -> None:
    body = {
        "activityName": "wf.echo",
        "input": [1, "two", None, {"x": 1.5}],
        "operationId": "op-all-fields",
        "visibilityTimeout": 5000,
        "retryPolicy": {
            "maxAttempts": 3,
            "initialIntervalMs": 10,
            "backoffCoefficient": 2,
            "maxIntervalMs": 100,
            "nonRetryableErrors": ["Fatal"],
        },
        "priority": -4,
        "headers": {"trace": "abc"},
        "workflowRevision": "r1",
    }
    SUBMIT_REQUEST.validate(body)
    reply = await call(http, "POST", f"{server.url}{API}/queues/q_1-x/tasks", body=body)
    assert (reply.status, reply.body) == (201, {"operationId": "op-all-fields", "state": "queued"})
    detail = await call(http, "GET", f"{server.url}{API}/tasks/detail/op-all-fields")
    assert detail.status == 200
    assert detail.body == {
        "operationId": "op-all-fields",
        "state": "queued",
        "attempt": 1,
        "queue": "q_1-x",
        "activityName": "wf.echo",
    }


async def test_same_operation_id_same_body_is_idempotent(
    server: Server, http: aiohttp.ClientSession
) -> None:
    url = f"{server.url}{API}/queues/default/tasks"
    first = b'{"activityName":"wf.echo","operationId":"op-idem","input":{"a":1,"b":[1,2]}}'
    reordered = (
        b'{ "input" : { "b" : [ 1 , 2 ] , "a" : 1 } ,\n'
        b' "operationId":"op-idem",\t"activityName":"wf.echo" }'
    )
    created = await call(http, "POST", url, data=first)
    assert (created.status, created.body) == (201, {"operationId": "op-idem", "state": "queued"})
    for _ in range(2):
        again = await call(http, "POST", url, data=reordered)
        assert (again.status, again.body) == (200, {"operationId": "op-idem", "state": "queued"})
        SUBMIT_RESPONSE.validate(again.body)
    queues = await call(http, "GET", f"{server.url}{API}/task-queues")
    assert queues.body["queues"][0]["backlog"] == 1  # one task, not three


@pytest.mark.parametrize(
    ("queue", "change"),
    [
        pytest.param("default", {"input": 2}, id="input"),
        pytest.param("default", {"activityName": "wf.slow"}, id="activity"),
        pytest.param("default", {"priority": 1}, id="priority"),
        pytest.param("default", {"headers": {"h": "v"}}, id="headers"),
        pytest.param("other", {}, id="queue"),
    ],
)
async def test_same_operation_id_different_body_is_409(
    server: Server, http: aiohttp.ClientSession, queue: str, change: dict[str, Any]
) -> None:
    await submit(http, server, operationId="op-conflict", input=1)
    body = {"activityName": "wf.echo", "operationId": "op-conflict", "input": 1, **change}
    reply = await call(http, "POST", f"{server.url}{API}/queues/{queue}/tasks", body=body)
    assert_error(reply, 409, "/operationId")
    detail = await call(http, "GET", f"{server.url}{API}/tasks/detail/op-conflict")
    assert (detail.body["queue"], detail.body["activityName"]) == ("default", "wf.echo")


ECHO = '{"activityName":"wf.echo"'
POLICY = ECHO + ',"retryPolicy":'
BAD_BODIES = {  # id: (raw body, path of the offending member)
    "array": ("[]", ""),
    "string": ('"text"', ""),
    "null": ("null", ""),
    "empty": ("", ""),
    "activity-missing": ('{"input":1}', "/activityName"),
    "activity-unqualified": ('{"activityName":"echo"}', "/activityName"),
    "activity-empty-name": ('{"activityName":"wf."}', "/activityName"),
    "activity-empty-type": ('{"activityName":".echo"}', "/activityName"),
    "activity-digit": ('{"activityName":"1wf.echo"}', "/activityName"),
    "activity-two-dots": ('{"activityName":"wf.a.b"}', "/activityName"),
    "activity-number": ('{"activityName":5}', "/activityName"),
    "unknown-field": (ECHO + ',"bogus":1}', "/bogus"),
    "op-empty": (ECHO + ',"operationId":""}', "/operationId"),
    "op-dot": (ECHO + ',"operationId":"."}', "/operationId"),
    "op-dotdot": (ECHO + ',"operationId":".."}', "/operationId"),
    "op-number": (ECHO + ',"operationId":7}', "/operationId"),
    "op-too-long": (ECHO + ',"operationId":"' + "x" * 513 + '"}', "/operationId"),
    "revision-empty": (ECHO + ',"workflowRevision":""}', "/workflowRevision"),
    "priority-fraction": (ECHO + ',"priority":1.5}', "/priority"),
    "priority-string": (ECHO + ',"priority":"1"}', "/priority"),
    "priority-bool": (ECHO + ',"priority":true}', "/priority"),
    "priority-null": (ECHO + ',"priority":null}', "/priority"),
    "vt-string": (ECHO + ',"visibilityTimeout":"1s"}', "/visibilityTimeout"),
    "headers-array": (ECHO + ',"headers":[]}', "/headers"),
    "header-number": (ECHO + ',"headers":{"a":"x","b":1}}', "/headers/b"),
    "header-null": (ECHO + ',"headers":{"n":null}}', "/headers/n"),
    "policy-array": (POLICY + "[]}", "/retryPolicy"),
    "attempts-0": (POLICY + '{"maxAttempts":0}}', "/retryPolicy/maxAttempts"),
    "attempts-fraction": (POLICY + '{"maxAttempts":1.5}}', "/retryPolicy/maxAttempts"),
    "initial-negative": (POLICY + '{"initialIntervalMs":-1}}', "/retryPolicy/initialIntervalMs"),
    "coefficient-low": (POLICY + '{"backoffCoefficient":0.5}}', "/retryPolicy/backoffCoefficient"),
    "max-interval-string": (POLICY + '{"maxIntervalMs":"1"}}', "/retryPolicy/maxIntervalMs"),
    "non-retryable": (POLICY + '{"nonRetryableErrors":[1]}}', "/retryPolicy/nonRetryableErrors"),
    "policy-unknown": (POLICY + '{"jitter":1}}', "/retryPolicy/jitter"),
}


@pytest.mark.parametrize(("raw", "path"), list(BAD_BODIES.values()), ids=list(BAD_BODIES))
async def test_bad_submission_is_400_with_path(
    server: Server, http: aiohttp.ClientSession, raw: str, path: str
) -> None:
    if raw and "operationId" not in raw:  # outside the published schema too
        assert not SUBMIT_REQUEST.is_valid(json.loads(raw))
    reply = await call(http, "POST", f"{server.url}{API}/queues/default/tasks", data=raw.encode())
    assert_error(reply, 400, path)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("{", id="truncated"),
        pytest.param("{'activityName': 'wf.echo'}", id="single-quotes"),
        pytest.param(ECHO + ',"input":NaN}', id="nan-literal"),
        pytest.param(ECHO + ',"input":Infinity}', id="infinity-literal"),
        pytest.param(ECHO + "} trailing", id="trailing-garbage"),
    ],
)
async def test_invalid_json_is_400(server: Server, http: aiohttp.ClientSession, raw: str) -> None:
    reply = await call(http, "POST", f"{server.url}{API}/queues/default/tasks", data=raw.encode())
    assert_error(reply, 400, "", "Invalid JSON body")


@pytest.mark.parametrize("queue", ["bad.queue", "caf%C3%A9", "a%20b", "q%0A", "a:b"])
async def test_invalid_queue_in_path_is_400(
    server: Server, http: aiohttp.ClientSession, queue: str
) -> None:
    url = f"{server.url}{API}/queues/{queue}/tasks"
    reply = await call(http, "POST", url, body={"activityName": "wf.echo"})
    assert_error(reply, 400, "/queue")


async def test_body_over_one_mib_is_413(server: Server, http: aiohttp.ClientSession) -> None:
    url = f"{server.url}{API}/queues/default/tasks"
    prefix, suffix = b'{"activityName":"wf.echo","input":"', b'"}'
    padding = MIB - len(prefix) - len(suffix)
    exact = prefix + b"x" * padding + suffix
    assert len(exact) == MIB
    accepted = await call(http, "POST", url, data=exact)
    assert accepted.status == 201, accepted
    over = prefix + b"x" * (padding + 1) + suffix
    reply = await call(http, "POST", url, data=over)
    assert reply.status == 413
    assert reply.content_type == "application/json"
    TOO_LARGE.validate(reply.body)
    assert reply.body["code"] == "payload_too_large"
    assert reply.body["maxBytes"] == MIB
    assert reply.body["serializedBytes"] == MIB + 1
    assert reply.body["payloadKind"] == "request-body"
    assert reply.body["error"]

    async def chunks() -> Any:  # no Content-Length: counted while read
        yield prefix
        for _ in range(17):
            yield b"x" * 65536
        yield suffix

    async with http.post(url, data=chunks()) as response:
        assert response.status == 413
        body = await response.json()
    TOO_LARGE.validate(body)
    assert body["maxBytes"] == MIB
    assert body["serializedBytes"] > MIB


# -- detail and result ----------------------------------------------------------------------


async def test_detail_of_a_completed_task_which_cannot_be_cancelled(
    server: Server, http: aiohttp.ClientSession
) -> None:
    operation_id, worker = await complete(http, server, {"ok": [1, 2]}, operationId="op-done")
    reply = await call(http, "GET", f"{server.url}{API}/tasks/detail/{operation_id}")
    assert reply.status == 200
    TASK_DETAIL.validate(reply.body)
    assert reply.body == {
        "operationId": operation_id,
        "state": "terminal",
        "attempt": 1,
        "queue": "default",
        "activityName": "wf.echo",
        "disposition": "completed",
        "status": "completed",
        "value": {"ok": [1, 2]},
    }
    base = f"{server.url}{API}/tasks/detail/{operation_id}"
    too_late = await call(http, "POST", f"{base}/cancel", body={"reason": "too late"})
    assert (too_late.status, too_late.body) == (202, {"recorded": False})  # API-7
    assert (await call(http, "GET", base)).body == reply.body
    again = await submit(http, server, operationId="op-done")  # API-2: the current state
    assert again == {"operationId": "op-done", "state": "terminal"}
    await worker.close()


async def test_failed_task_detail_and_result(server: Server, http: aiohttp.ClientSession) -> None:
    worker = RawWorker(http, server.ws_url())
    await worker.register()
    submitted = await submit(http, server, activityName="wf.fail")
    task = await worker.recv_type("task")
    await worker.result(task, None, status="failed", error="ValueError: boom")
    assert (await worker.recv_type("taskResultAck"))["disposition"] == "applied"
    operation_id = submitted["operationId"]
    result = await result_of(http, server, operation_id)
    TASK_RESULT.validate(result)
    failed = {"status": "failed", "error": "ValueError: boom", "attempt": 1}
    assert result == {**failed, "disposition": "failed"}
    detail = await call(http, "GET", f"{server.url}{API}/tasks/detail/{operation_id}")
    TASK_DETAIL.validate(detail.body)
    assert detail.body["error"] == "ValueError: boom"
    assert (detail.body["status"], detail.body["disposition"]) == ("failed", "failed")
    assert "value" not in detail.body
    await worker.close()


@pytest.mark.parametrize(
    ("method", "tail"), [("GET", ""), ("GET", "/result?timeout=10"), ("GET", "/result"),
                         ("POST", "/cancel")]
)  # fmt: skip
async def test_unknown_task_is_404(
    server: Server, http: aiohttp.ClientSession, method: str, tail: str
) -> None:
    reply = await call(http, method, f"{server.url}{API}/tasks/detail/no-such-op{tail}")
    assert reply.status == 404
    ERROR.validate(reply.body)


async def test_result_is_204_while_running_then_200(
    server: Server, http: aiohttp.ClientSession
) -> None:
    submitted = await submit(http, server, input=7)
    operation_id = submitted["operationId"]
    url = f"{server.url}{API}/tasks/detail/{operation_id}/result"
    queued = await call(http, "GET", f"{url}?timeout=50")
    assert (queued.status, queued.body) == (204, None)
    worker = RawWorker(http, server.ws_url())
    await worker.register()
    task = await worker.recv_type("task")
    leased = await call(http, "GET", f"{url}?timeout=0")
    assert (leased.status, leased.body) == (204, None)
    waiting = asyncio.create_task(call(http, "GET", f"{url}?timeout=10000"))
    done, _ = await asyncio.wait({waiting}, timeout=0.05)
    assert not done, "the result request must wait for the task to end"
    await worker.result(task, {"out": 8})
    reply = await asyncio.wait_for(waiting, 5)
    assert reply.status == 200
    TASK_RESULT.validate(reply.body)
    completed = {"status": "completed", "value": {"out": 8}, "attempt": 1}
    assert reply.body == {**completed, "disposition": "completed"}
    await worker.close()


@pytest.mark.parametrize("wait", ["abc", "", "NaN", "inf", "-Infinity", "10ms"])
async def test_result_bad_timeout_is_400(
    server: Server, http: aiohttp.ClientSession, wait: str
) -> None:
    submitted = await submit(http, server)
    url = f"{server.url}{API}/tasks/detail/{submitted['operationId']}/result?timeout={wait}"
    assert_error(await call(http, "GET", url), 400, "/timeout")


# -- cancel ---------------------------------------------------------------------------------


async def test_cancel_a_queued_task(server: Server, http: aiohttp.ClientSession) -> None:
    submitted = await submit(http, server)
    operation_id = submitted["operationId"]
    base = f"{server.url}{API}/tasks/detail/{operation_id}"
    reply = await call(http, "POST", f"{base}/cancel", body={"reason": "not needed"})
    assert (reply.status, reply.body) == (202, {"recorded": True})
    CANCEL_RESPONSE.validate(reply.body)
    detail = await call(http, "GET", base)
    TASK_DETAIL.validate(detail.body)
    assert detail.body["state"] == "terminal"
    assert detail.body["disposition"] == "cancelled"
    assert detail.body["status"] == "cancelled"
    assert detail.body["error"] == "not needed"
    result = await call(http, "GET", f"{base}/result?timeout=0")
    assert result.status == 200
    TASK_RESULT.validate(result.body)
    cancelled = {"status": "cancelled", "error": "not needed", "attempt": 1}
    assert result.body == {**cancelled, "disposition": "cancelled"}
    again = await call(http, "POST", f"{base}/cancel")
    assert (again.status, again.body) == (202, {"recorded": False})
    worker = RawWorker(http, server.ws_url())
    await worker.register()
    with pytest.raises(TimeoutError):  # a cancelled task is never dispatched
        await worker.recv(timeout=0.2)
    await worker.close()


async def test_cancel_a_leased_task_tells_the_worker(
    server: Server, http: aiohttp.ClientSession
) -> None:
    worker = RawWorker(http, server.ws_url())
    await worker.register()
    submitted = await submit(http, server, activityName="wf.slow")
    task = await worker.recv_type("task")
    base = f"{server.url}{API}/tasks/detail/{submitted['operationId']}"
    reply = await call(http, "POST", f"{base}/cancel", body={})
    assert (reply.status, reply.body) == (202, {"recorded": True})
    frame = await worker.recv_type("cancel")
    assert frame == {
        "type": "cancel",
        "operationId": task["operationId"],
        "attemptToken": task["attemptToken"],
        "reason": "Task cancelled",
    }
    detail = await call(http, "GET", base)
    assert detail.body["state"] == "cancelling"
    again = await call(http, "POST", f"{base}/cancel", body={"reason": "twice"})
    assert (again.status, again.body) == (202, {"recorded": False})
    await worker.result(task, None, status="cancelled", cancelled=True, error="Task cancelled")
    assert (await worker.recv_type("taskResultAck"))["disposition"] == "applied"
    await record_where(server.orchestrator, task["operationId"], lambda r: r.is_terminal)
    result = await result_of(http, server, task["operationId"])
    assert (result["status"], result["disposition"]) == ("cancelled", "cancelled")
    await worker.close()


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        pytest.param(b'{"reason":""}', "/reason", id="empty-reason"),
        pytest.param(b'{"reason":5}', "/reason", id="number-reason"),
        pytest.param(b'{"reason":"x","force":true}', "/force", id="unknown-field"),
        pytest.param(b"[]", "", id="array"),
        pytest.param(b"{", "", id="invalid-json"),
    ],
)
async def test_bad_cancel_is_400(
    server: Server, http: aiohttp.ClientSession, raw: bytes, path: str
) -> None:
    submitted = await submit(http, server)
    url = f"{server.url}{API}/tasks/detail/{submitted['operationId']}/cancel"
    assert_error(await call(http, "POST", url, data=raw), 400, path)
    detail = await call(http, "GET", f"{server.url}{API}/tasks/detail/{submitted['operationId']}")
    assert detail.body["state"] == "queued"


@pytest.mark.parametrize("operation_id", ["a/b", "with space", "ünï", "a%2Fb", "?q#h", "stream"])
async def test_any_operation_id_is_addressable(
    server: Server, http: aiohttp.ClientSession, operation_id: str
) -> None:
    """Ids are opaque strings: escaped in the path, every route finds them (``stream`` is LP-10)."""
    await submit(http, server, operationId=operation_id)
    base = f"{server.url}{API}/tasks/detail/{quote(operation_id, safe='')}"
    detail = await call(http, "GET", URL(base, encoded=True))
    assert (detail.status, detail.body["operationId"]) == (200, operation_id)
    cancelled = await call(http, "POST", URL(f"{base}/cancel", encoded=True))
    assert (cancelled.status, cancelled.body) == (202, {"recorded": True})
    result = await call(http, "GET", URL(f"{base}/result?timeout=0", encoded=True))
    assert (result.status, result.body["disposition"]) == (200, "cancelled")


async def test_lone_surrogate_operation_id_is_an_ordinary_id(
    server: Server, http: aiohttp.ClientSession
) -> None:
    """PARSE-14: ``"\\ud800"`` is string content, not invalid JSON, and ids are opaque (API-1)."""
    url = f"{server.url}{API}/queues/default/tasks"
    raw = b'{"activityName":"wf.echo","operationId":"op-\\ud800"}'
    created = await asyncio.wait_for(call(http, "POST", url, data=raw), 2)
    assert (created.status, created.body) == (201, {"operationId": "op-\ud800", "state": "queued"})
    again = await asyncio.wait_for(call(http, "POST", url, data=raw), 2)
    assert (again.status, again.body) == (200, {"operationId": "op-\ud800", "state": "queued"})
    after = await asyncio.wait_for(submit(http, server), 2)  # and the server still takes work
    assert after["state"] == "queued"


# -- visibility timeout and the unprefixed routes ------------------------------------------------


async def test_visibility_timeout_is_clamped_not_rejected(
    server: Server, http: aiohttp.ClientSession
) -> None:
    worker = RawWorker(http, server.ws_url())
    await worker.register(concurrency=2)
    low = await submit(http, server, visibilityTimeout=1)
    low_task = await worker.recv_type("task")
    high = await submit(http, server, visibilityTimeout=10**12)
    high_task = await worker.recv_type("task")
    assert (low_task["operationId"], low_task["visibilityTimeout"]) == (low["operationId"], 10)
    assert high_task["operationId"] == high["operationId"]
    assert high_task["visibilityTimeout"] == 3_600_000
    await worker.close()


async def test_routes_without_the_api_prefix(server: Server, http: aiohttp.ClientSession) -> None:
    body = {"activityName": "wf.echo", "operationId": "op-bare"}
    created = await call(http, "POST", f"{server.url}/v1/queues/default/tasks", body=body)
    assert (created.status, created.body) == (201, {"operationId": "op-bare", "state": "queued"})
    base = f"{server.url}/v1/tasks/detail/op-bare"
    detail = await call(http, "GET", base)
    assert (detail.status, detail.body["state"]) == (200, "queued")
    waiting = await call(http, "GET", f"{base}/result?timeout=0")
    assert waiting.status == 204
    cancelled = await call(http, "POST", f"{base}/cancel", body={"reason": "bare"})
    assert (cancelled.status, cancelled.body) == (202, {"recorded": True})
    result = await call(http, "GET", f"{base}/result?timeout=0")
    assert (result.status, result.body["disposition"]) == (200, "cancelled")
    missing = await call(http, "GET", f"{server.url}/v1/tasks/detail/missing")
    assert missing.status == 404
