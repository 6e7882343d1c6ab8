"""HTTP long-poll bodies against longpoll-queue.json and worker-sessions.json (reference §16A,
§16B).

Written by hand from weft-protocol-v8.md, not from the schema files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from reference_frames import without

from treadle_protocol.schema import validator

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "protocol" / "schema" / "v8"
SCHEMA_PATHS = sorted(SCHEMA_DIR.glob("*.json"))

DIGEST = "sha256:" + "0123456789abcdef" * 4
TOKEN = "8f14e45f-ceea-4b67-9f3e-0a1c2b3d4e5f"

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
        without(CLAIM, "attemptToken"),
        id="claim-missing-attemptToken",
    ),
    pytest.param(
        "longpoll-queue.json", "taskClaim", without(CLAIM, "workerId"), id="claim-missing-workerId"
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
