"""The Task API client without sockets: requests built, answers read (``treadle_sdk._taskapi``).

Every request body is checked against ``task-api.json``; every status the
server can send (protocol §13, API-1…API-7, AUTH-2) maps to one outcome.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest

from treadle_protocol.schema import validator
from treadle_sdk import _taskapi
from treadle_sdk._taskapi import ResultWait, RetryPolicy, TaskDetail, TaskOutcome
from treadle_sdk.client import AsyncClient, Client
from treadle_sdk.errors import (
    ApiError,
    AuthenticationError,
    ConfigError,
    ResultTimeoutError,
    TaskCancelledError,
    TaskConflictError,
    TaskFailedError,
    TaskNotFoundError,
)

SUBMIT_REQUEST = validator("task-api.json", "/$defs/submitRequest")
CANCEL_REQUEST = validator("task-api.json", "/$defs/cancelRequest")


def body_of(request: _taskapi.ApiRequest) -> Any:
    assert request.body is not None
    return json.loads(request.body)


def raw(body: Any) -> bytes:
    return json.dumps(body).encode()


# -- addresses and credentials ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://127.0.0.1:7233", "http://127.0.0.1:7233"),
        ("http://127.0.0.1:7233/", "http://127.0.0.1:7233"),
        ("https://treadle.example/prefix/", "https://treadle.example/prefix"),
        ("ws://h:1/p", "http://h:1/p"),
        ("wss://h", "https://h"),
    ],
)
def test_base_url_is_normalised(url: str, base: str) -> None:
    assert _taskapi.base_url(url) == base
    request = _taskapi.detail_request("op")
    assert request.url(_taskapi.base_url(url)) == f"{base}/api/v1/tasks/detail/op"


@pytest.mark.parametrize("url", ["127.0.0.1:7233", "ftp://h", "http://", "http://h?x=1", "", 5])
def test_bad_base_url_is_a_config_error(url: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        Client(url)
    assert caught.value.field == "base_url"
    with pytest.raises(ConfigError):
        AsyncClient(url)


@pytest.mark.parametrize("key", ["", "a\nb", "a\rb", 5])
def test_bad_api_key_is_a_config_error(key: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        Client("http://h", key)
    assert caught.value.field == "api_key"


@pytest.mark.parametrize("timeout", [0, -1, math.nan, "1", True])
def test_bad_request_timeout_is_a_config_error(timeout: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        Client("http://h", request_timeout=timeout)
    assert caught.value.field == "request_timeout"


def test_headers_carry_the_key_as_bearer() -> None:
    get, post = _taskapi.detail_request("op"), _taskapi.cancel_request("op")
    assert _taskapi.request_headers(None, get) == {
        "Accept": "application/json",
        "User-Agent": _taskapi.USER_AGENT,
    }
    headers = _taskapi.request_headers("k-1", post)
    assert headers["Authorization"] == "Bearer k-1"
    assert headers["Content-Type"] == "application/json"


# -- submit request ----------------------------------------------------------------------------


def test_minimal_submission() -> None:
    request = _taskapi.submit_request("wf.echo")
    assert (request.method, request.path, request.query) == (
        "POST",
        "/api/v1/queues/default/tasks",
        (),
    )
    assert body_of(request) == {"activityName": "wf.echo", "input": None}
    SUBMIT_REQUEST.validate(body_of(request))


def test_every_field_converted_to_the_wire() -> None:
    policy = RetryPolicy(
        max_attempts=3,
        initial_interval=0.01,
        backoff_coefficient=1.5,
        max_interval=0.3,
        non_retryable_errors=["Fatal"],  # type: ignore[arg-type]  # any sequence is accepted
    )
    request = _taskapi.submit_request(
        "wf.echo",
        {"n": [1, 2.5, None]},
        queue="q_1-x",
        operation_id="op-1",
        visibility_timeout=0.3,
        retry_policy=policy,
        priority=-4,
        headers={"trace": "abc"},
        workflow_revision="r1",
    )
    assert request.path == "/api/v1/queues/q_1-x/tasks"
    body = body_of(request)
    SUBMIT_REQUEST.validate(body)
    assert body == {
        "activityName": "wf.echo",
        "input": {"n": [1, 2.5, None]},
        "operationId": "op-1",
        "visibilityTimeout": 300,
        "retryPolicy": {
            "maxAttempts": 3,
            "initialIntervalMs": 10,
            "backoffCoefficient": 1.5,
            "maxIntervalMs": 300,
            "nonRetryableErrors": ["Fatal"],
        },
        "priority": -4,
        "headers": {"trace": "abc"},
        "workflowRevision": "r1",
    }
    assert policy.non_retryable_errors == ("Fatal",)


@pytest.mark.parametrize(
    ("seconds", "ms"), [(5, 5000), (1.5, 1500), (0.0005, 0.5), (0.3, 300), (0, 0)]
)
def test_seconds_become_milliseconds(seconds: float, ms: float) -> None:
    body = body_of(_taskapi.submit_request("wf.echo", visibility_timeout=seconds))
    assert body["visibilityTimeout"] == ms
    assert type(body["visibilityTimeout"]) is type(ms)


def test_default_retry_policy_and_a_mapping_passed_through() -> None:
    body = body_of(_taskapi.submit_request("wf.echo", retry_policy=RetryPolicy()))
    assert body["retryPolicy"] == {
        "initialIntervalMs": 1000,
        "backoffCoefficient": 2.0,
        "maxIntervalMs": 100_000,
    }
    wire = {"maxAttempts": 2, "jitter": True}  # not validated here: the server answers 400
    assert body_of(_taskapi.submit_request("wf.echo", retry_policy=wire))["retryPolicy"] == wire


BAD_SUBMISSIONS: dict[str, tuple[dict[str, Any], str]] = {
    "activity-unqualified": ({"activity": "echo"}, "activity"),
    "activity-empty-name": ({"activity": "wf."}, "activity"),
    "activity-empty-type": ({"activity": ".echo"}, "activity"),
    "activity-digit": ({"activity": "1wf.echo"}, "activity"),
    "activity-two-dots": ({"activity": "wf.a.b"}, "activity"),
    "activity-space": ({"activity": "wf.ec ho"}, "activity"),
    "activity-newline": ({"activity": "wf.echo\n"}, "activity"),
    "activity-number": ({"activity": 5}, "activity"),
    "queue-dot": ({"queue": "bad.queue"}, "queue"),
    "queue-empty": ({"queue": ""}, "queue"),
    "queue-unicode": ({"queue": "café"}, "queue"),
    "queue-newline": ({"queue": "q\n"}, "queue"),
    "input-nan": ({"input": math.nan}, "input"),
    "input-inf": ({"input": [math.inf]}, "input"),
    "input-object": ({"input": object()}, "input"),
    "input-int-key": ({"input": {1: 2}}, "input"),
    "input-tuple": ({"input": (1, 2)}, "input"),
    "op-empty": ({"operation_id": ""}, "operation_id"),
    "op-dot": ({"operation_id": "."}, "operation_id"),
    "op-dotdot": ({"operation_id": ".."}, "operation_id"),
    "op-too-long": ({"operation_id": "x" * 513}, "operation_id"),
    "op-surrogate": ({"operation_id": "op-\ud800"}, "operation_id"),
    "op-number": ({"operation_id": 7}, "operation_id"),
    "vt-negative": ({"visibility_timeout": -1}, "visibility_timeout"),
    "vt-nan": ({"visibility_timeout": math.nan}, "visibility_timeout"),
    "vt-inf": ({"visibility_timeout": math.inf}, "visibility_timeout"),
    "vt-string": ({"visibility_timeout": "1s"}, "visibility_timeout"),
    "vt-bool": ({"visibility_timeout": True}, "visibility_timeout"),
    "priority-fraction": ({"priority": 1.5}, "priority"),
    "priority-bool": ({"priority": True}, "priority"),
    "priority-string": ({"priority": "1"}, "priority"),
    "headers-number": ({"headers": {"a": 1}}, "headers"),
    "headers-pairs": ({"headers": [("a", "b")]}, "headers"),
    "revision-empty": ({"workflow_revision": ""}, "workflow_revision"),
    "policy-string": ({"retry_policy": "3"}, "retry_policy"),
    "policy-list": ({"retry_policy": [1]}, "retry_policy"),
    "policy-not-json": ({"retry_policy": {"maxAttempts": math.nan}}, "retry_policy"),
}


@pytest.mark.parametrize(("change", "field"), list(BAD_SUBMISSIONS.values()), ids=BAD_SUBMISSIONS)
def test_bad_submission_is_refused_before_any_io(change: dict[str, Any], field: str) -> None:
    arguments: dict[str, Any] = {"activity": "wf.echo", **change}
    activity = arguments.pop("activity")
    with pytest.raises(ConfigError) as caught:
        _taskapi.submit_request(activity, **arguments)
    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)
    client = Client("http://127.0.0.1:9")  # nothing listens: a request would fail otherwise
    with pytest.raises(ConfigError):
        client.submit(activity, **arguments)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"max_attempts": 0}, "retry_policy.max_attempts"),
        ({"max_attempts": 1.5}, "retry_policy.max_attempts"),
        ({"max_attempts": True}, "retry_policy.max_attempts"),
        ({"initial_interval": -1}, "retry_policy.initial_interval"),
        ({"initial_interval": math.nan}, "retry_policy.initial_interval"),
        ({"max_interval": "1"}, "retry_policy.max_interval"),
        ({"backoff_coefficient": 0.5}, "retry_policy.backoff_coefficient"),
        ({"backoff_coefficient": math.inf}, "retry_policy.backoff_coefficient"),
        ({"non_retryable_errors": "Fatal"}, "retry_policy.non_retryable_errors"),
        ({"non_retryable_errors": [1]}, "retry_policy.non_retryable_errors"),
    ],
)
def test_bad_retry_policy(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        RetryPolicy(**fields)
    assert caught.value.field == field


def test_retry_policy_is_frozen() -> None:
    policy = RetryPolicy(max_attempts=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_attempts = 3  # type: ignore[misc]


# -- detail, result and cancel requests ----------------------------------------------------------


@pytest.mark.parametrize(
    ("operation_id", "escaped"),
    [("op-1", "op-1"), ("a/b", "a%2Fb"), ("with space", "with%20space"), ("ünï", "%C3%BCn%C3%AF"),
     ("?q#h", "%3Fq%23h"), ("a%2Fb", "a%252Fb"), ("stream", "stream")],
)  # fmt: skip
def test_operation_ids_are_escaped_in_paths(operation_id: str, escaped: str) -> None:
    base = f"/api/v1/tasks/detail/{escaped}"
    assert _taskapi.detail_request(operation_id).path == base
    assert _taskapi.cancel_request(operation_id).path == f"{base}/cancel"
    assert _taskapi.result_request(operation_id, 10).path == f"{base}/result"


def test_cancel_body() -> None:
    plain, reasoned = _taskapi.cancel_request("op"), _taskapi.cancel_request("op", "not needed")
    assert (plain.method, body_of(plain)) == ("POST", {})
    assert body_of(reasoned) == {"reason": "not needed"}
    CANCEL_REQUEST.validate(body_of(plain))
    CANCEL_REQUEST.validate(body_of(reasoned))
    for reason in ("", 5):
        with pytest.raises(ConfigError) as caught:
            _taskapi.cancel_request("op", reason)  # type: ignore[arg-type]
        assert caught.value.field == "reason"


def test_result_request_is_capped_at_a_minute() -> None:
    request = _taskapi.result_request("op", 250)
    assert (request.method, request.query, request.wait) == ("GET", (("timeout", "250"),), 0.25)
    assert request.url("http://h") == "http://h/api/v1/tasks/detail/op/result?timeout=250"
    assert _taskapi.result_request("op", 10**9).query == (("timeout", "60000"),)
    assert _taskapi.result_request("op", -5).query == (("timeout", "0"),)


@pytest.mark.parametrize("operation_id", ["", ".", "..", "x" * 513, "\udc80", None])
def test_bad_operation_id_for_a_handle(operation_id: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        Client("http://h").handle(operation_id)
    assert caught.value.field == "operation_id"


# -- the result wait -----------------------------------------------------------------------------


def waits(wait: ResultWait, *times: float) -> list[str]:
    return [dict(wait.next_request(now).query)["timeout"] for now in times]


def test_no_timeout_waits_a_minute_at_a_time_forever() -> None:
    for timeout in (None, math.inf):
        assert waits(ResultWait("op", timeout, 0.0), 0, 60, 1e9) == ["60000"] * 3


def test_a_long_timeout_is_split_into_chunks() -> None:
    wait = ResultWait("op", 150, 100.0)
    assert waits(wait, 100, 160, 220, 249.9999) == ["60000", "60000", "30000", "1"]
    with pytest.raises(ResultTimeoutError) as caught:
        wait.next_request(250.0)
    assert (caught.value.operation_id, caught.value.waited) == ("op", 150)
    assert isinstance(caught.value, TimeoutError)


def test_zero_timeout_asks_once() -> None:
    wait = ResultWait("op", 0, 5.0)
    assert waits(wait, 5.5) == ["0"]  # even when the clock has moved on
    with pytest.raises(ResultTimeoutError):
        wait.next_request(5.5)


@pytest.mark.parametrize("timeout", [-0.001, math.nan, "1", True])
def test_bad_result_timeout(timeout: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        ResultWait("op", timeout, 0.0)
    assert caught.value.field == "timeout"


# -- answers -------------------------------------------------------------------------------------


def test_submit_answers() -> None:
    body = raw({"operationId": "op", "state": "queued"})
    assert _taskapi.submit_answer(201, body) == _taskapi.Submitted("op", "queued", created=True)
    assert _taskapi.submit_answer(200, body).created is False


ERROR_BODY = raw({"error": "that operationId was submitted with another body", "path": "/x"})


@pytest.mark.parametrize(
    ("status", "body", "kind", "path"),
    [
        (400, ERROR_BODY, ApiError, "/x"),
        (409, ERROR_BODY, TaskConflictError, "/x"),
        (403, raw({"error": "Insufficient scope"}), ApiError, None),
        (404, raw({"error": "Not Found", "path": ""}), ApiError, ""),  # a wrong prefix, not a task
        (413, raw({"error": "too big", "code": "payload_too_large"}), ApiError, None),
        (503, raw({"error": "not accepting work", "path": ""}), ApiError, ""),
        (502, b"<html>Bad Gateway</html>", ApiError, None),
        (500, b"", ApiError, None),
    ],
)
def test_submit_refusals(status: int, body: bytes, kind: type[ApiError], path: str | None) -> None:
    with pytest.raises(ApiError) as caught:
        _taskapi.submit_answer(status, body)
    assert type(caught.value) is kind
    assert (caught.value.status, caught.value.path) == (status, path)
    assert caught.value.error


@pytest.mark.parametrize(
    "answer",
    [
        lambda status, body: _taskapi.submit_answer(status, body),
        lambda status, body: _taskapi.detail_answer(status, body),
        lambda status, body: _taskapi.result_answer("op", status, body),
        lambda status, body: _taskapi.cancel_answer(status, body),
    ],
    ids=["submit", "detail", "result", "cancel"],
)
def test_401_is_an_authentication_error_everywhere(answer: Any) -> None:
    with pytest.raises(AuthenticationError, match="Authentication required"):
        answer(401, raw({"error": "Authentication required"}))
    with pytest.raises(ApiError, match="Insufficient scope") as caught:
        answer(403, raw({"error": "Insufficient scope"}))
    assert caught.value.status == 403
    with pytest.raises(ApiError, match="unexpected answer"):
        answer(302, b"")


@pytest.mark.parametrize(
    ("answer", "body"),
    [
        (lambda s, b: _taskapi.submit_answer(s, b), raw({"operationId": 5, "state": "queued"})),
        (lambda s, b: _taskapi.submit_answer(s, b), b"not json"),
        (lambda s, b: _taskapi.detail_answer(s, b), raw({"operationId": "op", "state": "queued"})),
        (lambda s, b: _taskapi.detail_answer(s, b), raw([1])),
        (lambda s, b: _taskapi.result_answer("op", s, b), raw({"status": "completed"})),
        (
            lambda s, b: _taskapi.result_answer("op", s, b),
            raw({"status": "completed", "disposition": "completed", "attempt": True}),
        ),
        (lambda s, b: _taskapi.cancel_answer(s, b), raw({"recorded": "yes"})),
    ],
)
def test_malformed_success_is_an_api_error(answer: Any, body: bytes) -> None:
    status = 202 if "recorded" in body.decode() else 200
    with pytest.raises(ApiError, match="unexpected answer"):
        answer(status, body)


@pytest.mark.parametrize(
    "answer",
    [
        lambda status, body: _taskapi.detail_answer(status, body),
        lambda status, body: _taskapi.result_answer("op", status, body),
        lambda status, body: _taskapi.cancel_answer(status, body),
    ],
    ids=["detail", "result", "cancel"],
)
def test_404_on_a_task_is_task_not_found(answer: Any) -> None:
    with pytest.raises(TaskNotFoundError) as caught:
        answer(404, raw({"error": "Unknown task: 'op'", "path": ""}))
    assert (caught.value.status, caught.value.error) == (404, "Unknown task: 'op'")


def test_detail_answers() -> None:
    queued = {"operationId": "op", "state": "queued", "attempt": 1, "queue": "q",
              "activityName": "wf.echo"}  # fmt: skip
    detail = _taskapi.detail_answer(200, raw(queued))
    assert detail == TaskDetail("op", "queued", 1, "q", "wf.echo")
    assert not detail.terminal
    ended = {**queued, "state": "terminal", "attempt": 2, "disposition": "cancelled",
             "status": "cancelled", "error": "stop", "uncertain": True}  # fmt: skip
    detail = _taskapi.detail_answer(200, raw(ended))
    assert (detail.terminal, detail.disposition, detail.status) == (True, "cancelled", "cancelled")
    assert (detail.error, detail.value, detail.uncertain, detail.attempt) == ("stop", None, True, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        detail.state = "queued"  # type: ignore[misc]


def test_result_answers() -> None:
    assert _taskapi.result_answer("op", 204, b"") is None
    completed = raw(
        {"status": "completed", "value": None, "attempt": 1, "disposition": "completed"}
    )
    outcome = _taskapi.result_answer("op", 200, completed)
    assert outcome == TaskOutcome("op", "completed", "completed", 1)
    assert outcome.unwrap() is None  # a null value, told apart from "still running"
    value = raw({"status": "completed", "value": {"a": [1]}, "attempt": 3,
                 "disposition": "completed"})  # fmt: skip
    outcome = _taskapi.result_answer("op", 200, value)
    assert outcome is not None
    assert outcome.unwrap() == {"a": [1]}


@pytest.mark.parametrize(
    ("status", "disposition", "kind"),
    [
        ("failed", "failed", TaskFailedError),
        ("failed", "retryExhausted", TaskFailedError),
        ("cancelled", "cancelled", TaskCancelledError),
    ],
)
def test_results_without_a_value_raise(
    status: str, disposition: str, kind: type[TaskFailedError]
) -> None:
    body = raw({"status": status, "error": "boom", "attempt": 2, "disposition": disposition})
    outcome = _taskapi.result_answer("op-9", 200, body)
    assert outcome is not None
    with pytest.raises(TaskFailedError) as caught:
        outcome.unwrap()
    assert type(caught.value) is kind
    assert (caught.value.operation_id, caught.value.disposition) == ("op-9", disposition)
    assert (caught.value.error, caught.value.attempt) == ("boom", 2)


def test_result_bad_timeout_is_an_api_error() -> None:
    with pytest.raises(ApiError) as caught:
        _taskapi.result_answer("op", 400, raw({"error": "timeout must be…", "path": "/timeout"}))
    assert type(caught.value) is ApiError
    assert caught.value.path == "/timeout"


def test_cancel_answers() -> None:
    assert _taskapi.cancel_answer(202, raw({"recorded": True})) is True
    assert _taskapi.cancel_answer(202, raw({"recorded": False})) is False
    with pytest.raises(ApiError) as caught:
        _taskapi.cancel_answer(400, raw({"error": "reason must be…", "path": "/reason"}))
    assert caught.value.path == "/reason"
