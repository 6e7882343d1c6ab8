"""The JSON Schema documents in protocol/schema/v8 against the reference.

The expected document layout, message shapes and example bodies are written by
hand from weft-protocol-v8.md (§3 for the WebSocket messages, §16A/§16B for
the HTTP bodies, §5.1 for the manifest).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from treadle_protocol.schema import SCHEMA_FILES, load_schema, message_validator, validator

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "protocol" / "schema" / "v8"
SCHEMA_PATHS = sorted(SCHEMA_DIR.glob("*.json"))

DIGEST = "sha256:" + "0123456789abcdef" * 4
TOKEN = "8f14e45f-ceea-4b67-9f3e-0a1c2b3d4e5f"

# -- the documents ------------------------------------------------------------------------------


def test_schema_directory_holds_the_five_v8_documents() -> None:
    assert [path.name for path in SCHEMA_PATHS] == [
        "longpoll-queue.json",
        "remote-worker-protocol.json",
        "task-api.json",
        "worker-manifest.json",
        "worker-sessions.json",
    ]


@pytest.mark.parametrize("path", SCHEMA_PATHS, ids=lambda path: path.name)
def test_document_is_a_valid_draft_2020_12_schema(path: Path) -> None:
    document = json.loads(path.read_text("utf-8"))
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(document)


@pytest.mark.parametrize("path", SCHEMA_PATHS, ids=lambda path: path.name)
def test_packaged_copy_matches_the_repository_document(path: Path) -> None:
    assert path.name in SCHEMA_FILES
    assert load_schema(path.name) == json.loads(path.read_text("utf-8"))


MESSAGES = load_schema("remote-worker-protocol.json")
MESSAGE_TYPES = [
    "register",
    "heartbeat",
    "activityHeartbeat",
    "taskResult",
    "task",
    "cancel",
    "shutdown",
    "registerAck",
    "registerError",
    "protocolError",
    "taskResultAck",
]


def test_messages_document_identity_is_weft_s() -> None:
    assert MESSAGES["$id"] == "https://weft.dev/schemas/remote-worker-protocol.v8.json"
    assert MESSAGES["title"] == "Weft RemoteWorker Protocol v8"


def test_messages_are_defined_in_the_reference_order() -> None:
    assert list(MESSAGES["$defs"]["messages"]) == MESSAGE_TYPES


def test_top_level_is_one_of_a_ref_per_message_in_the_same_order() -> None:
    assert MESSAGES["oneOf"] == [{"$ref": f"#/$defs/messages/{name}"} for name in MESSAGE_TYPES]


def test_shared_definitions_exist() -> None:
    defs = MESSAGES["$defs"]
    assert {"jsonValue", "jsonObject", "stringMap", "messages"} <= set(defs)
    kinds = [option.get("type") for option in defs["jsonValue"]["oneOf"]]
    assert kinds == ["null", "boolean", "number", "string", "array", "object"]
    assert defs["stringMap"] == {"type": "object", "additionalProperties": {"type": "string"}}


def _message_objects() -> list[Any]:
    params = []
    for name, schema in MESSAGES["$defs"]["messages"].items():
        if name == "taskResult":
            for variant in schema["oneOf"]:
                status = variant["properties"]["status"]["const"]
                params.append(pytest.param(name, variant, id=f"taskResult-{status}"))
        else:
            params.append(pytest.param(name, schema, id=name))
    return params


@pytest.mark.parametrize(("name", "schema"), _message_objects())
def test_every_message_object_forbids_additional_properties(
    name: str, schema: dict[str, Any]
) -> None:
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["properties"]["type"] == {"const": name}
    assert "type" in schema["required"]


def test_task_result_has_exactly_three_variants() -> None:
    variants = MESSAGES["$defs"]["messages"]["taskResult"]["oneOf"]
    statuses = [variant["properties"]["status"]["const"] for variant in variants]
    assert statuses == ["completed", "failed", "cancelled"]


# (required, allowed) per message, from the §3 tables.
SHAPES: dict[str, tuple[set[str], set[str]]] = {
    "register": (
        {"type", "protocolVersion", "workerId", "manifest"},
        {"concurrency", "startedAt", "resumeSessionGeneration"},
    ),
    "heartbeat": ({"type", "workerId"}, set()),
    "activityHeartbeat": ({"type", "workerId", "operationId", "attemptToken"}, {"details"}),
    "taskResult-completed": (
        {"type", "operationId", "status", "value", "attemptToken"},
        {"workflowRevision"},
    ),
    "taskResult-failed": (
        {"type", "operationId", "status", "error", "attemptToken"},
        {"workflowRevision"},
    ),
    "taskResult-cancelled": (
        {"type", "operationId", "status", "error", "attemptToken"},
        {"workflowRevision", "cancelled"},
    ),
    "task": (
        {"type", "operationId", "activityName", "input", "attemptToken"},
        {
            "attempt",
            "headers",
            "workflowExecutionToken",
            "workflowRevision",
            "visibilityTimeout",
            "lastHeartbeatDetails",
        },
    ),
    "cancel": ({"type", "operationId", "attemptToken"}, {"reason"}),
    "shutdown": ({"type"}, set()),
    "registerAck": (
        {
            "type",
            "protocolVersion",
            "workerId",
            "queue",
            "concurrency",
            "acceptedManifestDigest",
            "serverCapabilities",
            "sessionGeneration",
        },
        set(),
    ),
    "registerError": (
        {"type", "code", "message", "supportedProtocolVersions"},
        {"requestedProtocolVersion"},
    ),
    "protocolError": ({"type", "code", "message"}, {"operationId", "attemptToken"}),
    "taskResultAck": ({"type", "operationId", "attemptToken", "disposition"}, set()),
}


@pytest.mark.parametrize(("name", "schema"), _message_objects())
def test_required_and_optional_fields_match_the_reference_tables(
    name: str, schema: dict[str, Any]
) -> None:
    key = f"taskResult-{schema['properties']['status']['const']}" if name == "taskResult" else name
    required, optional = SHAPES[key]
    assert set(schema["required"]) == required
    assert set(schema["properties"]) == required | optional


ENUMS = [
    pytest.param(
        "registerError",
        "code",
        [
            "invalid_registration",
            "unsupported_protocol_version",
            "deployment_conflict",
            "registration_rejected",
        ],
        id="registerError-code",
    ),
    pytest.param(
        "protocolError",
        "code",
        ["invalid_json", "invalid_message", "unknown_message_type", "registration_required"],
        id="protocolError-code",
    ),
    pytest.param(
        "taskResultAck",
        "disposition",
        ["applied", "duplicate", "dead-lettered"],
        id="taskResultAck-disposition",
    ),
]


@pytest.mark.parametrize(("message", "field", "values"), ENUMS)
def test_enums_list_the_reference_values(message: str, field: str, values: list[str]) -> None:
    assert MESSAGES["$defs"]["messages"][message]["properties"][field]["enum"] == values


# -- frames that validate -----------------------------------------------------------------------

SMALL_MANIFEST = {"manifestVersion": 1, "protocolVersion": 8}

VALID_FRAMES = [
    # §3 canonical examples, server -> worker.
    pytest.param(
        {
            "type": "registerAck",
            "protocolVersion": 8,
            "workerId": "w1",
            "queue": "default",
            "concurrency": 10,
            "acceptedManifestDigest": DIGEST,
            "serverCapabilities": [],
            "sessionGeneration": 1,
        },
        id="registerAck",
    ),
    pytest.param(
        {
            "type": "registerError",
            "code": "unsupported_protocol_version",
            "message": "This server requires Weft worker protocol v8; got v3. Upgrade the worker"
            " SDK to use qualified activity names (workflowType.activityName).",
            "supportedProtocolVersions": [8],
            "requestedProtocolVersion": 3,
        },
        id="registerError-with-requestedProtocolVersion",
    ),
    pytest.param(
        {
            "type": "registerError",
            "code": "invalid_registration",
            "message": "register.workerId must be a non-empty string",
            "supportedProtocolVersions": [8],
        },
        id="registerError-without-requestedProtocolVersion",
    ),
    pytest.param(
        {
            "type": "registerError",
            "code": "deployment_conflict",
            "message": 'Deployment "d" build "b" is already registered with a different'
            " artifact digest",
            "supportedProtocolVersions": [8],
        },
        id="registerError-deployment_conflict",
    ),
    pytest.param(
        {
            "type": "registerError",
            "code": "registration_rejected",
            "message": "workerAdmissionPolicy threw: nope",
            "supportedProtocolVersions": [8],
        },
        id="registerError-registration_rejected",
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
            "code": "registration_required",
            "message": "Worker must register before sending heartbeat or taskResult messages",
        },
        id="protocolError-registration_required",
    ),
    pytest.param(
        {
            "type": "protocolError",
            "code": "invalid_message",
            "message": 'taskResult for operation "op-1" rejected \u2014 stale attempt token',
            "operationId": "op-1",
            "attemptToken": TOKEN,
        },
        id="protocolError-correlated",
    ),
    pytest.param(
        {
            "type": "taskResultAck",
            "operationId": "op-1",
            "attemptToken": TOKEN,
            "disposition": "applied",
        },
        id="taskResultAck-applied",
    ),
    pytest.param(
        {
            "type": "taskResultAck",
            "operationId": "op-1",
            "attemptToken": TOKEN,
            "disposition": "duplicate",
        },
        id="taskResultAck-duplicate",
    ),
    pytest.param(
        {
            "type": "taskResultAck",
            "operationId": "op-1",
            "attemptToken": TOKEN,
            "disposition": "dead-lettered",
        },
        id="taskResultAck-dead-lettered",
    ),
    pytest.param(
        {
            "type": "task",
            "operationId": "conformance-echo",
            "activityName": "conformance.echo",
            "input": {"ok": True},
            "attempt": 1,
            "attemptToken": TOKEN,
            "workflowExecutionToken": "wet-1",
            "workflowRevision": "conformance-revision-1",
            "headers": {"traceparent": "00-abc-def-01"},
            "visibilityTimeout": 30000,
            "lastHeartbeatDetails": {"progress": 0.5, "cursor": [1, "a", None]},
        },
        id="task-with-visibilityTimeout-and-lastHeartbeatDetails",
    ),
    pytest.param(
        {
            "type": "task",
            "operationId": "op-1",
            "activityName": "wf.act",
            "input": None,
            "attempt": 1,
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
            "input": [1, 2],
            "attemptToken": TOKEN,
        },
        id="task-required-fields-only",
    ),
    pytest.param(
        {
            "type": "task",
            "operationId": "op-1",
            "activityName": "wf.act",
            "input": 1,
            "attemptToken": TOKEN,
            "visibilityTimeout": 0,
            "lastHeartbeatDetails": None,
        },
        id="task-visibilityTimeout-0-and-null-details",
    ),
    pytest.param(
        {
            "type": "cancel",
            "operationId": "op-1",
            "attemptToken": TOKEN,
            "reason": "Task cancelled",
        },
        id="cancel",
    ),
    pytest.param(
        {"type": "cancel", "operationId": "op-1", "attemptToken": TOKEN}, id="cancel-no-reason"
    ),
    pytest.param(
        {"type": "cancel", "operationId": "op-1", "attemptToken": TOKEN, "reason": ""},
        id="cancel-empty-reason-schema-allows-it",
    ),
    pytest.param({"type": "shutdown"}, id="shutdown"),
    # Worker -> server, hand-written from the §3 tables.
    pytest.param(
        {"type": "register", "protocolVersion": 8, "workerId": "w1", "manifest": SMALL_MANIFEST},
        id="register-minimal",
    ),
    pytest.param(
        {
            "type": "register",
            "protocolVersion": 8,
            "workerId": "conformance-worker-1",
            "manifest": SMALL_MANIFEST,
            "concurrency": 3,
            "startedAt": 1700000000000,
            "resumeSessionGeneration": 2,
        },
        id="register-with-optionals",
    ),
    pytest.param(
        {
            "type": "register",
            "protocolVersion": 8,
            "workerId": "w",
            "manifest": {},
            "concurrency": 1000,
        },
        id="register-concurrency-1000",
    ),
    pytest.param({"type": "heartbeat", "workerId": "w1"}, id="heartbeat"),
    pytest.param(
        {
            "type": "activityHeartbeat",
            "workerId": "w1",
            "operationId": "op-1",
            "attemptToken": TOKEN,
        },
        id="activityHeartbeat",
    ),
    pytest.param(
        {
            "type": "activityHeartbeat",
            "workerId": "w1",
            "operationId": "op-1",
            "attemptToken": TOKEN,
            "details": None,
        },
        id="activityHeartbeat-null-details",
    ),
    pytest.param(
        {
            "type": "activityHeartbeat",
            "workerId": "w1",
            "operationId": "op-1",
            "attemptToken": TOKEN,
            "details": {"rows": [1, 2.5, "x", True, None, {"k": []}]},
        },
        id="activityHeartbeat-nested-details",
    ),
    pytest.param(
        {
            "type": "taskResult",
            "operationId": "op-1",
            "status": "completed",
            "value": {"ok": True},
            "attemptToken": TOKEN,
        },
        id="taskResult-completed",
    ),
    pytest.param(
        {
            "type": "taskResult",
            "operationId": "op-1",
            "status": "completed",
            "value": None,
            "attemptToken": TOKEN,
            "workflowRevision": "rev-1",
        },
        id="taskResult-completed-null-value-with-revision",
    ),
    pytest.param(
        {
            "type": "taskResult",
            "operationId": "op-1",
            "status": "failed",
            "error": "",
            "attemptToken": TOKEN,
        },
        id="taskResult-failed-empty-error",
    ),
    pytest.param(
        {
            "type": "taskResult",
            "operationId": "op-1",
            "status": "cancelled",
            "error": "Task cancelled",
            "cancelled": True,
            "attemptToken": TOKEN,
        },
        id="taskResult-cancelled",
    ),
    pytest.param(
        {
            "type": "taskResult",
            "operationId": "op-1",
            "status": "cancelled",
            "error": "Task cancelled",
            "attemptToken": TOKEN,
        },
        id="taskResult-cancelled-without-flag",
    ),
]


@pytest.mark.parametrize("message", VALID_FRAMES)
def test_valid_frame_validates_against_the_document(message: dict[str, Any]) -> None:
    message_validator().validate(message)
    message_validator(message["type"]).validate(message)


# -- frames that do not -------------------------------------------------------------------------


def _register(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "type": "register",
        "protocolVersion": 8,
        "workerId": "w",
        "manifest": {},
    }
    return {**base, **fields}


def _completed(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "type": "taskResult",
        "operationId": "op-1",
        "status": "completed",
        "value": 1,
        "attemptToken": TOKEN,
    }
    return {**base, **fields}


def _without(message: dict[str, object], field: str) -> dict[str, object]:
    return {key: value for key, value in message.items() if key != field}


ACK = {
    "type": "registerAck",
    "protocolVersion": 8,
    "workerId": "w1",
    "queue": "default",
    "concurrency": 10,
    "acceptedManifestDigest": DIGEST,
    "serverCapabilities": [],
    "sessionGeneration": 1,
}

INVALID_FRAMES = [
    pytest.param(_without(_register(), "workerId"), id="register-missing-workerId"),
    pytest.param(_without(_register(), "manifest"), id="register-missing-manifest"),
    pytest.param(_register(workerId=""), id="register-empty-workerId"),
    pytest.param(_register(protocolVersion=7), id="register-protocolVersion-7"),
    pytest.param(_register(concurrency=0), id="register-concurrency-0-below-schema-minimum"),
    pytest.param(_register(concurrency=1001), id="register-concurrency-1001-above-maximum"),
    pytest.param(_register(concurrency=True), id="register-concurrency-boolean"),
    pytest.param(_register(startedAt=None), id="register-startedAt-null"),
    pytest.param(_register(resumeSessionGeneration=0), id="register-resume-0"),
    pytest.param(_register(manifest=[]), id="register-manifest-array"),
    pytest.param(_register(queue="default"), id="register-extra-field"),
    pytest.param({"type": "heartbeat"}, id="heartbeat-missing-workerId"),
    pytest.param({"type": "heartbeat", "workerId": "w", "at": 1}, id="heartbeat-extra-field"),
    pytest.param(
        {"type": "activityHeartbeat", "workerId": "w", "operationId": "op-1"},
        id="activityHeartbeat-missing-attemptToken",
    ),
    pytest.param(_without(_completed(), "value"), id="taskResult-completed-without-value"),
    pytest.param(_completed(error="x"), id="taskResult-completed-with-error-field"),
    pytest.param(
        _without(_completed(status="failed"), "value"), id="taskResult-failed-without-error"
    ),
    pytest.param(
        {**_without(_completed(status="cancelled"), "value"), "error": "x", "cancelled": False},
        id="taskResult-cancelled-false",
    ),
    pytest.param(_completed(status="done"), id="taskResult-unknown-status"),
    pytest.param(_completed(workflowRevision=""), id="taskResult-empty-workflowRevision"),
    pytest.param(_without(_completed(), "attemptToken"), id="taskResult-missing-attemptToken"),
    pytest.param(
        {"type": "task", "operationId": "o", "activityName": "wf.a", "input": None},
        id="task-missing-attemptToken",
    ),
    pytest.param(
        {
            "type": "task",
            "operationId": "o",
            "activityName": "wf.a",
            "input": None,
            "attemptToken": TOKEN,
            "attempt": 0,
        },
        id="task-attempt-0",
    ),
    pytest.param(
        {
            "type": "task",
            "operationId": "o",
            "activityName": "wf.a",
            "input": None,
            "attemptToken": TOKEN,
            "visibilityTimeout": -1,
        },
        id="task-negative-visibilityTimeout",
    ),
    pytest.param(
        {
            "type": "task",
            "operationId": "o",
            "activityName": "wf.a",
            "input": None,
            "attemptToken": TOKEN,
            "headers": {"x": 1},
        },
        id="task-non-string-header",
    ),
    pytest.param({"type": "cancel", "operationId": "o"}, id="cancel-missing-attemptToken"),
    pytest.param({"type": "shutdown", "reason": "bye"}, id="shutdown-extra-field"),
    pytest.param(_without(ACK, "sessionGeneration"), id="registerAck-missing-sessionGeneration"),
    pytest.param({**ACK, "sessionGeneration": 0}, id="registerAck-sessionGeneration-0"),
    pytest.param({**ACK, "serverCapabilities": [""]}, id="registerAck-empty-capability"),
    pytest.param({**ACK, "concurrency": 1001}, id="registerAck-concurrency-1001"),
    pytest.param(
        {
            "type": "registerError",
            "code": "deployment-conflict",
            "message": "m",
            "supportedProtocolVersions": [8],
        },
        id="registerError-unknown-code",
    ),
    pytest.param(
        {
            "type": "registerError",
            "code": "invalid_registration",
            "message": "m",
            "supportedProtocolVersions": ["8"],
        },
        id="registerError-string-version",
    ),
    pytest.param(
        {"type": "protocolError", "code": "invalid_registration", "message": "m"},
        id="protocolError-with-a-registerError-code",
    ),
    pytest.param(
        {"type": "protocolError", "code": "invalid_message", "message": "m", "operationId": ""},
        id="protocolError-empty-operationId",
    ),
    pytest.param(
        {
            "type": "taskResultAck",
            "operationId": "o",
            "attemptToken": TOKEN,
            "disposition": "cancelled",
        },
        id="taskResultAck-unknown-disposition",
    ),
    pytest.param({"type": "ping"}, id="unknown-type"),
    pytest.param([], id="array"),
]


@pytest.mark.parametrize("message", INVALID_FRAMES)
def test_invalid_frame_fails_the_document(message: Any) -> None:
    assert not message_validator().is_valid(message)


# -- HTTP bodies (§16A queue long-poll, §16B worker sessions) -----------------------------------

CLAIM = {
    "operationId": "op-1",
    "activityName": "conformance.echo",
    "input": {"ok": True},
    "attempt": 1,
    "headers": {},
    "visibilityTimeout": 30000,
    "workerId": "longpoll-1a2b3c4d",
    "attemptToken": TOKEN,
}

HTTP_VALID = [
    pytest.param("longpoll-queue.json", "taskClaim", CLAIM, id="poll-200-claim"),
    pytest.param(
        "longpoll-queue.json",
        "taskClaim",
        {
            **CLAIM,
            "workflowExecutionToken": "wet",
            "workflowRevision": "rev-1",
            "lastHeartbeatDetails": {"step": 3},
        },
        id="poll-200-claim-with-optional-fields",
    ),
    pytest.param(
        "longpoll-queue.json",
        "taskClaim",
        {
            **CLAIM,
            "retryPolicy": {"maxAttempts": 3},
            "workflowId": "wf-1",
            "firstQueuedAt": 1700000000000,
            "lastQueuedAt": 1700000000001,
            "retryCount": 0,
            "requeueCount": 0,
            "priority": 5,
        },
        id="poll-200-claim-with-bookkeeping-fields",
    ),
    pytest.param(
        "longpoll-queue.json",
        "resultRequest",
        {
            "operationId": "op-1",
            "workerId": "longpoll-1a2b3c4d",
            "attemptToken": TOKEN,
            "status": "completed",
            "value": {"ok": True},
        },
        id="result-completed",
    ),
    pytest.param(
        "longpoll-queue.json",
        "resultRequest",
        {
            "operationId": "op-1",
            "workerId": "longpoll-1a2b3c4d",
            "attemptToken": TOKEN,
            "status": "failed",
            "error": "boom",
            "workflowRevision": "rev-1",
        },
        id="result-failed-with-revision",
    ),
    pytest.param(
        "longpoll-queue.json",
        "resultRequest",
        {
            "operationId": "op-1",
            "workerId": "longpoll-1a2b3c4d",
            "attemptToken": TOKEN,
            "status": "cancelled",
            "error": "Task cancelled",
            "cancelled": True,
        },
        id="result-cancelled",
    ),
    pytest.param(
        "longpoll-queue.json",
        "resultResponse",
        {"ok": True, "disposition": "applied"},
        id="result-200-applied",
    ),
    pytest.param(
        "longpoll-queue.json",
        "resultResponse",
        {"ok": True, "disposition": "duplicate"},
        id="result-200-duplicate",
    ),
    pytest.param(
        "longpoll-queue.json",
        "resultResponse",
        {"ok": True, "disposition": "dead-lettered"},
        id="result-200-dead-lettered",
    ),
    pytest.param(
        "longpoll-queue.json",
        "heartbeatRequest",
        {
            "operationId": "op-1",
            "workerId": "longpoll-1a2b3c4d",
            "attemptToken": TOKEN,
            "details": {"progress": 1},
        },
        id="heartbeat-with-details",
    ),
    pytest.param(
        "longpoll-queue.json",
        "heartbeatRequest",
        {"operationId": "op-1", "attemptToken": TOKEN},
        id="heartbeat-without-workerId",
    ),
    pytest.param(
        "longpoll-queue.json",
        "heartbeatResponse",
        {"ok": True, "cancelled": False, "leaseDeadline": 1700000030000},
        id="heartbeat-200-renewed",
    ),
    pytest.param(
        "longpoll-queue.json",
        "heartbeatResponse",
        {"ok": True, "cancelled": True, "reason": "operator asked"},
        id="heartbeat-200-cancel-pending",
    ),
    pytest.param(
        "longpoll-queue.json",
        "heartbeatResponse",
        {"ok": True, "cancelled": False},
        id="heartbeat-200-already-resolved",
    ),
    pytest.param(
        "longpoll-queue.json", "badRequest", {"error": "Invalid JSON body"}, id="400-invalid-json"
    ),
    pytest.param(
        "longpoll-queue.json",
        "badRequest",
        {"error": "Missing required fields: operationId, status"},
        id="400-missing-fields",
    ),
    pytest.param(
        "longpoll-queue.json",
        "badRequest",
        {"error": 'status must be "completed", "failed", or "cancelled"'},
        id="400-bad-status",
    ),
    pytest.param(
        "longpoll-queue.json",
        "badRequest",
        {"error": "attemptToken must be a non-empty string"},
        id="400-bad-attemptToken",
    ),
    pytest.param("longpoll-queue.json", "forbidden", {"error": "Forbidden"}, id="403-heartbeat"),
    *[
        pytest.param(
            "longpoll-queue.json",
            "forbidden",
            {"error": "Forbidden", "operationId": "op-1", "attemptToken": TOKEN, "reason": reason},
            id=f"403-{reason}",
        )
        for reason in (
            "unknown-operation",
            "stale-attempt",
            "worker-mismatch",
            "attempt-token-mismatch",
            "queue-mismatch",
            "revision-mismatch",
            "conflicting-content",
        )
    ],
    pytest.param(
        "longpoll-queue.json",
        "payloadTooLarge",
        {
            "error": "activity result exceeds the configured maximum serialized size:"
            " 2048 bytes > 1024 byte limit.",
            "code": "payload_too_large",
            "maxBytes": 1024,
            "serializedBytes": 2048,
            "payloadKind": "result",
        },
        id="413",
    ),
    pytest.param(
        "worker-sessions.json",
        "openRequest",
        {"manifest": "MANIFEST", "queue": "default", "concurrency": 10, "startedAt": 1700000000000},
        id="session-open",
    ),
    pytest.param(
        "worker-sessions.json",
        "openRequest",
        {"manifest": "MANIFEST"},
        id="session-open-manifest-only",
    ),
    pytest.param(
        "worker-sessions.json",
        "openResponse",
        {
            "ok": True,
            "sessionId": TOKEN,
            "workerId": TOKEN,
            "queue": "default",
            "sessionToken": "ab" * 32,
            "acceptedManifestDigest": DIGEST,
            "protocolVersion": 8,
            "sessionGeneration": 1,
        },
        id="session-open-200",
    ),
    pytest.param(
        "worker-sessions.json",
        "manifestRejected",
        {
            "error": "manifest.deployment.buildId must be a non-empty string",
            "reason": "invalid_field",
            "path": "manifest.deployment.buildId",
        },
        id="session-open-400-manifest",
    ),
    pytest.param(
        "worker-sessions.json", "sessionHeartbeatResponse", {"ok": True}, id="session-heartbeat"
    ),
    pytest.param(
        "worker-sessions.json",
        "sessionError",
        {"error": "Deployment artifact digest conflict", "code": "deployment_conflict"},
        id="session-409-deployment-conflict",
    ),
    *[
        pytest.param(
            "worker-sessions.json",
            "sessionError",
            {"error": "refused", "code": code},
            id=f"session-error-{code}",
        )
        for code in (
            "worker_session_mismatch",
            "stale_session",
            "session_draining",
            "session_expired",
        )
    ],
    pytest.param(
        "worker-sessions.json",
        "sessionError",
        {"error": "Unknown worker session"},
        id="session-404",
    ),
]


def _with_manifest(body: object, manifest: dict[str, Any]) -> object:
    if isinstance(body, dict) and body.get("manifest") == "MANIFEST":
        return {**body, "manifest": manifest}
    return body


@pytest.mark.parametrize(("document", "definition", "body"), HTTP_VALID)
def test_http_body_from_the_reference_validates(
    document: str, definition: str, body: object, manifest: dict[str, Any]
) -> None:
    validator(document, f"/$defs/{definition}").validate(_with_manifest(body, manifest))


HTTP_INVALID = [
    pytest.param(
        "longpoll-queue.json",
        "taskClaim",
        _without(CLAIM, "attemptToken"),
        id="claim-missing-attemptToken",
    ),
    pytest.param(
        "longpoll-queue.json", "taskClaim", _without(CLAIM, "workerId"), id="claim-missing-workerId"
    ),
    pytest.param("longpoll-queue.json", "taskClaim", {**CLAIM, "attempt": 0}, id="claim-attempt-0"),
    pytest.param(
        "longpoll-queue.json",
        "resultRequest",
        {"operationId": "op-1", "attemptToken": TOKEN, "status": "done"},
        id="result-unknown-status",
    ),
    pytest.param(
        "longpoll-queue.json",
        "resultRequest",
        {"operationId": "op-1", "attemptToken": "", "status": "failed", "error": "x"},
        id="result-empty-attemptToken",
    ),
    pytest.param(
        "longpoll-queue.json",
        "resultRequest",
        {"attemptToken": TOKEN, "status": "failed", "error": "x"},
        id="result-missing-operationId",
    ),
    pytest.param(
        "longpoll-queue.json",
        "resultResponse",
        {"ok": False, "disposition": "applied"},
        id="result-200-ok-false",
    ),
    pytest.param(
        "longpoll-queue.json",
        "resultResponse",
        {"ok": True, "disposition": "cancelled"},
        id="result-200-unknown-disposition",
    ),
    pytest.param(
        "longpoll-queue.json",
        "heartbeatRequest",
        {"operationId": "op-1"},
        id="heartbeat-missing-attemptToken",
    ),
    pytest.param(
        "longpoll-queue.json",
        "heartbeatResponse",
        {"ok": True, "cancelled": True},
        id="heartbeat-200-cancelled-without-reason",
    ),
    pytest.param(
        "longpoll-queue.json",
        "forbidden",
        {"error": "Forbidden", "reason": "stale-token"},
        id="403-unknown-reason",
    ),
    pytest.param(
        "worker-sessions.json",
        "openRequest",
        {"manifest": "MANIFEST", "queue": "a.b"},
        id="session-open-dotted-queue",
    ),
    pytest.param(
        "worker-sessions.json",
        "openRequest",
        {"manifest": "MANIFEST", "queue": ""},
        id="session-open-empty-queue",
    ),
    pytest.param(
        "worker-sessions.json",
        "openRequest",
        {"manifest": "MANIFEST", "concurrency": 0},
        id="session-open-concurrency-0",
    ),
    pytest.param(
        "worker-sessions.json",
        "openRequest",
        {"manifest": "MANIFEST", "concurrency": 1.5},
        id="session-open-concurrency-not-an-integer",
    ),
    pytest.param(
        "worker-sessions.json", "openRequest", {"queue": "default"}, id="session-open-no-manifest"
    ),
    pytest.param(
        "worker-sessions.json",
        "openResponse",
        {
            "ok": True,
            "sessionId": TOKEN,
            "workerId": TOKEN,
            "queue": "default",
            "sessionToken": "ab" * 31,
            "acceptedManifestDigest": DIGEST,
            "protocolVersion": 8,
            "sessionGeneration": 1,
        },
        id="session-open-200-short-token",
    ),
    pytest.param(
        "worker-sessions.json",
        "sessionError",
        {"error": "gone", "code": "session_gone"},
        id="session-error-unknown-code",
    ),
]


@pytest.mark.parametrize(("document", "definition", "body"), HTTP_INVALID)
def test_http_body_breaking_the_reference_does_not_validate(
    document: str, definition: str, body: object, manifest: dict[str, Any]
) -> None:
    checker = validator(document, f"/$defs/{definition}")
    assert not checker.is_valid(_with_manifest(body, manifest))


def test_session_open_rejects_a_manifest_with_a_dotted_workflow(manifest: dict[str, Any]) -> None:
    workflows = manifest["workflows"]
    workflows["a.b"] = workflows.pop("conformance")
    checker = validator("worker-sessions.json", "/$defs/openRequest")
    assert not checker.is_valid({"manifest": manifest})


# -- the worker manifest (§5.1) -----------------------------------------------------------------


def test_conformance_manifest_validates(manifest: dict[str, Any]) -> None:
    validator("worker-manifest.json").validate(manifest)


def _edit_valid(manifest: dict[str, Any], edit: str) -> None:
    if edit == "empty-runtime-version":
        manifest["runtime"]["version"] = ""
    elif edit == "64-capabilities":
        manifest["capabilities"] = {f"cap{i}": i for i in range(64)}
    elif edit == "nested-capabilities":
        manifest["capabilities"] = {"gpu": {"count": 2, "kinds": ["a100", None, True, 1.5]}}
    elif edit == "names-with-underscore-and-hyphen":
        workflows = manifest["workflows"]
        workflows["_billing-v2"] = copy.deepcopy(workflows["conformance"])
    elif edit == "no-workflows":
        manifest["workflows"] = {}


@pytest.mark.parametrize(
    "edit",
    [
        "empty-runtime-version",
        "64-capabilities",
        "nested-capabilities",
        "names-with-underscore-and-hyphen",
        "no-workflows",
    ],
)
def test_manifest_variant_within_the_limits_validates(manifest: dict[str, Any], edit: str) -> None:
    _edit_valid(manifest, edit)
    validator("worker-manifest.json").validate(manifest)


def _edit_invalid(manifest: dict[str, Any], edit: str) -> None:
    workflow = manifest["workflows"]["conformance"]
    if edit == "dotted-workflow-key":
        manifest["workflows"]["payments.charge"] = manifest["workflows"].pop("conformance")
    elif edit == "dotted-activity-key":
        workflow["activities"]["echo.v2"] = workflow["activities"].pop("echo")
    elif edit == "workflow-key-starting-with-a-digit":
        manifest["workflows"]["1st"] = manifest["workflows"].pop("conformance")
    elif edit == "65-capabilities":
        manifest["capabilities"] = {f"cap{i}": i for i in range(65)}
    elif edit == "manifestVersion-2":
        manifest["manifestVersion"] = 2
    elif edit == "empty-buildId":
        manifest["deployment"]["buildId"] = ""
    elif edit == "missing-deployment":
        del manifest["deployment"]
    elif edit == "missing-capabilities":
        del manifest["capabilities"]
    elif edit == "protocolVersion-string":
        manifest["protocolVersion"] = "8"
    elif edit == "activity-without-implementationRevision":
        del workflow["activities"]["echo"]["implementationRevision"]


@pytest.mark.parametrize(
    "edit",
    [
        "dotted-workflow-key",
        "dotted-activity-key",
        "workflow-key-starting-with-a-digit",
        "65-capabilities",
        "manifestVersion-2",
        "empty-buildId",
        "missing-deployment",
        "missing-capabilities",
        "protocolVersion-string",
        "activity-without-implementationRevision",
    ],
)
def test_manifest_breaking_the_reference_does_not_validate(
    manifest: dict[str, Any], edit: str
) -> None:
    _edit_invalid(manifest, edit)
    assert not validator("worker-manifest.json").is_valid(manifest)
