"""Frame builders: schema-valid output, Weft's key order, refusals, compact encoding.

Key orders come from the reference (weft-protocol-v8.md): §3 "Canonical
example frames" for server->worker frames, §17.2 for register, §8 for
activityHeartbeat, and the §4 rule-8 field order for taskResult.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from treadle_protocol import (
    UNSET,
    EncodeError,
    FrameRejection,
    Unset,
    build,
    encode,
    parse_server_frame,
    parse_worker_frame,
)
from treadle_protocol.schema import message_validator

DIGEST = "sha256:" + "0123456789abcdef" * 4
TOKEN = "8f14e45f-ceea-4b67-9f3e-0a1c2b3d4e5f"
MANIFEST = {"manifestVersion": 1, "protocolVersion": 8, "sdkVersion": "0.0.0"}

Builder = Callable[[], dict[str, Any]]

task = partial(
    build.task,
    operation_id="op-1",
    activity_name="conformance.echo",
    input={"ok": True},
    attempt=1,
    attempt_token=TOKEN,
    visibility_timeout=30000,
)
register_ack = partial(
    build.register_ack,
    worker_id="w1",
    queue="default",
    concurrency=10,
    accepted_manifest_digest=DIGEST,
    session_generation=1,
)
register = partial(build.register, worker_id="w1", manifest=MANIFEST, concurrency=3)
activity_heartbeat = partial(
    build.activity_heartbeat, worker_id="w1", operation_id="op-1", attempt_token=TOKEN
)
task_result = partial(build.task_result, operation_id="op-1", attempt_token=TOKEN)
cancel = partial(build.cancel, operation_id="op-1", attempt_token=TOKEN)
protocol_error = partial(
    build.protocol_error, code="invalid_message", message="taskResult rejected"
)
task_result_ack = partial(build.task_result_ack, operation_id="op-1", attempt_token=TOKEN)

TASK_KEYS = ["type", "operationId", "activityName", "input", "attempt", "attemptToken"]

SERVER_FRAMES = [
    pytest.param(task, [*TASK_KEYS, "visibilityTimeout"], id="task"),
    pytest.param(
        partial(
            task,
            workflow_execution_token="wet-1",
            workflow_revision="rev-1",
            headers={"traceparent": "00-abc-def-01"},
            last_heartbeat_details={"progress": 0.5},
        ),
        [
            *TASK_KEYS,
            "workflowExecutionToken",
            "workflowRevision",
            "headers",
            "visibilityTimeout",
            "lastHeartbeatDetails",
        ],
        id="task-every-optional-field",
    ),
    pytest.param(
        partial(task, input=None, workflow_revision="rev-1"),
        [*TASK_KEYS, "workflowRevision", "visibilityTimeout"],
        id="task-null-input-with-revision",
    ),
    pytest.param(
        partial(cancel, reason="Task cancelled"),
        ["type", "operationId", "attemptToken", "reason"],
        id="cancel",
    ),
    pytest.param(build.shutdown, ["type"], id="shutdown"),
    pytest.param(
        register_ack,
        [
            "type",
            "protocolVersion",
            "workerId",
            "queue",
            "concurrency",
            "acceptedManifestDigest",
            "serverCapabilities",
            "sessionGeneration",
        ],
        id="registerAck",
    ),
    pytest.param(protocol_error, ["type", "code", "message"], id="protocolError"),
    pytest.param(
        partial(protocol_error, operation_id="op-1", attempt_token=TOKEN),
        ["type", "code", "message", "operationId", "attemptToken"],
        id="protocolError-correlated",
    ),
    *[
        pytest.param(
            partial(task_result_ack, disposition=disposition),
            ["type", "operationId", "attemptToken", "disposition"],
            id=f"taskResultAck-{disposition}",
        )
        for disposition in ("applied", "duplicate", "dead-lettered")
    ],
]

WORKER_FRAMES = [
    pytest.param(
        register,
        ["type", "protocolVersion", "workerId", "manifest", "concurrency"],
        id="register",
    ),
    pytest.param(
        partial(register, started_at=1700000000000, resume_session_generation=2),
        [
            "type",
            "protocolVersion",
            "workerId",
            "manifest",
            "concurrency",
            "startedAt",
            "resumeSessionGeneration",
        ],
        id="register-resume",
    ),
    pytest.param(partial(build.heartbeat, worker_id="w1"), ["type", "workerId"], id="heartbeat"),
    pytest.param(
        activity_heartbeat,
        ["type", "workerId", "operationId", "attemptToken"],
        id="activityHeartbeat",
    ),
    pytest.param(
        partial(activity_heartbeat, details={"progress": 3}),
        ["type", "workerId", "operationId", "attemptToken", "details"],
        id="activityHeartbeat-details",
    ),
    pytest.param(
        partial(task_result, status="completed", value={"ok": True}),
        ["type", "operationId", "status", "value", "attemptToken"],
        id="taskResult-completed",
    ),
    pytest.param(
        partial(task_result, status="completed", value=None, workflow_revision="rev-1"),
        ["type", "operationId", "status", "value", "attemptToken", "workflowRevision"],
        id="taskResult-completed-null-value-with-revision",
    ),
    pytest.param(
        partial(task_result, status="failed", error="boom"),
        ["type", "operationId", "status", "error", "attemptToken"],
        id="taskResult-failed",
    ),
    pytest.param(
        partial(task_result, status="failed", error=""),
        ["type", "operationId", "status", "error", "attemptToken"],
        id="taskResult-failed-empty-error",
    ),
    pytest.param(
        partial(task_result, status="cancelled", error="Task cancelled"),
        ["type", "operationId", "status", "error", "cancelled", "attemptToken"],
        id="taskResult-cancelled",
    ),
]


@pytest.mark.parametrize(("make", "keys"), SERVER_FRAMES + WORKER_FRAMES)
def test_builder_output_has_weft_key_order(make: Builder, keys: list[str]) -> None:
    message = make()
    assert list(message) == keys
    assert list(json.loads(encode(message))) == keys


@pytest.mark.parametrize(("make", "keys"), SERVER_FRAMES + WORKER_FRAMES)
def test_builder_output_validates_against_its_message_schema(
    make: Builder, keys: list[str]
) -> None:
    message = make()
    message_validator(message["type"]).validate(message)
    message_validator().validate(json.loads(encode(message)))


@pytest.mark.parametrize(("make", "keys"), SERVER_FRAMES)
def test_server_frame_round_trips_through_the_worker_side_parser(
    make: Builder, keys: list[str]
) -> None:
    message = make()
    assert parse_server_frame(encode(message)) == message


@pytest.mark.parametrize(("make", "keys"), WORKER_FRAMES)
def test_worker_frame_round_trips_through_the_server_side_parser(
    make: Builder, keys: list[str]
) -> None:
    message = make()
    assert parse_worker_frame(encode(message), registered=True) == message


def test_cancelled_result_always_says_cancelled_true() -> None:
    # §10: the worker replies {status:"cancelled", cancelled:true, error:<reason>}.
    assert dict(task_result(status="cancelled", error="stop"))["cancelled"] is True


def test_register_ack_server_capabilities_is_always_empty() -> None:
    assert register_ack()["serverCapabilities"] == []


def test_register_and_register_ack_carry_protocol_version_8() -> None:
    assert register()["protocolVersion"] == 8
    assert register_ack()["protocolVersion"] == 8


# -- refusals -----------------------------------------------------------------------------------


REFUSED = [
    pytest.param(partial(cancel, reason=""), id="cancel-empty-reason"),
    pytest.param(
        partial(build.cancel, operation_id="", attempt_token=TOKEN, reason="x"),
        id="cancel-empty-operationId",
    ),
    pytest.param(
        partial(build.cancel, operation_id="o", attempt_token="", reason="x"),
        id="cancel-empty-attemptToken",
    ),
    pytest.param(partial(task, attempt_token=""), id="task-empty-attemptToken"),
    pytest.param(partial(task, operation_id=""), id="task-empty-operationId"),
    pytest.param(partial(task, activity_name=""), id="task-empty-activityName"),
    pytest.param(partial(task, workflow_revision=""), id="task-empty-workflowRevision"),
    pytest.param(partial(task, workflow_execution_token=""), id="task-empty-executionToken"),
    pytest.param(partial(task, headers={"x-retry": 1}), id="task-non-string-header"),
    pytest.param(partial(task, input=math.nan), id="task-NaN-input"),
    pytest.param(partial(task, input={"a": [1, math.inf]}), id="task-nested-infinite-input"),
    pytest.param(partial(task, input={1: "x"}), id="task-non-string-key-input"),
    pytest.param(partial(task, last_heartbeat_details=-math.inf), id="task-infinite-details"),
    pytest.param(
        partial(task, visibility_timeout=math.inf),
        id="task-infinite-visibilityTimeout",
    ),
    pytest.param(
        partial(task, visibility_timeout=math.nan),
        id="task-NaN-visibilityTimeout",
    ),
    pytest.param(partial(task, attempt=math.nan), id="task-NaN-attempt"),
    pytest.param(partial(register_ack, worker_id=""), id="registerAck-empty-workerId"),
    pytest.param(partial(register_ack, queue=""), id="registerAck-empty-queue"),
    pytest.param(partial(register_ack, accepted_manifest_digest=""), id="registerAck-empty-digest"),
    pytest.param(
        partial(register_ack, concurrency=math.inf),
        id="registerAck-infinite-concurrency",
    ),
    pytest.param(
        partial(register_ack, session_generation=math.nan),
        id="registerAck-NaN-sessionGeneration",
    ),
    pytest.param(partial(protocol_error, operation_id="op-1"), id="protocolError-operationId-only"),
    pytest.param(
        partial(protocol_error, attempt_token=TOKEN), id="protocolError-attemptToken-only"
    ),
    pytest.param(
        partial(protocol_error, operation_id="", attempt_token=TOKEN),
        id="protocolError-empty-operationId",
    ),
    pytest.param(
        partial(task_result_ack, attempt_token="", disposition="applied"), id="ack-empty-token"
    ),
    pytest.param(partial(register, worker_id=""), id="register-empty-workerId"),
    pytest.param(
        partial(register, concurrency=math.inf),
        id="register-infinite-concurrency",
    ),
    pytest.param(
        partial(register, started_at=math.nan),
        id="register-NaN-startedAt",
    ),
    pytest.param(
        partial(register, resume_session_generation=math.inf),
        id="register-infinite-resumeSessionGeneration",
    ),
    pytest.param(partial(build.heartbeat, worker_id=""), id="heartbeat-empty-workerId"),
    pytest.param(
        partial(activity_heartbeat, details=math.inf), id="activityHeartbeat-infinite-details"
    ),
    pytest.param(
        partial(build.activity_heartbeat, worker_id="w", operation_id="", attempt_token=TOKEN),
        id="activityHeartbeat-empty-operationId",
    ),
    pytest.param(partial(task_result, status="completed"), id="completed-without-value"),
    pytest.param(
        partial(task_result, status="completed", value=math.nan), id="completed-NaN-value"
    ),
    pytest.param(partial(task_result, status="failed"), id="failed-without-error"),
    pytest.param(partial(task_result, status="cancelled"), id="cancelled-without-error"),
    pytest.param(partial(task_result, status="done", error="x"), id="unknown-status"),
    pytest.param(
        partial(build.task_result, operation_id="o", attempt_token="", status="failed", error="x"),
        id="taskResult-empty-attemptToken",
    ),
    pytest.param(
        partial(task_result, status="completed", value=1, workflow_revision=""),
        id="taskResult-empty-workflowRevision",
    ),
]


@pytest.mark.parametrize("make", REFUSED)
def test_builder_refuses_a_value_the_peer_would_reject(make: Builder) -> None:
    with pytest.raises(EncodeError):
        encode(make())


def test_encode_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="reason"):
        cancel(reason="")


# -- UNSET versus None --------------------------------------------------------------------------


def test_unset_is_a_falsy_singleton() -> None:
    assert Unset() is UNSET
    assert not UNSET
    assert repr(UNSET) == "UNSET"


def test_activity_heartbeat_details_none_is_sent_as_json_null() -> None:
    message = activity_heartbeat(details=None)
    assert "details" in message
    assert message["details"] is None
    assert encode(message).endswith(b',"details":null}')


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(activity_heartbeat, id="default"),
        pytest.param(partial(activity_heartbeat, details=UNSET), id="explicit-UNSET"),
    ],
)
def test_activity_heartbeat_details_unset_leaves_the_key_out(make: Builder) -> None:
    message = make()
    assert "details" not in message
    assert b"details" not in encode(message)


def test_task_last_heartbeat_details_none_is_sent_as_json_null() -> None:
    message = task(last_heartbeat_details=None)
    assert message["lastHeartbeatDetails"] is None
    assert encode(message).endswith(b',"lastHeartbeatDetails":null}')


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(task, id="default"),
        pytest.param(partial(task, last_heartbeat_details=UNSET), id="explicit-UNSET"),
    ],
)
def test_task_last_heartbeat_details_unset_leaves_the_key_out(make: Builder) -> None:
    message = make()
    assert "lastHeartbeatDetails" not in message
    assert b"lastHeartbeatDetails" not in encode(message)


def test_completed_value_none_is_json_null_not_a_missing_value() -> None:
    message = task_result(status="completed", value=None)
    assert b'"value":null' in encode(message)


@pytest.mark.parametrize(
    ("make", "absent"),
    [
        pytest.param(partial(task, workflow_revision=None), "workflowRevision", id="task-revision"),
        pytest.param(partial(task, headers=None), "headers", id="task-headers"),
        pytest.param(
            partial(task, workflow_execution_token=None),
            "workflowExecutionToken",
            id="task-execution-token",
        ),
        pytest.param(partial(register, started_at=None), "startedAt", id="register-startedAt"),
        pytest.param(
            partial(register, resume_session_generation=None),
            "resumeSessionGeneration",
            id="register-resume",
        ),
        pytest.param(
            partial(task_result, status="failed", error="x", workflow_revision=None),
            "workflowRevision",
            id="taskResult-revision",
        ),
    ],
)
def test_none_for_an_optional_string_or_number_leaves_the_key_out(
    make: Builder, absent: str
) -> None:
    # §4: an optional field sent as null is rejected, so None must mean "absent" here.
    assert absent not in make()


# -- encode -------------------------------------------------------------------------------------

EXACT_BYTES = [
    pytest.param(build.shutdown, b'{"type":"shutdown"}', id="shutdown"),
    pytest.param(
        register_ack,
        b'{"type":"registerAck","protocolVersion":8,"workerId":"w1","queue":"default",'
        b'"concurrency":10,"acceptedManifestDigest":"' + DIGEST.encode() + b'",'
        b'"serverCapabilities":[],"sessionGeneration":1}',
        id="registerAck-canonical-example",
    ),
    pytest.param(
        partial(cancel, reason="Task cancelled"),
        b'{"type":"cancel","operationId":"op-1","attemptToken":"'
        + TOKEN.encode()
        + b'","reason":"Task cancelled"}',
        id="cancel",
    ),
    pytest.param(
        partial(task_result_ack, disposition="applied"),
        b'{"type":"taskResultAck","operationId":"op-1","attemptToken":"'
        + TOKEN.encode()
        + b'","disposition":"applied"}',
        id="taskResultAck",
    ),
    pytest.param(
        partial(build.protocol_error, code="invalid_json", message="bad"),
        b'{"type":"protocolError","code":"invalid_json","message":"bad"}',
        id="protocolError",
    ),
    pytest.param(
        partial(task, input={"a": [1, 2.5, None, True]}, attempt=2, attempt_token="t"),
        b'{"type":"task","operationId":"op-1","activityName":"conformance.echo",'
        b'"input":{"a":[1,2.5,null,true]},"attempt":2,"attemptToken":"t",'
        b'"visibilityTimeout":30000}',
        id="task",
    ),
]


@pytest.mark.parametrize(("make", "expected"), EXACT_BYTES)
def test_encode_is_compact_json_stringify_output(make: Builder, expected: bytes) -> None:
    assert encode(make()) == expected


@pytest.mark.parametrize(("make", "keys"), SERVER_FRAMES + WORKER_FRAMES)
def test_encode_writes_no_whitespace_between_tokens(make: Builder, keys: list[str]) -> None:
    message = make()
    assert encode(message) == json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def test_encode_keeps_non_ascii_as_utf8() -> None:
    message = cancel(reason="Zeit\u00fcberschreitung \u2014 \u23f1")
    assert encode(message).endswith('"reason":"Zeit\u00fcberschreitung \u2014 \u23f1"}'.encode())


def test_encode_writes_u2028_raw_like_json_stringify() -> None:
    assert encode(cancel(reason="a\u2028b")).endswith('"reason":"a\u2028b"}'.encode())


def test_encode_escapes_a_lone_surrogate_like_json_stringify() -> None:
    # Well-formed JSON.stringify (ES2019) writes a lone surrogate as a \u escape.
    assert encode(task(input="\ud800")).count(b'"input":"\\ud800"') == 1


def test_encode_escapes_control_characters_with_short_forms() -> None:
    encoded = encode(cancel(reason='a"b\\c\nd\te\x01'))
    assert encoded.endswith(b'"reason":"a\\"b\\\\c\\nd\\te\\u0001"}')


def test_encode_accepts_the_parser_s_error_frames() -> None:
    rejection = parse_worker_frame("nope", registered=False)
    assert isinstance(rejection, FrameRejection)
    assert encode(rejection.to_message()) == rejection.frame()
