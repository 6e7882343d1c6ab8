"""Helpers, frames and message texts shared by the tests written from the reference alone.

Every frame, error code, message text and close code below was written by hand
from /work/shared/reference/weft-protocol-v8.md (§2 close codes, §3 frame
shapes, §4 parse order and texts, §5 registration and manifest), not copied
from the implementation or from protocol/vectors, so that a mistyped message
or a check in the wrong order in ``treadle_protocol`` shows up here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from treadle_protocol import (
    FrameRejection,
)

# -- helpers ----------------------------------------------------------------------------------

PROTOCOL_ERROR_CLOSE = 1002  # §2: after a fatal protocolError
REGISTER_ERROR_CLOSE = 1008  # §2: after registerError

MISSING: Any = object()
"""In a frame table: leave this field out of the frame."""

ABSENT: Any = object()
"""In an expectation: the key must not be in the error frame."""


@dataclass(frozen=True)
class Raw:
    """JSON text put into a frame verbatim, for values Python cannot dump (``1e400``)."""

    text: str


def compact(value: object) -> str:
    """``JSON.stringify`` output for plain values: no spaces, UTF-8 kept as is."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def frame(base: Mapping[str, object], **changes: object) -> str:
    """The JSON text of ``base`` with ``changes`` applied (``MISSING`` drops a field)."""
    fields = {**base, **changes}
    parts = [
        f"{compact(key)}:{value.text if isinstance(value, Raw) else compact(value)}"
        for key, value in fields.items()
        if value is not MISSING
    ]
    return "{" + ",".join(parts) + "}"


def assert_protocol_error(result: object, code: str, message: str) -> None:
    """A fatal protocolError: close 1002, frame ``{"type","code","message"}`` exactly."""
    assert isinstance(result, FrameRejection), f"frame was accepted as {result!r}"
    assert (result.kind, result.code, result.message) == ("protocolError", code, message)
    assert result.close_code == PROTOCOL_ERROR_CLOSE
    expected = {"type": "protocolError", "code": code, "message": message}
    assert result.frame() == compact(expected).encode("utf-8")


def assert_register_error(
    result: object, code: str, message: str, requested: object = ABSENT
) -> None:
    """A registerError: close 1008, keys in Weft's order, requestedProtocolVersion last."""
    assert isinstance(result, FrameRejection), f"frame was accepted as {result!r}"
    assert (result.kind, result.code, result.message) == ("registerError", code, message)
    assert result.close_code == REGISTER_ERROR_CLOSE
    decoded = json.loads(result.frame())
    keys = ["type", "code", "message", "supportedProtocolVersions"]
    if requested is not ABSENT:
        keys.append("requestedProtocolVersion")
    assert list(decoded) == keys
    assert decoded["type"] == "registerError"
    assert decoded["code"] == code
    assert decoded["message"] == message
    assert decoded["supportedProtocolVersions"] == [8]
    if requested is not ABSENT:
        echoed = decoded["requestedProtocolVersion"]
        assert isinstance(echoed, int | float)
        assert not isinstance(echoed, bool)
        assert float(echoed) == float(requested)  # type: ignore[arg-type]


def version_message(shown: str) -> str:
    """§4 rule 5: the unsupported_protocol_version text (the code's, not the docs' old one)."""
    return (
        f"This server requires Weft worker protocol v8; got v{shown}. "
        "Upgrade the worker SDK to use qualified activity names (workflowType.activityName)."
    )


REGISTER = {"type": "register", "protocolVersion": 8, "workerId": "worker-1", "manifest": {}}
HEARTBEAT = {"type": "heartbeat", "workerId": "worker-1"}
ACTIVITY_HEARTBEAT = {
    "type": "activityHeartbeat",
    "workerId": "worker-1",
    "operationId": "op-1",
    "attemptToken": "token-1",
}
COMPLETED = {
    "type": "taskResult",
    "operationId": "op-1",
    "status": "completed",
    "value": {"ok": True},
    "attemptToken": "token-1",
}
FAILED = {
    "type": "taskResult",
    "operationId": "op-1",
    "status": "failed",
    "error": "boom",
    "attemptToken": "token-1",
}
CANCELLED = {
    "type": "taskResult",
    "operationId": "op-1",
    "status": "cancelled",
    "error": "Task cancelled",
    "cancelled": True,
    "attemptToken": "token-1",
}

INVALID_JSON = "Worker protocol messages must be valid JSON"
NOT_AN_OBJECT = "Worker protocol message must be a JSON object"
TYPE_NOT_A_STRING = "Worker protocol message.type must be a string"
REGISTRATION_REQUIRED = "Worker must register before sending heartbeat or taskResult messages"
# §4 rule 6 gives the code but no literal text for heartbeat; this is the "<message>.<field> must
# be a non-empty string" form of the activityHeartbeat texts in rule 7.
HEARTBEAT_WORKER_ID = "heartbeat.workerId must be a non-empty string"


def without(message: Mapping[str, object], field: str) -> dict[str, object]:
    """A copy of ``message`` lacking ``field``."""
    return {key: value for key, value in message.items() if key != field}


# -- message texts, from §4 --------------------------------------------------------------------


def ahb(field: str) -> str:
    return f"activityHeartbeat.{field} must be a non-empty string"


AHB_DETAILS = "activityHeartbeat.details must be valid JSON when present"
OPERATION_ID = "taskResult.operationId must be a non-empty string"
STATUS = "taskResult.status must be completed, failed, or cancelled"
VALUE = "completed taskResult.value must be valid JSON"
FAILED_ERROR = "failed taskResult.error must be a string"
CANCELLED_ERROR = "cancelled taskResult.error must be a string"
CANCELLED_TRUE = "taskResult.cancelled must be true when present"
ATTEMPT_TOKEN = "taskResult.attemptToken must be a non-empty string"
REVISION = "taskResult.workflowRevision must be a non-empty string when present"
WORKER_ID = "register.workerId must be a non-empty string"
MANIFEST = "register.manifest must be a JSON object"
CONCURRENCY = "register.concurrency must be a finite number"
STARTED_AT = "register.startedAt must be a finite number when present"
RESUME = "register.resumeSessionGeneration must be a finite number when present"
MANIFEST_VERSION_1 = "manifest.manifestVersion must be 1"
BUILD_ID = "manifest.deployment.buildId must be a non-empty string"
