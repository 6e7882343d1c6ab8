"""parse_server_frame: server->worker frames as a worker must read them.

Expectations from weft-protocol-v8.md §4 "Worker-side parsing of server
frames", §2 (workers ignore unknown server types) and the §3 frame shapes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from treadle_protocol import IgnoredFrame, MalformedFrame, parse_server_frame

DIGEST = "sha256:" + "0123456789abcdef" * 4
TOKEN = "8f14e45f-ceea-4b67-9f3e-0a1c2b3d4e5f"
EXTRA = {"futureField": [1, {"x": None}], "traceId": "abc"}

REGISTER_ACK = {
    "type": "registerAck",
    "protocolVersion": 8,
    "workerId": "w1",
    "queue": "default",
    "concurrency": 10,
    "acceptedManifestDigest": DIGEST,
    "serverCapabilities": [],
    "sessionGeneration": 1,
}
REGISTER_ERROR = {
    "type": "registerError",
    "code": "unsupported_protocol_version",
    "message": "This server requires Weft worker protocol v8; got v3. Upgrade the worker SDK to"
    " use qualified activity names (workflowType.activityName).",
    "supportedProtocolVersions": [8],
    "requestedProtocolVersion": 3,
}
CANCEL = {"type": "cancel", "operationId": "op-1", "attemptToken": TOKEN, "reason": "stop"}
TASK = {
    "type": "task",
    "operationId": "op-1",
    "activityName": "conformance.echo",
    "input": {"ok": True},
    "attempt": 1,
    "attemptToken": TOKEN,
    "workflowExecutionToken": "wet-1",
    "workflowRevision": "rev-1",
    "headers": {"traceparent": "00-abc-def-01"},
    "visibilityTimeout": 30000,
    "lastHeartbeatDetails": {"progress": 0.5},
}


def text(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def without(message: dict[str, Any], field: str) -> dict[str, Any]:
    return {key: value for key, value in message.items() if key != field}


VALID = [
    pytest.param(TASK, id="task-every-field"),
    pytest.param(
        {
            "type": "task",
            "operationId": "op-1",
            "activityName": "wf.act",
            "input": None,
            "attempt": 2,
            "attemptToken": TOKEN,
            "visibilityTimeout": 30000,
        },
        id="task-null-input",
    ),
    pytest.param(
        {
            "type": "task",
            "operationId": "op-1",
            "activityName": "wf.act",
            "input": [1],
            "attemptToken": TOKEN,
        },
        id="task-pre-v8-without-visibilityTimeout",
    ),
    pytest.param({**TASK, "lastHeartbeatDetails": None}, id="task-null-lastHeartbeatDetails"),
    pytest.param(CANCEL, id="cancel-with-reason"),
    pytest.param(without(CANCEL, "reason"), id="cancel-without-reason"),
    pytest.param({"type": "shutdown"}, id="shutdown"),
    pytest.param(REGISTER_ACK, id="registerAck"),
    pytest.param(
        {**REGISTER_ACK, "serverCapabilities": ["future-capability"], "sessionGeneration": 4},
        id="registerAck-with-capabilities",
    ),
    pytest.param(REGISTER_ERROR, id="registerError-with-requested"),
    pytest.param(
        {
            "type": "registerError",
            "code": "invalid_registration",
            "message": "register.workerId must be a non-empty string",
            "supportedProtocolVersions": [8],
        },
        id="registerError-without-requested",
    ),
    pytest.param(
        {
            "type": "registerError",
            "code": "deployment_conflict",
            "message": "m",
            "supportedProtocolVersions": [],
        },
        id="registerError-empty-supported-list",
    ),
    pytest.param(
        {
            "type": "protocolError",
            "code": "invalid_json",
            "message": "Worker protocol messages must be valid JSON",
        },
        id="protocolError-uncorrelated",
    ),
    pytest.param(
        {
            "type": "protocolError",
            "code": "invalid_message",
            "message": "rejected",
            "operationId": "op-1",
            "attemptToken": TOKEN,
        },
        id="protocolError-correlated",
    ),
    *[
        pytest.param(
            {
                "type": "taskResultAck",
                "operationId": "op-1",
                "attemptToken": TOKEN,
                "disposition": disposition,
            },
            id=f"taskResultAck-{disposition}",
        )
        for disposition in ("applied", "duplicate", "dead-lettered")
    ],
]


@pytest.mark.parametrize("message", VALID)
def test_valid_frame_is_accepted(message: dict[str, Any]) -> None:
    assert parse_server_frame(text(message)) == message


@pytest.mark.parametrize("message", VALID)
def test_valid_frame_with_unknown_fields_is_accepted_and_the_fields_dropped(
    message: dict[str, Any],
) -> None:
    result = parse_server_frame(text({**message, **EXTRA}))
    assert result == message


def test_bytes_frames_are_accepted() -> None:
    assert parse_server_frame(text(CANCEL).encode()) == CANCEL


UNKNOWN_TYPES = [
    pytest.param("ping", id="invented"),
    pytest.param("taskBatch", id="future-server-type"),
    pytest.param("Task", id="task-wrong-case"),
    pytest.param("register", id="worker-type-register"),
    pytest.param("heartbeat", id="worker-type-heartbeat"),
    pytest.param("taskResult", id="worker-type-taskResult"),
    pytest.param("", id="empty-type"),
]


@pytest.mark.parametrize("message_type", UNKNOWN_TYPES)
def test_unknown_type_is_ignored(message_type: str) -> None:
    result = parse_server_frame(text({"type": message_type, "anything": [1, 2]}))
    assert result == IgnoredFrame(message_type)


@pytest.mark.parametrize("field", list(REGISTER_ACK)[1:])
def test_register_ack_missing_any_field_is_malformed(field: str) -> None:
    assert isinstance(parse_server_frame(text(without(REGISTER_ACK, field))), MalformedFrame)


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(text({**REGISTER_ACK, "sessionGeneration": "1"}), id="string"),
        pytest.param(text({**REGISTER_ACK, "sessionGeneration": None}), id="null"),
        pytest.param(text({**REGISTER_ACK, "sessionGeneration": True}), id="boolean"),
        pytest.param(
            text(REGISTER_ACK).replace('"sessionGeneration":1', '"sessionGeneration":1e400'),
            id="1e400",
        ),
    ],
)
def test_register_ack_session_generation_that_is_not_a_finite_number_is_malformed(
    frame: str,
) -> None:
    assert isinstance(parse_server_frame(frame), MalformedFrame)


@pytest.mark.parametrize(
    "reason",
    [
        pytest.param("", id="empty-string"),
        pytest.param(None, id="null"),
        pytest.param(7, id="number"),
    ],
)
def test_cancel_reason_present_but_not_a_non_empty_string_is_malformed(reason: object) -> None:
    assert isinstance(parse_server_frame(text({**CANCEL, "reason": reason})), MalformedFrame)


@pytest.mark.parametrize(
    "versions",
    [
        pytest.param(["8"], id="string-in-list"),
        pytest.param([8, "9"], id="mixed-list"),
        pytest.param([None], id="null-in-list"),
        pytest.param([True], id="boolean-in-list"),
        pytest.param("8", id="string"),
        pytest.param(8, id="bare-number"),
        pytest.param(None, id="null"),
        pytest.param({"0": 8}, id="object"),
    ],
)
def test_register_error_supported_versions_must_be_an_array_of_numbers(versions: object) -> None:
    frame = text({**REGISTER_ERROR, "supportedProtocolVersions": versions})
    assert isinstance(parse_server_frame(frame), MalformedFrame)


def test_register_error_with_non_finite_supported_version_is_malformed() -> None:
    frame = text(REGISTER_ERROR).replace(
        '"supportedProtocolVersions":[8]', '"supportedProtocolVersions":[8,1e400]'
    )
    assert "1e400" in frame
    assert isinstance(parse_server_frame(frame), MalformedFrame)


def test_register_error_without_supported_versions_is_malformed() -> None:
    frame = text(without(REGISTER_ERROR, "supportedProtocolVersions"))
    assert isinstance(parse_server_frame(frame), MalformedFrame)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param("", id="empty"),
        pytest.param("{", id="truncated"),
        pytest.param('{"type":"shutdown"} x', id="trailing-garbage"),
        pytest.param("NaN", id="NaN"),
        pytest.param("{'type':'shutdown'}", id="single-quotes"),
        pytest.param(b'\xff{"type":"shutdown"}', id="bytes-not-utf8"),
    ],
)
def test_invalid_json_is_malformed(data: str | bytes) -> None:
    assert isinstance(parse_server_frame(data), MalformedFrame)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param('[{"type":"shutdown"}]', id="array"),
        pytest.param('"shutdown"', id="string"),
        pytest.param("null", id="null"),
        pytest.param('{"kind":"shutdown"}', id="no-type"),
        pytest.param('{"type":7}', id="numeric-type"),
    ],
)
def test_frame_without_a_string_type_is_never_a_message(data: str) -> None:
    result = parse_server_frame(data)
    assert isinstance(result, MalformedFrame | IgnoredFrame)
