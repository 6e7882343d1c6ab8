"""Build protocol frames, in both directions, with the keys in Weft's order.

Each builder returns the message as a typed dict (handy for logs and tests);
:func:`encode` turns any message into the bytes of one text frame.  Builders
refuse values the peer would reject (an empty ``cancel`` reason, an empty
token) with :class:`EncodeError`, so a bug shows up at the sender.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, cast

from ._wire import (
    DISPOSITION_VALUES,
    ERROR_CODE_VALUES,
    PROTOCOL_VERSION,
    ActivityHeartbeatMessage,
    CancelMessage,
    DispositionValue,
    ErrorCodeValue,
    HeartbeatMessage,
    JsonValue,
    ProtocolErrorMessage,
    RegisterAckMessage,
    RegisterMessage,
    ShutdownMessage,
    TaskMessage,
    TaskResultAckMessage,
    TaskResultMessage,
)
from .errors import EncodeError
from .jsonjs import dumps, is_finite_number, is_json_value

__all__ = [
    "UNSET",
    "Unset",
    "activity_heartbeat",
    "cancel",
    "encode",
    "heartbeat",
    "protocol_error",
    "register",
    "register_ack",
    "shutdown",
    "task",
    "task_result",
    "task_result_ack",
]


class Unset:
    """Type of :data:`UNSET`: "leave the field out", distinct from JSON ``null``."""

    _instance: Unset | None = None

    def __new__(cls) -> Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Final = Unset()


def _require(field: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise EncodeError(f"{field} must be a non-empty string")
    return value


def _number(field: str, value: object, minimum: float | None = None) -> int | float:
    if not is_finite_number(value):
        raise EncodeError(f"{field} must be a finite number")
    number = cast("int | float", value)
    if minimum is not None and number < minimum:
        raise EncodeError(f"{field} must be at least {minimum:g}")
    return number


def _member(field: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise EncodeError(f"{field} must be one of {', '.join(allowed)}")
    return value


def _json(field: str, value: object) -> JsonValue:
    if not is_json_value(value):
        raise EncodeError(f"{field} must be a JSON value (finite numbers, string keys)")
    return cast(JsonValue, value)


def encode(message: Mapping[str, Any]) -> bytes:
    """Encode one message as a compact UTF-8 JSON text frame."""
    return dumps(message)


# -- server → worker ------------------------------------------------------------


def task(
    *,
    operation_id: str,
    activity_name: str,
    input: JsonValue,
    attempt: int,
    attempt_token: str,
    visibility_timeout: int | float,
    workflow_execution_token: str | None = None,
    workflow_revision: str | None = None,
    headers: Mapping[str, str] | None = None,
    last_heartbeat_details: JsonValue | Unset = UNSET,
) -> TaskMessage:
    """A ``task`` frame: one attempt pushed to a worker."""
    message: TaskMessage = {
        "type": "task",
        "operationId": _require("operationId", operation_id),
        "activityName": _require("activityName", activity_name),
        "input": _json("input", input),
        "attempt": int(_number("attempt", attempt, 1)),
        "attemptToken": _require("attemptToken", attempt_token),
    }
    if workflow_execution_token is not None:
        message["workflowExecutionToken"] = _require(
            "workflowExecutionToken", workflow_execution_token
        )
    if workflow_revision is not None:
        message["workflowRevision"] = _require("workflowRevision", workflow_revision)
    if headers is not None:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            raise EncodeError("headers must map strings to strings")
        message["headers"] = dict(headers)
    message["visibilityTimeout"] = _number("visibilityTimeout", visibility_timeout, 0)
    if not isinstance(last_heartbeat_details, Unset):
        message["lastHeartbeatDetails"] = _json("lastHeartbeatDetails", last_heartbeat_details)
    return message


def cancel(*, operation_id: str, attempt_token: str, reason: str) -> CancelMessage:
    """A ``cancel`` frame. The reason must be non-empty: Weft's worker drops an empty one."""
    return {
        "type": "cancel",
        "operationId": _require("operationId", operation_id),
        "attemptToken": _require("attemptToken", attempt_token),
        "reason": _require("reason", reason),
    }


def shutdown() -> ShutdownMessage:
    """A ``shutdown`` frame: drain and close."""
    return {"type": "shutdown"}


def register_ack(
    *,
    worker_id: str,
    queue: str,
    concurrency: int,
    accepted_manifest_digest: str,
    session_generation: int,
) -> RegisterAckMessage:
    """A ``registerAck``; every field is required by Weft's worker."""
    return {
        "type": "registerAck",
        "protocolVersion": PROTOCOL_VERSION,
        "workerId": _require("workerId", worker_id),
        "queue": _require("queue", queue),
        "concurrency": _number("concurrency", concurrency, 1),
        "acceptedManifestDigest": _require("acceptedManifestDigest", accepted_manifest_digest),
        "serverCapabilities": [],
        "sessionGeneration": _number("sessionGeneration", session_generation, 1),
    }


def protocol_error(
    *,
    code: ErrorCodeValue,
    message: str,
    operation_id: str | None = None,
    attempt_token: str | None = None,
) -> ProtocolErrorMessage:
    """A ``protocolError``; with both ids it is correlated (rejects one result, no close)."""
    frame: ProtocolErrorMessage = {
        "type": "protocolError",
        "code": cast(ErrorCodeValue, _member("code", code, ERROR_CODE_VALUES)),
        "message": message,
    }
    if (operation_id is None) != (attempt_token is None):
        raise EncodeError("a correlated protocolError needs both operationId and attemptToken")
    if operation_id is not None and attempt_token is not None:
        frame["operationId"] = _require("operationId", operation_id)
        frame["attemptToken"] = _require("attemptToken", attempt_token)
    return frame


def task_result_ack(
    *, operation_id: str, attempt_token: str, disposition: DispositionValue
) -> TaskResultAckMessage:
    """A ``taskResultAck``: the worker may forget (operationId, attemptToken)."""
    return {
        "type": "taskResultAck",
        "operationId": _require("operationId", operation_id),
        "attemptToken": _require("attemptToken", attempt_token),
        "disposition": cast(
            DispositionValue, _member("disposition", disposition, DISPOSITION_VALUES)
        ),
    }


# -- worker → server ------------------------------------------------------------


def register(
    *,
    worker_id: str,
    manifest: Mapping[str, Any],
    concurrency: int,
    started_at: int | float | None = None,
    resume_session_generation: int | None = None,
) -> RegisterMessage:
    """A ``register`` frame; pass the last ``sessionGeneration`` to prove a resume."""
    message: RegisterMessage = {
        "type": "register",
        "protocolVersion": PROTOCOL_VERSION,
        "workerId": _require("workerId", worker_id),
        "manifest": cast(dict[str, JsonValue], dict(manifest)),
        "concurrency": _number("concurrency", concurrency),
    }
    if started_at is not None:
        message["startedAt"] = _number("startedAt", started_at)
    if resume_session_generation is not None:
        message["resumeSessionGeneration"] = _number(
            "resumeSessionGeneration", resume_session_generation
        )
    return message


def heartbeat(*, worker_id: str) -> HeartbeatMessage:
    """A session ``heartbeat`` (renews no lease)."""
    return {"type": "heartbeat", "workerId": _require("workerId", worker_id)}


def activity_heartbeat(
    *,
    worker_id: str,
    operation_id: str,
    attempt_token: str,
    details: JsonValue | Unset = UNSET,
) -> ActivityHeartbeatMessage:
    """An ``activityHeartbeat``; automatic ticks leave ``details`` out (never ``null``)."""
    message: ActivityHeartbeatMessage = {
        "type": "activityHeartbeat",
        "workerId": _require("workerId", worker_id),
        "operationId": _require("operationId", operation_id),
        "attemptToken": _require("attemptToken", attempt_token),
    }
    if not isinstance(details, Unset):
        message["details"] = _json("details", details)
    return message


def task_result(
    *,
    operation_id: str,
    attempt_token: str,
    status: str,
    value: JsonValue | Unset = UNSET,
    error: str | None = None,
    workflow_revision: str | None = None,
) -> TaskResultMessage:
    """A ``taskResult``: ``completed`` needs ``value``; ``failed``/``cancelled`` need ``error``."""
    base: dict[str, Any] = {
        "type": "taskResult",
        "operationId": _require("operationId", operation_id),
        "status": status,
    }
    if status == "completed":
        if isinstance(value, Unset):
            raise EncodeError("a completed taskResult needs value (None for no value)")
        base["value"] = _json("value", value)
    elif status in ("failed", "cancelled"):
        if not isinstance(error, str):
            raise EncodeError(f"a {status} taskResult needs error (a string)")
        base["error"] = error
        if status == "cancelled":
            base["cancelled"] = True
    else:
        raise EncodeError("status must be completed, failed, or cancelled")
    base["attemptToken"] = _require("attemptToken", attempt_token)
    if workflow_revision is not None:
        base["workflowRevision"] = _require("workflowRevision", workflow_revision)
    return cast(TaskResultMessage, base)
