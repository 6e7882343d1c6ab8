"""WebSocket frames against remote-worker-protocol.json: the reference's examples validate, broken
frames do not (§3).

Written by hand from weft-protocol-v8.md, not from the schema files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from reference_frames import without

from treadle_protocol.schema import message_validator

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "protocol" / "schema" / "v8"
SCHEMA_PATHS = sorted(SCHEMA_DIR.glob("*.json"))

DIGEST = "sha256:" + "0123456789abcdef" * 4
TOKEN = "8f14e45f-ceea-4b67-9f3e-0a1c2b3d4e5f"

# -- frames that validate -----------------------------------------------------------------------

SMALL_MANIFEST = {"manifestVersion": 1, "protocolVersion": 8}

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

VALID_FRAMES = [
    # §3 canonical examples, server -> worker.
    pytest.param(
        ACK,
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


INVALID_FRAMES = [
    pytest.param(without(_register(), "workerId"), id="register-missing-workerId"),
    pytest.param(without(_register(), "manifest"), id="register-missing-manifest"),
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
    pytest.param(without(_completed(), "value"), id="taskResult-completed-without-value"),
    pytest.param(_completed(error="x"), id="taskResult-completed-with-error-field"),
    pytest.param(
        without(_completed(status="failed"), "value"), id="taskResult-failed-without-error"
    ),
    pytest.param(
        {**without(_completed(status="cancelled"), "value"), "error": "x", "cancelled": False},
        id="taskResult-cancelled-false",
    ),
    pytest.param(_completed(status="done"), id="taskResult-unknown-status"),
    pytest.param(_completed(workflowRevision=""), id="taskResult-empty-workflowRevision"),
    pytest.param(without(_completed(), "attemptToken"), id="taskResult-missing-attemptToken"),
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
    pytest.param(without(ACK, "sessionGeneration"), id="registerAck-missing-sessionGeneration"),
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
